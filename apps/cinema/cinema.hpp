// apps/cinema/cinema.hpp — the cinema board (影院排片): upcoming showtimes
// with their seats, live on every page. Visitors book seats; the admin
// adds, edits and deletes showtimes through the API, or anyone with the
// sqlite3 tool edits the rows.
//
// Rules (rules.hpp): a showtime is a movie, a hall, a start time (ISO 8601
// with a zone) and seats; the board shows those not yet started, by start
// time. A booking takes 1 to 10 seats of a showtime not yet started, and
// one person holds at most 10 seats of a showtime.
//
// Two modes, one chosen at start-up: in one process on SQLite, where the
// row decides, not memory (in_sqlite.hpp, its tables in tables.hpp), or
// with --redis in Redis, where the hash decides (in_redis.hpp and its .lua
// scripts), so every process in front of it sells the same seats. Either
// way an edit made by hand shows up like one made through the API, and
// both answer through rules.hpp, so a client cannot tell them apart. This
// file is what the server sees: the flag, the stream, the metrics, and the
// routes, which read and check the form and the id in the path and hand
// what they found to the mode.
//
// Left out on purpose: cancelling a booking, choosing seats (a booking is a
// count), time zones on the board (UTC; the page shows local time). A
// deleted showtime's bookings stay in the table, off every list; its id is
// never given again (AUTOINCREMENT), so no new showtime inherits them.
#pragma once
#include <memory>

#include "in_redis.hpp"
#include "in_sqlite.hpp"

class CinemaApp : public App {
 public:
  int64_t reread_ms = 5000;          // flag
  CinemaCounts counts;               // for /metrics: both modes count here
  std::unique_ptr<CinemaMode> mode;  // made by open or open_redis

  const char* name() const override { return "cinema"; }
  FlagGroup flags() override {
    return {"the cinema board",
            {{"--schedule-interval", FlagKind::Seconds, &reread_ms, 0.001, 86400, "seconds between re-reads of the cinema schedule"}}};
  }

  int open(Store& store, int64_t wall_ms, std::string* why) override {
    auto sqlite = std::make_unique<CinemaInSqlite>(&counts);
    int status = sqlite->open(store, wall_ms, why);
    mode = std::move(sqlite);
    return status;
  }
  bool has_redis_mode() const override { return true; }
  int open_redis(Redis& redis, std::string*) override {
    mode = std::make_unique<CinemaInRedis>(redis, &counts);
    return 0;
  }
  void redis_connected() override { mode->connected(); }
  void committed() override { mode->committed(); }

  std::vector<StreamSpec> streams() override {
    StreamSpec s{.paths = {"/events", "/cinema/events"}, .name = "cinema", .period_ms = reread_ms,
                 .repeat = false};  // a re-read that finds the board unchanged sends nothing
    mode->snapshot(&s);
    return {s};
  }
  std::vector<RouteSpec> routes() override {
    // GET /cinema/showtimes, the board read now, has nothing to read or check: the mode answers it.
    return {{.path = "/cinema/showtimes", .methods = "GET, HEAD", .handler = std::bind_front(&CinemaMode::list, mode.get())},
            {.path = "/cinema/showtimes", .methods = "POST", .handler = std::bind_front(&CinemaApp::add, this), .admin = true},
            // A prefix: /{id} and /{id}/book.
            {.path = "/cinema/showtimes/", .methods = "POST", .handler = std::bind_front(&CinemaApp::book, this)},
            {.path = "/cinema/showtimes/", .methods = "PATCH", .handler = std::bind_front(&CinemaApp::edit, this), .admin = true},
            {.path = "/cinema/showtimes/", .methods = "DELETE", .handler = std::bind_front(&CinemaApp::erase, this), .admin = true},
            {.path = "/cinema/bookings/me", .methods = "GET, HEAD", .handler = std::bind_front(&CinemaApp::mine, this)}};
  }
  std::vector<MetricSpec> metrics() override {
    const char* refused_help = "Bookings refused, by reason.";
    std::vector<MetricSpec> out = {
        {"sse_showtime_rows_invalid", "gauge", "Rows of the showtimes table (or hashes in Redis) the last re-read left off the board.",
         [this] { return double(counts.rows_invalid); }},
        {"sse_cinema_bookings_total", "counter", "Bookings made (seats taken and stored).", [this] { return double(counts.booked); }}};
    for (auto [reason, label] : {std::pair{NO_SHOWTIME, "reason=\"no_showtime\""}, {STARTED, "reason=\"started\""},
                                 {PER_PERSON, "reason=\"per_person_limit\""}, {SOLD_OUT, "reason=\"seats\""}}) {
      Refused kind = reason;  // a copy to capture (clang 14 cannot capture a structured binding)
      out.push_back({"sse_cinema_bookings_refused_total", "counter", refused_help, [this, kind] { return double(counts.refused[kind]); }, label});
    }
    return out;
  }

