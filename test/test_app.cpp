// The apps' rules, alone: red packets checked over thousands of random
// rounds, the poll, the cinema board; the name index and its hash.
#include <doctest/doctest.h>

#include <map>
#include <numeric>
#include <set>

#include "../apps/cinema/cinema.hpp"
#include "../apps/poll/poll.hpp"
#include "../apps/redpacket/redpacket.hpp"
#include "../engine/name_index.hpp"

struct Named {
  std::string name;
};

TEST_CASE("SipHash-2-4: the reference vectors (key 00..0f, message 00, 01, .. of each length)") {
  uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
  std::string msg;
  for (int i = 0; i < 15; i++) msg.push_back(char(i));
  CHECK(siphash24("", k0, k1) == 0x726fdb47dd0e0e31ull);
  CHECK(siphash24(msg, k0, k1) == 0xa129ca6149be45e5ull);  // the paper's worked example
  CHECK(siphash24(msg.substr(0, 8), k0, k1) == 0x93f5f5799a932462ull);  // one whole word, then the length block
  CHECK(siphash24("abc", k0, k1) != siphash24("abc", k0, k1 + 1));
}

TEST_CASE("name index: finds what was inserted, forgets what was erased, through growth") {
  NameIndex index;
  std::vector<Named> rows;
  std::map<std::string, size_t> want;  // the reference: name -> row
  Rng rng{7};
  CHECK(index.find("nobody", rows, &Named::name) == -1);  // an empty index has no table yet
  for (int step = 0; step < 20000; step++) {
    std::string name = "u" + std::to_string(rng.uniform(0, 3000));
    auto it = want.find(name);
    if (it == want.end()) {
      REQUIRE(index.find_or_insert(name, rows, &Named::name, rows.size()) == -1);
      want.emplace(name, rows.size());
      rows.push_back({name});
    } else if (rng.uniform(0, 2) > 0) {
      REQUIRE(index.find_or_insert(name, rows, &Named::name, 999999) == int64_t(it->second));  // found, nothing added
    } else {  // erase from anywhere, so runs of probes get holes in the middle
      index.erase(name, it->second);
      rows[it->second].name = "erased";
      want.erase(it);
    }
    if (step % 1000 == 999) {  // every name in the reference is found at its row; every other name is absent
      REQUIRE(index.size() == want.size());
      for (const auto& [n, row] : want) REQUIRE(index.find(n, rows, &Named::name) == int64_t(row));
      for (int k = 0; k <= 3000; k++) {
        std::string n = "u" + std::to_string(k);
        if (!want.count(n)) REQUIRE(index.find(n, rows, &Named::name) == -1);
      }
    }
  }
  CHECK(want.size() > 500);  // the table grew well past its first 16 slots
}

TEST_CASE("undo: the last grant and the last vote are taken back whole") {
  Rng rng{3};
  Round r = round_new(1, 1000, split_double_mean(1000, 10, rng));
  round_grab(r, "a", 0);
  GrabResult b = round_grab(r, "b", 0);
  round_undo_last_grant(r);
  CHECK(r.remaining() == 9);
  CHECK(r.packet_of("b") == -1);
  CHECK(r.packet_of("a") == 0);
  GrabResult c = round_grab(r, "c", 0);  // the undone packet goes to the next grabber
  CHECK(c.packet == b.packet);
  CHECK(c.amount_cents == b.amount_cents);

  Poll p = poll_new(1, "Q", {"A", "B"});
  poll_vote(p, "x", 0);
  poll_vote(p, "y", 1);
  poll_undo_last_vote(p);
  CHECK(p.counts == std::vector<int64_t>{1, 0});
  CHECK(p.total() == 1);
  CHECK(p.vote_of("y") == -1);
  CHECK(p.vote_of("x") == 0);
  CHECK(poll_vote(p, "y", 0).outcome == VoteOutcome::Counted);  // y may vote again
}

TEST_CASE("double-mean split: sums to the total, every packet at least 1 cent, count packets") {
  Rng rng{42};
  for (int round = 0; round < 5000; round++) {
    int64_t count = rng.uniform(1, round < 4000 ? 50 : 2000);
    int64_t total = rng.uniform(count, round % 3 == 0 ? count : count * rng.uniform(1, 1000));  // often exactly 1 cent each
    CAPTURE(total);
    CAPTURE(count);
    std::vector<int64_t> a = split_double_mean(total, count, rng);
    REQUIRE(int64_t(a.size()) == count);
    CHECK(std::accumulate(a.begin(), a.end(), int64_t(0)) == total);
    CHECK(*std::min_element(a.begin(), a.end()) >= 1);
  }
}

