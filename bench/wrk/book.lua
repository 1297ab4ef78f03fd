-- book.lua — wrk script: every request books one seat for a new user, the
-- showtimes taken in turn.
--
-- Protocol: POST /cinema/showtimes/<id>/book with a form body
-- "user=<prefix>-<n>" (no `seats`: one seat), n counting up per wrk thread
-- under a random per-thread prefix, so no user ever meets the 10-seats-per-
-- person limit and every booking that finds a seat is taken and stored. The
-- ids go round FIRST, FIRST+1, ..., FIRST+COUNT-1, given after "--", so the
-- bookings spread over COUNT showtimes (made by the caller, starting in the
-- future) instead of all updating one row. Make more seats than the run can
-- take (COUNT x 10,000 against requests/s x seconds), or the tail of the
-- run measures 409s: wrk counts those as "Non-2xx or 3xx responses", which
-- bench/run.sh records. The script has no response() on purpose: with one,
-- wrk hands every answer to Lua, which slows the client (it shares the
-- machine with the server and is often the limit already).
--
--   wrk -t1 -c50 -d10s -s bench/wrk/book.lua http://127.0.0.1:PORT/cinema/showtimes -- FIRST COUNT

local n = 0
local prefix
local first, count

function init(args)
  first, count = tonumber(args[1]), tonumber(args[2])
  if not first or not count or count < 1 then
    io.stderr:write("usage: wrk ... -s book.lua URL -- FIRST_SHOWTIME_ID SHOWTIME_COUNT\n")
    os.exit(2)
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  prefix = string.format("b%08x", math.random(0, 0x7fffffff))
end

function request()
  local id = first + n % count
  n = n + 1
  return wrk.format("POST", "/cinema/showtimes/" .. id .. "/book",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "user=" .. prefix .. "-" .. n)
end
