// apps/redpacket/redpacket.hpp — red packets (抢红包): a round of N packets
// that split a sum of money, grabbed by users one packet each, live on
// every page.
//
// Rules (rules.hpp): a round is split when it is made, with the
// double-mean method (each packet uniform in [1, 2 × remaining / packets
// left − 1] cents, the last takes the rest), so the amounts always sum to
// the total. Packets go out in split order, one per user; grabbing again
// returns the same packet (already: true); an empty round answers 410.
// Money is integer cents; "1.23" strings are made only for display.
//
// Two modes, one chosen at start-up: in one process, on SQLite
// (in_sqlite.hpp: the round in memory, each grant a row), or with --redis
// in Redis (in_redis.hpp and its .lua scripts), so every process in front
// of it hands out the same packets, each once. Both answer through the
// functions of rules.hpp, so they send the same bytes. This file is what
// the server sees: the flags, the stream, and the routes, which read the
// form and hand what they found to the mode.
//
// Left out on purpose: more than one open round (a new one replaces the
// last), refunds, amounts below one cent.
#pragma once
#include <memory>

#include "in_redis.hpp"
#include "in_sqlite.hpp"

class RedpacketApp : public App {
 public:
  int64_t first_total_cents = 10000, first_count = 100;  // the round a first start makes (flags)
  std::unique_ptr<RedpacketMode> mode;                   // made by open or open_redis

  const char* name() const override { return "redpacket"; }
  FlagGroup flags() override {
    return {"red packets", {
        {"--redpacket-total", FlagKind::Int64, &first_total_cents, 1, 1e11, "cents in the round made on first start"},
        {"--redpacket-count", FlagKind::Int64, &first_count, 1, 1e6, "packets in the round made on first start"}}};
  }

  int open(Store& store, int64_t wall_ms, std::string* why) override {
    auto sqlite = std::make_unique<RedpacketInSqlite>();
    int status = sqlite->open(store, first_total_cents, first_count, wall_ms, why);
    mode = std::move(sqlite);
    return status;
  }
  bool has_redis_mode() const override { return true; }
  int open_redis(Redis& redis, std::string* why) override {
    auto in_redis = std::make_unique<RedpacketInRedis>();
    int status = in_redis->open(redis, first_total_cents, first_count, why);
    mode = std::move(in_redis);
    return status;
  }
  void redis_connected() override { mode->connected(); }
  void committed() override { mode->committed(); }

  std::vector<StreamSpec> streams() override {
    StreamSpec s{.paths = {"/redpacket/events"}, .name = "redpacket", .period_ms = 1000, .repeat = true};
    mode->snapshot(&s);
    return {s};
  }
  std::vector<RouteSpec> routes() override {
    return {{.path = "/redpacket/grab", .methods = "POST", .handler = std::bind_front(&RedpacketApp::grab, this)},
            {.path = "/redpacket/me", .methods = "GET, HEAD", .handler = std::bind_front(&RedpacketApp::me, this)},
            {.path = "/redpacket/rounds", .methods = "POST", .handler = std::bind_front(&RedpacketApp::new_round, this), .admin = true}};
  }

  // POST /redpacket/grab: the next packet, or the one this user holds.
  Answer grab(const Request& req) {
    std::string user;
    if (auto no = req.identity("user", &user)) return *no;
    return mode->grab(req, user);
  }

  // GET /redpacket/me: what this browser (its uid cookie, nothing else:
  // nobody may look up someone else) holds in the current round.
  Answer me(const Request& req) {
    std::string_view user = req.uid();
    if (!valid_user(user)) return refusal(400, "no identity: load a page first for a uid cookie");
    return mode->me(req, user);
  }

  // POST /redpacket/rounds (admin): a new round replaces the current one.
  Answer new_round(const Request& req) {
    int64_t total = 0, count = 0;
    if (auto no = req.whole_number("total_cents", 1, MAX_TOTAL_CENTS, &total)) return *no;
    if (auto no = req.whole_number("count", 1, MAX_PACKETS, &count)) return *no;
    if (auto why = round_refusal(total, count)) return refusal(400, *why);
    return mode->new_round(req, total, count);
  }
};

// The server's one instance (tests make their own).
inline App& redpacket_app() { static RedpacketApp app; return app; }
