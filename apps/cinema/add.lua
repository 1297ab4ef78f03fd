-- add.lua: new showtimes.
--
-- KEYS: none.
-- ARGV: "first" to make them only if Redis has no schedule yet (every
-- process starting up asks), else ""; then five per showtime: movie, hall,
-- starts_at, seats_total, seats_left. By hand:
--   redis-cli --eval apps/cinema/add.lua , '' Hero 'Hall 1' 2030-01-01T10:00:00Z 100 100
-- Reply: {the last id}, or {0} when "first" found a schedule.
if ARGV[1] == 'first' and redis.call('EXISTS', 'sse:cinema:ids', 'sse:cinema:showtimes', 'sse:cinema:version') > 0 then return {0} end
local id, key = 0, ''
for i = 2, #ARGV, 5 do
  repeat  -- past an id someone took by hand with redis-cli
    id = string.format('%d', redis.call('INCR', 'sse:cinema:ids'))  -- not `..` a number: that writes 1e+14
    key = 'sse:cinema:showtime:' .. id
  until redis.call('EXISTS', key) == 0 and redis.call('SISMEMBER', 'sse:cinema:showtimes', id) == 0
  redis.call('HSET', key, 'movie', ARGV[i], 'hall', ARGV[i + 1], 'starts_at', ARGV[i + 2],
             'seats_total', ARGV[i + 3], 'seats_left', ARGV[i + 4])
  redis.call('SADD', 'sse:cinema:showtimes', id)
end
redis.call('PUBLISH', 'sse:changed', 'cinema')
return {tonumber(id)}
