-- dump.lua: everything the cluster test's checker reads from Redis, as one
-- JSON text, read in one script so that it is one moment of the state.
--
-- By hand: redis-cli --raw --eval test/cluster/dump.lua
-- KEYS, ARGV: none. Reply: {"redpacket":{"current":id,"rounds":{id:{"count",
-- "total_cents","users":{user:packet},"amounts":[cents...],
-- "winners":["packet amount_cents at_ms user", newest first, at most 10]}}},
-- "poll":{"current":id,"options":[...],"voters":{voter:index},"counts":{index:n}},
-- "cinema":{"showtimes":{id:{hash}},"listed":[ids],"bookings":{id:{showtime,
-- user, seats, made_at}}}}
-- (numbers as Redis keeps them: text). The keys are those the apps' scripts
-- name (apps/*/*.lua); the round and poll are the current one and the one
-- before it, all Redis keeps.
local function hash(key)
  local h, flat = {}, redis.call('HGETALL', key)
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

local out = {redpacket = {rounds = {}}, poll = {}, cinema = {showtimes = {}, bookings = {}}}

local round = redis.call('GET', 'sse:redpacket:current')
out.redpacket.current = round or ''
if round then
  for id = tonumber(round) - 1, tonumber(round) do
    local r = 'sse:redpacket:' .. string.format('%d', id)
    if redis.call('EXISTS', r) == 1 then
      local h, amounts, digits = hash(r), {}, redis.call('GET', r .. ':amounts') or ''
      for k = 1, #digits, 12 do amounts[#amounts + 1] = tonumber(string.sub(digits, k, k + 11)) end
      out.redpacket.rounds[string.format('%d', id)] = {count = h.count, total_cents = h.total_cents,
                                                      users = hash(r .. ':users'), amounts = amounts,
                                                      winners = redis.call('LRANGE', r .. ':winners', 0, 9)}
    end
  end
end

local poll = redis.call('GET', 'sse:poll:current')
out.poll.current = poll or ''
if poll then
  local p = 'sse:poll:' .. poll
  local options = {}
  for name in string.gmatch(redis.call('HGET', p, 'options') or '', '[^\n]+') do options[#options + 1] = name end
  out.poll.options = options
  out.poll.voters = hash(p .. ':voters')
  out.poll.counts = hash(p .. ':counts')
end

out.cinema.listed = redis.call('SMEMBERS', 'sse:cinema:showtimes')
for _, id in ipairs(out.cinema.listed) do out.cinema.showtimes[id] = hash('sse:cinema:showtime:' .. id) end
local last = tonumber(redis.call('GET', 'sse:cinema:booking_ids') or '0')
for id = 1, last do  -- as older builds kept them: a hash each
  local b = hash('sse:cinema:booking:' .. string.format('%d', id))
  if next(b) then out.cinema.bookings[string.format('%d', id)] = b end
end
for _, key in ipairs(redis.call('KEYS', 'sse:cinema:held:*')) do  -- as book.lua keeps them: b<id> fields of the person's hash
  local user = string.sub(key, #'sse:cinema:held:' + 1)
  for field, value in pairs(hash(key)) do
    local id = string.match(field, '^b(%d+)$')
    local showtime, seats, made_at = string.match(value, '^(%d+) (%d+) (%d+)$')
    if id and showtime then out.cinema.bookings[id] = {showtime = showtime, user = user, seats = seats, made_at = made_at} end
  end
end
return cjson.encode(out)
