// The poll's rules alone (apps/poll/rules.hpp): one vote per voter, the
// cap, options, undo, the JSON.
#include <doctest/doctest.h>

#include <set>

#include "../../apps/poll/rules.hpp"
#include "../../apps/redpacket/rules.hpp"  // its Rng, to draw voters

TEST_CASE("undo: the last vote is taken back whole") {
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