TEST_CASE("double-mean split: each draw stays within [1, 2R/n - 1], and the same seed gives the same split") {
  Rng a{7}, b{7};
  std::vector<int64_t> x = split_double_mean(1'000'000, 1000, a), y = split_double_mean(1'000'000, 1000, b);
  CHECK(x == y);
  int64_t left = 1'000'000;
  for (int64_t n = 1000; n > 1; n--) {
    int64_t amount = x[size_t(1000 - n)];
    CHECK(amount <= 2 * left / n - 1);
    left -= amount;
  }
  CHECK(x.back() == left);
  // The mean of the draws is near total/count: the method is fair on average.
  double mean = 0;
  for (int i = 0; i < 200; i++) mean += double(split_double_mean(10000, 100, a)[0]) / 200;
  CHECK(mean > 80);
  CHECK(mean < 120);
}

TEST_CASE("the largest round allowed splits correctly") {
  Rng rng{1};
  std::vector<int64_t> a = split_double_mean(MAX_TOTAL_CENTS, MAX_PACKETS, rng);
  CHECK(a.size() == size_t(MAX_PACKETS));
  CHECK(std::accumulate(a.begin(), a.end(), int64_t(0)) == MAX_TOTAL_CENTS);
  CHECK(*std::min_element(a.begin(), a.end()) >= 1);
}

TEST_CASE("round validation refuses what cannot be split") {
  CHECK_FALSE(round_refusal(10000, 100));
  CHECK_FALSE(round_refusal(1, 1));
  CHECK_FALSE(round_refusal(MAX_TOTAL_CENTS, MAX_PACKETS));
  CHECK(round_refusal(99, 100));                  // less than a cent each
  CHECK(round_refusal(100, 0));
  CHECK(round_refusal(100, -5));
  CHECK(round_refusal(2'000'000, MAX_PACKETS + 1));
  CHECK(round_refusal(MAX_TOTAL_CENTS + 1, 10));
}

TEST_CASE("grab: one packet per user, the same one again, then empty") {
  Round r = round_new(3, 600, {100, 200, 300});
  GrabResult a = round_grab(r, "alice", 1000);
  CHECK(a.outcome == GrabOutcome::Granted);
  CHECK(a.amount_cents == 100);
  CHECK(r.remaining() == 2);
  GrabResult again = round_grab(r, "alice", 2000);
  CHECK(again.outcome == GrabOutcome::Already);
  CHECK(again.amount_cents == 100);
  CHECK(again.packet == a.packet);
  CHECK(r.remaining() == 2);  // nothing changed
  CHECK(r.grants.size() == 1);
  CHECK(round_grab(r, "bob", 3000).amount_cents == 200);
  CHECK(round_grab(r, "carol", 4000).amount_cents == 300);
  CHECK(r.remaining() == 0);
  CHECK(round_grab(r, "dave", 5000).outcome == GrabOutcome::Empty);
  CHECK(round_grab(r, "bob", 6000).outcome == GrabOutcome::Already);  // holders still see theirs
  CHECK(r.grants.size() == 3);
}

TEST_CASE("grab: many users never get more than the round holds") {
  Rng rng{9};
  Round r = round_new(1, 10000, split_double_mean(10000, 100, rng));
  int granted = 0, empty = 0;
  int64_t paid = 0;
  for (int u = 0; u < 500; u++) {
    GrabResult g = round_grab(r, "user" + std::to_string(u % 300), u);  // some users try twice
    granted += g.outcome == GrabOutcome::Granted;
    empty += g.outcome == GrabOutcome::Empty;
    if (g.outcome == GrabOutcome::Granted) paid += g.amount_cents;
  }
  CHECK(granted == 100);
  CHECK(paid == 10000);
  CHECK(empty == 300);  // users 100..299, then 100..199 again; the repeats of 0..99 are Already
  std::set<std::string> holders;
  for (auto& g : r.grants) holders.insert(g.user);
  CHECK(holders.size() == 100);
}

