// apps/poll/in_sqlite.hpp — the poll in one process, stored in SQLite (the
// default mode): the poll lives in memory, each vote is decided there
// (poll_vote) and its row written by the turn's commit.
//
// First the tables (PollStorage), then the mode on them.
#pragma once
#include <memory>

#include "../../engine/store.hpp"
#include "rules.hpp"

// ---- The tables ----------------------------------------------------------------------
//
// A poll is one row (its options one per line: option text has no control
// characters). Each vote is one row whose rowid is poll * 2^32 + its number
// in the poll, so a poll's votes are one contiguous, append-only range.

class PollStorage {
 public:
  bool open(Store& store) {
    store_ = &store;
    votes_ = &store.batch("votes", "id, voter, option, at", 4);
    return (store.exec(SCHEMA) || fail("creating tables")) &&
           store.prepare(&insert_poll_, "INSERT INTO polls (id, question, options, created_at) VALUES (?, ?, ?, ?)");
  }
  const std::string& error() const { return error_.empty() ? store_->error() : error_; }
  const Store& store() const { return *store_; }
  // Takes the database's write lock for this turn's votes (see Store::hold).
  bool hold() { return store_->hold(); }

  // The newest poll with its votes, or nothing when there is none yet.
  bool load(std::optional<Poll>* out) {
    Store::Query q = store_->query("SELECT id, question, options FROM polls ORDER BY id DESC LIMIT 1");
    sqlite3_stmt* s = q.get();
    int rc = s ? sqlite3_step(s) : SQLITE_ERROR;
    if (rc != SQLITE_ROW) return rc == SQLITE_DONE || fail("reading polls");
    int64_t id = sqlite3_column_int64(s, 0);
    std::string question(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
    std::vector<std::string> options = options_from_lines(reinterpret_cast<const char*>(sqlite3_column_text(s, 2)));
    if (auto why = poll_refusal(question, options)) {
      error_ = "poll " + std::to_string(id) + " in the database is invalid: " + *why;
      return false;
    }
    Poll p = poll_new(id, std::move(question), std::move(options));
    q = store_->query("SELECT id & 4294967295, voter, option FROM votes WHERE id BETWEEN ?1 << 32 AND (?1 << 32) + 4294967295 ORDER BY id");
    if (!(s = q.get())) return fail("reading votes");
    sqlite3_bind_int64(s, 1, id);
    bool ok = true;
    while (ok && (rc = sqlite3_step(s)) == SQLITE_ROW) {
      int64_t seq = sqlite3_column_int64(s, 0), option = sqlite3_column_int64(s, 2);
      std::string voter(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)), size_t(sqlite3_column_bytes(s, 1)));
      ok = seq == p.total() && option >= 0 && option < int64_t(p.options.size()) &&
           poll_vote(p, voter, size_t(option)).outcome == VoteOutcome::Counted;
    }
    if (!ok || rc != SQLITE_DONE) {
      error_ = "poll " + std::to_string(id) + " in the database is inconsistent: votes out of order, repeated or for no option";
      return false;
    }
    *out = std::move(p);
    return true;
  }

  bool insert_poll(const Poll& p, int64_t now_ms) {
    std::string options = options_to_lines(p.options);
    sqlite3_bind_int64(insert_poll_, 1, p.id);
    sqlite3_bind_text(insert_poll_, 2, p.question.data(), int(p.question.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_poll_, 3, options.data(), int(options.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert_poll_, 4, now_ms);
    return store_->write(insert_poll_);
  }

  // Vote number `seq` (0, 1, 2... within the poll), written by this turn's commit.
  void insert_vote(int64_t poll_id, int64_t seq, std::string_view voter, size_t option, int64_t at_ms) {
    votes_->row(poll_id << 32 | seq, voter, int64_t(option), at_ms);
  }

 private:
  static constexpr const char* SCHEMA = R"sql(
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
  )sql";
  bool fail(const char* what) {
    error_ = std::string(what) + ": " + store_->error();
    return false;
  }
  Store* store_ = nullptr;
  RowBatch* votes_ = nullptr;
  sqlite3_stmt* insert_poll_ = nullptr;
  std::string error_;
};

// ---- The mode -------------------------------------------------------------------------

