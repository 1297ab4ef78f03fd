// engine/store.hpp, and the apps' storage on it, against real SQLite files: what is
// committed comes back, what is not does not, and a file that is not a sound
// database is refused.
#include <doctest/doctest.h>

#include <fstream>
#include <numeric>

#include "../../apps/poll/poll.hpp"
#include "../../apps/redpacket/redpacket.hpp"
#include "../../engine/store.hpp"
#include "../harness.hpp"

namespace {

// The engine with the red packets' and the poll's storage on it, as the
// server opens them.
struct Storage {
  Store store;
  RedpacketStorage rounds;
  PollStorage polls;
  bool open(const std::string& path, bool fsync, int64_t max_mb = 0) {
    return store.open(path, fsync, max_mb) && rounds.open(store) && polls.open(store);
  }
  bool commit() { return store.commit(); }
};

}  // namespace

TEST_CASE("a round and its grants survive closing and reopening") {
  TempDir dir;
  std::string db = dir.file("s.db");
  Rng rng{5};
  {
    Storage s;
    REQUIRE(s.open(db, false));
    std::optional<Round> none;
    REQUIRE(s.rounds.load(&none));
    CHECK_FALSE(none);
    Round r = round_new(1, 1000, split_double_mean(1000, 10, rng));
    REQUIRE(s.rounds.insert_round(r, 1));
    REQUIRE(s.commit());
    Round r2 = round_new(2, 500, split_double_mean(500, 5, rng));
    REQUIRE(s.rounds.insert_round(r2, 2));
    round_grab(r2, "alice", 100);
    round_grab(r2, "bob", 200);
    s.rounds.insert_grant(2, 0, r2.grants[0]);
    s.rounds.insert_grant(2, 1, r2.grants[1]);
    REQUIRE(s.commit());
    round_grab(r2, "carol", 300);
    s.rounds.insert_grant(2, 2, r2.grants[2]);  // never committed
  }
  Storage s;
  REQUIRE(s.open(db, false));
  std::optional<Round> r;
  REQUIRE(s.rounds.load(&r));
  REQUIRE(r);
  CHECK(r->id == 2);
  CHECK(r->total_cents == 500);
  CHECK(r->count() == 5);
  CHECK(std::accumulate(r->amounts.begin(), r->amounts.end(), int64_t(0)) == 500);
  REQUIRE(r->grants.size() == 2);
  CHECK(r->grants[1].user == "bob");
  CHECK(r->grants[1].at_ms == 200);
  CHECK(round_grab(*r, "alice", 400).outcome == GrabOutcome::Already);
  CHECK(round_grab(*r, "carol", 400).outcome == GrabOutcome::Granted);
}

TEST_CASE("the database refuses a packet granted twice") {
  TempDir dir;
  Storage s;
  REQUIRE(s.open(dir.file("s.db"), false));
  REQUIRE(s.rounds.insert_round(round_new(1, 30, {10, 10, 10}), 1));
  s.rounds.insert_grant(1, 0, Grant{"alice", 10, 1});
  REQUIRE(s.commit());
  s.rounds.insert_grant(1, 0, Grant{"bob", 10, 3});
  CHECK_FALSE(s.commit());
  CHECK(s.rounds.error().find("UNIQUE") != std::string::npos);
}

