// Red packets' rules alone (apps/redpacket/rules.hpp): the double-mean
// split checked over thousands of random rounds, grabs, undo, the JSON.
#include <doctest/doctest.h>

#include <numeric>
#include <set>

#include "../../apps/redpacket/rules.hpp"

TEST_CASE("undo: the last grant is taken back whole") {
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

TEST_CASE("money formatting") {
  CHECK(cents_text(0) == "0.00");
  CHECK(cents_text(5) == "0.05");
  CHECK(cents_text(123) == "1.23");
  CHECK(cents_text(100000000000) == "1000000000.00");
  CHECK(cents_text(10) == "0.10");
  CHECK(cents_text(100) == "1.00");
  CHECK(cents_text(-123) == "-1.23");
  CHECK(cents_text(-5) == "-0.05");
}
