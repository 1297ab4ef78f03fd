-- mine.lua: one user's bookings of showtimes still on the schedule.
--
-- KEYS: none.  ARGV: the user.
-- Reply: Redis's time (epoch ms: which of them have started is its clock's
-- to say, as for a booking), then six per booking: its id, seats, showtime
-- id, movie, hall, starts_at.
local t = redis.call('TIME')
local out = {t[1] * 1000 + math.floor(t[2] / 1000)}
for _, b in ipairs(redis.call('LRANGE', 'sse:cinema:user:' .. ARGV[1], 0, -1)) do
  local bk = redis.call('HMGET', 'sse:cinema:booking:' .. b, 'showtime', 'seats')
  if bk[1] and redis.call('SISMEMBER', 'sse:cinema:showtimes', bk[1]) == 1 then
    local s = redis.call('HMGET', 'sse:cinema:showtime:' .. bk[1], 'movie', 'hall', 'starts_at')
    for _, v in ipairs({b, bk[2] or '0', bk[1], s[1], s[2], s[3]}) do out[#out + 1] = v end
  end
end
return out
