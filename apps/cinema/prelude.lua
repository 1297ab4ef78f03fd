-- prelude.lua: starts_ms(s), the start of an ISO 8601 time with a zone,
-- read as parse_iso8601 (rules.hpp) reads it (epoch ms), or nil.
--
-- Not a script of its own: the server puts it in front of the scripts that
-- need to know whether a showtime has started (state.lua, book.lua), so it
-- only defines the local function. Lua's numbers are doubles: exact to
-- 2^53 ms.
local function starts_ms(s)
  if type(s) ~= 'string' then return nil end
  local y, mo, d, h, mi, rest = string.match(s, '^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d)(.*)$')
  if not y then return nil end
  local sec, ms, off = 0, 0, 0
  local ss, after_ss = string.match(rest, '^:(%d%d)(.*)$')
  if ss then
    sec, rest = tonumber(ss), after_ss
    local frac, after_frac = string.match(rest, '^%.(%d+)(.*)$')
    if frac then ms, rest = tonumber(string.sub(frac .. '00', 1, 3)), after_frac end
  end
  if rest ~= 'Z' then
    local sign, oh, om = string.match(rest, '^([+-])(%d%d):(%d%d)$')
    if not sign or tonumber(oh) > 23 or tonumber(om) > 59 then return nil end
    off = (sign == '+' and 1 or -1) * (tonumber(oh) * 60 + tonumber(om))
  end
  y, mo, d, h, mi = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi)
  local month_days = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
  local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
  if mo < 1 or mo > 12 or d < 1 or h > 23 or mi > 59 or sec > 59 then return nil end
  if d > month_days[mo] + ((mo == 2 and leap) and 1 or 0) then return nil end
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (mo > 2 and mo - 3 or mo + 9) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  return ((days * 24 + h) * 60 + mi - off) * 60000 + sec * 1000 + ms
end
