-- state.lua: the stream's state (what /vote/result-sse shows).
--
-- Runs after engine/version.lua (version_of), which the server puts in
-- front; by hand:
--   cat engine/version.lua apps/poll/state.lua > /tmp/state.lua && redis-cli --eval /tmp/state.lua
-- KEYS, ARGV: none.
-- Reply: {version (text), poll id, question, options (one per line),
-- total, counts...}, the counts in option order; {0} when no poll has been
-- made yet.
local id = redis.call('GET', 'sse:poll:current')
if not id then return {0} end
local p = 'sse:poll:' .. id
local q = redis.call('HMGET', p, 'question', 'options')
local total = redis.call('HLEN', p .. ':voters')
local out, fields = {'', id, q[1], q[2], total}, {}
for _ in string.gmatch(q[2], '[^\n]+') do fields[#fields + 1] = #fields end
if #fields > 0 then
  for i, c in ipairs(redis.call('HMGET', p .. ':counts', unpack(fields))) do
    if c and not string.match(c, '^%d+$') then  -- a count set by hand to something else: no state to show
      return redis.error_reply(string.format('%s:counts field %d is "%s", not a count', p, i - 1, string.sub(c, 1, 40)))
    end
    out[5 + i] = tonumber(c or '0')
  end
end
out[1] = version_of('sse:poll:version', cjson.encode({id, q[1] or '', q[2] or '', unpack(out, 5)}))
return out
