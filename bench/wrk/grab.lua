-- grab.lua — wrk script: every request is a red-packet grab by a new user.
--
-- Protocol: POST /redpacket/grab with a form body "user=<prefix>-<n>", where
-- n counts up per wrk thread and the prefix is random per thread, so no two
-- requests in a run (or across runs) share a user and every grab that finds
-- a packet is a real, durable grant. A round holds at most 1,000,000
-- packets, fewer than a fast machine grabs in a 10 s run: given the admin
-- token, every ROUND_EVERY-th request of a thread is instead the admin's
-- POST /redpacket/rounds of a fresh million-packet round, so the round
-- never runs dry (each costs the server one split of a million packets, a
-- few tens of milliseconds, inside the run). Start the run on a fresh
-- round of 1,000,000, and use one thread (-t1), or the rounds' timing is
-- per thread and a round may still run dry.
--
--   wrk -t1 -c50 -d10s -s bench/wrk/grab.lua http://127.0.0.1:PORT/redpacket/grab -- TOKEN

local ROUND_EVERY = 900000
local n = 0
local prefix, token

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  prefix = string.format("w%08x", math.random(0, 0x7fffffff))
  token = args[1]
end

local FORM = { ["Content-Type"] = "application/x-www-form-urlencoded" }

function request()
  n = n + 1
  if token and n % ROUND_EVERY == 0 then
    return wrk.format("POST", "/redpacket/rounds", FORM, "total_cents=100000000&count=1000000&token=" .. token)
  end
  return wrk.format("POST", "/redpacket/grab", FORM, "user=" .. prefix .. "-" .. n)
end