TEST_CASE("snapshot JSON: escaped names, newest winners first, at most 10") {
  Round r = round_new(2, 1234, std::vector<int64_t>(12, 1));
  r.total_cents = 1234;
  for (int i = 0; i < 12; i++) round_grab(r, "u" + std::to_string(i), 1795314705617 + i);
  round_grab(r, "x", 0);
  std::string j = round_json(r);
  CHECK(j.starts_with("{\"round\":2,\"total_cents\":1234,\"total\":\"12.34\",\"count\":12,\"remaining\":0,\"winners\":[{\"packet\":11,\"user\":\"u11\""));
  CHECK(j.find("\"u2\"") != std::string::npos);
  CHECK(j.find("\"u1\"") == std::string::npos);  // the 11th newest is cut
  CHECK(j.find("\"at\":\"2026-11-22T02:31:45.628Z\"") != std::string::npos);

  Round q = round_new(1, 1, {1});
  round_grab(q, "a\"b\\c\n<d>", 0);
  CHECK(round_json(q).find("\"user\":\"a\\\"b\\\\c\\u000a<d>\"") != std::string::npos);
}

TEST_CASE("display names: uid cookies become guests, names stay") {
  CHECK(display_name("fc9f10ada2eec2888f0691025b01bb8a") == "guest-fc9f10");
  CHECK(display_name("alice") == "alice");
  CHECK(display_name("FC9F10ADA2EEC2888F0691025B01BB8A") == "FC9F10ADA2EEC2888F0691025B01BB8A");
}

TEST_CASE("text checks: UTF-8, no control characters, user length") {
  CHECK(valid_user("alice"));
  CHECK(valid_user("J\xC3\xBCrgen"));
  CHECK(valid_user("\xE7\xBA\xA2\xE5\x8C\x85"));  // 红包
  CHECK(valid_user(std::string(64, 'a')));
  CHECK_FALSE(valid_user(std::string(65, 'a')));
  CHECK_FALSE(valid_user(""));
  CHECK_FALSE(valid_user("a\nb"));
  CHECK_FALSE(valid_user("a\x7f"));
  CHECK_FALSE(valid_user("\xC3"));          // cut short
  CHECK_FALSE(valid_user("\xC0\xAF"));      // overlong
  CHECK_FALSE(valid_user("\xED\xA0\x80"));  // a surrogate
  CHECK_FALSE(valid_user("\xFF"));
}

TEST_CASE("money and time formatting") {
  CHECK(cents_text(0) == "0.00");
  CHECK(cents_text(5) == "0.05");
  CHECK(cents_text(123) == "1.23");
  CHECK(cents_text(100000000000) == "1000000000.00");
  CHECK(cents_text(10) == "0.10");
  CHECK(cents_text(100) == "1.00");
  CHECK(cents_text(-123) == "-1.23");
  CHECK(cents_text(-5) == "-0.05");
  CHECK(iso_time(0) == "1970-01-01T00:00:00.000Z");
  CHECK(iso_time(1795314705617) == "2026-11-22T02:31:45.617Z");
}

TEST_CASE("poll: one vote per voter, exact tallies") {
  Poll p = poll_new(1, "Best?", {"A", "B", "C"});
  CHECK(poll_vote(p, "v1", 0).outcome == VoteOutcome::Counted);
  CHECK(poll_vote(p, "v2", 2).outcome == VoteOutcome::Counted);
  VoteResult again = poll_vote(p, "v1", 1);  // a change of mind is not a second vote
  CHECK(again.outcome == VoteOutcome::Already);
  CHECK(again.option == 0);
  CHECK(p.counts == std::vector<int64_t>{1, 0, 1});
  CHECK(p.total() == 2);
  Rng rng{11};
  std::vector<int64_t> want(3);
  std::set<std::string> voters;
  for (int v = 0; v < 3000; v++) {
    size_t option = size_t(rng.uniform(0, 2));
    std::string voter = "r" + std::to_string(rng.uniform(0, 999));
    if (voters.insert(voter).second) want[option]++;  // only a voter's first vote counts
    poll_vote(p, voter, option);
  }
  CHECK(p.counts[0] == 1 + want[0]);
  CHECK(p.counts[1] == want[1]);
  CHECK(p.counts[2] == 1 + want[2]);
  CHECK(p.total() == int64_t(voters.size()) + 2);
}

