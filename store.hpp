// store.hpp — SQLite persistence, one transaction per loop turn.
//
// The server keeps its state in memory (app.hpp) and answers from there; the
// database is what makes that state survive a crash. Every change a handler
// makes is also written here, inside a transaction that opens with the first
// write of a loop turn and commits once at the end of the turn, before any
// reply of that turn is written to a socket (group commit). So a client that
// was told "you got 1.23" can rely on it: after kill -9 and a restart the
// grant is loaded back. A thousand grabs in one turn cost one commit.
//
// Durability: WAL mode with synchronous=NORMAL makes a commit survive the
// process dying (the WAL is in the OS's page cache once write() returns);
// --fsync (synchronous=FULL) also survives power loss, at the cost of an
// fsync per commit.
//
// Checkpoints: in WAL mode a commit appends pages to the -wal file, and a
// checkpoint later copies them into the database file and fsyncs it. SQLite
// would run that inside a commit every 1000 pages — inside our loop, where
// an fsync stalls every connection and every stream. So the loop's
// connection never checkpoints; a helper thread with its own connection
// does, woken when the WAL grows (see Checkpointer). It is the server's one
// other thread and it touches nothing but the database file.
//
// Left out on purpose: migrations beyond creating the schema (user_version
// records it), and reading while the loop runs — everything is loaded once
// at start-up.
#pragma once
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "app.hpp"

// The helper thread that checkpoints the WAL, with its own connection.
// PASSIVE checkpoints never block the loop's writes: they copy what no
// reader still needs and the loop's next commit starts the WAL over.
class Checkpointer {
 public:
  ~Checkpointer() { stop(); }

  bool start(const std::string& path, std::string* error) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      *error = std::string("checkpointer: ") + sqlite3_errmsg(db_);
      return false;
    }
    // A connection learns the file is in WAL mode when it first reads it;
    // until then a checkpoint is a silent no-op.
    if (sqlite3_exec(db_, "PRAGMA schema_version", nullptr, nullptr, nullptr) != SQLITE_OK) {
      *error = std::string("checkpointer: ") + sqlite3_errmsg(db_);
      return false;
    }
    thread_ = std::thread([this] { run(); });
    return true;
  }

  // From the loop: the WAL has grown; checkpoint when you can. Cheap when
  // a wake-up is already pending.
  void poke() {
    if (wanted_.exchange(true)) return;
    std::lock_guard<std::mutex> lock(mutex_);
    wake_.notify_one();
  }

  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
    sqlite3_close(db_);
    db_ = nullptr;
  }

  std::atomic<uint64_t> checkpoints{0};

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return wanted_.load() || stopping_; });
      if (stopping_) return;
      wanted_ = false;
      lock.unlock();
      int wal_pages = 0, copied = 0;
      if (sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_pages, &copied) == SQLITE_OK && copied > 0)
        checkpoints++;
      lock.lock();
    }
  }

  sqlite3* db_ = nullptr;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> wanted_{false};
  bool stopping_ = false;
};

class Store {
 public:
  Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  ~Store() { close(); }

  // Opens or creates the database and its schema. A file that is not a
  // database, or cannot be opened, is an error (the caller exits): never a
  // silent fresh start over someone's data.
  bool open(const std::string& path, bool fsync) {
    // Each connection is used by one thread only, so SQLite needs no
    // per-connection locks; and no allocation statistics (each allocation
    // would take a global mutex). Must precede first use.
    static const bool configured = sqlite3_config(SQLITE_CONFIG_MULTITHREAD) == SQLITE_OK &&
                                   sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
    (void)configured;
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK)
      return fail("cannot open");
    sqlite3_busy_timeout(db_, 2000);  // another process (the sqlite3 tool) may hold the lock briefly
    bool memory = path == ":memory:";
    bool ok = exec(memory ? "PRAGMA journal_mode=MEMORY" : "PRAGMA journal_mode=WAL") &&
              exec(fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") && exec(SCHEMA) && quick_check() &&
              exec("PRAGMA journal_size_limit=16777216");  // a WAL that grew under a burst shrinks back
    if (ok && !memory) {
      sqlite3_wal_autocheckpoint(db_, 0);       // never inside our commits...
      sqlite3_wal_hook(db_, on_wal, this);      // ...the helper thread does it
      ok = checkpointer_.start(path, &error_);
    }
    return ok &&
           prepare(&begin_, "BEGIN IMMEDIATE") && prepare(&commit_, "COMMIT") && prepare(&rollback_, "ROLLBACK") &&
           prepare(&insert_round_, "INSERT INTO rounds (id, total_cents, count, amounts, created_at) VALUES (?, ?, ?, ?, ?)");
  }

