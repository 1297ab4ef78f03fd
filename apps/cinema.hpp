// apps/cinema.hpp — the cinema board (影院排片): upcoming showtimes with
// their seats, live on every page, edited by the admin through the API or
// by anyone with the sqlite3 tool.
//
// Rules: a showtime is a movie, a hall, a start time (ISO 8601 with a zone;
// a time without one means different moments to the server and to each
// viewer) and seats; the board shows those not yet started, by start time.
//
// Storage: this app's lesson is that the row in SQLite decides, not memory.
// Showtimes are not held and written through like grants and votes: the
// table is read again whenever the board is drawn (on a change, and every
// --schedule-interval to catch edits made outside), so a row changed with
// the sqlite3 tool shows up like one changed through the API. A row that
// does not make a showtime is left off the board and counted in /metrics.
//
// Left out on purpose: booking seats (an open issue), editing a showtime
// through the API (delete and add), time zones on the board (UTC; the page
// shows local time).
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

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
// days_from_civil: count whole 400-year eras, then years within the era
// starting in March, so the leap day falls at the end of the year).
inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// "2026-11-23T19:30:00+08:00", "2026-11-23T11:30Z", "…:00.5Z" → epoch ms.
// Strict: a 'T', a time zone (Z or ±HH:MM), real dates only. Nothing else
// is a showtime: a time without a zone means different moments to the
// server and to each viewer.
inline std::optional<int64_t> parse_iso8601(std::string_view s) {
  auto num = [&](size_t at, size_t len, int64_t* out) {
    if (at + len > s.size()) return false;
    int64_t v = 0;
    for (size_t i = at; i < at + len; i++) {
      if (s[i] < '0' || s[i] > '9') return false;
      v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
  };
  int64_t y, mo, d, h, mi, sec = 0, ms = 0;
  if (!num(0, 4, &y) || s.size() < 16 || s[4] != '-' || !num(5, 2, &mo) || s[7] != '-' || !num(8, 2, &d) ||
      s[10] != 'T' || !num(11, 2, &h) || s[13] != ':' || !num(14, 2, &mi))
    return std::nullopt;
  size_t at = 16;
  if (at < s.size() && s[at] == ':') {
    if (!num(at + 1, 2, &sec)) return std::nullopt;
    at += 3;
    if (at < s.size() && s[at] == '.') {  // fractions: milliseconds kept, the rest dropped
      size_t digits = 0;
      while (at + 1 + digits < s.size() && s[at + 1 + digits] >= '0' && s[at + 1 + digits] <= '9') {
        if (digits < 3) ms = ms * 10 + (s[at + 1 + digits] - '0');
        digits++;
      }
      if (digits == 0) return std::nullopt;
      for (size_t k = digits; k < 3; k++) ms *= 10;
      at += 1 + digits;
    }
  }
  int64_t offset_min = 0;
  if (at + 1 == s.size() && s[at] == 'Z') {
    at++;
  } else if (at + 6 == s.size() && (s[at] == '+' || s[at] == '-') && s[at + 3] == ':') {
    int64_t oh, om;
    if (!num(at + 1, 2, &oh) || !num(at + 4, 2, &om) || oh > 23 || om > 59) return std::nullopt;
    offset_min = (s[at] == '+' ? 1 : -1) * (oh * 60 + om);
    at += 6;
  } else {
    return std::nullopt;
  }
  static constexpr int64_t month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 || sec > 59)
    return std::nullopt;
  int64_t minutes = (days_from_civil(y, mo, d) * 24 + h) * 60 + mi - offset_min;
  return (minutes * 60 + sec) * 1000 + ms;
}

// Epoch ms → "2026-11-23T11:30:00Z", the one form stored and sent.
inline std::string iso_utc(int64_t epoch_ms) {
  std::string full = iso_time(epoch_ms - (epoch_ms % 1000 + 1000) % 1000);
  return full.substr(0, 19) + "Z";
}

