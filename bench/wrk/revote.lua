-- revote.lua — wrk script: every request is the same voter voting again.
--
-- Protocol: POST /vote with the form body "voter=<VOTER>&option=<OPTION>",
-- both given after "--", the same for every request. Once the voter has
-- voted (the caller votes first), each request is a second vote: 409
-- "already voted", counted nowhere, stored nowhere. wrk counts the 409s as
-- "Non-2xx or 3xx responses"; bench/refusals.sh reads the statuses from
-- the server's /metrics instead, so this script has no response().
--
--   wrk -t1 -c256 -d10s -s bench/wrk/revote.lua http://127.0.0.1:PORT/vote -- again Auction

local body

function init(args)
  if not args[1] or not args[2] then
    io.stderr:write("usage: wrk ... -s revote.lua URL -- VOTER OPTION\n")
    os.exit(2)
  end
  body = "voter=" .. args[1] .. "&option=" .. args[2]
end

function request()
  return wrk.format("POST", "/vote", { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
