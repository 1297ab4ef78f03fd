// apps/cinema.hpp — the cinema board (影院排片): upcoming showtimes with
// their seats, live on every page. Visitors book seats; the admin adds,
// edits and deletes showtimes through the API, or anyone with the sqlite3
// tool edits the rows.
//
// Rules: a showtime is a movie, a hall, a start time (ISO 8601 with a zone)
// and seats; the board shows those not yet started, by start time. A
// booking takes 1 to 10 seats of a showtime not yet started, and one person
// holds at most 10 seats of a showtime.
//
// Storage: this app's lesson is that the row in SQLite decides, not memory.
// Nothing is held and written through like grants and votes: the table is
// read again whenever the board is drawn (on a change, and every
// --schedule-interval to catch edits made outside), so a row changed with
// the sqlite3 tool shows up like one changed through the API. A booking is
// decided by one conditional UPDATE (seats_left >= n) inside the turn's
// transaction, which holds the write lock from before the booking's reads:
// no two bookings, and no edit from outside, can sell a seat twice. A row
// that does not make a showtime is left off the board and counted in
// /metrics.
//
// Left out on purpose: cancelling a booking, choosing seats (a booking is a
// count), time zones on the board (UTC; the page shows local time). A
// deleted showtime's bookings stay in the table, off every list.
#pragma once
#include <algorithm>

#include "../app.hpp"

// ---- Rules ----------------------------------------------------------------------------

struct Showtime {
  int64_t id = 0;
  std::string movie, hall;
  int64_t starts_ms = 0;  // epoch ms, from the ISO 8601 text
  int64_t seats_total = 0, seats_left = 0;
};

constexpr size_t MAX_MOVIE_BYTES = 100, MAX_HALL_BYTES = 50;
constexpr int64_t MAX_SEATS = 10000;
constexpr int64_t MAX_SEATS_PER_BOOKING = 10, MAX_SEATS_PER_PERSON = 10;

// Why the value of a showtime's text field (movie, hall, starts_at) is
// wrong; nothing when it is fine.
inline std::optional<std::string> field_refusal(std::string_view key, std::string_view value, int64_t now_ms) {
  if (key == "movie" && (value.empty() || value.size() > MAX_MOVIE_BYTES || !valid_text(value)))
    return "movie must be 1 to 100 bytes of UTF-8 text";
  if (key == "hall" && (value.empty() || value.size() > MAX_HALL_BYTES || !valid_text(value)))
    return "hall must be 1 to 50 bytes of UTF-8 text";
  if (key != "starts_at") return std::nullopt;
  std::optional<int64_t> t = parse_iso8601(value);
  if (!t) return "starts_at must be an ISO 8601 time with a zone, like 2026-11-23T19:30:00+08:00";
  if (*t <= now_ms) return "starts_at is in the past";
  return std::nullopt;
}

// Which field of a new showtime is wrong, and why; nothing when all are fine.
inline std::optional<std::string> showtime_refusal(std::string_view movie, std::string_view hall, std::string_view starts_at,
                                                   int64_t now_ms) {
  auto why = field_refusal("movie", movie, now_ms);
  if (!why) why = field_refusal("hall", hall, now_ms);
  return why ? why : field_refusal("starts_at", starts_at, now_ms);
}

// "/cinema/showtimes/42" → 42 (and "" in *rest); "/cinema/showtimes/42/book"
// → 42 and "book". Nothing when the part after the prefix is not a whole
// number ("0007" is 7).
inline std::optional<int64_t> showtime_id(std::string_view path, std::string_view* rest) {
  path.remove_prefix(std::min(path.size(), std::string_view("/cinema/showtimes/").size()));
  std::string_view digits = path.substr(0, path.find('/'));
  *rest = digits.size() < path.size() ? path.substr(digits.size() + 1) : std::string_view();
  bool numeric = !digits.empty() && digits.size() <= 18 && digits.find_first_not_of("0123456789") == std::string_view::npos;
  if (!numeric) return std::nullopt;
  return std::stoll(std::string(digits));
}

