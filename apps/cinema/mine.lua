-- mine.lua: one user's bookings of showtimes still on the schedule, oldest
-- first.
--
-- KEYS: none.  ARGV: the user.
-- Reply: Redis's time (epoch ms: which of them have started is its clock's
-- to say, as for a booking), then six per booking: its id, seats, showtime
-- id, movie, hall, starts_at.
--
-- A booking is a field of the person's hash (book.lua): b<id> ->
-- "<showtime> <seats> <made_at>". Bookings made by older builds are a list,
-- user:<user>, of booking:<id> hashes; they are read too.
local t = redis.call('TIME')
local out, list = {t[1] * 1000 + math.floor(t[2] / 1000)}, {}
local person = redis.call('HGETALL', 'sse:cinema:held:' .. ARGV[1])
for i = 1, #person, 2 do
  local b = string.match(person[i], '^b(%d+)$')
  local showtime, seats = string.match(person[i + 1], '^(%d+) (%d+)')
  if b and showtime then list[#list + 1] = {b, seats, showtime} end
end
for _, b in ipairs(redis.call('LRANGE', 'sse:cinema:user:' .. ARGV[1], 0, -1)) do
  local bk = redis.call('HMGET', 'sse:cinema:booking:' .. b, 'showtime', 'seats')
  if bk[1] then list[#list + 1] = {b, bk[2] or '0', bk[1]} end
end
table.sort(list, function(x, y) return #x[1] < #y[1] or (#x[1] == #y[1] and x[1] < y[1]) end)  -- by id, as numbers
for _, b in ipairs(list) do
  if redis.call('SISMEMBER', 'sse:cinema:showtimes', b[3]) == 1 then
    local s = redis.call('HMGET', 'sse:cinema:showtime:' .. b[3], 'movie', 'hall', 'starts_at')
    for _, v in ipairs({b[1], b[2], b[3], s[1], s[2], s[3]}) do out[#out + 1] = v end
  end
end
return out