TEST_CASE("rows that do not make a valid round are refused at load") {
  auto load_after = [](const char* sql) {
    TempDir dir;
    std::string db = dir.file("s.db");
    {
      Storage s;
      REQUIRE(s.open(db, false));
      REQUIRE(s.rounds.insert_round(round_new(1, 30, {10, 10, 10}), 1));
      s.rounds.insert_grant(1, 0, Grant{"alice", 10, 1});
      s.rounds.insert_grant(1, 1, Grant{"bob", 10, 2});
      REQUIRE(s.commit());
    }
    sqlite3* raw = nullptr;
    sqlite3_open(db.c_str(), &raw);
    REQUIRE(sqlite3_exec(raw, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
    Storage s;
    REQUIRE(s.open(db, false));
    std::optional<Round> r;
    bool ok = s.rounds.load(&r);
    return ok ? std::string() : s.rounds.error();
  };
  CHECK(load_after("SELECT 1").empty());
  CHECK(load_after("UPDATE grants SET user = 'alice' WHERE idx = 1").find("inconsistent") != std::string::npos);
  CHECK(load_after("DELETE FROM grants WHERE idx = 0").find("inconsistent") != std::string::npos);
  CHECK(load_after("UPDATE grants SET amount_cents = 11 WHERE idx = 1").find("inconsistent") != std::string::npos);
  CHECK(load_after("UPDATE rounds SET total_cents = 31").find("add up") != std::string::npos);
}

TEST_CASE("a file that is not a database is an error, not a fresh start") {
  TempDir dir;
  std::string db = dir.file("junk.db");
  std::ofstream(db) << std::string(8192, 'x');
  Store s;
  CHECK_FALSE(s.open(db, false));
  CHECK(s.error().find("not a database") != std::string::npos);
  std::ifstream in(db);
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == std::string(8192, 'x'));  // untouched
}

TEST_CASE("a directory that does not exist cannot be opened") {
  Store s;
  CHECK_FALSE(s.open("/nonexistent-dir/x.db", false));
  CHECK_FALSE(s.error().empty());
}

TEST_CASE("a turn's grants are written in batches: all of them, in order") {
  TempDir dir;
  std::string db = dir.file("s.db");
  Rng rng{3};
  Round r = round_new(1, 100000, split_double_mean(100000, 1000, rng));
  {
    Storage s;
    REQUIRE(s.open(db, false));
    REQUIRE(s.rounds.insert_round(r, 1));
    REQUIRE(s.commit());
    size_t turn_sizes[] = {1, 2, 63, 64, 65, 129, 300};  // across the 64-row statement boundary
    for (size_t n : turn_sizes) {
      for (size_t k = 0; k < n; k++) {
        round_grab(r, "u" + std::to_string(r.grants.size()), int64_t(k));
        s.rounds.insert_grant(1, r.grants.size() - 1, r.grants.back());
      }
      REQUIRE(s.commit());
    }
  }
  Storage s;
  REQUIRE(s.open(db, false));
  std::optional<Round> back;
  REQUIRE(s.rounds.load(&back));
  REQUIRE(back->grants.size() == 624);
  for (size_t i = 0; i < 624; i++) {
    CHECK(back->grants[i].user == "u" + std::to_string(i));
    CHECK(back->grants[i].amount_cents == r.amounts[i]);
  }
}

TEST_CASE("a write that fails fails its turn: the turn's other writes are not stored, the next turn starts clean") {
  TempDir dir;
  std::string db = dir.file("f.db");
  Rng rng{5};
  Round r = round_new(1, 1000, split_double_mean(1000, 10, rng));
  Round big = round_new(2, 400000, split_double_mean(400000, 200000, rng));  // 1.6 MB of split: over a 1 MiB cap
  {
    Storage s;
    REQUIRE(s.open(db, false, 1));
    REQUIRE(s.rounds.insert_round(r, 1));
    REQUIRE(s.commit());
    round_grab(r, "early", 1);
    s.rounds.insert_grant(1, 0, r.grants[0]);
    CHECK_FALSE(s.rounds.insert_round(big, 2));       // SQLITE_FULL
    CHECK_FALSE(s.store.holding());                  // rolled back at once
    round_grab(r, "late", 1);
    s.rounds.insert_grant(1, 1, r.grants[1]);
    CHECK_FALSE(s.commit());                   // the whole turn failed
    round_undo_last_grant(r);
    round_undo_last_grant(r);
    round_grab(r, "next", 2);                  // a new turn: packet 0 again
    s.rounds.insert_grant(1, 0, r.grants[0]);
    CHECK(s.commit());
  }
  Storage s;
  REQUIRE(s.open(db, false));
  std::optional<Round> back;
  REQUIRE(s.rounds.load(&back));
  CHECK(back->id == 1);
  REQUIRE(back->grants.size() == 1);
  CHECK(back->grants[0].user == "next");
}

TEST_CASE(":memory: works and keeps nothing") {
  Storage s;
  REQUIRE(s.open(":memory:", true));
  REQUIRE(s.rounds.insert_round(round_new(1, 1, {1}), 1));
  REQUIRE(s.commit());
  std::optional<Round> r;
  REQUIRE(s.rounds.load(&r));
  CHECK(r->id == 1);
}

TEST_CASE("a poll and its votes survive reopening; a voter still cannot vote twice") {
  TempDir dir;
  std::string db = dir.file("p.db");
  {
    Storage s;
    REQUIRE(s.open(db, false));
    std::optional<Poll> none;
    REQUIRE(s.polls.load(&none));
    CHECK_FALSE(none);
    REQUIRE(s.polls.insert_poll(poll_new(1, "old?", {"x", "y"}), 1));
    s.polls.insert_vote(1, 0, "a", 0, 1);
    Poll p = poll_new(2, "Tea or coffee?", {"Tea", "Coffee", "Green tea"});
    REQUIRE(s.polls.insert_poll(p, 2));
    REQUIRE(s.commit());
    for (int v = 0; v < 150; v++) {  // 150 votes in three turns, across the batch size
      VoteResult r = poll_vote(p, "v" + std::to_string(v), size_t(v % 3));
      s.polls.insert_vote(2, p.total() - 1, "v" + std::to_string(v), r.option, v);
      if (v % 50 == 49) REQUIRE(s.commit());
    }
    poll_vote(p, "late", 0);
    s.polls.insert_vote(2, p.total() - 1, "late", 0, 999);  // never committed
  }
  Storage s;
  REQUIRE(s.open(db, false));
  std::optional<Poll> p;
  REQUIRE(s.polls.load(&p));
  REQUIRE(p);
  CHECK(p->id == 2);
  CHECK(p->question == "Tea or coffee?");
  CHECK(p->options == std::vector<std::string>{"Tea", "Coffee", "Green tea"});
  CHECK(p->counts == std::vector<int64_t>{50, 50, 50});
  CHECK(poll_vote(*p, "v7", 0).outcome == VoteOutcome::Already);
  CHECK(poll_vote(*p, "late", 0).outcome == VoteOutcome::Counted);
}

TEST_CASE("votes that do not make a valid poll are refused at load") {
  TempDir dir;
  std::string db = dir.file("p.db");
  {
    Storage s;
    REQUIRE(s.open(db, false));
    REQUIRE(s.polls.insert_poll(poll_new(1, "Q", {"A", "B"}), 1));
    s.polls.insert_vote(1, 0, "a", 0, 1);
    s.polls.insert_vote(1, 1, "b", 1, 1);
    REQUIRE(s.commit());
  }
  sqlite3* raw = nullptr;
  sqlite3_open(db.c_str(), &raw);
  REQUIRE(sqlite3_exec(raw, "UPDATE votes SET voter = 'a' WHERE voter = 'b'", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);
  Storage s;
  REQUIRE(s.open(db, false));
  std::optional<Poll> p;
  CHECK_FALSE(s.polls.load(&p));
  CHECK(s.polls.error().find("inconsistent") != std::string::npos);
}
