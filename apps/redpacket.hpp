// apps/redpacket.hpp — red packets (抢红包): a round of N packets that split
// a sum of money, grabbed by users one packet each, live on every page.
//
// Rules: a round is split when it is made, with the double-mean method (each
// packet uniform in [1, 2 × remaining / packets left − 1] cents, the last
// takes the rest), so the amounts always sum to the total. Packets go out in
// split order, one per user; grabbing again returns the same packet
// (already: true); an empty round answers 410. Money is integer cents;
// "1.23" strings are made only for display.
//
// With --redis the round lives in Redis instead (its own chapter below), so
// every process in front of it hands out the same packets, each once. The
// answers and the stream's JSON are made by the same functions in both
// modes, so they are the same bytes.
//
// Left out on purpose: more than one open round (a new one replaces the
// last), refunds, amounts below one cent.
#pragma once
#include <memory>

#include "../engine/app.hpp"
#include "../engine/name_index.hpp"
#include "../engine/redis.hpp"

// ---- Rules ----------------------------------------------------------------------------

// splitmix64: tiny, fast, and seedable, so tests can replay a split exactly.
// Not for secrets: identities and tokens come from getrandom() in the server.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi]; rejection sampling, so no value is favoured.
  int64_t uniform(int64_t lo, int64_t hi) {
    uint64_t span = uint64_t(hi - lo) + 1;
    uint64_t limit = UINT64_MAX - UINT64_MAX % span;
    uint64_t r;
    do r = next();
    while (r >= limit);
    return lo + int64_t(r % span);
  }
};

// 123 cents → "1.23". (Digits by hand: it is on every grab's answer, and
// snprintf costs more than the rest of that answer.)
inline std::string cents_text(int64_t cents) {
  uint64_t v = cents < 0 ? 0 - uint64_t(cents) : uint64_t(cents);
  char buf[32];
  char* p = buf + sizeof buf;
  for (int digits = 0; digits < 3 || v > 0; digits++) {
    if (digits == 2) *--p = '.';
    *--p = char('0' + v % 10);
    v /= 10;
  }
  if (cents < 0) *--p = '-';
  return std::string(p, size_t(buf + sizeof buf - p));
}

constexpr int64_t MAX_PACKETS = 1'000'000;
constexpr int64_t MAX_TOTAL_CENTS = 100'000'000'000;  // 10^11 cents: a billion in money

// Why a round of `total_cents` split into `count` packets cannot be made, or
// nothing when it can.
inline std::optional<std::string> round_refusal(int64_t total_cents, int64_t count) {
  if (count < 1) return "count must be at least 1";
  if (count > MAX_PACKETS) return "count must be at most 1000000";
  if (total_cents > MAX_TOTAL_CENTS) return "total_cents must be at most 100000000000";
  if (total_cents < count) return "total_cents must be at least count: every packet holds at least 1 cent";
  return std::nullopt;
}

// The double-mean split: with R cents and n packets left, the next packet is
// uniform in [1, 2R/n - 1], so its expected size is the mean R/n and the
// leftover always keeps at least 1 cent per packet; the last takes the rest.
// Precondition: round_refusal(total_cents, count) is empty.
inline std::vector<int64_t> split_double_mean(int64_t total_cents, int64_t count, Rng& rng) {
  std::vector<int64_t> amounts;
  amounts.reserve(size_t(count));
  int64_t left = total_cents;
  for (int64_t n = count; n > 1; n--) {
    int64_t amount = rng.uniform(1, 2 * left / n - 1);
    amounts.push_back(amount);
    left -= amount;
  }
  amounts.push_back(left);
  return amounts;
}

struct Grant {
  std::string user;
  int64_t amount_cents;
  int64_t at_ms;  // epoch milliseconds
};

// Packets are handed out in split order: packet i goes to the i-th grabber,
// so the granted packets are always a prefix of `amounts`.
struct Round {
  int64_t id = 0;
  int64_t total_cents = 0;
  std::vector<int64_t> amounts;               // the split, fixed at creation
  std::vector<Grant> grants;                  // grants[i] holds packet i
  NameIndex by_user;                          // user -> their row in grants
  // The packet `user` holds, or -1.
  int64_t packet_of(std::string_view user) const { return by_user.find(user, grants, &Grant::user); }
  int64_t count() const { return int64_t(amounts.size()); }
  int64_t remaining() const { return count() - int64_t(grants.size()); }
};

