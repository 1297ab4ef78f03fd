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
// Left out on purpose: more than one open round (a new one replaces the
// last), refunds, amounts below one cent.
#pragma once
#include <memory>

#include "../app.hpp"
#include "../name_index.hpp"

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

// The stream's snapshot: the round, what is left, and the last winners, newest first.
inline std::string round_json(const Round& r) {
  std::string j = "{\"round\":" + std::to_string(r.id) + ",\"total_cents\":" + std::to_string(r.total_cents) +
                  ",\"total\":\"" + cents_text(r.total_cents) + "\",\"count\":" + std::to_string(r.count()) +
                  ",\"remaining\":" + std::to_string(r.remaining()) + ",\"winners\":[";
  size_t shown = std::min(r.grants.size(), RECENT_WINNERS);
  for (size_t k = 0; k < shown; k++) {
    const Grant& g = r.grants[r.grants.size() - 1 - k];
    if (k) j += ',';
    j += "{\"packet\":" + std::to_string(r.grants.size() - 1 - k) + ",\"user\":";
    json_string(j, display_name(g.user));
    j += ",\"amount_cents\":" + std::to_string(g.amount_cents) + ",\"amount\":\"" + cents_text(g.amount_cents) +
         "\",\"at\":\"" + iso_time(g.at_ms) + "\"}";
  }
  return j + "]}";
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

// ---- Routes ---------------------------------------------------------------------------

struct RedpacketApp {
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

  // POST /redpacket/grab: the next packet, or the one this user holds.
  Answer grab(const Request& req) {
    std::string user;
    if (auto no = req.identity("user", &user)) return *no;
    GrabResult g = round_grab(round, user, req.wall_ms);
    // "Already" and "all taken" change nothing, but what they report (the
    // packet held, what remains) must be stored before they say it.
    if (g.outcome != GrabOutcome::Granted && unstored(int64_t(round.grants.size()) - 1)) return wait_for_commit();
    if (g.outcome == GrabOutcome::Empty) return refusal(410, "all red packets have been taken");
    std::string j;
    j.reserve(192);  // one allocation for the whole answer
    j += g.outcome == GrabOutcome::Already ? "{\"ok\":true,\"already\":true,\"amount_cents\":" : "{\"ok\":true,\"amount_cents\":";
    json_number(j, g.amount_cents);
    j.append(",\"amount\":\"").append(cents_text(g.amount_cents)).append("\",\"remaining\":");
    json_number(j, round.remaining());
    j += ",\"round\":";
    json_number(j, round.id);
    j += ",\"packet\":";
    json_number(j, int64_t(g.packet));
    j += ",\"user\":";
    json_string(j, display_name(user));
    j += '}';
    Answer a = json_answer(200, std::move(j));
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
    int64_t packet = round.packet_of(user);
    if (unstored(packet)) return wait_for_commit();
    std::string j = "{\"ok\":true,\"round\":" + std::to_string(round.id) + ",\"user\":";
    json_string(j, display_name(user));
    if (packet < 0) return json_answer(200, j + ",\"grabbed\":false}");
    int64_t cents = round.amounts[size_t(packet)];
    return json_answer(200, j + ",\"grabbed\":true,\"packet\":" + std::to_string(packet) + ",\"amount_cents\":" +
                                std::to_string(cents) + ",\"amount\":\"" + cents_text(cents) + "\"}");
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
    std::shared_ptr<Round> previous = start_round(total, count, req.wall_ms);
    if (!previous) return log_app("store: write refused: " + storage.error()), store_refused();
    log_app("redpacket: round " + std::to_string(round.id) + " started: " + std::to_string(total) + " cents in " +
            std::to_string(count) + " packets");
    Answer a = json_answer(200, "{\"ok\":true,\"round\":" + std::to_string(round.id) + ",\"total_cents\":" +
                                    std::to_string(total) + ",\"count\":" + std::to_string(count) + "}");
    a.changed = true;
    a.undo = [this, previous] { round = std::move(*previous); };
    return a;
  }

  // ---- Descriptor ---------------------------------------------------------------------

  int open(Store& store, int64_t wall_ms, std::string* why) {
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
  void committed() { stored_round = round.id, stored_grants = round.grants.size(); }

  AppSpec spec() {
    AppSpec app;
    app.name = "redpacket";
    app.flags = {"red packets", {
        {"--redpacket-total", FlagKind::Int64, &first_total_cents, 1, 1e11, "cents in the round made on first start"},
        {"--redpacket-count", FlagKind::Int64, &first_count, 1, 1e6, "packets in the round made on first start"}}};
    app.open = [this](Store& s, int64_t wall_ms, std::string* why) { return open(s, wall_ms, why); };
    static const int64_t every_second = 1000;
    app.streams = {{{"/redpacket/events"}, "redpacket", &every_second, [this](int64_t) { return round_json(round); }, true}};
    app.routes = [this] {
      return std::vector<RouteSpec>{
          {"/redpacket/grab", "POST", [this](const Request& r) { return grab(r); }},
          {"/redpacket/me", "GET, HEAD", [this](const Request& r) { return me(r); }},
          {"/redpacket/rounds", "POST", [this](const Request& r) { return new_round(r); }, ADMIN_ONLY}};
    };
    app.committed = [this] { committed(); };
    return app;
  }
};

// The server's one instance (tests make their own).
inline AppSpec redpacket_app() { static RedpacketApp app; return app.spec(); }