// Appends one showtime as a JSON object.
inline void showtime_json(std::string& j, const Showtime& s) {
  j += "{\"id\":";
  json_number(j, s.id);
  j += ",\"movie\":";
  json_string(j, s.movie);
  j += ",\"hall\":";
  json_string(j, s.hall);
  j += ",\"starts_at\":\"" + iso_utc(s.starts_ms) + "\",\"seats_total\":";
  json_number(j, s.seats_total);
  j += ",\"seats_left\":";
  json_number(j, s.seats_left);
  j += '}';
}

// The board: showtimes not yet started, by start time (then id), as JSON.
inline std::string schedule_json(std::vector<Showtime> rows, int64_t now_ms) {
  std::erase_if(rows, [&](const Showtime& s) { return s.starts_ms <= now_ms; });
  std::sort(rows.begin(), rows.end(), [](const Showtime& a, const Showtime& b) {
    return a.starts_ms != b.starts_ms ? a.starts_ms < b.starts_ms : a.id < b.id;
  });
  std::string j = "{\"showtimes\":[";
  for (size_t i = 0; i < rows.size(); i++) {
    if (i) j += ',';
    showtime_json(j, rows[i]);
  }
  return j + "]}";
}

// ---- Storage --------------------------------------------------------------------------

struct Booking {
  int64_t id = 0, seats = 0;
  Showtime showtime;  // its seat counts are not read
};

class CinemaStorage {
 public:
  // *is_new: the file had no showtimes table before: the time, and the only
  // time, to put in a sample schedule.
  bool open(Store& store, bool* is_new) {
    store_ = &store;
    *is_new = !store.has_table("showtimes");
    return store.exec(SCHEMA) &&
           store.prepare(&insert_showtime_, "INSERT INTO showtimes (movie, hall, starts_at, seats_total, seats_left) VALUES (?, ?, ?, ?, ?)") &&
           store.prepare(&delete_showtime_, "DELETE FROM showtimes WHERE id = ?") &&
           store.prepare(&select_showtimes_, "SELECT id, movie, hall, starts_at, seats_total, seats_left FROM showtimes") &&
           store.prepare(&select_showtime_, "SELECT id, movie, hall, starts_at, seats_total, seats_left FROM showtimes WHERE id = ?") &&
           // NULL leaves a field as it is; seats (the total) moves seats_left by as much, never below the seats sold.
           store.prepare(&edit_showtime_, "UPDATE showtimes SET movie = coalesce(?2, movie), hall = coalesce(?3, hall), "
                                          "starts_at = coalesce(?4, starts_at), seats_total = coalesce(?5, seats_total), "
                                          "seats_left = seats_left + coalesce(?5 - seats_total, 0) "
                                          "WHERE id = ?1 AND coalesce(?5 >= seats_total - seats_left, 1)") &&
           store.prepare(&take_seats_, "UPDATE showtimes SET seats_left = seats_left - ?2 WHERE id = ?1 AND seats_left >= ?2") &&
           store.prepare(&insert_booking_, "INSERT INTO bookings (showtime, user, seats, made_at) VALUES (?, ?, ?, ?)") &&
           store.prepare(&seats_held_, "SELECT coalesce(sum(seats), 0) FROM bookings WHERE user = ? AND showtime = ?") &&
           store.prepare(&select_bookings_, "SELECT b.id, b.seats, s.id, s.movie, s.hall, s.starts_at, 0, 0 "
                                            "FROM bookings b JOIN showtimes s ON s.id = b.showtime WHERE b.user = ?");
  }
  // Why the last call failed: a read's own error, else the store's (a write).
  std::string error() {
    std::string read = std::move(error_);
    error_.clear();
    return read.empty() ? store_->error() : read;
  }

  // Every row of the table that makes a showtime; *invalid counts the rest
  // (a start time that is not ISO 8601 with a zone, empty text, bad seats).
  bool load(std::vector<Showtime>* out, int* invalid) {
    out->clear();
    *invalid = 0;
    int rc;
    Showtime st;
    while ((rc = sqlite3_step(select_showtimes_)) == SQLITE_ROW)
      if (!read_showtime(select_showtimes_, 0, &st)) ++*invalid;
      else out->push_back(std::move(st));
    sqlite3_reset(select_showtimes_);
    return rc == SQLITE_DONE || fail("reading showtimes");
  }