inline Round round_new(int64_t id, int64_t total_cents, std::vector<int64_t> amounts) {
  Round r;
  r.id = id;
  r.total_cents = total_cents;
  r.amounts = std::move(amounts);
  return r;
}

enum class GrabOutcome { Granted, Already, Empty };

struct GrabResult {
  GrabOutcome outcome;
  size_t packet = 0;  // which packet the user holds (Granted or Already)
  int64_t amount_cents = 0;
};

// One user's grab: the next packet, the packet they already hold, or Empty.
inline GrabResult round_grab(Round& r, const std::string& user, int64_t now_ms) {
  size_t packet = r.grants.size();  // the next packet, if there is one
  // An empty round only looks the user up; otherwise the lookup also
  // records them as the holder of `packet`, in one pass over the index.
  int64_t held = r.remaining() == 0 ? r.packet_of(user) : r.by_user.find_or_insert(user, r.grants, &Grant::user, packet);
  if (held >= 0) return {GrabOutcome::Already, size_t(held), r.amounts[size_t(held)]};
  if (r.remaining() == 0) return {GrabOutcome::Empty};
  r.grants.push_back({user, r.amounts[packet], now_ms});
  return {GrabOutcome::Granted, packet, r.amounts[packet]};
}

// Takes back the round's last grant (one its commit failed to store).
inline void round_undo_last_grant(Round& r) {
  r.by_user.erase(r.grants.back().user, r.grants.size() - 1);
  r.grants.pop_back();
}

// What the page shows for an identity: a uid cookie (32 hex digits, which the
// server makes) becomes "guest-" and its first 6 digits; a name stays a name.
inline std::string display_name(std::string_view user) {
  bool uid = user.size() == 32 && user.find_first_not_of("0123456789abcdef") == std::string_view::npos;
  return uid ? "guest-" + std::string(user.substr(0, 6)) : std::string(user);
}

constexpr size_t RECENT_WINNERS = 10;

// One of the last winners, as the stream shows them (views into a Round's
// grants, or into a Redis reply).
struct Winner {
  int64_t packet;
  std::string_view user;
  int64_t amount_cents;
  int64_t at_ms;
};

// The stream's snapshot: the round, what is left, and the last winners, newest first.
inline std::string round_json(int64_t id, int64_t total_cents, int64_t count, int64_t remaining, const std::vector<Winner>& newest_first) {
  std::string j = "{\"round\":" + std::to_string(id) + ",\"total_cents\":" + std::to_string(total_cents) + ",\"total\":\"" +
                  cents_text(total_cents) + "\",\"count\":" + std::to_string(count) + ",\"remaining\":" + std::to_string(remaining) +
                  ",\"winners\":[";
  for (size_t k = 0; k < newest_first.size(); k++) {
    const Winner& w = newest_first[k];
    if (k) j += ',';
    j += "{\"packet\":" + std::to_string(w.packet) + ",\"user\":";
    json_string(j, display_name(w.user));
    j += ",\"amount_cents\":" + std::to_string(w.amount_cents) + ",\"amount\":\"" + cents_text(w.amount_cents) + "\",\"at\":\"" +
         iso_time(w.at_ms) + "\"}";
  }
  return j + "]}";
}

inline std::string round_json(const Round& r) {
  std::vector<Winner> recent;
  for (size_t k = 0; k < std::min(r.grants.size(), RECENT_WINNERS); k++) {
    size_t packet = r.grants.size() - 1 - k;
    const Grant& g = r.grants[packet];
    recent.push_back({int64_t(packet), g.user, g.amount_cents, g.at_ms});
  }
  return round_json(r.id, r.total_cents, r.count(), r.remaining(), recent);
}

