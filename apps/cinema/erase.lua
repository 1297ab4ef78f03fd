-- erase.lua: a delete.
--
-- KEYS: none.  ARGV: the showtime's id.
-- Reply: {200}, or {404} when there was no such showtime. Its bookings
-- stay, off every list.
local gone = redis.call('SREM', 'sse:cinema:showtimes', ARGV[1]) + redis.call('DEL', 'sse:cinema:showtime:' .. ARGV[1])
if gone == 0 then return {404} end
redis.call('PUBLISH', 'sse:changed', 'cinema')
return {200}