  // Showtime `id` into *st; *found is false when there is none, or its row
  // does not make a showtime.
  bool find(int64_t id, Showtime* st, bool* found) {
    sqlite3_bind_int64(select_showtime_, 1, id);
    int rc = sqlite3_step(select_showtime_);
    *found = rc == SQLITE_ROW && read_showtime(select_showtime_, 0, st);
    sqlite3_reset(select_showtime_);
    return rc == SQLITE_ROW || rc == SQLITE_DONE || fail("reading a showtime");
  }

  // A new showtime with every seat free; *id gets its row id.
  bool insert(const Showtime& st, int64_t* id) {
    std::string starts = iso_utc(st.starts_ms);
    bind_text(insert_showtime_, 1, st.movie);
    bind_text(insert_showtime_, 2, st.hall);
    bind_text(insert_showtime_, 3, starts);
    sqlite3_bind_int64(insert_showtime_, 4, st.seats_total);
    sqlite3_bind_int64(insert_showtime_, 5, st.seats_left);
    if (!store_->write(insert_showtime_)) return false;
    *id = store_->last_rowid();
    return true;
  }

  // Changes the fields given (the others stay); *changed is false when there
  // is no showtime `id` or `seats` is below the seats it has sold.
  bool edit(int64_t id, const std::optional<std::string>* text, std::optional<int64_t> seats, bool* changed) {
    sqlite3_bind_int64(edit_showtime_, 1, id);
    for (int i = 0; i < 3; i++) text[i] ? bind_text(edit_showtime_, i + 2, *text[i]) : (void)sqlite3_bind_null(edit_showtime_, i + 2);
    seats ? sqlite3_bind_int64(edit_showtime_, 5, *seats) : sqlite3_bind_null(edit_showtime_, 5);
    if (!store_->write(edit_showtime_)) return false;
    *changed = store_->changes() > 0;
    return true;
  }

  // Deletes showtime `id`; *found says whether there was one.
  bool erase(int64_t id, bool* found) {
    sqlite3_bind_int64(delete_showtime_, 1, id);
    if (!store_->write(delete_showtime_)) return false;
    *found = store_->changes() > 0;
    return true;
  }

  // The booking decision: takes `seats` of showtime `id` if that many are
  // left (*taken), and records who took them (*booking: its id).
  bool book(int64_t id, std::string_view user, int64_t seats, int64_t now_ms, bool* taken, int64_t* booking) {
    sqlite3_bind_int64(take_seats_, 1, id);
    sqlite3_bind_int64(take_seats_, 2, seats);
    if (!store_->write(take_seats_)) return false;
    if (!(*taken = store_->changes() > 0)) return true;
    sqlite3_bind_int64(insert_booking_, 1, id);
    bind_text(insert_booking_, 2, user);
    sqlite3_bind_int64(insert_booking_, 3, seats);
    sqlite3_bind_int64(insert_booking_, 4, now_ms);
    if (!store_->write(insert_booking_)) return false;
    *booking = store_->last_rowid();
    return true;
  }

  // Seats `user` holds of showtime `id`.
  bool held(std::string_view user, int64_t id, int64_t* seats) {
    bind_text(seats_held_, 1, user);
    sqlite3_bind_int64(seats_held_, 2, id);
    int rc = sqlite3_step(seats_held_);
    *seats = rc == SQLITE_ROW ? sqlite3_column_int64(seats_held_, 0) : 0;
    sqlite3_reset(seats_held_);
    return rc == SQLITE_ROW || fail("reading bookings");
  }