  // POST /cinema/showtimes (admin)
  Answer add(const Request& req) {
    Showtime st;
    std::string starts_at;
    for (auto [key, value] : {std::pair{"movie", &st.movie}, {"hall", &st.hall}, {"starts_at", &starts_at}})
      if (auto no = trimmed(req, key, value)) return *no;
    if (auto why = showtime_refusal(st.movie, st.hall, starts_at, req.wall_ms)) return refusal(400, *why);
    if (auto no = req.whole_number("seats", 1, MAX_SEATS, &st.seats_total)) return *no;
    st.seats_left = st.seats_total;
    st.starts_ms = *parse_iso8601(starts_at);
    return mode->add(req, st);
  }

  // PATCH /cinema/showtimes/{id} (admin): any of movie, hall, starts_at and
  // seats (the total), each checked as when a showtime is added; the seats
  // never below those sold.
  Answer edit(const Request& req) {
    std::string_view rest;
    std::optional<int64_t> id = showtime_id(req.http.path, &rest);
    if (!id || !rest.empty()) return no_showtime_there();
    Edit e;
    e.id = *id;
    static constexpr const char* KEYS[] = {"movie", "hall", "starts_at"};
    for (int i = 0; i < 3; i++) {
      std::string value;
      bool present = false;
      if (auto no = trimmed(req, KEYS[i], &value, &present)) return *no;
      if (!present) continue;
      if (auto why = field_refusal(KEYS[i], value, req.wall_ms)) return refusal(400, *why);
      e.text[i] = i == 2 ? iso_utc(*parse_iso8601(value)) : value;
    }
    if (auto no = req.whole_number_if_sent("seats", 1, MAX_SEATS, &e.seats)) return *no;
    if (!e.text[0] && !e.text[1] && !e.text[2] && !e.seats) return refusal(400, "nothing to change: send movie, hall, starts_at or seats");
    return mode->edit(req, e);
  }

  // DELETE /cinema/showtimes/{id} (admin)
  Answer erase(const Request& req) {
    std::string_view rest;
    std::optional<int64_t> id = showtime_id(req.http.path, &rest);
    if (!id || !rest.empty()) return no_showtime_there();
    return mode->erase(req, *id);
  }

  // POST /cinema/showtimes/{id}/book: `seats` (1 to 10, default 1) for the
  // user (form field `user`, else the uid cookie).
  Answer book(const Request& req) {
    std::string_view rest;
    std::optional<int64_t> id = showtime_id(req.http.path, &rest);
    if (!id || rest != "book") return refusal(404, "no such page: seats are booked at /cinema/showtimes/{id}/book");
    std::optional<int64_t> asked;
    std::string user;
    if (auto no = req.whole_number_if_sent("seats", 1, MAX_SEATS_PER_BOOKING, &asked)) return *no;
    if (auto no = req.identity("user", &user)) return *no;
    return mode->book(req, *id, user, asked.value_or(1));
  }

  // GET /cinema/bookings/me: this browser's bookings (its uid cookie only)
  // of showtimes not yet started, soonest first.
  Answer mine(const Request& req) {
    std::string_view user = req.uid();
    if (!valid_user(user)) return refusal(400, "no identity: load a page first for a uid cookie");
    return mode->mine(req, user);
  }

 private:
  // Form field `key` without edge spaces ("Hero " and "Hero" are one movie).
  static std::optional<Answer> trimmed(const Request& req, const char* key, std::string* value, bool* present = nullptr) {
    if (auto no = req.form(key, value, present)) return no;
    value->erase(0, value->find_first_not_of(' '));
    value->erase(value->find_last_not_of(' ') + 1);
    return std::nullopt;
  }
  static Answer no_showtime_there() { return refusal(404, "no showtime there: a showtime's id is a whole number"); }
};

// The server's one instance (tests make their own).
inline App& cinema_app() { static CinemaApp app; return app; }