  void close() {
    checkpointer_.stop();
    for (sqlite3_stmt** s : {&begin_, &commit_, &rollback_, &insert_round_}) {
      sqlite3_finalize(*s);
      *s = nullptr;
    }
    for (sqlite3_stmt*& s : insert_grants_) {
      sqlite3_finalize(s);
      s = nullptr;
    }
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
  }

  const std::string& error() const { return error_; }
  uint64_t commits = 0;       // transactions committed: at most one per loop turn
  uint64_t rows_written = 0;  // grants, votes, showtimes written
  uint64_t checkpoints() const { return checkpointer_.checkpoints; }

  // ---- The turn's transaction -----------------------------------------------

  // Commits what this turn wrote; a turn that wrote nothing costs nothing.
  bool commit() {
    bool ok = flush_grants();
    if (!in_txn_) return ok;
    in_txn_ = false;
    commits++;
    if (ok && step(commit_)) return true;
    step(rollback_);
    return false;
  }

  // ---- Red packets -----------------------------------------------------------
  //
  // A round's split is one row: its amounts as a BLOB of little-endian int64s,
  // written once (a million packets is 8 MB in one write, not a million
  // inserts holding the loop for seconds). Each grant is one row whose rowid
  // is round * 2^20 + packet (a round has at most 10^6 < 2^20 packets): the
  // key makes a second grant of one packet impossible, and since it only
  // grows, SQLite appends at the right edge of its B-tree without searching,
  // the cheapest write it has. round_id and idx are computed columns, there
  // for people querying with the sqlite3 tool.

  // The newest round with its grants, or nothing when there is none yet.
  // Returns false (with error()) when the rows do not make a valid round.
  bool load_round(std::optional<Round>* out) {
    sqlite3_stmt* s = nullptr;
    if (!prepare(&s, "SELECT id, total_cents, count, amounts FROM rounds ORDER BY id DESC LIMIT 1")) return false;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
      sqlite3_finalize(s);
      return rc == SQLITE_DONE || fail("reading rounds");
    }
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
    sqlite3_finalize(s);
    if (!ok || sum != r.total_cents) return inconsistent(r.id, "its packets do not add up to its total");
    if (!prepare(&s, "SELECT idx, user, amount_cents, at FROM grants WHERE id BETWEEN ?1 << 20 AND (?1 << 20) + 1048575 ORDER BY id"))
      return false;
    sqlite3_bind_int64(s, 1, r.id);
    while (ok && (rc = sqlite3_step(s)) == SQLITE_ROW) {
      size_t idx = size_t(sqlite3_column_int64(s, 0));
      std::string user(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
      // Packets go out in order, each to a different user, for its amount.
      ok = idx == r.grants.size() && idx < r.amounts.size() && sqlite3_column_int64(s, 2) == r.amounts[idx] &&
           r.by_user.emplace(user, idx).second;
      if (ok) r.grants.push_back({std::move(user), r.amounts[idx], sqlite3_column_int64(s, 3)});
    }
    sqlite3_finalize(s);
    if (!ok || rc != SQLITE_DONE) return inconsistent(r.id, "its grants are out of order, duplicated or do not match its packets");
    *out = std::move(r);
    return true;
  }

  // A new round and the amounts of its split.
  bool insert_round(const Round& r, int64_t now_ms) {
    if (!begin()) return false;
    std::string blob(r.amounts.size() * 8, '\0');
    for (size_t i = 0; i < r.amounts.size(); i++)
      for (int b = 0; b < 8; b++) blob[i * 8 + size_t(b)] = char(uint64_t(r.amounts[i]) >> (8 * b));
    sqlite3_bind_int64(insert_round_, 1, r.id);
    sqlite3_bind_int64(insert_round_, 2, r.total_cents);
    sqlite3_bind_int64(insert_round_, 3, r.count());
    sqlite3_bind_blob64(insert_round_, 4, blob.data(), blob.size(), SQLITE_STATIC);
    sqlite3_bind_int64(insert_round_, 5, now_ms);
    return step(insert_round_);
  }

