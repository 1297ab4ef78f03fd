-- grab.lua: a turn's grabs of red packets, decided one by one in arrival order.
--
-- KEYS: none (the script names the keys it builds: see in_redis.hpp).
-- ARGV: one user per grab (the server sends a turn's grabs, up to 256, in
-- one call; by hand: redis-cli --eval apps/redpacket/grab.lua , alice bob).
-- Reply: one array per grab, in order:
--   {"granted" or "already", round id, packet, amount_cents, remaining}
--   {"empty", round id}   every packet is taken
--   {"none"}              no round has been made yet
--
-- Each grab is decided as if it had come alone; what is the same for all
-- of them is done once: the round, its size and the packets taken are read
-- once, the winners go in one LPUSH, and one PUBLISH says the round changed.
-- A redis.call costs Redis about a microsecond, as much as the rest of the
-- script, so a grant makes two (HSETNX records a new grabber, and tells
-- one who holds a packet already; GETRANGE reads the amount). A grant's
-- time is Redis's clock (TIME, once): one clock for every process.
local out = {}
local id = redis.call('GET', 'sse:redpacket:current')
if not id then
  for k = 1, #ARGV do out[k] = {'none'} end
  return out
end
local r = 'sse:redpacket:' .. id
local users, amounts = r .. ':users', r .. ':amounts'
local count = tonumber(redis.call('HGET', r, 'count'))
local taken = redis.call('HLEN', users)
local now, winners = nil, {}
for k, user in ipairs(ARGV) do
  local kind, packet = 'granted', taken
  if taken >= count or redis.call('HSETNX', users, user, packet) == 0 then
    local held = redis.call('HGET', users, user)
    if held then kind, packet = 'already', tonumber(held) else kind = 'empty' end
  else
    taken = taken + 1
  end
  if kind == 'empty' then
    out[k] = {'empty', id}
  else
    local amount = tonumber(redis.call('GETRANGE', amounts, packet * 12, packet * 12 + 11))
    if kind == 'granted' then
      if not now then
        local t = redis.call('TIME')
        now = t[1] * 1000 + math.floor(t[2] / 1000)
      end
      winners[#winners + 1] = string.format('%d %d %d %s', packet, amount, now, user)
    end
    out[k] = {kind, id, packet, amount, count - taken}
  end
end
if #winners > 0 then
  if redis.call('LPUSH', r .. ':winners', unpack(winners)) > 20 then redis.call('LTRIM', r .. ':winners', 0, 9) end
  redis.call('PUBLISH', 'sse:changed', 'redpacket')
end
return out
