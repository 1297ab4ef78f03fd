// apps/redpacket/in_redis.hpp — red packets kept in Redis (--redis), so that
// every process in front of it hands out the same packets, each once. Each
// route is one script call (the .lua files beside this one); each script's
// reply is read by one decoder, right under it, into the same typed
// replies the SQLite mode makes (rules.hpp).
#pragma once
#include <sys/random.h>

#include <charconv>

#include "../../engine/redis.hpp"
#include "rules.hpp"

// ---- The keys -------------------------------------------------------------------------
//
// Keys: sse:redpacket:current (the round's id), sse:redpacket:ids (the
// last id given), sse:redpacket:<id> (a hash: total_cents, count),
// sse:redpacket:<id>:amounts (the split: see below), sse:redpacket:<id>:users
// (user → packet; its size is how many are taken, so packet i goes to the
// i-th grabber as in the SQLite mode), sse:redpacket:<id>:winners (the
// latest grants, newest first, each "packet amount_cents at_ms user": at
// least 10, trimmed back to 10 once past 20, one LTRIM per ten grants or
// more rather than per grant; the stream reads the first 10). Each write is one
// Lua script, so it decides and applies atomically however many processes
// send grabs; it publishes "redpacket" on sse:changed. Redis keeps the
// current round and the one before (new_round.lua). Shortcut: the scripts
// name keys they build themselves, as a single Redis allows (a Redis
// Cluster would not).
//
// The stream's version (the event id on every process) is made by the
// state script when it reads a state it has not seen (engine/version.lua):
// sse:redpacket:version holds it with the state's digest. A grant writes
// no counter.
//
// The split is one string of 12 decimal digits per packet (zero-padded:
// 10^12 > MAX_TOTAL_CENTS), and a grab reads its packet with GETRANGE. A
// list would take a million RPUSH arguments, sent in chunks, and a round
// half pushed is a round someone could grab from; one string is one
// argument, so a round of a million packets (12 MB) is made by one script
// call, atomically, and costs Redis one allocation instead of a million list
// nodes. Decimal, not binary, so `redis-cli GETRANGE` shows the amounts.
// The cost: making a round of a million packets keeps Redis busy for a
// moment (README, "Scaling out"), and every process's grabs wait that
// long; new rounds are an admin's rare act.

constexpr size_t AMOUNT_DIGITS = 12;  // the scripts' 12
static_assert(MAX_TOTAL_CENTS < 1'000'000'000'000, "an amount must fit AMOUNT_DIGITS digits");
static_assert(RECENT_WINNERS == 10, "the scripts keep 10 winners (LTRIM 0 9, LRANGE 0 9)");

// The split as the scripts keep it: AMOUNT_DIGITS digits per packet.
inline std::string amounts_text(const std::vector<int64_t>& amounts) {
  std::string s(amounts.size() * AMOUNT_DIGITS, '0');
  for (size_t i = 0; i < amounts.size(); i++) {
    uint64_t v = uint64_t(amounts[i]);
    for (size_t d = (i + 1) * AMOUNT_DIGITS; v > 0; v /= 10) s[--d] = char('0' + v % 10);
  }
  return s;
}

// ---- The scripts and their replies ----------------------------------------------------

inline constexpr const char* REDPACKET_GRAB_LUA =
#include "redpacket/grab.lua.inc"
    ;

// One grab's reply: {kind, id, packet, amount_cents, remaining}, or
// {"empty", id}. Nothing for any other kind ("none": no round yet).
inline std::optional<GrabReply> grab_reply(const redisReply* r) {
  std::string_view kind = reply_text(r, 0);
  if (kind == "empty") return GrabReply{GrabOutcome::Empty, reply_int(r, 1)};
  if (kind != "granted" && kind != "already") return std::nullopt;
  return GrabReply{kind == "granted" ? GrabOutcome::Granted : GrabOutcome::Already, reply_int(r, 1), reply_number(r, 2),
                   reply_number(r, 3), reply_number(r, 4)};
}

inline const std::string REDPACKET_STATE_LUA = std::string(VERSION_LUA) +
#include "redpacket/state.lua.inc"
    ;

// A winners entry, "packet amount_cents at_ms user"; false when it is not one.
inline bool winner_from_text(std::string_view text, Winner* w) {
  int64_t* fields[] = {&w->packet, &w->amount_cents, &w->at_ms};
  const char *at = text.data(), *end = text.data() + text.size();
  for (int64_t* f : fields) {
    auto [next, ec] = std::from_chars(at, end, *f);
    if (ec != std::errc() || next == end || *next != ' ') return false;
    at = next + 1;
  }
  w->user = std::string_view(at, size_t(end - at));
  return true;
}