TEST_CASE("poll: past max_voters a new voter is refused (Full) and nothing is kept; a known one is still Already") {
  Poll p = poll_new(1, "Best?", {"A", "B"});
  CHECK(poll_vote(p, "v1", 0, 2).outcome == VoteOutcome::Counted);
  VoteResult second = poll_vote(p, "v2", 1, 2);
  CHECK(second.outcome == VoteOutcome::Counted);
  CHECK(second.row == 1);
  CHECK(poll_vote(p, "v3", 1, 2).outcome == VoteOutcome::Full);
  VoteResult again = poll_vote(p, "v1", 1, 2);
  CHECK(again.outcome == VoteOutcome::Already);
  CHECK(again.row == 0);
  CHECK(p.total() == 2);
  CHECK(p.ballot_of("v3") == -1);
  CHECK(p.by_voter.size() == 2);
}

TEST_CASE("poll: options are validated") {
  CHECK(split_options(" Red, Green ,Blue") == std::vector<std::string>{"Red", "Green", "Blue"});
  CHECK(split_options("A,,B") == std::vector<std::string>{"A", "", "B"});
  CHECK_FALSE(poll_refusal("Q?", {"A", "B"}));
  CHECK(poll_refusal("Q?", {"A"})->find("2 to 20") != std::string::npos);
  CHECK(poll_refusal("Q?", std::vector<std::string>(21, "x"))->find("2 to 20") != std::string::npos);
  std::vector<std::string> twenty;
  for (int i = 0; i < 20; i++) twenty.push_back("o" + std::to_string(i));
  CHECK_FALSE(poll_refusal("Q?", twenty));
  CHECK(poll_refusal("Q?", {"A", "A"})->find("twice") != std::string::npos);
  CHECK(poll_refusal("Q?", {"A", ""})->find("1 to 100") != std::string::npos);
  CHECK(poll_refusal("Q?", {"A", std::string(101, 'b')})->find("1 to 100") != std::string::npos);
  CHECK(poll_refusal("", {"A", "B"})->find("question") != std::string::npos);
  CHECK(poll_refusal("Q\n?", {"A", "B"})->find("question") != std::string::npos);
  Poll p = poll_new(1, "Q", {"Yes", "No"});
  CHECK(poll_option(p, "No") == 1);
  CHECK(poll_option(p, "no") == -1);
  CHECK(poll_option(p, "") == -1);
}

TEST_CASE("poll JSON: counts, percentages, escaped text") {
  Poll p = poll_new(4, "Tea \"or\" coffee?", {"Tea", "Coffee", "Water"});
  CHECK(poll_json(p) ==
        "{\"poll\":4,\"question\":\"Tea \\\"or\\\" coffee?\",\"options\":[{\"name\":\"Tea\",\"count\":0,\"percent\":0.0},"
        "{\"name\":\"Coffee\",\"count\":0,\"percent\":0.0},{\"name\":\"Water\",\"count\":0,\"percent\":0.0}],\"total\":0}");
  for (int v = 0; v < 7; v++) poll_vote(p, "v" + std::to_string(v), v < 3 ? 0 : v < 6 ? 1 : 2);
  std::string j = poll_json(p);
  CHECK(j.find("{\"name\":\"Tea\",\"count\":3,\"percent\":42.9}") != std::string::npos);
  CHECK(j.find("{\"name\":\"Water\",\"count\":1,\"percent\":14.3}") != std::string::npos);
  CHECK(j.ends_with("\"total\":7}"));
  CHECK(percent_text(1, 3) == "33.3");
  CHECK(percent_text(2, 3) == "66.7");
  CHECK(percent_text(1, 8) == "12.5");
  CHECK(percent_text(5, 5) == "100.0");
}

