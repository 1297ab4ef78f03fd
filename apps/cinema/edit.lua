-- edit.lua: an edit of one showtime.
--
-- KEYS: none.
-- ARGV: id, movie, hall, starts_at, seats (the total); "" leaves a field
-- as it is. The seats move seats_left by as much, never below the seats
-- sold.
-- Reply: {200, id, movie, hall, starts_at, seats_total, seats_left} as
-- they are now; {404} when there is no such showtime; {409, sold} when the
-- seats would go below those sold; {422} when its seat counts are not
-- whole numbers (set by hand): it is not edited at all, as in the SQLite
-- mode, since there is nothing to count from. Checked before any write.
local key = 'sse:cinema:showtime:' .. ARGV[1]
if redis.call('SISMEMBER', 'sse:cinema:showtimes', ARGV[1]) == 0 or redis.call('EXISTS', key) == 0 then return {404} end
local function count(v) return v and #v <= 9 and string.match(v, '^%d+$') and tonumber(v) end
local f = redis.call('HMGET', key, 'seats_total', 'seats_left')
local total, left = count(f[1]), count(f[2])
if not (total and left) then return {422} end
if ARGV[5] ~= '' then
  local seats = tonumber(ARGV[5])
  if seats < total - left then return {409, total - left} end
  redis.call('HSET', key, 'seats_total', seats, 'seats_left', left + seats - total)
end
for i, name in ipairs({'movie', 'hall', 'starts_at'}) do
  if ARGV[i + 1] ~= '' then redis.call('HSET', key, name, ARGV[i + 1]) end
end
redis.call('PUBLISH', 'sse:changed', 'cinema')
local f = redis.call('HMGET', key, 'movie', 'hall', 'starts_at', 'seats_total', 'seats_left')
return {200, ARGV[1], f[1], f[2], f[3], f[4], f[5]}
