-- vote.lua — wrk script: every request is a vote by a new voter.
--
-- Protocol: POST /vote with a form body "voter=<prefix>-<n>&option=<name>",
-- n counting up per wrk thread under a random per-thread prefix, so every
-- vote is a first vote and is counted and stored. Options are taken in
-- turn from OPTIONS, which must match the server's poll: by default the
-- poll made on first start (see --poll-options).
--
--   wrk -t1 -c50 -d10s -s bench/wrk/vote.lua http://127.0.0.1:PORT/vote

local OPTIONS = { "Stock+ticker", "Chat+room", "Live+scores", "Auction" }
local n = 0
local prefix

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  prefix = string.format("v%08x", math.random(0, 0x7fffffff))
end

function request()
  n = n + 1
  return wrk.format("POST", "/vote",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "voter=" .. prefix .. "-" .. n .. "&option=" .. OPTIONS[n % #OPTIONS + 1])
end
