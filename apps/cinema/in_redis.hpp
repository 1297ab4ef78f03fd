// apps/cinema/in_redis.hpp — the cinema board kept in Redis (--redis), so
// that every process in front of it sells the same seats. Each route is
// one script call (the .lua files beside this one); each script's reply is
// read by one decoder, right under it, into the same typed replies the
// SQLite mode makes (rules.hpp).
#pragma once
#include <chrono>

#include "../../engine/redis.hpp"
#include "rules.hpp"

// ---- The keys -------------------------------------------------------------------------
//
// Keys, all under sse:cinema: (text throughout, as redis-cli shows it):
//   showtime:<id>   a hash per showtime: movie, hall, starts_at (ISO 8601
//                   with a zone; the server writes its UTC form), seats_total,
//                   seats_left: the row of the SQLite mode
//   showtimes       the set of ids on the schedule
//   ids             the last showtime id given (INCR)
//   booking_ids     the last booking id given
//   held:<user>     a hash per person: showtime id -> seats the person holds
//                   of it, and b<booking id> -> "<showtime> <seats> <made_at
//                   epoch ms>" for each booking
//   booking:<id>, user:<user>   bookings as older builds made them (a hash
//                   each, and the person's list of ids): read, never written
//   version         "<version> <digest>": the stream's version (the event id
//                   on every process) and the digest of the board it names
// Each write is one Lua script that decides and applies atomically however
// many processes send bookings; it publishes "cinema" on sse:changed.
// Shortcut: the scripts name keys they build themselves, as a single Redis
// allows (a Redis Cluster would not).
//
// The state script, which every process runs on a change and every
// --schedule-interval, digests everything the board depends on (each
// hash, and which showtimes have started by Redis's own clock) and asks
// version_of (engine/version.lua) for the version: a board it has not seen
// gets a new one. So an edit made with redis-cli, or a showtime starting,
// is a new version too, and the script publishes it. One version, one
// board, on every process.

// ---- The scripts and their replies ----------------------------------------------------

// A whole number as the scripts keep it (text of 1 to `digits` digits), or -1.
inline int64_t count_text(std::string_view s, size_t digits = 9) {
  if (s.empty() || s.size() > digits || s.find_first_not_of("0123456789") != s.npos) return -1;
  return std::stoll(std::string(s));
}

// Reply elements from `at`: id, movie, hall, starts_at, seats_total,
// seats_left (text, as the hash holds them) into *st. False when they
// make no showtime (the SQLite mode's rule, read from text).
inline bool showtime_from_reply(const redisReply* r, size_t at, Showtime* st) {
  std::optional<int64_t> starts = parse_iso8601(reply_text(r, at + 3));
  *st = Showtime{count_text(reply_text(r, at), 18), std::string(reply_text(r, at + 1)), std::string(reply_text(r, at + 2)),
                 starts.value_or(0), count_text(reply_text(r, at + 4)), count_text(reply_text(r, at + 5))};
  return st->id >= 0 && starts && showtime_valid(*st);
}

// starts_ms, put in front of the scripts that need it (state, book): see
// prelude.lua.
inline constexpr const char* CINEMA_TIME_LUA =
#include "cinema/prelude.lua.inc"
    ;

inline const std::string CINEMA_STATE_LUA = std::string(VERSION_LUA) + CINEMA_TIME_LUA +
#include "cinema/state.lua.inc"
    ;

// The state's reply: the version (0 or less: none yet), Redis's time, and
// the rows (from element 2 on) that make a showtime; invalid counts the
// rest.
struct ScheduleReply {
  int64_t version, now_ms;
  std::vector<Showtime> rows;
  int invalid = 0;
};
inline ScheduleReply schedule_reply(const redisReply* r) {
  ScheduleReply s{reply_number(r, 0), reply_number(r, 1), {}};
  Showtime st;
  for (size_t at = 2; at + 6 <= r->elements; at += 6)
    if (showtime_from_reply(r, at, &st)) s.rows.push_back(std::move(st));
    else ++s.invalid;
  return s;
}

