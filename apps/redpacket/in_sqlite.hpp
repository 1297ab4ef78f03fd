// apps/redpacket/in_sqlite.hpp — red packets in one process, stored in
// SQLite (the default mode): the round lives in memory, each grab is
// decided there (round_grab) and its row written by the turn's commit.
//
// First the tables (RedpacketStorage), then the mode on them.
#pragma once
#include <sys/random.h>

#include <memory>

#include "../../engine/store.hpp"
#include "rules.hpp"

// ---- The tables ----------------------------------------------------------------------
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


// ---- The mode -------------------------------------------------------------------------

class RedpacketInSqlite : public RedpacketMode {
 public:
  Round round;
  RedpacketStorage storage;

  // Loads the newest round, or on a first start makes the one the flags
  // describe. 0, or the exit status with *why (see App::open).
  int open(Store& store, int64_t first_total_cents, int64_t first_count, int64_t wall_ms, std::string* why) {
    if (getrandom(&rng_.state, sizeof rng_.state, 0) != sizeof rng_.state) return *why = "getrandom failed", 1;
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

  Answer grab(const Request& req, const std::string& user) override {
    GrabResult g = round_grab(round, user, req.wall_ms);
    // "Already" and "all taken" change nothing, but what they report (the
    // packet held, what remains) must be stored before they say it.
    if (g.outcome != GrabOutcome::Granted && unstored(int64_t(round.grants.size()) - 1)) return wait_for_commit();
    // A grant is written by the commit, but it takes the lock now: a
    // database locked elsewhere is learnt before anyone is told "granted".
    if (g.outcome == GrabOutcome::Granted && !storage.hold()) {
      round_undo_last_grant(round);
      return write_refused(storage.store(), storage.error());
    }
    Answer a = grab_answer({g.outcome, round.id, int64_t(g.packet), g.amount_cents, round.remaining()}, user);
    if (g.outcome != GrabOutcome::Granted) return a;
    storage.insert_grant(round.id, g.packet, round.grants[g.packet]);  // written by this turn's commit
    return as_change(std::move(a), [this] { round_undo_last_grant(round); });  // undone newest first: this grant is the last
  }

  Answer me(const Request&, std::string_view user) override {
    int64_t packet = round.packet_of(user);
    if (unstored(packet)) return wait_for_commit();
    return holding_answer({round.id, packet, packet < 0 ? 0 : round.amounts[size_t(packet)]}, user);
  }

  Answer new_round(const Request& req, int64_t total_cents, int64_t count) override {
    std::shared_ptr<Round> previous = start_round(total_cents, count, req.wall_ms);
    if (!previous) return write_refused(storage.store(), storage.error());
    return as_change(round_made_answer(round.id, total_cents, count), [this, previous] { round = std::move(*previous); });
  }

  void snapshot(StreamSpec* s) override {
    s->render = [this](int64_t) { return round_json(round); };
  }
  void committed() override { stored_round_ = round.id, stored_grants_ = round.grants.size(); }

 private:
  Rng rng_{0};
  int64_t stored_round_ = 0;  // what the last commit stored: the round, and how many of its grants
  size_t stored_grants_ = 0;

  // True when the current round, or the grant of `packet` in it (-1: none),
  // is not stored yet: an answer that reads it must wait for the commit.
  bool unstored(int64_t packet) const {
    return round.id != stored_round_ || (packet >= 0 && size_t(packet) >= stored_grants_);
  }

  // Splits a new round and makes it the current one. Returns the round it
  // replaced, or nullptr if the store refused the new one.
  std::shared_ptr<Round> start_round(int64_t total_cents, int64_t count, int64_t wall_ms) {
    Round r = round_new(round.id + 1, total_cents, split_double_mean(total_cents, count, rng_));
    if (!storage.insert_round(r, wall_ms)) return nullptr;
    auto previous = std::make_shared<Round>(std::move(round));
    round = std::move(r);
    return previous;
  }
};