  // `user`'s bookings of showtimes that still make one.
  bool bookings(std::string_view user, std::vector<Booking>* out) {
    bind_text(select_bookings_, 1, user);
    int rc;
    Booking b;
    while ((rc = sqlite3_step(select_bookings_)) == SQLITE_ROW) {
      b.id = sqlite3_column_int64(select_bookings_, 0);
      b.seats = sqlite3_column_int64(select_bookings_, 1);
      if (read_showtime(select_bookings_, 2, &b.showtime)) out->push_back(b);
    }
    sqlite3_reset(select_bookings_);
    return rc == SQLITE_DONE || fail("reading bookings");
  }

 private:
  static constexpr const char* SCHEMA = R"sql(
    CREATE TABLE IF NOT EXISTS showtimes (
      id          INTEGER PRIMARY KEY,
      movie       TEXT NOT NULL,
      hall        TEXT NOT NULL,
      starts_at   TEXT NOT NULL,     -- ISO 8601 with a zone; stored by the server as UTC, ...Z
      seats_total INTEGER NOT NULL,
      seats_left  INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS bookings (
      id        INTEGER PRIMARY KEY,
      showtime  INTEGER NOT NULL,  -- showtimes.id
      user      TEXT NOT NULL,     -- the uid cookie, or the form's user
      seats     INTEGER NOT NULL,
      made_at   INTEGER NOT NULL   -- epoch ms
    );
    CREATE INDEX IF NOT EXISTS bookings_by_user ON bookings (user, showtime);
  )sql";

  // Columns from `col` on: id, movie, hall, starts_at, seats_total,
  // seats_left. False when they do not make a showtime.
  static bool read_showtime(sqlite3_stmt* s, int col, Showtime* st) {
    auto text = [&](int i) {  // all of it: a NUL inside must not cut it short (valid_text refuses it)
      const unsigned char* t = sqlite3_column_text(s, col + i);
      return t ? std::string(reinterpret_cast<const char*>(t), size_t(sqlite3_column_bytes(s, col + i))) : std::string();
    };
    *st = Showtime{sqlite3_column_int64(s, col), text(1), text(2), 0, sqlite3_column_int64(s, col + 4), sqlite3_column_int64(s, col + 5)};
    std::optional<int64_t> starts = parse_iso8601(text(3));
    st->starts_ms = starts.value_or(0);
    return starts && !st->movie.empty() && valid_text(st->movie) && !st->hall.empty() && valid_text(st->hall) &&
           st->seats_total >= 0 && st->seats_left >= 0 && st->seats_left <= st->seats_total;
  }
  static void bind_text(sqlite3_stmt* s, int i, std::string_view t) { sqlite3_bind_text(s, i, t.data(), int(t.size()), SQLITE_STATIC); }
  bool fail(const char* what) {
    error_ = std::string(what) + ": " + sqlite3_errmsg(sqlite3_db_handle(select_showtimes_));
    return false;
  }
  Store* store_ = nullptr;
  sqlite3_stmt *insert_showtime_ = nullptr, *delete_showtime_ = nullptr, *select_showtimes_ = nullptr, *select_showtime_ = nullptr,
               *edit_showtime_ = nullptr, *take_seats_ = nullptr, *insert_booking_ = nullptr, *seats_held_ = nullptr,
               *select_bookings_ = nullptr;
  std::string error_;
};

// ---- Routes ---------------------------------------------------------------------------

struct CinemaApp {
  int64_t reread_ms = 5000;  // flag
  CinemaStorage storage;
  Store* store = nullptr;
  std::string board;         // the last board drawn: kept when a re-read fails
  int rows_invalid = 0;      // rows the last re-read left off

  // The board, read from the database now. If the read fails (another
  // process holding a lock), the board stays as it was and the next
  // re-read tries again.
  std::string render(int64_t wall_ms) {
    std::vector<Showtime> rows;
    if (!storage.load(&rows, &rows_invalid)) log_app("cinema: cannot read the schedule: " + storage.error());
    else board = schedule_json(std::move(rows), wall_ms);
    return board;
  }

  // GET /cinema/showtimes: the board, read now.
  Answer list(const Request& req) {
    if (store->in_transaction()) return wait_for_commit();  // a read now would see this turn's changes
    std::vector<Showtime> rows;
    int invalid = 0;
    if (!storage.load(&rows, &invalid)) return refusal(503, "the schedule cannot be read right now");
    return json_answer(200, schedule_json(std::move(rows), req.wall_ms));
  }

