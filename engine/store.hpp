// engine/store.hpp — the SQLite engine: one file, one transaction per loop turn.
//
// The apps keep their state in memory and answer from there; the database is
// what makes that state survive a crash. Every change a handler makes is also
// written here, inside a transaction that opens with the first write of a
// loop turn and commits once at the end of the turn, before any reply of
// that turn is written to a socket (group commit). So a client that was told
// "you got 1.23" can rely on it: after kill -9 and a restart the grant is
// loaded back. A thousand grabs in one turn cost one commit.
//
// This file knows no app's tables: each app creates its own and prepares
// its own statements through prepare() and batch(). The one table here is
// the engine's: runs, which numbers each start of the server (event ids are
// built on it, see sse.hpp).
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
// a write that finds one is told so at once (locked_elsewhere()), and the
// server asks it again a few milliseconds later. An I/O error at COMMIT
// leaves it unknown whether the turn is stored, and stops every later
// write (see commit()).
//
// Left out on purpose: a migration framework. Each app brings its schema
// up to date itself when it opens (CREATE TABLE IF NOT EXISTS, and the one
// table rebuild so far: the cinema's showtimes, see its open).
#pragma once
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "row_batch.hpp"

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

  // Opens or creates the database. A file that is not a database, or cannot
  // be opened, is an error (the caller exits): never a silent fresh start
  // over someone's data. max_mb > 0 caps the file's size (PRAGMA
  // max_page_count): past it, writes fail as on a full disk.
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
              exec(fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") && quick_check() &&
              exec(RUNS_SCHEMA) && exec("PRAGMA journal_size_limit=16777216");  // a WAL that grew under a burst shrinks back
    if (ok && max_mb > 0)
      ok = exec(("PRAGMA max_page_count = " + std::to_string(max_mb * 1024 * 1024 / 4096)).c_str());  // 4 KiB pages
    if (ok && !memory) {
      sqlite3_wal_autocheckpoint(db_, 0);       // never inside our commits...
      sqlite3_wal_hook(db_, on_wal, this);      // ...the helper thread does it
      ok = checkpointer_.start(path, &error_);
    }
    return ok && prepare(&begin_, "BEGIN IMMEDIATE") && prepare(&commit_, "COMMIT") && prepare(&rollback_, "ROLLBACK");
  }

  void close() {
    checkpointer_.stop();
    batches_.clear();
    for (sqlite3_stmt* s : statements_) sqlite3_finalize(s);
    statements_.clear();
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
  }

  const std::string& error() const { return error_; }
  uint64_t commits = 0;       // transactions committed: at most one per loop turn
  uint64_t rows_written = 0;  // rows the committed transactions inserted, changed or deleted
  uint64_t checkpoints() const { return checkpointer_.checkpoints; }

  // ---- For the apps: statements and tables ---------------------------------

  // Runs `sql` (one or more statements, no results), as a schema is made.
  bool exec(const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK) return true;
    error_ = msg ? msg : "unknown error";
    sqlite3_free(msg);
    return false;
  }

  // A statement kept for the life of the store (it finalizes it).
  bool prepare(sqlite3_stmt** s, const char* sql) {
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, s, nullptr) != SQLITE_OK) return fail("preparing");
    statements_.push_back(*s);
    return true;
  }

  // A statement for one use, finalized when dropped; null (and error()) if it does not compile.
  using Query = std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)>;
  Query query(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) fail("preparing");
    return Query(s, sqlite3_finalize);
  }

  // True when table `name` exists (before an app creates it: its first start).
  bool has_table(const char* name) {
    Query q = query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
    if (!q) return false;
    sqlite3_bind_text(q.get(), 1, name, -1, SQLITE_STATIC);
    return sqlite3_step(q.get()) == SQLITE_ROW;
  }

  // Rows for `table`, collected through the turn and written by its commit,
  // tables in the order they were asked for.
  RowBatch& batch(const char* table, const char* columns, int width) {
    batches_.push_back(std::make_unique<RowBatch>(table, columns, width));
    return *batches_.back();
  }

  // Runs one write statement of the turn (bound by the caller), in the
  // turn's transaction; a failure fails the turn (see below).
  bool write(sqlite3_stmt* s) {
    if (!begin()) return false;
    if (!step(s)) return fail_turn();
    wrote_ = true;
    rows_written += uint64_t(sqlite3_changes(db_));
    return true;
  }
  int64_t last_rowid() const { return sqlite3_last_insert_rowid(db_); }
  int changes() const { return sqlite3_changes(db_); }

  // This start of the server: a number the database hands out once and
  // never again (AUTOINCREMENT), stored by the next commit.
  bool start_run(int64_t now_ms, int64_t* run) {
    Query q = query("INSERT INTO runs (started_at) VALUES (?)");
    if (!q) return false;
    sqlite3_bind_int64(q.get(), 1, now_ms);
    bool ok = write(q.get());
    *run = last_rowid();
    return ok;
  }

  // ---- The turn's transaction -----------------------------------------------
  //
  // A turn's writes commit together or not at all. The first write that
  // fails (a full disk, the size cap, an I/O error) fails the whole turn:
  // SQLite may already have rolled the transaction back by itself (it does
  // on SQLITE_FULL, IOERR and NOMEM), and any statement run after that
  // would be committed on its own, outside every transaction. So the
  // transaction is rolled back at once, every later write of the turn is
  // refused without touching the file, and commit() says false; the server
  // then undoes the turn's changes in memory.
  //
  // A lock another process holds is not a failure: BEGIN IMMEDIATE, the
  // turn's first statement, finds it before anything is written, so the
  // turn has nothing to undo. The write is refused and locked_elsewhere()
  // says why; so is every later write of the turn (its order with the
  // ones refused before it is kept), and the server asks again later.

  // Commits what this turn wrote; a turn that wrote nothing costs nothing.
  // False when any write of the turn failed (error() says why): nothing of
  // the turn is stored — unless outcome_unknown() says the COMMIT itself
  // failed with an I/O error. Then the commit record may be in the WAL or
  // not (an fsync that fails after the write leaves it there, and the next
  // start replays it), and after a failed fsync the kernel may have
  // dropped pages it never wrote: nothing more is written (stopped()),
  // as PostgreSQL stops since 2018. Either way the next turn starts clean.
  bool commit() {
    size_t pending = 0;
    for (const auto& b : batches_) pending += b->rows();
    unknown_ = locked_elsewhere_ = false;
    if (pending == 0 && !in_txn_ && !turn_failed_) return true;  // most turns: nothing written
    bool ok = !turn_failed_ && (pending == 0 || flush_batches());
    for (const auto& b : batches_) b->clear();
    if (ok && in_txn_) ok = finish(pending);
    else if (!ok) fail_turn();  // rolls back what is left of the transaction
    in_txn_ = wrote_ = turn_failed_ = locked_elsewhere_ = false;  // also what flush_batches found
    return ok;
  }

  // True once a statement of this turn has written: a read of the database
  // now would see what is not stored yet.
  bool turn_wrote() const { return wrote_; }

  // Opens the turn's transaction now, before a write (BEGIN IMMEDIATE takes
  // the write lock): reads that decide a write then see what it will
  // change, and no other process writes in between. False once the turn
  // has failed (the disk is full...), while another process holds the
  // lock (locked_elsewhere()), or once writes have stopped (stopped()).
  bool hold() { return begin(); }
  bool holding() const { return in_txn_; }  // hold() has run this turn (or a write has)

  // Why the last write was refused, when it was a lock another process
  // holds: nothing of the turn was written; ask again on a later turn.
  bool locked_elsewhere() const { return locked_elsewhere_; }
  // True after an I/O error at a COMMIT: every write is refused until restart.
  bool stopped() const { return stopped_; }
  // True when the last failed commit() may have stored the turn after all.
  bool outcome_unknown() const { return unknown_; }

  // How long a statement may wait for a lock another process holds. The
  // loop sets 0: it must never sleep on someone else's lock (a write that
  // finds the database locked is refused at once, and asked again later).
  void lock_wait_ms(int ms) { sqlite3_busy_timeout(db_, ms); }

 private:
  static constexpr const char* RUNS_SCHEMA = R"sql(
    CREATE TABLE IF NOT EXISTS runs (
      id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after a delete
      started_at INTEGER NOT NULL                     -- epoch ms
    );
  )sql";
  static constexpr int START_LOCK_WAIT_MS = 5000;
  static constexpr int CHECKPOINT_PAGES = 1000;  // SQLite's own default threshold

  // The COMMIT itself. An I/O error here is the one failure after which
  // the turn may be stored all the same (see commit()).
  bool finish(size_t pending) {
    int rc = sqlite3_step(commit_);
    sqlite3_reset(commit_);
    if (rc == SQLITE_DONE) {
      commits++;
      rows_written += pending;
      return true;
    }
    fail("committing");
    if ((rc & 0xff) == SQLITE_IOERR) stopped_ = unknown_ = true;
    fail_turn();  // a COMMIT that failed may leave the transaction open
    return false;
  }
  bool flush_batches() {
    if (!begin()) return false;
    for (const auto& b : batches_)
      if (!b->flush(db_, &error_)) return false;
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
  // Runs a statement once and resets it for the next use (every caller
  // binds every parameter, so old bindings need no clearing).
  bool step(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE || fail("writing");
  }
  // Opens the turn's transaction on its first write; false once the turn
  // has failed, while another process holds the lock, or once stopped.
  bool begin() {
    if (in_txn_) return true;
    if (stopped_) {
      error_ = "an I/O error at a commit stopped every write until the server restarts";
      return false;
    }
    if (turn_failed_ || locked_elsewhere_) return false;
    int rc = sqlite3_step(begin_);
    sqlite3_reset(begin_);
    if (rc == SQLITE_DONE) return in_txn_ = true;
    fail("beginning a transaction");
    if ((rc & 0xff) != SQLITE_BUSY) return fail_turn();
    locked_elsewhere_ = true;  // nothing was written: not a failed turn
    return false;
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
  // SQLite opens a damaged file without complaint; this reads it through.
  bool quick_check() {
    Query q = query("PRAGMA quick_check");
    bool ok = q && sqlite3_step(q.get()) == SQLITE_ROW &&
              std::string_view(reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 0))) == "ok";
    if (!ok) error_ = std::string("the database is damaged: ") + sqlite3_errmsg(db_);
    return ok;
  }

  sqlite3* db_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* rollback_ = nullptr;
  std::vector<sqlite3_stmt*> statements_;             // every prepare()d one, finalized by close()
  std::vector<std::unique_ptr<RowBatch>> batches_;    // flushed by each commit, in order
  Checkpointer checkpointer_;
  bool in_txn_ = false;      // BEGIN has run this turn, COMMIT not yet
  bool wrote_ = false;       // a statement of this turn has written
  bool turn_failed_ = false; // a write of this turn failed: the rest are refused
  bool locked_elsewhere_ = false;  // this turn's BEGIN found another process's lock
  bool stopped_ = false;     // an I/O error at a COMMIT: no more writes
  bool unknown_ = false;     // the last failed commit may have stored the turn
  std::string error_;
};
