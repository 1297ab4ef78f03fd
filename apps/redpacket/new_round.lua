-- new_round.lua: a new round replaces the current one.
--
-- KEYS: none.
-- ARGV: total_cents, count, the split (12 decimal digits per packet, made
-- by the server), and "first" to make it only if there is no round yet
-- (every process starting up may ask; only one makes it).
-- Reply: {round id}, or {0} when "first" found a round.
if ARGV[4] == 'first' and redis.call('EXISTS', 'sse:redpacket:current') == 1 then return {0} end
if #ARGV[3] ~= 12 * tonumber(ARGV[2]) then return redis.error_reply('the split does not have count amounts') end
local id = redis.call('INCR', 'sse:redpacket:ids')
local r = string.format('sse:redpacket:%d', id)  -- not `..` a number: that writes 1e+14
redis.call('HSET', r, 'total_cents', ARGV[1], 'count', ARGV[2])
redis.call('SET', r .. ':amounts', ARGV[3])
redis.call('SET', 'sse:redpacket:current', string.format('%d', id))
redis.call('PUBLISH', 'sse:changed', string.format('redpacket %d0000000', id))
return {id}