  // Form field `key` without edge spaces ("Hero " and "Hero" are one movie).
  static std::optional<Answer> trimmed(const Request& req, const char* key, std::string* value, bool* present = nullptr) {
    if (auto no = req.form(key, value, present)) return no;
    value->erase(0, value->find_first_not_of(' '));
    value->erase(value->find_last_not_of(' ') + 1);
    return std::nullopt;
  }
  static Answer write_refused(CinemaStorage& s) { return log_app("store: write refused: " + s.error()), store_refused(); }
  static Answer read_refused() { return refusal(503, "the schedule cannot be read right now", "Retry-After: 1\r\n"); }
  static std::string showtime_answer(const Showtime& st) {
    std::string j = "{\"ok\":true,\"showtime\":";
    showtime_json(j, st);
    return j + "}";
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
    if (!storage.insert(st, &st.id)) return write_refused(storage);
    Answer a = json_answer(201, showtime_answer(st), "Location: /cinema/showtimes/" + std::to_string(st.id) + "\r\n");
    a.changed = true;  // undone by the database's rollback, should the commit fail
    return a;
  }

  // PATCH /cinema/showtimes/{id} (admin): any of movie, hall, starts_at and
  // seats (the total), each checked as when a showtime is added; the seats
  // never below those sold.
  Answer edit(const Request& req) {
    std::string_view rest;
    std::optional<int64_t> id = showtime_id(req.http.path, &rest);
    if (!id || !rest.empty()) return refusal(404, "no showtime there: a showtime's id is a whole number");
    static constexpr const char* KEYS[] = {"movie", "hall", "starts_at"};
    std::optional<std::string> text[3];
    for (int i = 0; i < 3; i++) {
      std::string value;
      bool present = false;
      if (auto no = trimmed(req, KEYS[i], &value, &present)) return *no;
      if (!present) continue;
      if (auto why = field_refusal(KEYS[i], value, req.wall_ms)) return refusal(400, *why);
      text[i] = i == 2 ? iso_utc(*parse_iso8601(value)) : value;
    }
    std::optional<int64_t> seats;
    if (auto no = req.whole_number_if_sent("seats", 1, MAX_SEATS, &seats)) return *no;
    if (!text[0] && !text[1] && !text[2] && !seats) return refusal(400, "nothing to change: send movie, hall, starts_at or seats");
    bool fresh = !store->in_transaction(), changed = false, found = false;
    Showtime st;
    if (!storage.edit(*id, text, seats, &changed)) return write_refused(storage);
    if (!storage.find(*id, &st, &found)) return read_refused();
    if (changed) {
      Answer a = json_answer(200, found ? showtime_answer(st) : "{\"ok\":true,\"showtime\":null}");  // null: the row still makes no showtime
      a.changed = true;
      return a;
    }
    if (!fresh) return wait_for_commit();  // what was read may be this turn's, not stored yet
    if (!found) return refusal(404, "no showtime " + std::to_string(*id));
    return refusal(409, std::to_string(st.seats_total - st.seats_left) + " seats of showtime " + std::to_string(*id) +
                            " are sold: seats cannot go below that");
  }

  // DELETE /cinema/showtimes/{id} (admin)
  Answer erase(const Request& req) {
    std::string_view rest;
    std::optional<int64_t> id = showtime_id(req.http.path, &rest);
    if (!id || !rest.empty()) return refusal(404, "no showtime there: a showtime's id is a whole number");
    bool found = false;
    if (!storage.erase(*id, &found)) return write_refused(storage);
    if (!found) return refusal(404, "no showtime " + std::to_string(*id));
    Answer a = json_answer(200, "{\"ok\":true,\"deleted\":" + std::to_string(*id) + "}");
    a.changed = true;
    return a;
  }

  // Bookings made, and refused by reason, for /metrics.
  enum Refused { NO_SHOWTIME, STARTED, PER_PERSON, SOLD_OUT, REFUSED_KINDS };
  uint64_t booked = 0, refused[REFUSED_KINDS] = {};