// A grab's answer: the packet `user` got now, or holds already.
inline std::string grab_json(bool already, int64_t amount_cents, int64_t remaining, int64_t round, int64_t packet, std::string_view user) {
  std::string j;
  j.reserve(192);  // one allocation for the whole answer
  j += already ? "{\"ok\":true,\"already\":true,\"amount_cents\":" : "{\"ok\":true,\"amount_cents\":";
  json_number(j, amount_cents);
  j.append(",\"amount\":\"").append(cents_text(amount_cents)).append("\",\"remaining\":");
  json_number(j, remaining);
  j += ",\"round\":";
  json_number(j, round);
  j += ",\"packet\":";
  json_number(j, packet);
  j += ",\"user\":";
  json_string(j, display_name(user));
  j += '}';
  return j;
}

// /redpacket/me's answer: packet -1 when `user` holds none in `round`.
inline std::string me_json(int64_t round, std::string_view user, int64_t packet, int64_t amount_cents) {
  std::string j = "{\"ok\":true,\"round\":" + std::to_string(round) + ",\"user\":";
  json_string(j, display_name(user));
  if (packet < 0) return j + ",\"grabbed\":false}";
  return j + ",\"grabbed\":true,\"packet\":" + std::to_string(packet) + ",\"amount_cents\":" + std::to_string(amount_cents) +
         ",\"amount\":\"" + cents_text(amount_cents) + "\"}";
}

inline std::string new_round_json(int64_t round, int64_t total_cents, int64_t count) {
  return "{\"ok\":true,\"round\":" + std::to_string(round) + ",\"total_cents\":" + std::to_string(total_cents) +
         ",\"count\":" + std::to_string(count) + "}";
}

// ---- Storage --------------------------------------------------------------------------
//
// A round's split is one row: its amounts as a BLOB of little-endian int64s,
// written once (a million packets is 8 MB in one write, not a million
// inserts holding the loop for seconds). Each grant is one row whose rowid
// is round * 2^20 + packet (a round has at most 10^6 < 2^20 packets): the
// key makes a second grant of one packet impossible, and since it only
// grows, SQLite appends at the right edge of its B-tree without searching,
// the cheapest write it has. round_id and idx are computed columns, there
// for people querying with the sqlite3 tool.

class RedpacketStorage {
 public:
  bool open(Store& store) {
    store_ = &store;
    grants_ = &store.batch("grants", "id, user, amount_cents, at", 4);
    return (store.exec(SCHEMA) || fail("creating tables: " + store.error())) &&
           store.prepare(&insert_round_, "INSERT INTO rounds (id, total_cents, count, amounts, created_at) VALUES (?, ?, ?, ?, ?)");
  }
  const std::string& error() const { return error_.empty() ? store_->error() : error_; }
  const Store& store() const { return *store_; }
  // Takes the database's write lock for this turn's grants (see Store::hold).
  bool hold() { return store_->hold(); }