// The state's reply, {version, id, total_cents, count, taken, winner...},
// as the stream's snapshot (round_json); nothing when it is not one.
inline std::optional<Snapshot> state_reply(const redisReply* r) {
  std::optional<uint64_t> version = reply_version(r, 0);
  if (!version) return std::nullopt;
  std::vector<Winner> recent(r->elements > 5 ? r->elements - 5 : 0);
  for (size_t k = 0; k < recent.size(); k++)
    if (!winner_from_text(reply_text(r, 5 + k), &recent[k])) return std::nullopt;
  int64_t count = reply_number(r, 3);
  return Snapshot{round_json(reply_int(r, 1), reply_number(r, 2), count, count - reply_number(r, 4), recent), *version};
}

inline constexpr const char* REDPACKET_NEW_LUA =
#include "redpacket/new_round.lua.inc"
    ;  // its reply: {id}

inline constexpr const char* REDPACKET_ME_LUA =
#include "redpacket/me.lua.inc"
    ;

// Its reply {id, packet, amount_cents} or {id, -1}; nothing before the
// first round ({"0"}).
inline std::optional<Holding> holding_reply(const redisReply* r) {
  int64_t id = reply_int(r, 0);
  if (id <= 0) return std::nullopt;
  return Holding{id, reply_number(r, 1), reply_number(r, 2)};
}

// ---- The mode -------------------------------------------------------------------------

class RedpacketInRedis : public RedpacketMode {
 public:
  // 0, or the exit status with *why (see App::open_redis).
  int open(Redis& redis, int64_t first_total_cents, int64_t first_count, std::string* why) {
    redis_ = &redis;
    first_total_cents_ = first_total_cents, first_count_ = first_count;
    if (getrandom(&rng_.state, sizeof rng_.state, 0) != sizeof rng_.state) return *why = "getrandom failed", 1;
    if (auto no = round_refusal(first_total_cents, first_count)) return *why = "--redpacket-total/--redpacket-count: " + *no, 2;
    return 0;
  }

  Answer grab(const Request& req, const std::string& user) override {
    return redis_answer(req, scripts_, grab_lua_, {user}, [this, user](const redisReply* r) {
      if (reply_text(r, 0) == "none") return no_round();
      std::optional<GrabReply> g = grab_reply(r);
      return g ? grab_answer(*g, user) : redis_unclear();
    });
  }

  Answer me(const Request& req, std::string_view user) override {
    return redis_answer(req, scripts_, me_lua_, {user}, [this, user = std::string(user)](const redisReply* r) {
      std::optional<Holding> h = holding_reply(r);
      return h ? holding_answer(*h, user) : no_round();
    });
  }

  // The split is made here, by the same rules as in SQLite, and handed to
  // the script whole (see the top of this file on why it is one string).
  Answer new_round(const Request& req, int64_t total, int64_t count) override {
    std::string t = std::to_string(total), n = std::to_string(count), amounts = amounts_text(split_double_mean(total, count, rng_));
    return redis_answer(req, scripts_, new_lua_, {t, n, amounts, ""},
                        [total, count](const redisReply* r) { return round_made_answer(reply_int(r, 0), total, count); });
  }

  void snapshot(StreamSpec* s) override {
    s->fetch = [this](SnapshotDone done) {
      auto got = [done](const redisReply* r) {
        std::optional<Snapshot> snap = state_reply(r);
        done(snap ? &*snap : nullptr);
      };
      if (!scripts_.call(state_lua_, {}, got)) done(nullptr);
    };
  }

  // On every connect: the scripts, then the flags' round if Redis has none.
  void connected() override {
    scripts_.load(*redis_);
    make_first_round();
  }

 private:
  // The flags' round, if Redis has none. Asking first spares every
  // reconnect a split of up to a million packets; two processes that both
  // hear "none" both send it, and the script's "first" makes only one of
  // them a round. One at a time here: a crowd of grabs that finds no
  // round (Redis lost its data) makes one split.
  void make_first_round() {
    if (making_first_) return;
    making_first_ = redis_->command({"EXISTS", "sse:redpacket:current"}, [this](const redisReply* r) {
      bool none = r && r->type == REDIS_REPLY_INTEGER && r->integer == 0;
      if (!none) return void(making_first_ = false);
      std::string t = std::to_string(first_total_cents_), n = std::to_string(first_count_);
      std::string amounts = amounts_text(split_double_mean(first_total_cents_, first_count_, rng_));
      making_first_ = redis_->command({"EVAL", REDPACKET_NEW_LUA, "0", t, n, amounts, "first"}, [this](const redisReply*) { making_first_ = false; });
    });
  }
  Answer no_round() {
    make_first_round();
    return redis_has_none("red packet round");
  }

  bool making_first_ = false;
  Redis* redis_ = nullptr;
  Rng rng_{0};
  int64_t first_total_cents_ = 0, first_count_ = 0;
  RedisScripts scripts_;
  size_t grab_lua_ = scripts_.add(REDPACKET_GRAB_LUA, 1), state_lua_ = scripts_.add(REDPACKET_STATE_LUA.c_str()),
         new_lua_ = scripts_.add(REDPACKET_NEW_LUA), me_lua_ = scripts_.add(REDPACKET_ME_LUA);
};
