-- vote.lua: a turn's votes in the poll, decided one by one in arrival order.
--
-- KEYS: none (the script names the keys it builds: see in_redis.hpp).
-- ARGV: four per vote — voter, option, the poll the page shows ("" if
-- none), max voters (the server sends a turn's votes, up to 256, in one
-- call; by hand: redis-cli --eval apps/poll/vote.lua , alice Red '' 1000000).
-- Reply: one array per vote, in order:
--   {status, id, options, option index, total, counts...}   200 counted, 409 voted already
--   {400, id, options}   the poll has no such option
--   {410, id}            the page shows a poll that is over
--   {503, id}            the poll is full; {503, "0"}: no poll has been made yet
-- (options: one per line; counts in option order).
--
-- Each vote is decided as if it had come alone; what is the same for all
-- of them is done once: the poll and its options, the voters so far and
-- the counts are read once and kept in step here, each option's new votes
-- go in one HINCRBY, one PUBLISH says the poll changed. Each redis.call
-- costs Redis about a microsecond, as much as the rest of the script, so a
-- first vote makes one (HSETNX records the voter and says whether they are
-- new).
--
-- Redis does not undo a script that fails halfway, so everything a write
-- depends on is checked before the first one: a count that is not a whole
-- number (someone's HSET by hand) refuses the whole call with an error
-- naming it, and nothing is written; after the checks nothing can fail.
local out = {}
local id = redis.call('GET', 'sse:poll:current')
local p = 'sse:poll:' .. (id or '')
local voters, options, names = p .. ':voters', id and redis.call('HGET', p, 'options') or '', {}
for name in string.gmatch(options, '[^\n]+') do names[#names + 1] = name end
local total, counts, added = nil, {}, {}
for k = 1, #ARGV, 4 do
  local voter, option, shown, n = ARGV[k], ARGV[k + 1], ARGV[k + 2], (k + 3) / 4
  local idx = -1
  for i, name in ipairs(names) do
    if name == option then idx = i - 1 end
  end
  if not id then
    out[n] = {503, '0'}
  elseif shown ~= '' and shown ~= id then
    out[n] = {410, id}
  elseif idx < 0 then
    out[n] = {400, id, options}
  else
    if not total then
      total = redis.call('HLEN', voters)
      local fields = {}
      for i = 1, #names do fields[i] = i - 1 end
      for i, c in ipairs(redis.call('HMGET', p .. ':counts', unpack(fields))) do
        if c and not string.match(c, '^%d+$') then
          return redis.error_reply(string.format('%s:counts field %d is "%s", not a count; no vote was counted', p, i - 1, string.sub(c, 1, 40)))
        end
        counts[i] = tonumber(c or '0')
      end
    end
    local status = 200
    if total < tonumber(ARGV[k + 3]) and redis.call('HSETNX', voters, voter, idx) == 1 then
      total = total + 1
      counts[idx + 1] = counts[idx + 1] + 1
      added[idx + 1] = (added[idx + 1] or 0) + 1
    else
      local before = redis.call('HGET', voters, voter)
      if before then status, idx = 409, tonumber(before) else status = 503 end
    end
    if status == 503 then
      out[n] = {503, id}
    else
      out[n] = {status, id, options, idx, total, unpack(counts)}
    end
  end
end
local changed = false
for i, d in pairs(added) do
  redis.call('HINCRBY', p .. ':counts', i - 1, d)
  changed = true
end
if changed then redis.call('PUBLISH', 'sse:changed', 'poll') end
return out
