-- grab.lua — wrk script: every request is a red-packet grab by a new user.
--
-- Protocol: POST /redpacket/grab with a form body "user=<prefix>-<n>", where
-- n counts up per wrk thread and the prefix is random per thread, so no two
-- requests in a run (or across runs) share a user and every grab that finds
-- a packet is a real, durable grant. Use a round with more packets than the
-- run can take (e.g. count=1000000), or the tail of the run measures 410s.
--
--   wrk -t1 -c50 -d10s -s bench/wrk/grab.lua http://127.0.0.1:PORT/redpacket/grab

local n = 0
local prefix

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  prefix = string.format("w%08x", math.random(0, 0x7fffffff))
end

function request()
  n = n + 1
  return wrk.format("POST", "/redpacket/grab",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "user=" .. prefix .. "-" .. n)
end