// Which field of a new showtime is wrong, and why; nothing when all are fine.
inline std::optional<std::string> showtime_refusal(std::string_view movie, std::string_view hall, std::string_view starts_at,
                                                   int64_t now_ms) {
  if (movie.empty() || movie.size() > MAX_MOVIE_BYTES || !valid_text(movie)) return "movie must be 1 to 100 bytes of UTF-8 text";
  if (hall.empty() || hall.size() > MAX_HALL_BYTES || !valid_text(hall)) return "hall must be 1 to 50 bytes of UTF-8 text";
  std::optional<int64_t> t = parse_iso8601(starts_at);
  if (!t) return "starts_at must be an ISO 8601 time with a zone, like 2026-11-23T19:30:00+08:00";
  if (*t <= now_ms) return "starts_at is in the past";
  return std::nullopt;
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
           store.prepare(&select_showtimes_, "SELECT id, movie, hall, starts_at, seats_total, seats_left FROM showtimes");
  }
  const std::string& error() const { return error_.empty() ? store_->error() : error_; }

  // Every row of the table that makes a showtime; *invalid counts the rest
  // (a start time that is not ISO 8601 with a zone, empty text, bad seats).
  bool load(std::vector<Showtime>* out, int* invalid) {
    out->clear();
    *invalid = 0;
    int rc;
    while ((rc = sqlite3_step(select_showtimes_)) == SQLITE_ROW) {
      auto text = [&](int col) {  // all of it: a NUL inside must not cut it short (valid_text refuses it)
        const unsigned char* t = sqlite3_column_text(select_showtimes_, col);
        return t ? std::string(reinterpret_cast<const char*>(t), size_t(sqlite3_column_bytes(select_showtimes_, col))) : std::string();
      };
      Showtime st{sqlite3_column_int64(select_showtimes_, 0), text(1), text(2), 0, sqlite3_column_int64(select_showtimes_, 4),
                  sqlite3_column_int64(select_showtimes_, 5)};
      std::optional<int64_t> starts = parse_iso8601(text(3));
      bool ok = starts && !st.movie.empty() && valid_text(st.movie) && !st.hall.empty() && valid_text(st.hall) &&
                st.seats_total >= 0 && st.seats_left >= 0 && st.seats_left <= st.seats_total;
      if (!ok) {
        ++*invalid;
        continue;
      }
      st.starts_ms = *starts;
      out->push_back(std::move(st));
    }
    sqlite3_reset(select_showtimes_);
    return rc == SQLITE_DONE || fail("reading showtimes");
  }

  // A new showtime with every seat free; *id gets its row id.
  bool insert(const Showtime& st, int64_t* id) {
    std::string starts = iso_utc(st.starts_ms);
    sqlite3_bind_text(insert_showtime_, 1, st.movie.data(), int(st.movie.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_showtime_, 2, st.hall.data(), int(st.hall.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_showtime_, 3, starts.data(), int(starts.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert_showtime_, 4, st.seats_total);
    sqlite3_bind_int64(insert_showtime_, 5, st.seats_left);
    if (!store_->write(insert_showtime_)) return false;
    *id = store_->last_rowid();
    return true;
  }

  // Deletes showtime `id`; *found says whether there was one.
  bool erase(int64_t id, bool* found) {
    sqlite3_bind_int64(delete_showtime_, 1, id);
    if (!store_->write(delete_showtime_)) return false;
    *found = store_->changes() > 0;
    return true;
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
  )sql";
  bool fail(const char* what) {
    error_ = std::string(what) + ": " + store_->error();
    return false;
  }
  Store* store_ = nullptr;
  sqlite3_stmt* insert_showtime_ = nullptr;
  sqlite3_stmt* delete_showtime_ = nullptr;
  sqlite3_stmt* select_showtimes_ = nullptr;
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

  // POST /cinema/showtimes (admin)
  Answer add(const Request& req) {
    Showtime st;
    std::string starts_at;
    for (auto [key, value] : {std::pair{"movie", &st.movie}, {"hall", &st.hall}, {"starts_at", &starts_at}}) {
      if (auto no = req.form(key, value)) return *no;
      // "Hero " and "Hero" must be one movie on the board: no edge spaces.
      value->erase(0, value->find_first_not_of(' '));
      value->erase(value->find_last_not_of(' ') + 1);
    }
    if (auto why = showtime_refusal(st.movie, st.hall, starts_at, req.wall_ms)) return refusal(400, *why);
    if (auto no = req.whole_number("seats", 1, MAX_SEATS, &st.seats_total)) return *no;
    st.seats_left = st.seats_total;
    st.starts_ms = *parse_iso8601(starts_at);
    if (!storage.insert(st, &st.id)) return log_app("store: write refused: " + storage.error()), store_refused();
    std::string j = "{\"ok\":true,\"showtime\":";
    showtime_json(j, st);
    Answer a = json_answer(201, j + "}", "Location: /cinema/showtimes/" + std::to_string(st.id) + "\r\n");
    a.changed = true;  // undone by the database's rollback, should the commit fail
    return a;
  }

  // DELETE /cinema/showtimes/{id} (admin)
  Answer erase(const Request& req) {
    std::string_view digits = req.http.path.substr(req.http.path.rfind('/') + 1);
    bool numeric = !digits.empty() && digits.size() <= 18 && digits.find_first_not_of("0123456789") == std::string_view::npos;
    if (!numeric) return refusal(404, "no showtime there: a showtime's id is a whole number");
    int64_t id = std::stoll(std::string(digits));  // "0007" is 7, and is answered as 7
    bool found = false;
    if (!storage.erase(id, &found)) return log_app("store: write refused: " + storage.error()), store_refused();
    if (!found) return refusal(404, "no showtime " + std::to_string(id));
    Answer a = json_answer(200, "{\"ok\":true,\"deleted\":" + std::to_string(id) + "}");
    a.changed = true;
    return a;
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
          {"/cinema/showtimes/", "DELETE", [this](const Request& r) { return erase(r); }, ADMIN_ONLY}};  // a prefix: /{id}
    };
    app.metrics = {{"sse_showtime_rows_invalid", "gauge", "Rows of the showtimes table the last re-read left off the board.",
                    [this] { return double(rows_invalid); }}};
    return app;
  }
};

// The server's one instance (tests make their own).
inline AppSpec cinema_app() { static CinemaApp app; return app.spec(); }