  // The newest round with its grants, or nothing when there is none yet.
  // Returns false (with error()) when the rows do not make a valid round.
  bool load(std::optional<Round>* out) {
    Store::Query q = store_->query("SELECT id, total_cents, count, amounts FROM rounds ORDER BY id DESC LIMIT 1");
    sqlite3_stmt* s = q.get();
    int rc = s ? sqlite3_step(s) : SQLITE_ERROR;
    if (rc != SQLITE_ROW) return rc == SQLITE_DONE || fail("reading rounds: " + store_->error());
    Round r = round_new(sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), {});
    int64_t count = sqlite3_column_int64(s, 2);
    const unsigned char* blob = static_cast<const unsigned char*>(sqlite3_column_blob(s, 3));
    int64_t bytes = sqlite3_column_bytes(s, 3), sum = 0;
    bool ok = count >= 1 && bytes == count * 8;
    for (int64_t i = 0; ok && i < count; i++) {
      int64_t amount = 0;
      for (int b = 7; b >= 0; b--) amount = (amount << 8) | blob[i * 8 + b];
      ok = amount >= 1;
      sum += amount;
      r.amounts.push_back(amount);
    }
    if (!ok || sum != r.total_cents) return inconsistent(r.id, "its packets do not add up to its total");
    q = store_->query("SELECT idx, user, amount_cents, at FROM grants WHERE id BETWEEN ?1 << 20 AND (?1 << 20) + 1048575 ORDER BY id");
    if (!(s = q.get())) return fail("reading grants: " + store_->error());
    sqlite3_bind_int64(s, 1, r.id);
    while (ok && (rc = sqlite3_step(s)) == SQLITE_ROW) {
      size_t idx = size_t(sqlite3_column_int64(s, 0));
      std::string user(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)), size_t(sqlite3_column_bytes(s, 1)));
      // Packets go out in order, each to a different user, for its amount.
      ok = idx == r.grants.size() && idx < r.amounts.size() && sqlite3_column_int64(s, 2) == r.amounts[idx] &&
           r.by_user.find_or_insert(user, r.grants, &Grant::user, idx) < 0;
      if (ok) r.grants.push_back({std::move(user), r.amounts[idx], sqlite3_column_int64(s, 3)});
    }
    if (!ok || rc != SQLITE_DONE) return inconsistent(r.id, "its grants are out of order, duplicated or do not match its packets");
    *out = std::move(r);
    return true;
  }

  // A new round and the amounts of its split.
  bool insert_round(const Round& r, int64_t now_ms) {
    std::string blob(r.amounts.size() * 8, '\0');
    for (size_t i = 0; i < r.amounts.size(); i++)
      for (int b = 0; b < 8; b++) blob[i * 8 + size_t(b)] = char(uint64_t(r.amounts[i]) >> (8 * b));
    sqlite3_bind_int64(insert_round_, 1, r.id);
    sqlite3_bind_int64(insert_round_, 2, r.total_cents);
    sqlite3_bind_int64(insert_round_, 3, r.count());
    sqlite3_bind_blob64(insert_round_, 4, blob.data(), blob.size(), SQLITE_STATIC);
    sqlite3_bind_int64(insert_round_, 5, now_ms);
    return store_->write(insert_round_);
  }

  // Packet `packet` of round `round_id` now belongs to g.user. The row is
  // written by this turn's commit, with the turn's other grants in as few
  // INSERT statements as possible (see RowBatch).
  void insert_grant(int64_t round_id, size_t packet, const Grant& g) {
    grants_->row(round_id << 20 | int64_t(packet), g.user, g.amount_cents, g.at_ms);
  }

 private:
  static constexpr const char* SCHEMA = R"sql(
    CREATE TABLE IF NOT EXISTS rounds (
      id          INTEGER PRIMARY KEY,
      total_cents INTEGER NOT NULL CHECK (total_cents >= count),
      count       INTEGER NOT NULL CHECK (count >= 1),
      amounts     BLOB NOT NULL CHECK (length(amounts) = 8 * count),  -- the split, int64 little-endian
      created_at  INTEGER NOT NULL                                    -- epoch ms
    );
    CREATE TABLE IF NOT EXISTS grants (
      id           INTEGER PRIMARY KEY,  -- round_id * 2^20 + idx: one row per packet, at most
      round_id     INTEGER GENERATED ALWAYS AS (id >> 20) VIRTUAL,
      idx          INTEGER GENERATED ALWAYS AS (id & 1048575) VIRTUAL,  -- packets go out in split order
      user         TEXT NOT NULL,
      amount_cents INTEGER NOT NULL CHECK (amount_cents >= 1),
      at           INTEGER NOT NULL     -- epoch ms
    );
  )sql";
  bool fail(const std::string& why) {
    error_ = why;
    return false;
  }
  bool inconsistent(int64_t round, const char* why) { return fail("round " + std::to_string(round) + " in the database is inconsistent: " + why); }
  Store* store_ = nullptr;
  RowBatch* grants_ = nullptr;
  sqlite3_stmt* insert_round_ = nullptr;
  std::string error_;
};

