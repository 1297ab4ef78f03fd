// apps/poll/in_redis.hpp — the poll kept in Redis (--redis), so that every
// process in front of it counts the same votes. Each route is one script
// call (the .lua files beside this one); each script's reply is read by
// one decoder, right under it, into the same typed replies the SQLite mode
// makes (rules.hpp).
#pragma once
#include "../../engine/redis.hpp"
#include "rules.hpp"

// ---- The keys -------------------------------------------------------------------------
//
// Keys: sse:poll:current (the poll's id), sse:poll:ids (the last id
// given), sse:poll:<id> (a hash: question, options one per line),
// sse:poll:<id>:voters (voter → option index), sse:poll:<id>:counts
// (option index → votes). Each write is one Lua script, so it decides and
// applies atomically however many processes send votes; it publishes
// "poll" on sse:changed. Shortcut: the scripts name keys they
// build themselves, as a single Redis allows (a Redis Cluster would not).
//
// The stream's version (the event id on every process) is made by the
// state script when it reads a state it has not seen (engine/version.lua):
// sse:poll:version holds it with the state's digest. A vote writes no
// counter.

// A poll without its ballots from reply elements: id, options, and from
// `counts_at` on the counts (the total is theirs summed).
inline Poll poll_from_reply(const redisReply* r, size_t id_at, std::string question, size_t options_at, size_t counts_at) {
  std::string_view id = reply_text(r, id_at);
  Poll p = poll_new(std::atoll(std::string(id).c_str()), std::move(question), options_from_lines(reply_text(r, options_at)));
  for (size_t i = 0; i < p.counts.size(); i++) p.counts[i] = reply_number(r, counts_at + i);
  return p;
}

// ---- The scripts and their replies ----------------------------------------------------

inline constexpr const char* POLL_VOTE_LUA =
#include "poll/vote.lua.inc"
    ;

// One vote's reply: {status, id, options, option index, total, counts...};
// 410 and 503 carry only {status, id}, 400 {status, id, options}. Into
// *shown goes the poll as the reply shows it; nothing when it is not one.
inline std::optional<VoteReply> vote_reply(const redisReply* r, Poll* shown) {
  int64_t status = reply_number(r, 0);
  *shown = poll_from_reply(r, 1, "", 2, 5);
  if (status == 410) return VoteReply{VoteOutcome::Over};
  if (status == 503) return VoteReply{VoteOutcome::Full};
  if (status == 400) return VoteReply{VoteOutcome::NoOption};
  size_t index = size_t(reply_number(r, 3));
  if ((status != 200 && status != 409) || index >= shown->options.size()) return std::nullopt;
  return VoteReply{status == 200 ? VoteOutcome::Counted : VoteOutcome::Already, index};
}

inline const std::string POLL_STATE_LUA = std::string(VERSION_LUA) +
#include "poll/state.lua.inc"
    ;

// The state's reply, {version, id, question, options, total, counts...},
// as the stream's snapshot (poll_json); nothing when it is not one.
inline std::optional<Snapshot> poll_state_reply(const redisReply* r) {
  std::optional<uint64_t> version = reply_version(r, 0);
  if (!version) return std::nullopt;
  Poll p = poll_from_reply(r, 1, std::string(reply_text(r, 2)), 3, 5);
  return Snapshot{poll_json(p), *version};
}

inline constexpr const char* POLL_NEW_LUA =
#include "poll/new_poll.lua.inc"
    ;

// Its reply {id}: the new poll's id.
inline int64_t new_poll_reply(const redisReply* r) { return reply_number(r, 0); }

inline constexpr const char* POLL_ME_LUA =
#include "poll/me.lua.inc"
    ;

// Its reply {id, options, option index or -1} ({"0", "", -1} before the
// first poll): what the voter voted for, and into *shown the poll as the
// reply shows it.
inline MyVote my_vote_reply(const redisReply* r, Poll* shown) {
  *shown = poll_from_reply(r, 0, "", 1, 3);
  int64_t index = reply_number(r, 2);
  bool voted = index >= 0 && index < int64_t(shown->options.size());
  return {voted ? index : -1};
}

// ---- The mode -------------------------------------------------------------------------

class PollInRedis : public PollMode {
 public:
  // 0, or the exit status with *why (see App::open_redis).
  int open(Redis& redis, const std::string& first_question, const std::string& first_options, size_t max_voters, std::string* why) {
    redis_ = &redis;
    first_question_ = first_question, first_options_ = first_options, max_voters_ = max_voters;
    if (auto no = poll_refusal(first_question, split_options(first_options))) return *why = "--poll-question/--poll-options: " + *no, 2;
    return 0;
  }

  Answer vote(const Request& req, const VoteForm& f) override {
    std::string max = std::to_string(max_voters_);
    std::string_view shown = f.has_poll ? std::string_view(f.shown) : "";
    return redis_answer(req, scripts_, vote_lua_, {f.voter, f.option, shown, max},
                        [this, option = f.option, has_option = f.has_option, max_voters = max_voters_](const redisReply* r) {
                          Poll p;
                          std::optional<VoteReply> v = vote_reply(r, &p);
                          if (p.id <= 0) return no_poll();
                          return v ? vote_answer(*v, p, option, has_option, max_voters) : redis_unclear();
                        });
  }

  Answer me(const Request& req, std::string_view voter) override {
    return redis_answer(req, scripts_, me_lua_, {voter}, [this](const redisReply* r) {
      Poll p;
      MyVote m = my_vote_reply(r, &p);
      return p.id <= 0 ? no_poll() : my_vote_answer(m, p);
    });
  }

  Answer new_poll(const Request& req, std::string question, std::vector<std::string> options) override {
    std::string lines = options_to_lines(options);
    return redis_answer(req, scripts_, new_lua_, {question, lines, ""}, [question, options](const redisReply* r) {
      return poll_made_answer(poll_new(new_poll_reply(r), question, options));
    });
  }

  void snapshot(StreamSpec* s) override { s->fetch = std::bind_front(&PollInRedis::fetch, this); }

  // On every connect: the scripts, then the first poll if Redis has none.
  void connected() override {
    scripts_.load(*redis_);
    make_first_poll();
  }

 private:
  // The flags' poll, if Redis has none (the script's "first" makes only one).
  void make_first_poll() {
    std::string lines = options_to_lines(split_options(first_options_));
    redis_->command({"EVAL", POLL_NEW_LUA, "0", first_question_, lines, "first"}, nullptr);
  }
  // Redis has no poll (it lost its data): the first one is made again.
  Answer no_poll() {
    make_first_poll();
    return redis_has_none("poll");
  }

  Redis* redis_ = nullptr;
  std::string first_question_, first_options_;
  size_t max_voters_ = 0;
  RedisScripts scripts_;
  size_t vote_lua_ = scripts_.add(POLL_VOTE_LUA, 4), state_lua_ = scripts_.add(POLL_STATE_LUA.c_str()), new_lua_ = scripts_.add(POLL_NEW_LUA),
         me_lua_ = scripts_.add(POLL_ME_LUA);

  // The stream's state, read from Redis.
  void fetch(SnapshotDone done) {
    auto got = [done](const redisReply* r) {
      std::optional<Snapshot> snap = poll_state_reply(r);
      done(snap ? &*snap : nullptr);
    };
    if (!scripts_.call(state_lua_, {}, got)) done(nullptr);
  }
};
