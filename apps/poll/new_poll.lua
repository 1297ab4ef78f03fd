-- new_poll.lua: a new poll replaces the current one.
--
-- KEYS: none.
-- ARGV: the question, the options (one per line), and "first" to make it
-- only if there is no poll yet (every process starting up asks; only one
-- makes it).
-- Reply: {poll id}, or {0} when "first" found a poll.
-- The poll before the previous one goes (UNLINK): Redis keeps two polls.
if ARGV[3] == 'first' and redis.call('EXISTS', 'sse:poll:current') == 1 then return {0} end
local id = redis.call('INCR', 'sse:poll:ids')
redis.call('HSET', string.format('sse:poll:%d', id), 'question', ARGV[1], 'options', ARGV[2])
redis.call('SET', 'sse:poll:current', string.format('%d', id))
local old = string.format('sse:poll:%d', id - 2)
redis.call('UNLINK', old, old .. ':voters', old .. ':counts')
redis.call('PUBLISH', 'sse:changed', 'poll')
return {id}
