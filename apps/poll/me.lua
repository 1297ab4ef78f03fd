-- me.lua: what one voter voted for in the current poll.
--
-- KEYS: none.  ARGV: the voter.
-- Reply: {poll id, options (one per line), option index}, the index -1
-- when they have not voted; {"0", "", -1} when no poll has been made yet.
local id = redis.call('GET', 'sse:poll:current')
if not id then return {'0', '', -1} end
local p = 'sse:poll:' .. id
return {id, redis.call('HGET', p, 'options'), tonumber(redis.call('HGET', p .. ':voters', ARGV[1]) or '-1')}
