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
// A turn's writes commit together or not at all (see "The turn's
// transaction"), and the loop never waits on a lock another process holds:
// a write that finds one fails its turn at once.
//
// Left out on purpose: migrations beyond creating the schema (user_version
// records it; each version so far only added tables). Rounds and polls are
// loaded once at start-up and written through; only the showtimes table is
// read while the loop runs.
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

// Rows for one table, collected during a turn and written at its commit in
// multi-row INSERTs of up to ROWS_PER_INSERT rows: a statement's fixed cost
// (about half of a one-row insert) is paid once per batch instead of once
// per row. The statement for n rows is prepared the first time a batch of n
// comes along, then kept.
class RowBatch {
 public:
  RowBatch(const char* table, const char* columns, int width) : table_(table), columns_(columns), width_(width) {}
  ~RowBatch() { finalize(); }
  RowBatch(const RowBatch&) = delete;
  RowBatch& operator=(const RowBatch&) = delete;

  // A row is `width` calls of add(), in column order.
  void add(int64_t number) { cells_.push_back({number, {}, false}); }
  void add(std::string_view text) { cells_.push_back({0, std::string(text), true}); }

  // Writes and forgets the collected rows. On failure *error says why.
  bool flush(sqlite3* db, std::string* error) {
    size_t rows = cells_.size() / size_t(width_);
    bool ok = true;
    for (size_t at = 0; ok && at < rows; at += ROWS_PER_INSERT) {
      size_t n = std::min(rows - at, ROWS_PER_INSERT);
      sqlite3_stmt* st = statement(db, n);
      ok = st != nullptr;
      for (size_t i = 0; ok && i < n * size_t(width_); i++) {
        const Cell& c = cells_[at * size_t(width_) + i];
        if (c.is_text) sqlite3_bind_text(st, int(i + 1), c.text.data(), int(c.text.size()), SQLITE_STATIC);
        else sqlite3_bind_int64(st, int(i + 1), c.number);
      }
      ok = ok && sqlite3_step(st) == SQLITE_DONE;
      if (st) sqlite3_reset(st);
    }
    if (!ok) *error = std::string("writing ") + table_ + ": " + sqlite3_errmsg(db);
    cells_.clear();
    return ok;
  }

  void clear() { cells_.clear(); }

  void finalize() {
    for (sqlite3_stmt*& st : statements_) {
      sqlite3_finalize(st);
      st = nullptr;
    }
  }

 private:
  static constexpr size_t ROWS_PER_INSERT = 64;  // at most 64 x 5 = 320 parameters, far under SQLite's limit
  struct Cell {
    int64_t number;
    std::string text;
    bool is_text;
  };

  sqlite3_stmt* statement(sqlite3* db, size_t rows) {
    sqlite3_stmt*& st = statements_[rows - 1];
    if (st) return st;
    std::string tuple = "(?";
    for (int c = 1; c < width_; c++) tuple += ", ?";
    tuple += ")";
    std::string sql = std::string("INSERT INTO ") + table_ + " (" + columns_ + ") VALUES " + tuple;
    for (size_t r = 1; r < rows; r++) sql += ", " + tuple;
    if (sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK) st = nullptr;
    return st;
  }

  const char* table_;
  const char* columns_;
  int width_;
  std::vector<Cell> cells_;
  sqlite3_stmt* statements_[ROWS_PER_INSERT] = {};
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
  // max_mb > 0 caps the file's size (PRAGMA max_page_count): past it,
  // writes fail as on a full disk, and the server answers them 503.
  bool open(const std::string& path, bool fsync, int64_t max_mb = 0) {
    // Each connection is used by one thread only, so SQLite needs no
    // per-connection locks; and no allocation statistics (each allocation
    // would take a global mutex). Must precede first use.
    static const bool configured = sqlite3_config(SQLITE_CONFIG_MULTITHREAD) == SQLITE_OK &&
                                   sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
    (void)configured;
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK)
      return fail("cannot open");
    // Another process (the sqlite3 tool) may hold the lock for a moment.
    // Start-up may wait for it; the loop will not (see lock_wait_ms).
    sqlite3_busy_timeout(db_, START_LOCK_WAIT_MS);
    bool memory = path == ":memory:";
    bool ok = exec(memory ? "PRAGMA journal_mode=MEMORY" : "PRAGMA journal_mode=WAL") &&
              exec(fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") && read_version() && exec(SCHEMA) &&
              quick_check() &&
              exec("PRAGMA journal_size_limit=16777216");  // a WAL that grew under a burst shrinks back
    if (ok && max_mb > 0)
      ok = exec(("PRAGMA max_page_count = " + std::to_string(max_mb * 1024 * 1024 / 4096)).c_str());  // 4 KiB pages
    if (ok && !memory) {
      sqlite3_wal_autocheckpoint(db_, 0);       // never inside our commits...
      sqlite3_wal_hook(db_, on_wal, this);      // ...the helper thread does it
      ok = checkpointer_.start(path, &error_);
    }
    return ok &&
           prepare(&begin_, "BEGIN IMMEDIATE") && prepare(&commit_, "COMMIT") && prepare(&rollback_, "ROLLBACK") &&
           prepare(&insert_round_, "INSERT INTO rounds (id, total_cents, count, amounts, created_at) VALUES (?, ?, ?, ?, ?)") &&
           prepare(&insert_poll_, "INSERT INTO polls (id, question, options, created_at) VALUES (?, ?, ?, ?)") &&
           prepare(&insert_showtime_, "INSERT INTO showtimes (movie, hall, starts_at, seats_total, seats_left) VALUES (?, ?, ?, ?, ?)") &&
           prepare(&delete_showtime_, "DELETE FROM showtimes WHERE id = ?") &&
           prepare(&select_showtimes_, "SELECT id, movie, hall, starts_at, seats_total, seats_left FROM showtimes");
  }