inline constexpr const char* CINEMA_ADD_LUA =
#include "cinema/add.lua.inc"
    ;

// Its reply, {the last id}: the id of the showtime added.
inline int64_t add_reply(const redisReply* r) { return reply_number(r, 0); }

inline constexpr const char* CINEMA_EDIT_LUA =
#include "cinema/edit.lua.inc"
    ;

// Its reply, {200, the showtime as it is now}, {404} or {409, sold};
// nothing for any other.
inline std::optional<EditReply> edit_reply(const redisReply* r) {
  int64_t status = reply_number(r, 0);
  if (status == 404) return EditReply{EditOutcome::Missing};
  if (status == 409) return EditReply{EditOutcome::BelowSold, {}, reply_number(r, 1)};
  if (status == 422) return EditReply{EditOutcome::SeatsNotWhole};
  if (status != 200) return std::nullopt;
  Showtime st;
  return EditReply{EditOutcome::Edited, showtime_from_reply(r, 1, &st) ? std::optional(st) : std::nullopt};
}

inline constexpr const char* CINEMA_ERASE_LUA =
#include "cinema/erase.lua.inc"
    ;

// Its reply: whether there was such a showtime ({200}, else {404}).
inline bool erase_reply(const redisReply* r) { return reply_number(r, 0) == 200; }

inline const std::string CINEMA_BOOK_LUA = std::string(CINEMA_TIME_LUA) +
#include "cinema/book.lua.inc"
    ;

// One booking's reply: {'booked', left, booking id}, or the refusal and
// its count; nothing for any other.
inline std::optional<BookingReply> booking_reply(const redisReply* r) {
  std::string_view outcome = reply_text(r, 0);
  int64_t n = reply_number(r, 1);
  if (outcome == "booked") return BookingReply{std::nullopt, reply_number(r, 2), n};
  if (outcome == "no_showtime") return BookingReply{NoBooking{NO_SHOWTIME, 0}};
  if (outcome == "started") return BookingReply{NoBooking{STARTED, 0}};
  if (outcome == "per_person") return BookingReply{NoBooking{PER_PERSON, n}};
  if (outcome == "seats") return BookingReply{NoBooking{SOLD_OUT, n}};
  return std::nullopt;
}

inline constexpr const char* CINEMA_MINE_LUA =
#include "cinema/mine.lua.inc"
    ;

// Its reply: Redis's time, then the bookings whose showtime still makes one.
struct BookingsReply {
  int64_t now_ms;
  std::vector<Booking> list;
};
inline BookingsReply bookings_reply(const redisReply* r) {
  std::vector<Booking> list;
  for (size_t at = 1; at + 6 <= r->elements; at += 6) {
    Booking b;
    b.id = count_text(reply_text(r, at), 18);
    b.seats = count_text(reply_text(r, at + 1));
    std::optional<int64_t> starts = parse_iso8601(reply_text(r, at + 5));
    b.showtime = Showtime{count_text(reply_text(r, at + 2), 18), std::string(reply_text(r, at + 3)),
                          std::string(reply_text(r, at + 4)), starts.value_or(0), 0, 0};
    if (starts && showtime_valid(b.showtime)) list.push_back(std::move(b));
  }
  return {reply_number(r, 0), std::move(list)};
}

// ---- The mode -------------------------------------------------------------------------
//
// The same routes, each one script call whose reply makes the answer.

class CinemaInRedis : public CinemaMode {
 public:
  CinemaInRedis(Redis& redis, CinemaCounts* counts) : redis_(&redis), counts_(counts) {}

  Answer list(const Request& req) override {
    return redis_answer(req, scripts_, state_lua_, {}, [](const redisReply* r) {
      ScheduleReply s = schedule_reply(r);
      return board_answer(std::move(s.rows), s.now_ms);
    });
  }

  Answer add(const Request& req, Showtime st) override {
    std::vector<std::string> args = script_fields(st);
    args.insert(args.begin(), "");
    return redis_answer(req, scripts_, add_lua_, views(args), [st](const redisReply* r) mutable {
      st.id = add_reply(r);
      return added(st);
    });
  }