class PollInSqlite : public PollMode {
 public:
  Poll poll;
  PollStorage storage;

  // Loads the newest poll, or on a first start makes the one the flags
  // describe. 0, or the exit status with *why (see App::open).
  int open(Store& store, const std::string& first_question, const std::string& first_options, size_t max_voters, int64_t wall_ms,
           std::string* why) {
    max_voters_ = max_voters;
    std::optional<Poll> loaded;
    if (!storage.open(store) || !storage.load(&loaded)) return *why = storage.error(), 1;
    if (loaded) {
      poll = std::move(*loaded);
    } else {
      std::vector<std::string> options = split_options(first_options);
      if (auto no = poll_refusal(first_question, options)) return *why = "--poll-question/--poll-options: " + *no, 2;
      if (!start_poll(first_question, std::move(options), wall_ms) || !store.commit()) return *why = storage.error(), 1;
    }
    committed();
    return 0;
  }

  Answer vote(const Request& req, const VoteForm& f) override {
    if (unstored(-1)) return wait_for_commit();  // a poll started this turn: nothing said of it yet
    if (f.has_poll && f.shown != std::to_string(poll.id)) return vote_answer({VoteOutcome::Over}, poll, f.option, f.has_option, max_voters_);
    int index = poll_option(poll, f.option);
    if (index < 0) return vote_answer({VoteOutcome::NoOption}, poll, f.option, f.has_option, max_voters_);
    VoteResult v = poll_vote(poll, f.voter, size_t(index), max_voters_);
    // A refusal changes nothing, but the tallies it reports must be stored first.
    if (v.outcome != VoteOutcome::Counted && unstored(poll.total() - 1)) return wait_for_commit();
    if (v.outcome == VoteOutcome::Counted && !storage.hold()) {  // the lock before the "counted": see the red packets' grab
      poll_undo_last_vote(poll);
      return write_refused(storage.store(), storage.error());
    }
    Answer a = vote_answer({v.outcome, v.option}, poll, f.option, f.has_option, max_voters_);
    if (v.outcome != VoteOutcome::Counted) return a;
    storage.insert_vote(poll.id, int64_t(v.row), f.voter, v.option, req.wall_ms);  // written by this turn's commit
    return as_change(std::move(a), [this] { poll_undo_last_vote(poll); });  // undone newest first: this vote is the last
  }

  Answer me(const Request&, std::string_view voter) override {
    int64_t row = poll.ballot_of(voter);
    if (unstored(row)) return wait_for_commit();
    return my_vote_answer({row < 0 ? -1 : int64_t(poll.ballots[size_t(row)].option)}, poll);
  }

  Answer new_poll(const Request& req, std::string question, std::vector<std::string> options) override {
    std::shared_ptr<Poll> previous = start_poll(std::move(question), std::move(options), req.wall_ms);
    if (!previous) return write_refused(storage.store(), storage.error());
    return as_change(poll_made_answer(poll), [this, previous] { poll = std::move(*previous); });
  }

  void snapshot(StreamSpec* s) override {
    s->render = [this](int64_t) { return poll_json(poll); };
  }
  void committed() override {
    stored_poll_ = poll.id;
    stored_ballots_ = poll.ballots.size();
  }

 private:
  size_t max_voters_ = SIZE_MAX;
  int64_t stored_poll_ = 0;  // what the last commit stored: the poll, and how many of its votes
  size_t stored_ballots_ = 0;

  // True when the current poll, or the ballot in row `row` (-1: none), is
  // not stored yet: an answer that reads it must wait for the commit.
  bool unstored(int64_t row) const { return poll.id != stored_poll_ || (row >= 0 && size_t(row) >= stored_ballots_); }

  // Makes a new poll the current one. Returns the one it replaced, or
  // nullptr if the store refused the new one.
  std::shared_ptr<Poll> start_poll(std::string question, std::vector<std::string> options, int64_t wall_ms) {
    Poll p = poll_new(poll.id + 1, std::move(question), std::move(options));
    if (!storage.insert_poll(p, wall_ms)) return nullptr;
    auto previous = std::make_shared<Poll>(std::move(poll));
    poll = std::move(p);
    return previous;
  }
};