  void close() {
    checkpointer_.stop();
    for (sqlite3_stmt** s : {&begin_, &commit_, &rollback_, &insert_round_, &insert_poll_, &insert_showtime_, &delete_showtime_,
                             &select_showtimes_}) {
      sqlite3_finalize(*s);
      *s = nullptr;
    }
    grants_.finalize();
    votes_.finalize();
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
  }

  const std::string& error() const { return error_; }
  uint64_t commits = 0;       // transactions committed: at most one per loop turn
  uint64_t rows_written = 0;  // grants, votes, showtimes written
  uint64_t checkpoints() const { return checkpointer_.checkpoints; }

  // ---- The turn's transaction -----------------------------------------------
  //
  // A turn's writes commit together or not at all. The first write that
  // fails (a full disk, the size cap, a lock held elsewhere, an I/O error)
  // fails the whole turn: SQLite may already have rolled the transaction
  // back by itself (it does on SQLITE_FULL, IOERR and NOMEM), and any
  // statement run after that would be committed on its own, outside every
  // transaction. So the transaction is rolled back at once, every later
  // write of the turn is refused without touching the file, and commit()
  // says false; the server then undoes the turn's changes in memory.

  // Commits what this turn wrote; a turn that wrote nothing costs nothing.
  // False when any write of the turn failed (error() says why): nothing of
  // the turn is stored. Either way the next turn starts clean.
  bool commit() {
    if (pending_rows_ == 0 && !in_txn_ && !turn_failed_) return true;  // most turns: nothing written
    if (pending_rows_ > 0 && !turn_failed_ && !(begin() && grants_.flush(db_, &error_) && votes_.flush(db_, &error_)))
      fail_turn();
    grants_.clear();
    votes_.clear();
    pending_rows_ = 0;
    if (turn_failed_) {
      turn_failed_ = false;
      return false;
    }
    if (!in_txn_) return true;
    in_txn_ = false;
    if (step(commit_)) {
      commits++;
      return true;
    }
    if (!sqlite3_get_autocommit(db_)) step(rollback_);  // a COMMIT that failed may leave the transaction open
    return false;
  }

  // True while statements of this turn have run and are not committed: a
  // read of the database now would see them.
  bool in_transaction() const { return in_txn_; }