// ---- Storage in Redis (--redis) --------------------------------------------------------
//
// Keys: sse:redpacket:current (the round's id), sse:redpacket:ids (the
// last id given), sse:redpacket:<id> (a hash: total_cents, count),
// sse:redpacket:<id>:amounts (the split: see below), sse:redpacket:<id>:users
// (user → packet; its size is how many are taken, so packet i goes to the
// i-th grabber as in the SQLite mode), sse:redpacket:<id>:winners (the
// latest grants, newest first, each "packet amount_cents at_ms user": at
// least 10, trimmed back to 10 once past 20, one LTRIM per ten grants or
// more rather than per grant; the stream reads the first 10). Each write is one
// Lua script, so it decides and applies atomically however many processes
// send grabs; it publishes "redpacket <version>" on sse:changed. Old rounds
// stay, as their rows do in the SQLite mode. Shortcut: the scripts name keys
// they build themselves, as a single Redis allows (a Redis Cluster would not).
//
// The stream's version (the event id on every process) is not stored: it is
// the round's id followed by the packets taken in 7 digits, "3" and 42 making
// "30000042". A state only grows (a round's grants are only added to, a new
// round has a greater id), so the version grows with it, and one version is
// one state: two processes that read the same state send the same id. A
// counter would cost every grant one more call and its bytes in the
// append-only file. Versions only grow, past those of older builds too.
//
// The split is one string of 12 decimal digits per packet (zero-padded:
// 10^12 > MAX_TOTAL_CENTS), and a grab reads its packet with GETRANGE. A
// list would take a million RPUSH arguments, sent in chunks, and a round
// half pushed is a round someone could grab from; one string is one
// argument, so a round of a million packets (12 MB) is made by one script
// call, atomically, and costs Redis one allocation instead of a million list
// nodes. Decimal, not binary, so `redis-cli GETRANGE` shows the amounts.
// The cost: making a round of a million packets keeps Redis busy for a
// moment (README, "Scaling out"), and every process's grabs wait that
// long; new rounds are an admin's rare act.

constexpr size_t AMOUNT_DIGITS = 12;  // the scripts' 12
static_assert(MAX_TOTAL_CENTS < 1'000'000'000'000, "an amount must fit AMOUNT_DIGITS digits");
static_assert(MAX_PACKETS < 10'000'000, "the packets taken must fit the version's 7 digits");
static_assert(RECENT_WINNERS == 10, "the scripts keep 10 winners (LTRIM 0 9, LRANGE 0 9)");

// The split as the scripts keep it: AMOUNT_DIGITS digits per packet.
inline std::string amounts_text(const std::vector<int64_t>& amounts) {
  std::string s(amounts.size() * AMOUNT_DIGITS, '0');
  for (size_t i = 0; i < amounts.size(); i++) {
    uint64_t v = uint64_t(amounts[i]);
    for (size_t d = (i + 1) * AMOUNT_DIGITS; v > 0; v /= 10) s[--d] = char('0' + v % 10);
  }
  return s;
}

// A turn's grabs (batched: see RedisScripts): ARGV one user per grab. For
// each, in order: {"granted" or "already", id, packet, amount_cents,
// remaining}, {"empty", id} when every packet is taken, {"none"} before the
// first round exists. Decided one by one as if they had come alone; what
// is the same for all of them is done once: the round, its size and the
// packets taken are read once, the grants' winners entries go in one LPUSH,
// and one PUBLISH says the new version. Each redis.call costs Redis about a
// microsecond, as much as the rest of the script, so a grant makes two
// (HSETNX records a new grabber and tells one who already holds a packet;
// GETRANGE reads the amount) where alone it made eight. A grant's time is
// Redis's clock (TIME, once), one clock for every process.
inline constexpr const char* REDPACKET_GRAB_LUA = R"lua(
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
  redis.call('PUBLISH', 'sse:changed', string.format('redpacket %s%07d', id, taken))
end
return out
)lua";

// The stream's state: {version (text), id, total_cents, count, taken, winners...}, or {0}.
inline constexpr const char* REDPACKET_STATE_LUA = R"lua(
local id = redis.call('GET', 'sse:redpacket:current')
if not id then return {0} end
local r = 'sse:redpacket:' .. id
local h = redis.call('HMGET', r, 'total_cents', 'count')
local taken = redis.call('HLEN', r .. ':users')
local out = {string.format('%s%07d', id, taken), id, tonumber(h[1]), tonumber(h[2]), taken}
for _, w in ipairs(redis.call('LRANGE', r .. ':winners', 0, 9)) do out[#out + 1] = w end
return out
)lua";

