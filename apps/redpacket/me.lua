-- me.lua: what one user holds in the current round.
--
-- KEYS: none.  ARGV: the user.
-- Reply: {round id, packet, amount_cents}; {round id, -1} when they hold
-- none; {"0"} when no round has been made yet.
local id = redis.call('GET', 'sse:redpacket:current')
if not id then return {'0'} end
local r = 'sse:redpacket:' .. id
local held = redis.call('HGET', r .. ':users', ARGV[1])
if not held then return {id, -1} end
local packet = tonumber(held)
return {id, packet, tonumber(redis.call('GETRANGE', r .. ':amounts', packet * 12, packet * 12 + 11))}
