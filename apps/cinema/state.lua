-- state.lua: the stream's state (what /events and /cinema/events show, and
-- GET /cinema/showtimes).
--
-- Runs after engine/version.lua (version_of) and prelude.lua (starts_ms),
-- which the server puts in front; by hand:
--   cat engine/version.lua apps/cinema/prelude.lua apps/cinema/state.lua > /tmp/state.lua && redis-cli --eval /tmp/state.lua
-- KEYS, ARGV: none.
-- Reply: {version, Redis's time in epoch ms, then per showtime its id,
-- movie, hall, starts_at, seats_total, seats_left} (a missing field is nil).
--
-- The version is of everything the board depends on (in_redis.hpp): each
-- hash, and which showtimes have started by Redis's own clock. A new one
-- is published, since no write may have made it (a showtime starting).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ids = redis.call('SMEMBERS', 'sse:cinema:showtimes')
table.sort(ids)
local out, parts = {0, now}, {}
local function part(v) parts[#parts + 1] = v and (#v .. ':' .. v) or '-' end
for _, id in ipairs(ids) do
  local key = 'sse:cinema:showtime:' .. id
  if redis.call('EXISTS', key) == 1 then
    local f = redis.call('HMGET', key, 'movie', 'hall', 'starts_at', 'seats_total', 'seats_left')
    out[#out + 1] = id
    part(id)
    for i = 1, 5 do out[#out + 1] = f[i]; part(f[i]) end
    local starts = starts_ms(f[3])
    part((starts and starts <= now) and 'started' or 'upcoming')
  end
end
local version, new = version_of('sse:cinema:version', table.concat(parts, '\n'))
if new then redis.call('PUBLISH', 'sse:changed', 'cinema ' .. version) end
out[1] = tonumber(version)
return out
