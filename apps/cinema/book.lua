-- book.lua: a turn's bookings (batched: see RedisScripts), decided one by
-- one in arrival order.
--
-- Runs after prelude.lua (starts_ms), which the server puts in front; by hand:
--   cat apps/cinema/prelude.lua apps/cinema/book.lua > /tmp/book.lua && redis-cli --eval /tmp/book.lua , 1 alice 2 10
-- KEYS: none.
-- ARGV: four per booking: showtime id, user, seats, the seats one person
-- may hold.
-- Reply: one array per booking, in order; for each, in the SQLite mode's
-- order of checks: {'no_showtime'}, {'started'}, {'per_person', held},
-- {'seats', left}, or {'booked', left, booking id}.
--
-- Each is decided in turn as if it had come alone (the seats and what the
-- person holds are read after the bookings before it); the clock is read
-- once, and one PUBLISH says the board changed if any was made. Whether
-- a showtime has started is Redis's clock's to say (TIME), the clock the
-- board is drawn by: with processes on several machines, each server's own
-- clock would let one sell seats the board no longer shows, or refuse
-- seats it still shows. Shortcut: a hash whose movie or hall is not UTF-8
-- text (off the board) can still be booked by its id: the script checks
-- what decides a sale, the time and the seats, not the names.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local function count(v) return v and #v <= 9 and string.match(v, '^%d+$') and tonumber(v) end
local function book(id, user, n, most)
  local key = 'sse:cinema:showtime:' .. id
  if redis.call('SISMEMBER', 'sse:cinema:showtimes', id) == 0 then return {'no_showtime'} end
  local f = redis.call('HMGET', key, 'movie', 'hall', 'starts_at', 'seats_total', 'seats_left')
  local starts, total, left = starts_ms(f[3]), count(f[4]), count(f[5])
  if not (f[1] and f[1] ~= '' and f[2] and f[2] ~= '' and starts and total and left and left <= total) then return {'no_showtime'} end
  if starts <= now then return {'started'} end
  local held = tonumber(redis.call('HGET', 'sse:cinema:held:' .. user, id) or '0')
  if held + n > most then return {'per_person', held} end
  if left < n then return {'seats', left} end
  redis.call('HINCRBY', key, 'seats_left', -n)
  local booking = redis.call('INCR', 'sse:cinema:booking_ids')
  local b = string.format('%d', booking)  -- not `..` a number: that writes 1e+14
  redis.call('HSET', 'sse:cinema:booking:' .. b, 'showtime', id, 'user', user, 'seats', n, 'made_at', string.format('%d', now))
  redis.call('RPUSH', 'sse:cinema:user:' .. user, b)
  redis.call('HINCRBY', 'sse:cinema:held:' .. user, id, n)
  return {'booked', left - n, booking}
end
local out, booked = {}, false
for k = 1, #ARGV, 4 do
  local r = book(ARGV[k], ARGV[k + 1], tonumber(ARGV[k + 2]), tonumber(ARGV[k + 3]))
  out[#out + 1] = r
  booked = booked or r[1] == 'booked'
end
if booked then redis.call('PUBLISH', 'sse:changed', 'cinema') end
return out
