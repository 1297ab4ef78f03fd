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
-- person holds are as the bookings before it left them). Whether a
-- showtime has started is Redis's clock's to say (TIME), the clock the
-- board is drawn by: with processes on several machines, each server's own
-- clock would let one sell seats the board no longer shows, or refuse
-- seats it still shows. Shortcut: a hash whose movie or hall is not UTF-8
-- text (off the board) can still be booked by its id: the script checks
-- what decides a sale, the time and the seats, not the names.
--
-- A booking's cost in Redis is its calls and the keys it makes, so what
-- the turn's bookings share is done once: each showtime is read (and its
-- start parsed) once, its seats taken in one HINCRBY at the end; booking
-- ids come from one GET and one SET; one PUBLISH says the board changed.
-- What is each booking's own is one hash per person, held:<user>, with
-- the seats held of each showtime and each booking's record (one key, not
-- three; mine.lua also reads the older builds' user:<user> list and
-- booking:<id> hashes). Redis does not undo a script that fails halfway,
-- so every booking is decided first and nothing is written until then: a
-- value set by hand that is not a count refuses the whole call, naming it.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local function count(v) return v and #v <= 9 and string.match(v, '^%d+$') and tonumber(v) end
local shows, held, out, made = {}, {}, {}, {}

-- The showtime `id` as this call has left it: {left, total, taken} with
-- the sale's refusal, if any, in `no`.
local function showtime(id)
  if shows[id] then return shows[id] end
  local s = {taken = 0}
  if redis.call('SISMEMBER', 'sse:cinema:showtimes', id) == 0 then
    s.no = 'no_showtime'
  else
    local f = redis.call('HMGET', 'sse:cinema:showtime:' .. id, 'movie', 'hall', 'starts_at', 'seats_total', 'seats_left')
    local starts, total, left = starts_ms(f[3]), count(f[4]), count(f[5])
    if not (f[1] and f[1] ~= '' and f[2] and f[2] ~= '' and starts and total and left and left <= total) then s.no = 'no_showtime'
    elseif starts <= now then s.no = 'started'
    else s.left = left end
  end
  shows[id] = s
  return s
end

-- The seats `user` holds of `id` as this call has left them, or nil and
-- an error when the hash holds something else there.
local function holding(user, id)
  local k = user .. '\n' .. id
  if held[k] == nil then
    local v = redis.call('HGET', 'sse:cinema:held:' .. user, id)  -- (false when there is none)
    held[k] = v and count(v) or not v and 0
    if not held[k] then return nil, string.format('sse:cinema:held:%s field %s is "%s", not a count; no booking was made', user, id, string.sub(v, 1, 40)) end
  end
  return held[k]
end

local next_id = nil
for k = 1, #ARGV, 4 do
  local id, user, n, most = ARGV[k], ARGV[k + 1], tonumber(ARGV[k + 2]), tonumber(ARGV[k + 3])
  local s = showtime(id)
  if s.no then
    out[#out + 1] = {s.no}
  else
    local h, err = holding(user, id)
    if not h then return redis.error_reply(err) end
    if h + n > most then
      out[#out + 1] = {'per_person', h}
    elseif s.left < n then
      out[#out + 1] = {'seats', s.left}
    else
      next_id = (next_id or tonumber(redis.call('GET', 'sse:cinema:booking_ids') or '0')) + 1
      s.left, s.taken, held[user .. '\n' .. id] = s.left - n, s.taken + n, h + n
      made[#made + 1] = {user, id, h + n, string.format('b%d', next_id), string.format('%s %d %d', id, n, now)}
      out[#out + 1] = {'booked', s.left, next_id}
    end
  end
end
if #made == 0 then return out end
for _, m in ipairs(made) do redis.call('HSET', 'sse:cinema:held:' .. m[1], m[2], m[3], m[4], m[5]) end
for id, s in pairs(shows) do
  if s.taken > 0 then redis.call('HINCRBY', 'sse:cinema:showtime:' .. id, 'seats_left', -s.taken) end
end
redis.call('SET', 'sse:cinema:booking_ids', string.format('%d', next_id))  -- not `..` a number: that writes 1e+14
redis.call('PUBLISH', 'sse:changed', 'cinema')
return out
