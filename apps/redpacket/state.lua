-- state.lua: the stream's state (what /redpacket/events shows).
--
-- Runs after engine/version.lua (version_of), which the server puts in
-- front; by hand:
--   cat engine/version.lua apps/redpacket/state.lua > /tmp/state.lua && redis-cli --eval /tmp/state.lua
-- KEYS, ARGV: none.
-- Reply: {version (text), round id, total_cents, count, taken, winner...},
-- each winner "packet amount_cents at_ms user", newest first (at most 10);
-- {0} when no round has been made yet.
local id = redis.call('GET', 'sse:redpacket:current')
if not id then return {0} end
local r = 'sse:redpacket:' .. id
local h = redis.call('HMGET', r, 'total_cents', 'count')
local taken = redis.call('HLEN', r .. ':users')
local out = {'', id, tonumber(h[1]), tonumber(h[2]), taken}
for _, w in ipairs(redis.call('LRANGE', r .. ':winners', 0, 9)) do out[#out + 1] = w end
out[1] = version_of('sse:redpacket:version', cjson.encode({id, h[1] or '', h[2] or '', unpack(out, 5)}))
return out
