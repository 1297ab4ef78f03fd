-- version.lua: version_of(key, state), the version (event id) of a stream's
-- state, the same on every process and never given to another state.
--
-- Not a script of its own: the server puts it in front of each app's
-- state script, which reads its state, writes it out as text and asks
-- this for its version. `key` holds "<version> <digest>" of the state
-- last read. The same digest keeps the version; any other state gets a new
-- one, made from Redis's clock: its time in microseconds, or one more than
-- the last version if that is larger. So versions only grow, and a Redis
-- that lost data cannot give an old id to a new state:
--   * FLUSHALL, or a restart with no persistence: the key is gone, and the
--     clock is past every version made before;
--   * a restart on an append-only file missing its last second (everysec),
--     or a failover to a replica that lagged: the key is as old as the data,
--     so the versions made since were lost with it. Redis's run_id, new on
--     every start, is in the digest: the first read after a start makes a
--     new version, past the lost ones, even for a state that looks the same.
-- This holds as long as Redis's clock is not set back past the lost
-- versions and Redis makes fewer than a million versions a second (each
-- takes a script run).
-- Lua's numbers are doubles: microseconds since 1970 are exact until 2255.
local function version_of(key, state)
  local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
  local digest = redis.sha1hex(run_id .. '\n' .. state)
  local stored = redis.call('GET', key) or ''
  local version, had = string.match(stored, '^(%d+) (%x+)$')
  if had == digest then return version, false end
  local t = redis.call('TIME')
  version = string.format('%d', math.max((tonumber(version) or 0) + 1, t[1] * 1000000 + t[2]))
  redis.call('SET', key, version .. ' ' .. digest)
  return version, true
end
