// apps/poll/poll.hpp — the live poll (投票): a question, named options, one
// vote per voter, and the tallies live on every page.
//
// Rules (rules.hpp): a voter votes once per poll (a second vote is 409 and
// not counted); tallies are exact; a poll keeps each voter for its life, so
// --max-voters caps what one poll can hold (past it a new voter gets 503).
// A vote sent from a page still showing a replaced poll is refused (410),
// never counted in the new one under a matching option name.
//
// Two modes, one chosen at start-up: in one process, on SQLite
// (in_sqlite.hpp: the poll in memory, each vote a row), or with --redis in
// Redis (in_redis.hpp and its .lua scripts), so every process in front of
// it counts the same votes. Both answer through the functions of
// rules.hpp, so they send the same bytes. This file is what the server
// sees: the flags, the stream, and the routes, which read the form and
// hand what they found to the mode.
//
// Left out on purpose: changing a vote, closing a poll, more than one poll
// at a time (a new one replaces the last).
#pragma once
#include <memory>

#include "in_redis.hpp"
#include "in_sqlite.hpp"

class PollApp : public App {
 public:
  int64_t interval_ms = 5000;  // flags
  size_t max_voters = 1'000'000;
  std::string first_question = "Which live demo should we build next?";
  std::string first_options = "Stock ticker,Chat room,Live scores,Auction";
  std::unique_ptr<PollMode> mode;  // made by open or open_redis

  const char* name() const override { return "poll"; }
  FlagGroup flags() override {
    return {"the poll", {
        {"--vote-interval", FlagKind::Seconds, &interval_ms, 0.001, 86400, "seconds between tally pushes on /vote/result-sse"},
        {"--max-voters", FlagKind::Size, &max_voters, 1, 1e9, "voters one poll counts; past it a new voter gets 503"},  // ≤ 10^9: the version's 10 digits
        {"--poll-question", FlagKind::Text, &first_question, 0, 0, "question of the poll made on first start"},
        {"--poll-options", FlagKind::Text, &first_options, 0, 0, "its options, comma-separated"}}};
  }

  int open(Store& store, int64_t wall_ms, std::string* why) override {
    auto sqlite = std::make_unique<PollInSqlite>();
    int status = sqlite->open(store, first_question, first_options, max_voters, wall_ms, why);
    mode = std::move(sqlite);
    return status;
  }
  bool has_redis_mode() const override { return true; }
  int open_redis(Redis& redis, std::string* why) override {
    auto in_redis = std::make_unique<PollInRedis>();
    int status = in_redis->open(redis, first_question, first_options, max_voters, why);
    mode = std::move(in_redis);
    return status;
  }
  void redis_connected() override { mode->connected(); }
  void committed() override { mode->committed(); }

  std::vector<StreamSpec> streams() override {
    StreamSpec s{.paths = {"/vote/result-sse"}, .name = "poll", .period_ms = interval_ms, .repeat = true};
    mode->snapshot(&s);
    return {s};
  }
  std::vector<RouteSpec> routes() override {
    return {{.path = "/vote", .methods = "POST", .handler = std::bind_front(&PollApp::vote, this)},
            {.path = "/vote/me", .methods = "GET, HEAD", .handler = std::bind_front(&PollApp::me, this)},
            {.path = "/vote/polls", .methods = "POST", .handler = std::bind_front(&PollApp::new_poll, this), .admin = true}};
  }

  // POST /vote
  Answer vote(const Request& req) {
    VoteForm f;
    if (auto no = req.identity("voter", &f.voter)) return *no;
    if (auto no = req.form("option", &f.option, &f.has_option)) return *no;
    if (auto no = req.form("poll", &f.shown, &f.has_poll)) return *no;  // the poll the page shows
    // A poll's number as both modes write it (no sign, no leading zero), so
    // both compare it with the current poll's alike.
    bool number = !f.shown.empty() && f.shown.size() <= 18 && f.shown[0] != '0' && f.shown.find_first_not_of("0123456789") == f.shown.npos;
    if (f.has_poll && !number) return refusal(400, "'poll' must be the number of the poll the page shows");
    return mode->vote(req, f);
  }

  // GET /vote/me: what this browser (its uid cookie only: a ?voter= would
  // let anyone look up anyone's vote) voted for in the current poll.
  Answer me(const Request& req) {
    std::string_view voter = req.uid();
    if (!valid_user(voter)) return refusal(400, "no identity: load a page first for a uid cookie");
    return mode->me(req, voter);
  }

  // POST /vote/polls (admin)
  Answer new_poll(const Request& req) {
    std::string question, options;
    if (auto no = req.form("question", &question)) return *no;
    if (auto no = req.form("options", &options)) return *no;
    std::vector<std::string> list = split_options(options);
    if (auto why = poll_refusal(question, list)) return refusal(400, *why);
    return mode->new_poll(req, std::move(question), std::move(list));
  }
};

// The server's one instance (tests make their own).
inline App& poll_app() { static PollApp app; return app; }
