-- state.lua: the stream's state (what /events and /cinema/events show, and
-- GET /cinema/showtimes).
--
-- Runs after prelude.lua (starts_ms), which the server puts in front; by hand:
--   cat apps/cinema/prelude.lua apps/cinema/state.lua > /tmp/state.lua && redis-cli --eval /tmp/state.lua
-- KEYS, ARGV: none.
-- Reply: {version, Redis's time in epoch ms, then per showtime its id,
-- movie, hall, starts_at, seats_total, seats_left} (a missing field is nil).
--
-- Takes the digest described in in_redis.hpp; bumps the version when the
-- state changed under the same version (or there is none yet).
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
local digest = redis.sha1hex(table.concat(parts, '\n'))
local version = redis.call('GET', 'sse:cinema:version') or '0'
local stored = redis.call('GET', 'sse:cinema:digest')
if stored ~= version .. ' ' .. digest then
  if version == '0' or (stored and string.sub(stored, 1, #version + 1) == version .. ' ') then
    version = string.format('%d', redis.call('INCR', 'sse:cinema:version'))  -- tostring would write 1e+14
    redis.call('PUBLISH', 'sse:changed', 'cinema ' .. version)
  end
  redis.call('SET', 'sse:cinema:digest', version .. ' ' .. digest)
end
out[1] = tonumber(version)
return out