// A new round: ARGV total_cents, count, the split (amounts_text), and
// "first" to make it only if there is none yet (every process starting up
// may ask). {id}, or {0} when "first" found a round.
inline constexpr const char* REDPACKET_NEW_LUA = R"lua(
if ARGV[4] == 'first' and redis.call('EXISTS', 'sse:redpacket:current') == 1 then return {0} end
if #ARGV[3] ~= 12 * tonumber(ARGV[2]) then return redis.error_reply('the split does not have count amounts') end
local id = redis.call('INCR', 'sse:redpacket:ids')
local r = 'sse:redpacket:' .. id
redis.call('HSET', r, 'total_cents', ARGV[1], 'count', ARGV[2])
redis.call('SET', r .. ':amounts', ARGV[3])
redis.call('SET', 'sse:redpacket:current', id)
redis.call('PUBLISH', 'sse:changed', string.format('redpacket %d0000000', id))
return {id}
)lua";

// What `user` holds: {id, packet, amount_cents}, {id, -1} for nothing,
// {"0"} before the first round exists.
inline constexpr const char* REDPACKET_ME_LUA = R"lua(
local id = redis.call('GET', 'sse:redpacket:current')
if not id then return {'0'} end
local r = 'sse:redpacket:' .. id
local held = redis.call('HGET', r .. ':users', ARGV[1])
if not held then return {id, -1} end
local packet = tonumber(held)
return {id, packet, tonumber(redis.call('GETRANGE', r .. ':amounts', packet * 12, packet * 12 + 11))}
)lua";

// Element `i` of a reply as a whole number, whether Redis sent it as an
// integer or as text (ids are text: they come from GET).
inline int64_t reply_int(const redisReply* r, size_t i) {
  std::string_view text = reply_text(r, i);
  int64_t v = 0;
  if (text.empty()) return reply_number(r, i);
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}

// A winners entry, "packet amount_cents at_ms user"; false when it is not one.
inline bool winner_from_text(std::string_view text, Winner* w) {
  int64_t* fields[] = {&w->packet, &w->amount_cents, &w->at_ms};
  const char *at = text.data(), *end = text.data() + text.size();
  for (int64_t* f : fields) {
    auto [next, ec] = std::from_chars(at, end, *f);
    if (ec != std::errc() || next == end || *next != ' ') return false;
    at = next + 1;
  }
  w->user = std::string_view(at, size_t(end - at));
  return true;
}

// ---- Routes ---------------------------------------------------------------------------

class RedpacketApp : public App {
 public:
  int64_t first_total_cents = 10000, first_count = 100;  // the round a first start makes (flags)
  Round round;
  RedpacketStorage storage;
  Rng rng{0};
  int64_t stored_round = 0;  // what the last commit stored: the round, and how many of its grants
  size_t stored_grants = 0;

  // True when the current round, or the grant of `packet` in it (-1: none),
  // is not stored yet: an answer that reads it must wait for the commit.
  bool unstored(int64_t packet) const {
    return round.id != stored_round || (packet >= 0 && size_t(packet) >= stored_grants);
  }

  static Answer all_taken() { return refusal(410, "all red packets have been taken"); }
  static void log_started(int64_t id, int64_t total, int64_t count) {
    log_app("redpacket: round " + std::to_string(id) + " started: " + std::to_string(total) + " cents in " + std::to_string(count) +
            " packets");
  }

  // POST /redpacket/grab: the next packet, or the one this user holds.
  Answer grab(const Request& req) {
    std::string user;
    if (auto no = req.identity("user", &user)) return *no;
    if (redis) return grab_in_redis(req, user);
    GrabResult g = round_grab(round, user, req.wall_ms);
    // "Already" and "all taken" change nothing, but what they report (the
    // packet held, what remains) must be stored before they say it.
    if (g.outcome != GrabOutcome::Granted && unstored(int64_t(round.grants.size()) - 1)) return wait_for_commit();
    if (g.outcome == GrabOutcome::Empty) return all_taken();
    // A grant is written by the commit, but it takes the lock now: a
    // database locked elsewhere is learnt before anyone is told "granted".
    if (g.outcome == GrabOutcome::Granted && !storage.hold()) {
      round_undo_last_grant(round);
      return write_refused(storage.store(), storage.error());
    }
    Answer a = json_answer(200, grab_json(g.outcome == GrabOutcome::Already, g.amount_cents, round.remaining(), round.id,
                                          int64_t(g.packet), user));
    if (g.outcome == GrabOutcome::Granted) {
      storage.insert_grant(round.id, g.packet, round.grants[g.packet]);  // written by this turn's commit
      a.changed = true;
      a.undo = [this] { round_undo_last_grant(round); };  // undone newest first: this grant is the last
    }
    return a;
  }