  // POST /cinema/showtimes/{id}/book: `seats` (1 to 10, default 1) for the
  // user (form field `user`, else the uid cookie). The turn's transaction is
  // held from before the reads, so what they find is what the conditional
  // UPDATE decides on; a refusal that read this turn's uncommitted changes
  // waits for the commit (the change it saw may yet be undone).
  Answer book(const Request& req) {
    std::string_view rest;
    std::optional<int64_t> id = showtime_id(req.http.path, &rest);
    if (!id || rest != "book") return refusal(404, "no such page: seats are booked at /cinema/showtimes/{id}/book");
    std::optional<int64_t> asked;
    std::string user;
    if (auto no = req.whole_number_if_sent("seats", 1, MAX_SEATS_PER_BOOKING, &asked)) return *no;
    if (auto no = req.identity("user", &user)) return *no;
    int64_t seats = asked.value_or(1);
    bool fresh = !store->in_transaction(), found = false, taken = false;
    if (!store->hold()) return write_refused(storage);
    Showtime st;
    int64_t held = 0, booking = 0;
    if (!storage.find(*id, &st, &found) || (found && !storage.held(user, *id, &held))) return read_refused();
    auto refuse = [&](Refused why, int status, std::string body) {
      if (!fresh) return wait_for_commit();
      refused[why]++;
      return json_answer(status, std::move(body));
    };
    std::string which = "showtime " + std::to_string(*id);
    if (!found) return refuse(NO_SHOWTIME, 404, "{\"ok\":false,\"message\":\"no " + which + "\"}");
    if (st.starts_ms <= req.wall_ms) return refuse(STARTED, 410, "{\"ok\":false,\"message\":\"" + which + " has started\"}");
    if (held + seats > MAX_SEATS_PER_PERSON)
      return refuse(PER_PERSON, 409, "{\"ok\":false,\"message\":\"you hold " + std::to_string(held) + " seats of " + which +
                                         "; one person may hold at most 10\",\"held\":" + std::to_string(held) + "}");
    if (!storage.book(*id, user, seats, req.wall_ms, &taken, &booking)) return write_refused(storage);
    std::string left = std::to_string(taken ? st.seats_left - seats : st.seats_left);
    if (!taken)
      return refuse(SOLD_OUT, 409, "{\"ok\":false,\"message\":\"" + (left == "0" ? which + " is sold out" : "only " + left + " seats left of " + which) +
                                       "\",\"seats_left\":" + left + "}");
    booked++;
    Answer a = json_answer(200, "{\"ok\":true,\"booking\":" + std::to_string(booking) + ",\"showtime\":" + std::to_string(*id) +
                                    ",\"seats\":" + std::to_string(seats) + ",\"seats_left\":" + left + "}");
    a.changed = true;  // the rows go with the rollback; the count with undo
    a.undo = [this] { booked--; };
    return a;
  }

  // GET /cinema/bookings/me: this browser's bookings (its uid cookie only)
  // of showtimes not yet started, soonest first.
  Answer mine(const Request& req) {
    std::string_view user = req.uid();
    if (!valid_user(user)) return refusal(400, "no identity: load a page first for a uid cookie");
    if (store->in_transaction()) return wait_for_commit();  // a read now would see this turn's changes
    std::vector<Booking> list;
    if (!storage.bookings(user, &list)) return read_refused();
    std::erase_if(list, [&](const Booking& b) { return b.showtime.starts_ms <= req.wall_ms; });
    std::sort(list.begin(), list.end(), [](const Booking& a, const Booking& b) {
      return a.showtime.starts_ms != b.showtime.starts_ms ? a.showtime.starts_ms < b.showtime.starts_ms : a.id < b.id;
    });
    std::string j = "{\"ok\":true,\"bookings\":[";
    for (const Booking& b : list) {
      j += (&b == list.data() ? "{\"booking\":" : ",{\"booking\":") + std::to_string(b.id) + ",\"seats\":" + std::to_string(b.seats) +
           ",\"showtime\":" + std::to_string(b.showtime.id) + ",\"movie\":";
      json_string(j, b.showtime.movie);
      j += ",\"hall\":";
      json_string(j, b.showtime.hall);
      j += ",\"starts_at\":\"" + iso_utc(b.showtime.starts_ms) + "\"}";
    }
    return json_answer(200, j + "]}");
  }