  // Packet `packet` of round `round_id` now belongs to g.user. The row is
  // written by this turn's commit, with the turn's other grants in as few
  // INSERT statements as possible (see flush_grants).
  void insert_grant(int64_t round_id, size_t packet, const Grant& g) {
    pending_.push_back({round_id << 20 | int64_t(packet), g});
    rows_written++;
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
    PRAGMA user_version = 1;
  )sql";

  // Called by SQLite after each commit with the WAL's size in pages.
  static int on_wal(void* self, sqlite3*, const char*, int pages) {
    if (pages >= CHECKPOINT_PAGES) static_cast<Store*>(self)->checkpointer_.poke();
    return SQLITE_OK;
  }

  bool fail(const char* what) {
    error_ = std::string(what) + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory");
    return false;
  }
  bool exec(const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK) return true;
    error_ = msg ? msg : "unknown error";
    sqlite3_free(msg);
    return false;
  }
  bool prepare(sqlite3_stmt** s, const char* sql) {
    return sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, s, nullptr) == SQLITE_OK || fail("preparing");
  }
  // Runs a write statement once and resets it for the next use (every
  // caller binds every parameter, so old bindings need no clearing).
  bool step(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE || fail("writing");
  }
  // Writes the turn's grants, up to GRANTS_PER_INSERT rows per statement:
  // a statement's fixed cost (about half of a one-row insert) is paid once
  // per batch instead of once per grant. A statement for n rows is prepared
  // the first time a batch of n comes along, then kept.
  bool flush_grants() {
    if (pending_.empty()) return true;
    bool ok = begin();
    for (size_t at = 0; ok && at < pending_.size(); at += GRANTS_PER_INSERT) {
      size_t n = std::min(pending_.size() - at, GRANTS_PER_INSERT);
      sqlite3_stmt*& st = insert_grants_[n - 1];
      if (!st) {
        std::string sql = "INSERT INTO grants (id, user, amount_cents, at) VALUES (?, ?, ?, ?)";
        for (size_t k = 1; k < n; k++) sql += ", (?, ?, ?, ?)";
        if (!(ok = prepare(&st, sql.c_str()))) break;
      }
      for (size_t k = 0; k < n; k++) {
        const PendingGrant& p = pending_[at + k];
        int col = int(4 * k);
        sqlite3_bind_int64(st, col + 1, p.id);
        sqlite3_bind_text(st, col + 2, p.grant.user.data(), int(p.grant.user.size()), SQLITE_STATIC);
        sqlite3_bind_int64(st, col + 3, p.grant.amount_cents);
        sqlite3_bind_int64(st, col + 4, p.grant.at_ms);
      }
      ok = step(st);
    }
    pending_.clear();
    return ok;
  }

  // Opens the turn's transaction on its first write.
  bool begin() {
    if (!in_txn_) in_txn_ = step(begin_);
    return in_txn_;
  }
  bool inconsistent(int64_t round, const char* why) {
    error_ = "round " + std::to_string(round) + " in the database is inconsistent: " + why;
    return false;
  }
  // SQLite opens a damaged file without complaint; this reads it through.
  bool quick_check() {
    sqlite3_stmt* s = nullptr;
    if (!prepare(&s, "PRAGMA quick_check")) return false;
    bool ok = sqlite3_step(s) == SQLITE_ROW && std::string_view(reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) == "ok";
    if (!ok) error_ = std::string("the database is damaged: ") + sqlite3_errmsg(db_);
    sqlite3_finalize(s);
    return ok;
  }

  sqlite3* db_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* rollback_ = nullptr;
  sqlite3_stmt* insert_round_ = nullptr;
  static constexpr int CHECKPOINT_PAGES = 1000;  // SQLite's own default threshold
  Checkpointer checkpointer_;
  static constexpr size_t GRANTS_PER_INSERT = 64;  // 256 parameters, well under SQLite's limit
  struct PendingGrant {
    int64_t id;
    Grant grant;
  };
  std::vector<PendingGrant> pending_;                   // this turn's grants, written at commit
  sqlite3_stmt* insert_grants_[GRANTS_PER_INSERT] = {};  // [n-1] inserts n rows
  bool in_txn_ = false;
  std::string error_;
};
