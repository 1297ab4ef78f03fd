-- new_round.lua: a new round replaces the current one.
--
-- KEYS: none.
-- ARGV: total_cents, count, the split (12 decimal digits per packet, made
-- by the server), and "first" to make it only if there is no round yet
-- (every process starting up may ask; only one makes it).
-- Reply: {round id}, or {0} when "first" found a round.
-- The round before the previous one goes (UNLINK: Redis frees it in the
-- background, a million users' hash too): Redis keeps two rounds, not all.
if ARGV[4] == 'first' and redis.call('EXISTS', 'sse:redpacket:current') == 1 then return {0} end
if #ARGV[3] ~= 12 * tonumber(ARGV[2]) then return redis.error_reply('the split does not have count amounts') end
local id = redis.call('INCR', 'sse:redpacket:ids')
local r = string.format('sse:redpacket:%d', id)  -- not `..` a number: that writes 1e+14
redis.call('HSET', r, 'total_cents', ARGV[1], 'count', ARGV[2])
redis.call('SET', r .. ':amounts', ARGV[3])
redis.call('SET', 'sse:redpacket:current', string.format('%d', id))
local old = string.format('sse:redpacket:%d', id - 2)
redis.call('UNLINK', old, old .. ':users', old .. ':amounts', old .. ':winners')
redis.call('PUBLISH', 'sse:changed', 'redpacket')
return {id}