  // How long a statement may wait for a lock another process holds. The
  // loop sets 0: it must never sleep on someone else's lock (a write that
  // finds the database locked fails its turn, answered 503 at once).
  void lock_wait_ms(int ms) { sqlite3_busy_timeout(db_, ms); }

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
           r.by_user.find_or_insert(user, r.grants, &Grant::user, idx) < 0;
      if (ok) r.grants.push_back({std::move(user), r.amounts[idx], sqlite3_column_int64(s, 3)});
    }
    sqlite3_finalize(s);
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
    return write(insert_round_);
  }

  // Packet `packet` of round `round_id` now belongs to g.user. The row is
  // written by this turn's commit, with the turn's other grants in as few
  // INSERT statements as possible (see RowBatch).
  void insert_grant(int64_t round_id, size_t packet, const Grant& g) {
    grants_.add(round_id << 20 | int64_t(packet));
    grants_.add(g.user);
    grants_.add(g.amount_cents);
    grants_.add(g.at_ms);
    pending_rows_++;
    rows_written++;
  }

  // ---- The poll ------------------------------------------------------------------
  //
  // A poll is one row (its options one per line: option text has no control
  // characters). Each vote is one row whose rowid is poll * 2^32 + its number
  // in the poll, so a poll's votes are one contiguous, append-only range.

  // The newest poll with its votes, or nothing when there is none yet.
  bool load_poll(std::optional<Poll>* out) {
    sqlite3_stmt* s = nullptr;
    if (!prepare(&s, "SELECT id, question, options FROM polls ORDER BY id DESC LIMIT 1")) return false;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
      sqlite3_finalize(s);
      return rc == SQLITE_DONE || fail("reading polls");
    }
    int64_t id = sqlite3_column_int64(s, 0);
    std::string question(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
    std::vector<std::string> options;
    std::string_view lines(reinterpret_cast<const char*>(sqlite3_column_text(s, 2)));
    for (size_t nl; (nl = lines.find('\n')) != lines.npos; lines.remove_prefix(nl + 1)) options.emplace_back(lines.substr(0, nl));
    options.emplace_back(lines);
    sqlite3_finalize(s);
    if (auto why = poll_refusal(question, options)) {
      error_ = "poll " + std::to_string(id) + " in the database is invalid: " + *why;
      return false;
    }
    Poll p = poll_new(id, std::move(question), std::move(options));
    if (!prepare(&s, "SELECT id & 4294967295, voter, option FROM votes WHERE id BETWEEN ?1 << 32 AND (?1 << 32) + 4294967295 ORDER BY id"))
      return false;
    sqlite3_bind_int64(s, 1, id);
    bool ok = true;
    while (ok && (rc = sqlite3_step(s)) == SQLITE_ROW) {
      int64_t seq = sqlite3_column_int64(s, 0), option = sqlite3_column_int64(s, 2);
      std::string voter(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
      ok = seq == p.total() && option >= 0 && option < int64_t(p.options.size()) &&
           poll_vote(p, voter, size_t(option)).outcome == VoteOutcome::Counted;
    }
    sqlite3_finalize(s);
    if (!ok || rc != SQLITE_DONE) {
      error_ = "poll " + std::to_string(id) + " in the database is inconsistent: votes out of order, repeated or for no option";
      return false;
    }
    *out = std::move(p);
    return true;
  }

  bool insert_poll(const Poll& p, int64_t now_ms) {
    std::string options;
    for (const std::string& o : p.options) options += (options.empty() ? "" : "\n") + o;
    sqlite3_bind_int64(insert_poll_, 1, p.id);
    sqlite3_bind_text(insert_poll_, 2, p.question.data(), int(p.question.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_poll_, 3, options.data(), int(options.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert_poll_, 4, now_ms);
    return write(insert_poll_);
  }

  // Vote number `seq` (0, 1, 2... within the poll), written by this turn's commit.
  void insert_vote(int64_t poll_id, int64_t seq, std::string_view voter, size_t option, int64_t at_ms) {
    votes_.add(poll_id << 32 | seq);
    votes_.add(voter);
    votes_.add(int64_t(option));
    votes_.add(at_ms);
    pending_rows_++;
    rows_written++;
  }

  // ---- Runs ---------------------------------------------------------------------
  //
  // Each start of the server is a run with a number the database hands out
  // once and never again (AUTOINCREMENT). Event ids are built on it (see
  // sse.hpp), which is what keeps them unique across restarts.

  // Records a new run; *run gets its number. Written by the next commit,
  // which must succeed before the number is used.
  bool start_run(int64_t now_ms, int64_t* run) {
    sqlite3_stmt* s = nullptr;
    if (!prepare(&s, "INSERT INTO runs (started_at) VALUES (?)")) return false;
    sqlite3_bind_int64(s, 1, now_ms);
    bool ok = write(s);
    sqlite3_finalize(s);
    *run = sqlite3_last_insert_rowid(db_);
    return ok;
  }

  // ---- The cinema schedule ------------------------------------------------------
  //
  // Unlike grants and votes, showtimes are not held in memory and written
  // through: the table is read again whenever the board is drawn, so the
  // database stays the one truth, whoever changed it.

  // True when the file had no showtimes table before this start: the time,
  // and the only time, to put in a sample schedule.
  bool schedule_is_new() const { return version_before_ < 2; }

  // Every row of the table that makes a showtime; *invalid counts the rest
  // (a start time that is not ISO 8601 with a zone, empty text, bad seats).
  bool load_showtimes(std::vector<Showtime>* out, int* invalid) {
    out->clear();
    *invalid = 0;
    int rc;
    while ((rc = sqlite3_step(select_showtimes_)) == SQLITE_ROW) {
      auto text = [&](int col) {  // all of it: a NUL inside must not cut it short (valid_text refuses it)
        const unsigned char* t = sqlite3_column_text(select_showtimes_, col);
        return t ? std::string(reinterpret_cast<const char*>(t), size_t(sqlite3_column_bytes(select_showtimes_, col))) : std::string();
      };
      Showtime st{sqlite3_column_int64(select_showtimes_, 0), text(1), text(2), 0, sqlite3_column_int64(select_showtimes_, 4),
                  sqlite3_column_int64(select_showtimes_, 5)};
      std::optional<int64_t> starts = parse_iso8601(text(3));
      bool ok = starts && !st.movie.empty() && valid_text(st.movie) && !st.hall.empty() && valid_text(st.hall) &&
                st.seats_total >= 0 && st.seats_left >= 0 && st.seats_left <= st.seats_total;
      if (!ok) {
        ++*invalid;
        continue;
      }
      st.starts_ms = *starts;
      out->push_back(std::move(st));
    }
    sqlite3_reset(select_showtimes_);
    return rc == SQLITE_DONE || fail("reading showtimes");
  }

  // A new showtime with every seat free; *id gets its row id.
  bool insert_showtime(const Showtime& st, int64_t* id) {
    std::string starts = iso_utc(st.starts_ms);
    sqlite3_bind_text(insert_showtime_, 1, st.movie.data(), int(st.movie.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_showtime_, 2, st.hall.data(), int(st.hall.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_showtime_, 3, starts.data(), int(starts.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert_showtime_, 4, st.seats_total);
    sqlite3_bind_int64(insert_showtime_, 5, st.seats_left);
    if (!write(insert_showtime_)) return false;
    *id = sqlite3_last_insert_rowid(db_);
    rows_written++;
    return true;
  }

  // Deletes showtime `id`; *found says whether there was one.
  bool delete_showtime(int64_t id, bool* found) {
    sqlite3_bind_int64(delete_showtime_, 1, id);
    if (!write(delete_showtime_)) return false;
    *found = sqlite3_changes(db_) > 0;
    rows_written += *found;
    return true;
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
    CREATE TABLE IF NOT EXISTS polls (
      id         INTEGER PRIMARY KEY,
      question   TEXT NOT NULL,
      options    TEXT NOT NULL,  -- one per line
      created_at INTEGER NOT NULL  -- epoch ms
    );
    CREATE TABLE IF NOT EXISTS votes (
      id      INTEGER PRIMARY KEY,  -- poll_id * 2^32 + the vote's number in the poll
      poll_id INTEGER GENERATED ALWAYS AS (id >> 32) VIRTUAL,
      voter   TEXT NOT NULL,
      option  INTEGER NOT NULL,     -- index into the poll's options
      at      INTEGER NOT NULL      -- epoch ms
    );
    CREATE TABLE IF NOT EXISTS showtimes (
      id          INTEGER PRIMARY KEY,
      movie       TEXT NOT NULL,
      hall        TEXT NOT NULL,
      starts_at   TEXT NOT NULL,     -- ISO 8601 with a zone; stored by the server as UTC, ...Z
      seats_total INTEGER NOT NULL,
      seats_left  INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS runs (
      id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after a delete
      started_at INTEGER NOT NULL                     -- epoch ms
    );
    PRAGMA user_version = 3;  -- 1: rounds, grants, polls, votes; 2: showtimes; 3: runs
  )sql";

  bool read_version() {
    sqlite3_stmt* s = nullptr;
    if (!prepare(&s, "PRAGMA user_version")) return false;
    version_before_ = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    sqlite3_finalize(s);
    return true;
  }

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
  // Opens the turn's transaction on its first write; false once the turn has failed.
  bool begin() {
    if (turn_failed_) return false;
    if (!in_txn_ && !(in_txn_ = step(begin_))) return fail_turn();
    return true;
  }
  // Runs one write statement of the turn; a failure fails the turn.
  bool write(sqlite3_stmt* s) {
    if (!begin()) return false;
    return step(s) || fail_turn();
  }
  // Ends the turn's transaction without committing anything. SQLite may
  // have ended it already (asking sqlite3_get_autocommit is how to know);
  // the rest of the turn's writes will be refused. Returns false.
  bool fail_turn() {
    std::string why = error_;  // a ROLLBACK must not overwrite the first error
    if (!sqlite3_get_autocommit(db_)) step(rollback_);
    error_ = why;
    in_txn_ = false;
    turn_failed_ = true;
    return false;
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
  sqlite3_stmt* insert_poll_ = nullptr;
  sqlite3_stmt* insert_showtime_ = nullptr;
  sqlite3_stmt* delete_showtime_ = nullptr;
  sqlite3_stmt* select_showtimes_ = nullptr;
  int version_before_ = 0;  // the schema version the file had when opened
  static constexpr int START_LOCK_WAIT_MS = 5000;
  static constexpr int CHECKPOINT_PAGES = 1000;  // SQLite's own default threshold
  Checkpointer checkpointer_;
  RowBatch grants_{"grants", "id, user, amount_cents, at", 4};
  RowBatch votes_{"votes", "id, voter, option, at", 4};
  size_t pending_rows_ = 0;  // rows in the batches, written by the next commit
  bool in_txn_ = false;      // BEGIN has run this turn, COMMIT not yet
  bool turn_failed_ = false; // a write of this turn failed: the rest are refused
  std::string error_;
};