  Answer edit(const Request& req, const Edit& e) override {
    std::vector<std::string> args = {std::to_string(e.id), e.text[0].value_or(""), e.text[1].value_or(""), e.text[2].value_or(""),
                                     e.seats ? std::to_string(*e.seats) : ""};
    return redis_answer(req, scripts_, edit_lua_, views(args), [id = e.id](const redisReply* r) {
      std::optional<EditReply> edit = edit_reply(r);
      return edit ? edit_answer(id, *edit) : redis_unclear();
    });
  }

  Answer erase(const Request& req, int64_t id) override {
    std::string sid = std::to_string(id);
    return redis_answer(req, scripts_, erase_lua_, {sid}, [id](const redisReply* r) { return erase_answer(id, erase_reply(r)); });
  }

  Answer book(const Request& req, int64_t id, const std::string& user, int64_t seats) override {
    std::vector<std::string> args = {std::to_string(id), user, std::to_string(seats), std::to_string(MAX_SEATS_PER_PERSON)};
    return redis_answer(req, scripts_, book_lua_, views(args), [counts = counts_, id, seats](const redisReply* r) {
      std::optional<BookingReply> b = booking_reply(r);
      return b ? booking_answer(*b, id, seats, *counts) : redis_unclear();
    });
  }

  Answer mine(const Request& req, std::string_view user) override {
    return redis_answer(req, scripts_, mine_lua_, {user}, [](const redisReply* r) {
      BookingsReply m = bookings_reply(r);
      return bookings_answer(std::move(m.list), m.now_ms);
    });
  }

  void snapshot(StreamSpec* s) override { s->fetch = std::bind_front(&CinemaInRedis::fetch, this); }

  // On every connect: the scripts, then the sample schedule if Redis has none.
  void connected() override {
    scripts_.load(*redis_);
    auto now = std::chrono::system_clock::now().time_since_epoch();
    std::vector<std::string> args = {"EVAL", CINEMA_ADD_LUA, "0", "first"};
    for (const Showtime& st : sample_schedule(std::chrono::duration_cast<std::chrono::milliseconds>(now).count()))
      for (std::string& field : script_fields(st)) args.push_back(std::move(field));
    redis_->command(views(args), nullptr);
  }

 private:
  Redis* redis_;
  CinemaCounts* counts_;
  RedisScripts scripts_;
  size_t state_lua_ = scripts_.add(CINEMA_STATE_LUA.c_str()), add_lua_ = scripts_.add(CINEMA_ADD_LUA),
         edit_lua_ = scripts_.add(CINEMA_EDIT_LUA), erase_lua_ = scripts_.add(CINEMA_ERASE_LUA),
         book_lua_ = scripts_.add(CINEMA_BOOK_LUA.c_str(), 4), mine_lua_ = scripts_.add(CINEMA_MINE_LUA);

  // The stream's state, read from Redis (the script also notices edits
  // made there by hand: see the top of this file).
  void fetch(SnapshotDone done) {
    auto got = [this, done](const redisReply* r) {
      if (!r) return done(nullptr);
      ScheduleReply state = schedule_reply(r);
      if (state.version <= 0) return done(nullptr);
      counts_->rows_invalid = state.invalid;
      Snapshot s{schedule_json(std::move(state.rows), state.now_ms), uint64_t(state.version)};
      done(&s);
    };
    if (!scripts_.call(state_lua_, {}, got)) done(nullptr);
  }

  // Showtime fields as the scripts take them: movie, hall, starts_at, seats_total, seats_left.
  static std::vector<std::string> script_fields(const Showtime& st) {
    return {st.movie, st.hall, iso_utc(st.starts_ms), std::to_string(st.seats_total), std::to_string(st.seats_left)};
  }
  static std::vector<std::string_view> views(const std::vector<std::string>& args) { return {args.begin(), args.end()}; }
};