TEST_CASE("ISO 8601: what is a time, and which moment") {
  CHECK(parse_iso8601("1970-01-01T00:00Z") == 0);
  CHECK(parse_iso8601("2026-11-22T02:31:45.617Z") == 1795314705617);
  CHECK(parse_iso8601("2026-11-22T10:31:45.617+08:00") == 1795314705617);
  CHECK(parse_iso8601("2026-11-21T21:01:45.6179-05:30") == 1795314705617);
  CHECK(parse_iso8601("2024-02-29T12:00:00Z").has_value());  // leap year
  CHECK(parse_iso8601("2000-02-29T12:00:00Z").has_value());
  for (const char* bad : {"2025-02-29T12:00:00Z", "1900-02-29T12:00Z", "2026-13-01T00:00Z", "2026-04-31T00:00Z",
                          "2026-11-22T24:00Z", "2026-11-22T23:60Z", "2026-11-22T23:59:60Z", "2026-11-22 10:00Z",
                          "2026-11-22T10:00", "2026-11-22T10:00+0800", "2026-11-22T10:00+08", "2026-11-22T10:00Zjunk",
                          "2026-11-22", "", "tomorrow", "2026-11-22T10:00:.5Z", "+2026-11-22T10:00Z", "2026-1-22T10:00Z"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_iso8601(bad));
  }
  CHECK(iso_utc(1795314705617) == "2026-11-22T02:31:45Z");
}

TEST_CASE("showtime fields are checked one by one, named in the refusal") {
  int64_t now = 1795314705617;
  CHECK_FALSE(showtime_refusal("Hero", "Hall 1", "2026-11-23T19:30:00+08:00", now));
  CHECK(showtime_refusal("", "Hall 1", "2026-11-23T19:30:00Z", now)->starts_with("movie"));
  CHECK(showtime_refusal(std::string(101, 'm'), "Hall 1", "2026-11-23T19:30:00Z", now)->starts_with("movie"));
  CHECK(showtime_refusal("Hero", "", "2026-11-23T19:30:00Z", now)->starts_with("hall"));
  CHECK(showtime_refusal("Hero", "Hall\t1", "2026-11-23T19:30:00Z", now)->starts_with("hall"));
  CHECK(showtime_refusal("Hero", "Hall 1", "2026-11-23 19:30", now)->starts_with("starts_at must"));
  CHECK(showtime_refusal("Hero", "Hall 1", "2026-11-21T19:30:00Z", now) == "starts_at is in the past");
}

TEST_CASE("the board: only what has not started, sorted, escaped") {
  int64_t now = 1795314705617;
  std::vector<Showtime> rows = {
      {3, "Late \"show\"", "IMAX", now + 7200000, 200, 10},
      {1, "Gone", "Hall 1", now - 1, 100, 100},
      {2, "Soon", "Hall 2", now + 60000, 80, 80},
      {4, "Same time", "Hall 3", now + 60000, 50, 0},
  };
  std::string j = schedule_json(rows, now);
  CHECK(j.find("Gone") == std::string::npos);
  size_t soon = j.find("\"id\":2"), same = j.find("\"id\":4"), late = j.find("\"id\":3");
  CHECK(soon < same);
  CHECK(same < late);
  CHECK(j.find("{\"id\":3,\"movie\":\"Late \\\"show\\\"\",\"hall\":\"IMAX\",\"starts_at\":\"2026-11-22T04:31:45Z\",\"seats_total\":200,\"seats_left\":10}") !=
        std::string::npos);
  CHECK(schedule_json({}, now) == "{\"showtimes\":[]}");
}

TEST_CASE("cookies") {
  CHECK(http_cookie("uid=abc", "uid") == "abc");
  CHECK(http_cookie("a=1; uid=abc; b=2", "uid") == "abc");
  CHECK(http_cookie("xuid=1; uid=2", "uid") == "2");
  CHECK(http_cookie("a=1", "uid").empty());
  CHECK(http_cookie("uid=", "uid").empty());
  CHECK(http_cookie("", "uid").empty());
}

TEST_CASE("If-None-Match matching, weak and listed") {
  CHECK(http_etag_matches("\"abc\"", "\"abc\""));
  CHECK(http_etag_matches("W/\"abc\"", "\"abc\""));
  CHECK(http_etag_matches("\"x\", \"abc\"", "\"abc\""));
  CHECK(http_etag_matches("*", "\"abc\""));
  CHECK_FALSE(http_etag_matches("\"abd\"", "\"abc\""));
  CHECK_FALSE(http_etag_matches("abc", "\"abc\""));
  CHECK_FALSE(http_etag_matches("", "\"abc\""));
}