  // A dozen showtimes over the next days, for a new schedule table.
  bool seed(int64_t wall_ms) {
    static constexpr std::pair<const char*, const char*> films[] = {
        {"Spirited Away", "Hall 1"}, {"The Wandering Earth", "IMAX"}, {"In the Mood for Love", "Hall 2"}, {"Hero", "Hall 3"}};
    int64_t hour_ms = 3600 * 1000, day_ms = 24 * hour_ms, today = wall_ms - wall_ms % day_ms, id = 0;
    for (int day = 1; day <= 3; day++)
      for (int k = 0; k < 4; k++) {
        Showtime st{0, films[k].first, films[k].second, today + day * day_ms + (10 + 3 * k) * hour_ms + (k % 2) * 30 * 60000,
                    k == 1 ? 320 : 120, 0};
        st.seats_left = st.seats_total - (day * 37 + k * 23) % st.seats_total;
        if (!storage.insert(st, &id)) return false;
      }
    return true;
  }

  // ---- Descriptor ---------------------------------------------------------------------

  int open(Store& s, int64_t wall_ms, std::string* why) {
    store = &s;
    bool is_new = false;
    if (!storage.open(s, &is_new) || (is_new && (!seed(wall_ms) || !s.commit()))) return *why = storage.error(), 1;
    return 0;
  }

  AppSpec spec() {
    AppSpec app;
    app.name = "cinema";
    app.flags = {"the cinema board",
                 {{"--schedule-interval", FlagKind::Seconds, &reread_ms, 0.001, 86400, "seconds between re-reads of the cinema schedule"}}};
    app.open = [this](Store& s, int64_t wall_ms, std::string* why) { return open(s, wall_ms, why); };
    // Not repeated: a re-read that finds the board unchanged sends nothing.
    app.streams = {{{"/events", "/cinema/events"}, "cinema", &reread_ms, [this](int64_t wall_ms) { return render(wall_ms); }, false}};
    app.routes = [this] {
      return std::vector<RouteSpec>{
          {"/cinema/showtimes", "GET, HEAD", [this](const Request& r) { return list(r); }},
          {"/cinema/showtimes", "POST", [this](const Request& r) { return add(r); }, ADMIN_ONLY},
          // A prefix: /{id} and /{id}/book.
          {"/cinema/showtimes/", "POST", [this](const Request& r) { return book(r); }},
          {"/cinema/showtimes/", "PATCH", [this](const Request& r) { return edit(r); }, ADMIN_ONLY},
          {"/cinema/showtimes/", "DELETE", [this](const Request& r) { return erase(r); }, ADMIN_ONLY},
          {"/cinema/bookings/me", "GET, HEAD", [this](const Request& r) { return mine(r); }}};
    };
    const char* refused_help = "Bookings refused, by reason.";
    app.metrics = {{"sse_showtime_rows_invalid", "gauge", "Rows of the showtimes table the last re-read left off the board.",
                    [this] { return double(rows_invalid); }},
                   {"sse_cinema_bookings_total", "counter", "Bookings made (seats taken and stored).", [this] { return double(booked); }}};
    for (auto [kind, label] : {std::pair{NO_SHOWTIME, "reason=\"no_showtime\""}, {STARTED, "reason=\"started\""},
                               {PER_PERSON, "reason=\"per_person_limit\""}, {SOLD_OUT, "reason=\"seats\""}})
      app.metrics.push_back({"sse_cinema_bookings_refused_total", "counter", refused_help, [this, kind] { return double(refused[kind]); }, label});
    return app;
  }
};

// The server's one instance (tests make their own).
inline AppSpec cinema_app() { static CinemaApp app; return app.spec(); }