  // GET /redpacket/me: what this browser (its uid cookie, nothing else:
  // nobody may look up someone else) holds in the current round.
  Answer me(const Request& req) {
    std::string_view user = req.uid();
    if (!valid_user(user)) return refusal(400, "no identity: load a page first for a uid cookie");
    if (redis) return me_in_redis(req, user);
    int64_t packet = round.packet_of(user);
    if (unstored(packet)) return wait_for_commit();
    return json_answer(200, me_json(round.id, user, packet, packet < 0 ? 0 : round.amounts[size_t(packet)]));
  }

  // Splits a new round and makes it the current one. Returns the round it
  // replaced, or nullptr if the store refused the new one.
  std::shared_ptr<Round> start_round(int64_t total_cents, int64_t count, int64_t wall_ms) {
    Round r = round_new(round.id + 1, total_cents, split_double_mean(total_cents, count, rng));
    if (!storage.insert_round(r, wall_ms)) return nullptr;
    auto previous = std::make_shared<Round>(std::move(round));
    round = std::move(r);
    return previous;
  }

  // POST /redpacket/rounds (admin): a new round replaces the current one.
  Answer new_round(const Request& req) {
    int64_t total = 0, count = 0;
    if (auto no = req.whole_number("total_cents", 1, MAX_TOTAL_CENTS, &total)) return *no;
    if (auto no = req.whole_number("count", 1, MAX_PACKETS, &count)) return *no;
    if (auto why = round_refusal(total, count)) return refusal(400, *why);
    if (redis) return new_round_in_redis(req, total, count);
    std::shared_ptr<Round> previous = start_round(total, count, req.wall_ms);
    if (!previous) return write_refused(storage.store(), storage.error());
    log_started(round.id, total, count);
    Answer a = json_answer(200, new_round_json(round.id, total, count));
    a.changed = true;
    a.undo = [this, previous] { round = std::move(*previous); };
    return a;
  }

  // ---- In Redis (--redis) ---------------------------------------------------------------
  //
  // The same routes, each one script call whose reply makes the answer
  // with the same functions as above.

  Redis* redis = nullptr;
  RedisScripts scripts;
  size_t grab_lua = scripts.add(REDPACKET_GRAB_LUA, 1), state_lua = scripts.add(REDPACKET_STATE_LUA),
         new_lua = scripts.add(REDPACKET_NEW_LUA), me_lua = scripts.add(REDPACKET_ME_LUA);

  Answer grab_in_redis(const Request& req, const std::string& user) {
    return redis_answer(req, scripts, grab_lua, {user}, [user](const redisReply* r) {
      std::string_view kind = reply_text(r, 0);
      if (kind == "empty") return all_taken();
      if (kind == "none") return redis_unreachable();  // no round made yet
      if (kind != "granted" && kind != "already") return redis_unclear();
      int64_t packet = reply_number(r, 2), amount = reply_number(r, 3), remaining = reply_number(r, 4);
      return json_answer(200, grab_json(kind == "already", amount, remaining, reply_int(r, 1), packet, user));
    });
  }

  Answer me_in_redis(const Request& req, std::string_view user) {
    return redis_answer(req, scripts, me_lua, {user}, [user = std::string(user)](const redisReply* r) {
      int64_t id = reply_int(r, 0);
      if (id <= 0) return redis_unreachable();  // no round made yet
      return json_answer(200, me_json(id, user, reply_number(r, 1), reply_number(r, 2)));
    });
  }

  // The split is made here, by the same rules as above, and handed to the
  // script whole (see the chapter on why it is one string).
  Answer new_round_in_redis(const Request& req, int64_t total, int64_t count) {
    std::string t = std::to_string(total), n = std::to_string(count), amounts = amounts_text(split_double_mean(total, count, rng));
    return redis_answer(req, scripts, new_lua, {t, n, amounts, ""}, [total, count](const redisReply* r) {
      int64_t id = reply_int(r, 0);
      log_started(id, total, count);
      return json_answer(200, new_round_json(id, total, count));
    });
  }

  // The stream's state, read from Redis, rendered by round_json.
  void fetch(SnapshotDone done) {
    auto got = [done](const redisReply* r) {
      std::optional<uint64_t> version = reply_version(r, 0);
      if (!version) return done(nullptr);
      std::vector<Winner> recent(r->elements > 5 ? r->elements - 5 : 0);
      for (size_t k = 0; k < recent.size(); k++)
        if (!winner_from_text(reply_text(r, 5 + k), &recent[k])) return done(nullptr);
      int64_t count = reply_number(r, 3);
      Snapshot s{round_json(reply_int(r, 1), reply_number(r, 2), count, count - reply_number(r, 4), recent), *version};
      done(&s);
    };
    if (!scripts.call(state_lua, {}, got)) done(nullptr);
  }

  // On every connect: the scripts, then the flags' round if Redis has none.
  // Asking first spares every reconnect a split of up to a million packets;
  // two processes that both hear "none" both send it, and the script's
  // "first" makes only one of them a round.
  void redis_connected() override {
    scripts.load(*redis);
    redis->command({"EXISTS", "sse:redpacket:current"}, [this](const redisReply* r) {
      if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != 0) return;
      std::string t = std::to_string(first_total_cents), n = std::to_string(first_count);
      std::string amounts = amounts_text(split_double_mean(first_total_cents, first_count, rng));
      redis->command({"EVAL", REDPACKET_NEW_LUA, "0", t, n, amounts, "first"}, nullptr);
    });
  }

  int open_redis(Redis& r, std::string* why) override {
    redis = &r;
    if (getrandom(&rng.state, sizeof rng.state, 0) != sizeof rng.state) return *why = "getrandom failed", 1;
    if (auto no = round_refusal(first_total_cents, first_count)) return *why = "--redpacket-total/--redpacket-count: " + *no, 2;
    return 0;
  }

  // ---- Descriptor ---------------------------------------------------------------------

  int open(Store& store, int64_t wall_ms, std::string* why) override {
    if (getrandom(&rng.state, sizeof rng.state, 0) != sizeof rng.state) return *why = "getrandom failed", 1;
    std::optional<Round> loaded;
    if (!storage.open(store) || !storage.load(&loaded)) return *why = storage.error(), 1;
    if (loaded) {
      round = std::move(*loaded);
    } else {
      if (auto no = round_refusal(first_total_cents, first_count)) return *why = "--redpacket-total/--redpacket-count: " + *no, 2;
      if (!start_round(first_total_cents, first_count, wall_ms) || !store.commit()) return *why = storage.error(), 1;
    }
    committed();
    return 0;
  }
  void committed() override { stored_round = round.id, stored_grants = round.grants.size(); }

  const char* name() const override { return "redpacket"; }
  FlagGroup flags() override {
    return {"red packets", {
        {"--redpacket-total", FlagKind::Int64, &first_total_cents, 1, 1e11, "cents in the round made on first start"},
        {"--redpacket-count", FlagKind::Int64, &first_count, 1, 1e6, "packets in the round made on first start"}}};
  }
  std::vector<StreamSpec> streams() override {
    return {{.paths = {"/redpacket/events"},
             .name = "redpacket",
             .period_ms = 1000,
             .render = [this](int64_t) { return round_json(round); },
             .repeat = true,
             .fetch = std::bind_front(&RedpacketApp::fetch, this)}};
  }
  std::vector<RouteSpec> routes() override {
    return {{.path = "/redpacket/grab", .methods = "POST", .handler = std::bind_front(&RedpacketApp::grab, this)},
            {.path = "/redpacket/me", .methods = "GET, HEAD", .handler = std::bind_front(&RedpacketApp::me, this)},
            {.path = "/redpacket/rounds", .methods = "POST", .handler = std::bind_front(&RedpacketApp::new_round, this), .admin = true}};
  }
  bool has_redis_mode() const override { return true; }
};

// The server's one instance (tests make their own).
inline App& redpacket_app() { static RedpacketApp app; return app; }
