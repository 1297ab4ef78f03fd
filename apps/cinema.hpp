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
// transaction, which holds the write lock from before the reads that decide
// it: no two bookings, and no edit from outside, can sell a seat twice. A
// refusal takes no lock at all (see book). A row that does not make a
// showtime is left off the board, counted in /metrics, and not booked.
//
// With --redis the schedule, the seats and the bookings live in Redis
// instead (its own chapter below), so every process in front of it sells
// the same seats; the same lesson holds there: the hash in Redis decides,
// and an edit made with redis-cli shows up like one made through the API.
//
// Left out on purpose: cancelling a booking, choosing seats (a booking is a
// count), time zones on the board (UTC; the page shows local time). A
// deleted showtime's bookings stay in the table, off every list; its id is
// never given again (AUTOINCREMENT), so no new showtime inherits them.
#pragma once
#include <algorithm>
#include <chrono>

#include "../engine/app.hpp"
#include "../engine/redis.hpp"

// ---- Rules ----------------------------------------------------------------------------

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
// Strict: a 'T', a time zone (Z or ±HH:MM), real dates only. A time
// without a zone means different moments to the server and to each viewer.
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

// True when a showtime read back from storage (the database, Redis, or
// what someone typed into either) can go on the board: text a page can
// show, seat counts that add up. Its start time is checked where it is read.
inline bool showtime_valid(const Showtime& st) {
  return !st.movie.empty() && valid_text(st.movie) && !st.hall.empty() && valid_text(st.hall) && st.seats_total >= 0 &&
         st.seats_left >= 0 && st.seats_left <= st.seats_total;
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

// A dozen showtimes over the next days: the sample schedule of a first start.
inline std::vector<Showtime> sample_schedule(int64_t wall_ms) {
  static constexpr std::pair<const char*, const char*> films[] = {
      {"Spirited Away", "Hall 1"}, {"The Wandering Earth", "IMAX"}, {"In the Mood for Love", "Hall 2"}, {"Hero", "Hall 3"}};
  int64_t hour_ms = 3600 * 1000, day_ms = 24 * hour_ms, today = wall_ms - wall_ms % day_ms;
  std::vector<Showtime> out;
  for (int day = 1; day <= 3; day++)
    for (int k = 0; k < 4; k++) {
      Showtime st{0, films[k].first, films[k].second, today + day * day_ms + (10 + 3 * k) * hour_ms + (k % 2) * 30 * 60000,
                  k == 1 ? 320 : 120, 0};
      st.seats_left = st.seats_total - (day * 37 + k * 23) % st.seats_total;
      out.push_back(st);
    }
  return out;
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
    std::string showtimes = "CREATE TABLE IF NOT EXISTS showtimes " + std::string(SHOWTIMES_COLUMNS);
    return store.exec(showtimes.c_str()) && store.exec(SCHEMA) && ids_never_reused() &&
           store.prepare(&insert_showtime_, "INSERT INTO showtimes (movie, hall, starts_at, seats_total, seats_left) VALUES (?, ?, ?, ?, ?)") &&
           store.prepare(&delete_showtime_, "DELETE FROM showtimes WHERE id = ?") &&
           store.prepare(&select_showtimes_, "SELECT id, movie, hall, starts_at, seats_total, seats_left FROM showtimes") &&
           store.prepare(&select_showtime_, "SELECT id, movie, hall, starts_at, seats_total, seats_left FROM showtimes WHERE id = ?") &&
           // NULL leaves a field as it is; seats (the total) moves seats_left by as much, never below the seats sold.
           // Seat counts someone typed as text ('sold out') are no numbers to count with: such a row is left as it is.
           store.prepare(&edit_showtime_, "UPDATE showtimes SET movie = coalesce(?2, movie), hall = coalesce(?3, hall), "
                                          "starts_at = coalesce(?4, starts_at), seats_total = coalesce(?5, seats_total), "
                                          "seats_left = seats_left + coalesce(?5 - seats_total, 0) "
                                          "WHERE id = ?1 AND typeof(seats_total) = 'integer' AND typeof(seats_left) = 'integer' "
                                          "AND coalesce(?5 >= seats_total - seats_left, 1)") &&
           store.prepare(&take_seats_, "UPDATE showtimes SET seats_left = seats_left - ?2 "
                                       "WHERE id = ?1 AND typeof(seats_total) = 'integer' AND typeof(seats_left) = 'integer' "
                                       "AND seats_left >= ?2") &&
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

  // Showtime `id` into *st, and whether there is a row and it makes a
  // showtime (*row). Seat counts that are not whole numbers read as -1.
  enum class Row { Missing, Invalid, Valid };
  bool find(int64_t id, Showtime* st, Row* row) {
    sqlite3_bind_int64(select_showtime_, 1, id);
    int rc = sqlite3_step(select_showtime_);
    *row = rc != SQLITE_ROW ? Row::Missing : read_showtime(select_showtime_, 0, st) ? Row::Valid : Row::Invalid;
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
  // is no showtime `id`, its seat counts are not whole numbers, or `seats`
  // is below the seats it has sold.
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
  // left and its seat counts are whole numbers (*taken), and records who
  // took them (*booking: its id).
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
  // The showtimes table's columns, for the schema and for the rebuild of
  // a table made before its ids were AUTOINCREMENT (ids_never_reused).
  static constexpr const char* SHOWTIMES_COLUMNS = R"sql((
      id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after a delete
      movie       TEXT NOT NULL,
      hall        TEXT NOT NULL,
      starts_at   TEXT NOT NULL,     -- ISO 8601 with a zone; stored by the server as UTC, ...Z
      seats_total INTEGER NOT NULL,
      seats_left  INTEGER NOT NULL
    ))sql";
  static constexpr const char* SCHEMA = R"sql(
    CREATE TABLE IF NOT EXISTS bookings (
      id        INTEGER PRIMARY KEY,
      showtime  INTEGER NOT NULL,  -- showtimes.id
      user      TEXT NOT NULL,     -- the uid cookie, or the form's user
      seats     INTEGER NOT NULL,
      made_at   INTEGER NOT NULL   -- epoch ms
    );
    CREATE INDEX IF NOT EXISTS bookings_by_user ON bookings (user, showtime);
  )sql";
  static constexpr const char* REBUILD_SHOWTIMES = R"sql(
    INSERT INTO showtimes_rebuilt (id, movie, hall, starts_at, seats_total, seats_left)
      SELECT id, movie, hall, starts_at, seats_total, seats_left FROM showtimes;
    DROP TABLE showtimes;
    ALTER TABLE showtimes_rebuilt RENAME TO showtimes;
  )sql";

  // A showtime's id is never given twice: a new showtime would inherit the
  // bookings of the deleted one that had it (listed as the person's,
  // counted against their limit). New tables say AUTOINCREMENT; SQLite
  // then never hands out an id below the largest it ever gave, whatever
  // was deleted since, by the API or by hand. A table made before that is
  // rebuilt once, every row and id kept. And since bookings outlive their
  // showtime, the next id is also kept past every id a booking names.
  bool ids_never_reused() {
    Store::Query q = store_->query("SELECT sql LIKE '%AUTOINCREMENT%' FROM sqlite_master WHERE type = 'table' AND name = 'showtimes'");
    if (!q || sqlite3_step(q.get()) != SQLITE_ROW) return schema_failed("reading the schema");
    bool rebuild = sqlite3_column_int(q.get(), 0) == 0;
    q.reset();
    if (rebuild) {
      std::string sql = "BEGIN IMMEDIATE; CREATE TABLE showtimes_rebuilt " + std::string(SHOWTIMES_COLUMNS) + ";" + REBUILD_SHOWTIMES + "COMMIT;";
      if (!store_->exec(sql.c_str())) return schema_failed("rebuilding showtimes with AUTOINCREMENT ids");
    }
    q = store_->query("SELECT (SELECT coalesce(max(showtime), 0) FROM bookings), (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'showtimes')");
    if (!q || sqlite3_step(q.get()) != SQLITE_ROW) return schema_failed("reading the next showtime id");
    int64_t booked = sqlite3_column_int64(q.get(), 0), given = sqlite3_column_int64(q.get(), 1);
    q.reset();
    if (booked <= given) return true;
    std::string sql = "DELETE FROM sqlite_sequence WHERE name = 'showtimes'; INSERT INTO sqlite_sequence (name, seq) VALUES ('showtimes', " +
                      std::to_string(booked) + ")";
    return store_->exec(sql.c_str()) || schema_failed("keeping showtime ids past the bookings'");
  }

  // Columns from `col` on: id, movie, hall, starts_at, seats_total,
  // seats_left. False when they do not make a showtime. A seat count that
  // is not an integer (text typed by hand: SQLite would read 'sold out' as
  // 0) reads as -1, which no showtime has.
  static bool read_showtime(sqlite3_stmt* s, int col, Showtime* st) {
    auto text = [&](int i) {  // all of it: a NUL inside must not cut it short (valid_text refuses it)
      const unsigned char* t = sqlite3_column_text(s, col + i);
      return t ? std::string(reinterpret_cast<const char*>(t), size_t(sqlite3_column_bytes(s, col + i))) : std::string();
    };
    auto count = [&](int i) { return sqlite3_column_type(s, col + i) == SQLITE_INTEGER ? sqlite3_column_int64(s, col + i) : -1; };
    *st = Showtime{sqlite3_column_int64(s, col), text(1), text(2), 0, count(4), count(5)};
    std::optional<int64_t> starts = parse_iso8601(text(3));
    st->starts_ms = starts.value_or(0);
    return starts && showtime_valid(*st);
  }
  static void bind_text(sqlite3_stmt* s, int i, std::string_view t) { sqlite3_bind_text(s, i, t.data(), int(t.size()), SQLITE_STATIC); }
  bool fail(const char* what) {
    error_ = std::string(what) + ": " + sqlite3_errmsg(sqlite3_db_handle(select_showtimes_));
    return false;
  }
  bool schema_failed(const char* what) {  // before the statements are prepared: the store's error says why
    error_ = std::string(what) + ": " + store_->error();
    return false;
  }
  Store* store_ = nullptr;
  sqlite3_stmt *insert_showtime_ = nullptr, *delete_showtime_ = nullptr, *select_showtimes_ = nullptr, *select_showtime_ = nullptr,
               *edit_showtime_ = nullptr, *take_seats_ = nullptr, *insert_booking_ = nullptr, *seats_held_ = nullptr,
               *select_bookings_ = nullptr;
  std::string error_;
};

// ---- Storage in Redis (--redis) --------------------------------------------------------
//
// Keys, all under sse:cinema: (text throughout, as redis-cli shows it):
//   showtime:<id>   a hash per showtime: movie, hall, starts_at (ISO 8601
//                   with a zone; the server writes its UTC form), seats_total,
//                   seats_left: the row of the SQLite mode
//   showtimes       the set of ids on the schedule
//   ids             the last showtime id given (INCR)
//   booking:<id>    a hash per booking: showtime, user, seats, made_at (epoch ms)
//   booking_ids     the last booking id given (INCR)
//   user:<user>     the list of a user's booking ids, oldest first
//   held:<user>     a hash: showtime id -> seats the user holds of it
//   version         the stream's version: the event id on every process
//   digest          "<version> <sha1>" of the state last read (see the state)
// Each write is one Lua script that decides and applies atomically however
// many processes send bookings; it bumps the version and publishes "cinema
// <version>" on sse:changed. Shortcut: the scripts name keys they build
// themselves, as a single Redis allows (a Redis Cluster would not).
//
// An edit made with redis-cli bumps no version, and nor does a showtime
// starting. So the state script, which every process runs on a change and
// every --schedule-interval, takes a digest of everything the board depends
// on (each hash, and which showtimes have started by Redis's own clock);
// when the digest stored for the current version differs, the state
// changed under it, and the script makes it a new version there and then.
// One version, one board, on every process.

// The start of an ISO 8601 time with a zone, read as parse_iso8601 reads
// it (epoch ms), or nil: the scripts that need to know whether a showtime
// has started begin with it. Lua's numbers are doubles: exact to 2^53 ms.
inline constexpr const char* CINEMA_TIME_LUA = R"lua(
local function starts_ms(s)
  if type(s) ~= 'string' then return nil end
  local y, mo, d, h, mi, rest = string.match(s, '^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d)(.*)$')
  if not y then return nil end
  local sec, ms, off = 0, 0, 0
  local ss, after_ss = string.match(rest, '^:(%d%d)(.*)$')
  if ss then
    sec, rest = tonumber(ss), after_ss
    local frac, after_frac = string.match(rest, '^%.(%d+)(.*)$')
    if frac then ms, rest = tonumber(string.sub(frac .. '00', 1, 3)), after_frac end
  end
  if rest ~= 'Z' then
    local sign, oh, om = string.match(rest, '^([+-])(%d%d):(%d%d)$')
    if not sign or tonumber(oh) > 23 or tonumber(om) > 59 then return nil end
    off = (sign == '+' and 1 or -1) * (tonumber(oh) * 60 + tonumber(om))
  end
  y, mo, d, h, mi = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi)
  local month_days = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
  local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
  if mo < 1 or mo > 12 or d < 1 or h > 23 or mi > 59 or sec > 59 then return nil end
  if d > month_days[mo] + ((mo == 2 and leap) and 1 or 0) then return nil end
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (mo > 2 and mo - 3 or mo + 9) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  return ((days * 24 + h) * 60 + mi - off) * 60000 + sec * 1000 + ms
end
)lua";

// The stream's state: {version, Redis's time in epoch ms, then per showtime
// its id, movie, hall, starts_at, seats_total, seats_left} (a missing field
// is nil). Takes the digest described above; bumps the version when the
// state changed under the same version (or there is none yet).
inline const std::string CINEMA_STATE_LUA = std::string(CINEMA_TIME_LUA) + R"lua(
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ids = redis.call('SMEMBERS', 'sse:cinema:showtimes')
table.sort(ids)
local out, parts = {0, now}, {}
local function part(v) parts[#parts + 1] = v and (#v .. ':' .. v) or '-' end
for _, id in ipairs(ids) do
  local key = 'sse:cinema:showtime:' .. id
  if redis.call('EXISTS', key) == 1 then
    local f = redis.call('HMGET', key, 'movie', 'hall', 'starts_at', 'seats_total', 'seats_left')
    out[#out + 1] = id
    part(id)
    for i = 1, 5 do out[#out + 1] = f[i]; part(f[i]) end
    local starts = starts_ms(f[3])
    part((starts and starts <= now) and 'started' or 'upcoming')
  end
end
local digest = redis.sha1hex(table.concat(parts, '\n'))
local version = redis.call('GET', 'sse:cinema:version') or '0'
local stored = redis.call('GET', 'sse:cinema:digest')
if stored ~= version .. ' ' .. digest then
  if version == '0' or (stored and string.sub(stored, 1, #version + 1) == version .. ' ') then
    version = tostring(redis.call('INCR', 'sse:cinema:version'))
    redis.call('PUBLISH', 'sse:changed', 'cinema ' .. version)
  end
  redis.call('SET', 'sse:cinema:digest', version .. ' ' .. digest)
end
out[1] = tonumber(version)
return out
)lua";

// New showtimes: ARGV "first" to make them only if Redis has no schedule
// yet (every process starting up asks), else ""; then five per showtime:
// movie, hall, starts_at, seats_total, seats_left. {the last id} or {0}.
inline constexpr const char* CINEMA_ADD_LUA = R"lua(
if ARGV[1] == 'first' and redis.call('EXISTS', 'sse:cinema:ids', 'sse:cinema:showtimes', 'sse:cinema:version') > 0 then return {0} end
local id, key = 0, ''
for i = 2, #ARGV, 5 do
  repeat  -- past an id someone took by hand with redis-cli
    id = redis.call('INCR', 'sse:cinema:ids')
    key = 'sse:cinema:showtime:' .. id
  until redis.call('EXISTS', key) == 0 and redis.call('SISMEMBER', 'sse:cinema:showtimes', id) == 0
  redis.call('HSET', key, 'movie', ARGV[i], 'hall', ARGV[i + 1], 'starts_at', ARGV[i + 2],
             'seats_total', ARGV[i + 3], 'seats_left', ARGV[i + 4])
  redis.call('SADD', 'sse:cinema:showtimes', id)
end
redis.call('PUBLISH', 'sse:changed', 'cinema ' .. redis.call('INCR', 'sse:cinema:version'))
return {id}
)lua";

// An edit: ARGV id, movie, hall, starts_at, seats (the total); "" leaves a
// field as it is. The seats move seats_left by as much, never below the
// seats sold: {409, sold}. {404}, or {200, id, movie, hall, starts_at,
// seats_total, seats_left} as they are now.
inline constexpr const char* CINEMA_EDIT_LUA = R"lua(
local key = 'sse:cinema:showtime:' .. ARGV[1]
if redis.call('SISMEMBER', 'sse:cinema:showtimes', ARGV[1]) == 0 or redis.call('EXISTS', key) == 0 then return {404} end
if ARGV[5] ~= '' then
  local f = redis.call('HMGET', key, 'seats_total', 'seats_left')
  local total, left, seats = tonumber(f[1] or '') or 0, tonumber(f[2] or '') or 0, tonumber(ARGV[5])
  if seats < total - left then return {409, total - left} end
  redis.call('HSET', key, 'seats_total', seats, 'seats_left', left + seats - total)
end
for i, name in ipairs({'movie', 'hall', 'starts_at'}) do
  if ARGV[i + 1] ~= '' then redis.call('HSET', key, name, ARGV[i + 1]) end
end
redis.call('PUBLISH', 'sse:changed', 'cinema ' .. redis.call('INCR', 'sse:cinema:version'))
local f = redis.call('HMGET', key, 'movie', 'hall', 'starts_at', 'seats_total', 'seats_left')
return {200, ARGV[1], f[1], f[2], f[3], f[4], f[5]}
)lua";

// A delete: ARGV id. {200}, or {404} when there was no such showtime. Its
// bookings stay, off every list.
inline constexpr const char* CINEMA_ERASE_LUA = R"lua(
local gone = redis.call('SREM', 'sse:cinema:showtimes', ARGV[1]) + redis.call('DEL', 'sse:cinema:showtime:' .. ARGV[1])
if gone == 0 then return {404} end
redis.call('PUBLISH', 'sse:changed', 'cinema ' .. redis.call('INCR', 'sse:cinema:version'))
return {200}
)lua";

// A turn's bookings (batched: see RedisScripts): ARGV four per booking —
// showtime id, user, seats, the seats one person may hold. Each is decided
// in turn as if it had come alone (the seats and what the person holds are
// read after the bookings before it); the clock is read once, and the
// version bumped and published once if any was made. Whether a showtime
// has started is Redis's clock's to say (TIME), the clock the board is
// drawn by: with processes on several machines, each server's own clock
// would let one sell seats the board no longer shows, or refuse seats it
// still shows. For each, in the SQLite mode's order of checks:
// {'no_showtime'}, {'started'}, {'per_person', held}, {'seats', left}, or
// {'booked', left, booking id}. Shortcut: a hash whose movie or hall is not
// UTF-8 text (off the board) can still be booked by its id: the script
// checks what decides a sale, the time and the seats, not the names.
inline const std::string CINEMA_BOOK_LUA = std::string(CINEMA_TIME_LUA) + R"lua(
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local function count(v) return v and #v <= 9 and string.match(v, '^%d+$') and tonumber(v) end
local function book(id, user, n, most)
  local key = 'sse:cinema:showtime:' .. id
  if redis.call('SISMEMBER', 'sse:cinema:showtimes', id) == 0 then return {'no_showtime'} end
  local f = redis.call('HMGET', key, 'movie', 'hall', 'starts_at', 'seats_total', 'seats_left')
  local starts, total, left = starts_ms(f[3]), count(f[4]), count(f[5])
  if not (f[1] and f[1] ~= '' and f[2] and f[2] ~= '' and starts and total and left and left <= total) then return {'no_showtime'} end
  if starts <= now then return {'started'} end
  local held = tonumber(redis.call('HGET', 'sse:cinema:held:' .. user, id) or '0')
  if held + n > most then return {'per_person', held} end
  if left < n then return {'seats', left} end
  redis.call('HINCRBY', key, 'seats_left', -n)
  local booking = redis.call('INCR', 'sse:cinema:booking_ids')
  redis.call('HSET', 'sse:cinema:booking:' .. booking, 'showtime', id, 'user', user, 'seats', n, 'made_at', string.format('%d', now))
  redis.call('RPUSH', 'sse:cinema:user:' .. user, booking)
  redis.call('HINCRBY', 'sse:cinema:held:' .. user, id, n)
  return {'booked', left - n, booking}
end
local out, booked = {}, false
for k = 1, #ARGV, 4 do
  local r = book(ARGV[k], ARGV[k + 1], tonumber(ARGV[k + 2]), tonumber(ARGV[k + 3]))
  out[#out + 1] = r
  booked = booked or r[1] == 'booked'
end
if booked then redis.call('PUBLISH', 'sse:changed', 'cinema ' .. redis.call('INCR', 'sse:cinema:version')) end
return out
)lua";

// `user`'s bookings of showtimes still on the schedule: Redis's time (epoch
// ms: which of them have started is its clock's to say, as for a booking),
// then six per booking: its id, seats, showtime id, movie, hall, starts_at.
inline constexpr const char* CINEMA_MINE_LUA = R"lua(
local t = redis.call('TIME')
local out = {t[1] * 1000 + math.floor(t[2] / 1000)}
for _, b in ipairs(redis.call('LRANGE', 'sse:cinema:user:' .. ARGV[1], 0, -1)) do
  local bk = redis.call('HMGET', 'sse:cinema:booking:' .. b, 'showtime', 'seats')
  if bk[1] and redis.call('SISMEMBER', 'sse:cinema:showtimes', bk[1]) == 1 then
    local s = redis.call('HMGET', 'sse:cinema:showtime:' .. bk[1], 'movie', 'hall', 'starts_at')
    for _, v in ipairs({b, bk[2] or '0', bk[1], s[1], s[2], s[3]}) do out[#out + 1] = v end
  end
end
return out
)lua";

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

// The state script's rows (from element 2 on): those that make a showtime;
// *invalid counts the rest.
inline std::vector<Showtime> showtimes_from_reply(const redisReply* r, int* invalid) {
  std::vector<Showtime> rows;
  *invalid = 0;
  Showtime st;
  for (size_t at = 2; at + 6 <= r->elements; at += 6)
    if (showtime_from_reply(r, at, &st)) rows.push_back(std::move(st));
    else ++*invalid;
  return rows;
}

// ---- Routes ---------------------------------------------------------------------------
//
// Each handler reads and checks its form, then asks the database (the
// SQLite mode) or runs one script (--redis, the section after these); both
// make their answer with the same helpers, so a client cannot tell them apart.

class CinemaApp : public App {
 public:
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
    if (redis) return list_in_redis(req);
    if (store->turn_wrote()) return wait_for_commit();  // a read now would see this turn's changes
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
  Answer write_refused() { return ::write_refused(*store, storage.error()); }
  static Answer read_refused() { return refusal(503, "the schedule cannot be read right now", "Retry-After: 1\r\n"); }
  static std::string showtime_answer(const Showtime& st) {
    std::string j = "{\"ok\":true,\"showtime\":";
    showtime_json(j, st);
    return j + "}";
  }
  static Answer added(const Showtime& st) {
    return json_answer(201, showtime_answer(st), "Location: /cinema/showtimes/" + std::to_string(st.id) + "\r\n");
  }
  static Answer no_showtime_there() { return refusal(404, "no showtime there: a showtime's id is a whole number"); }
  static Answer no_showtime(int64_t id) { return refusal(404, "no showtime " + std::to_string(id)); }
  static Answer deleted(int64_t id) { return json_answer(200, "{\"ok\":true,\"deleted\":" + std::to_string(id) + "}"); }

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
    if (redis) return add_in_redis(req, st);
    if (!storage.insert(st, &st.id)) return write_refused();
    Answer a = added(st);
    a.changed = true;  // undone by the database's rollback, should the commit fail
    return a;
  }

  // What a PATCH asks: the text fields given (movie, hall, starts_at in its
  // UTC form), and the seats (the total) if given.
  struct Edit {
    int64_t id = 0;
    std::optional<std::string> text[3];
    std::optional<int64_t> seats;
  };

  // Reads and checks a PATCH's path and form into *e; the refusal, or nothing.
  static std::optional<Answer> edit_form(const Request& req, Edit* e) {
    std::string_view rest;
    std::optional<int64_t> id = showtime_id(req.http.path, &rest);
    if (!id || !rest.empty()) return no_showtime_there();
    e->id = *id;
    static constexpr const char* KEYS[] = {"movie", "hall", "starts_at"};
    for (int i = 0; i < 3; i++) {
      std::string value;
      bool present = false;
      if (auto no = trimmed(req, KEYS[i], &value, &present)) return no;
      if (!present) continue;
      if (auto why = field_refusal(KEYS[i], value, req.wall_ms)) return refusal(400, *why);
      e->text[i] = i == 2 ? iso_utc(*parse_iso8601(value)) : value;
    }
    if (auto no = req.whole_number_if_sent("seats", 1, MAX_SEATS, &e->seats)) return no;
    if (!e->text[0] && !e->text[1] && !e->text[2] && !e->seats) return refusal(400, "nothing to change: send movie, hall, starts_at or seats");
    return std::nullopt;
  }
  // The edit made: the showtime as it is now (null: its row still makes no showtime).
  static Answer edited(const Showtime* st) { return json_answer(200, st ? showtime_answer(*st) : "{\"ok\":true,\"showtime\":null}"); }
  static Answer below_sold(int64_t id, int64_t sold) {
    return refusal(409, std::to_string(sold) + " seats of showtime " + std::to_string(id) + " are sold: seats cannot go below that");
  }
  static Answer seats_not_whole(int64_t id) {
    return refusal(409, "showtime " + std::to_string(id) + " has seat counts in the database that are not whole numbers: fix its row first");
  }

  // PATCH /cinema/showtimes/{id} (admin): any of movie, hall, starts_at and
  // seats (the total), each checked as when a showtime is added; the seats
  // never below those sold. A row whose seat counts are not whole numbers
  // (typed by hand) is not edited: there is nothing to count from.
  Answer edit(const Request& req) {
    Edit e;
    if (auto no = edit_form(req, &e)) return *no;
    if (redis) return edit_in_redis(req, e);
    bool fresh = !store->turn_wrote(), changed = false;
    Showtime st;
    CinemaStorage::Row row;
    if (!storage.edit(e.id, e.text, e.seats, &changed)) return write_refused();
    if (!storage.find(e.id, &st, &row)) return read_refused();
    if (changed) {
      Answer a = edited(row == CinemaStorage::Row::Valid ? &st : nullptr);
      a.changed = true;
      return a;
    }
    if (!fresh) return wait_for_commit();  // what was read may be this turn's, not stored yet
    if (row == CinemaStorage::Row::Missing) return no_showtime(e.id);
    if (st.seats_total < 0 || st.seats_left < 0) return seats_not_whole(e.id);
    return below_sold(e.id, st.seats_total - st.seats_left);
  }

  // DELETE /cinema/showtimes/{id} (admin)
  Answer erase(const Request& req) {
    std::string_view rest;
    std::optional<int64_t> id = showtime_id(req.http.path, &rest);
    if (!id || !rest.empty()) return no_showtime_there();
    if (redis) return erase_in_redis(req, *id);
    bool fresh = !store->turn_wrote(), found = false;
    if (!storage.erase(*id, &found)) return write_refused();
    if (!found) return fresh ? no_showtime(*id) : wait_for_commit();  // it may be this turn's delete, not stored yet
    Answer a = deleted(*id);
    a.changed = true;
    return a;
  }

  // Bookings made, and refused by reason, for /metrics.
  enum Refused { NO_SHOWTIME, STARTED, PER_PERSON, SOLD_OUT, REFUSED_KINDS };
  uint64_t booked = 0, refused[REFUSED_KINDS] = {};

  // A refused booking of showtime `id`, counted; `n` is the seats the person
  // holds (PER_PERSON) or the seats left (SOLD_OUT).
  Answer booking_refused(Refused why, int64_t id, int64_t n) {
    refused[why]++;
    std::string which = "showtime " + std::to_string(id), count = std::to_string(n);
    if (why == NO_SHOWTIME) return json_answer(404, "{\"ok\":false,\"message\":\"no " + which + "\"}");
    if (why == STARTED) return json_answer(410, "{\"ok\":false,\"message\":\"" + which + " has started\"}");
    if (why == PER_PERSON)
      return json_answer(409, "{\"ok\":false,\"message\":\"you hold " + count + " seats of " + which +
                                  "; one person may hold at most 10\",\"held\":" + count + "}");
    return json_answer(409, "{\"ok\":false,\"message\":\"" + (n == 0 ? which + " is sold out" : "only " + count + " seats left of " + which) +
                                "\",\"seats_left\":" + count + "}");
  }
  static std::string booked_json(int64_t booking, int64_t id, int64_t seats, int64_t left) {
    return "{\"ok\":true,\"booking\":" + std::to_string(booking) + ",\"showtime\":" + std::to_string(id) + ",\"seats\":" +
           std::to_string(seats) + ",\"seats_left\":" + std::to_string(left) + "}";
  }

  // Why showtime `id` cannot be booked now for `user`, read from the
  // database, in the order the checks are made; nothing when it can.
  // *left: the seats left, as read.
  struct NoBooking {
    Refused why;
    int64_t n;  // the seats the person holds (PER_PERSON) or the seats left (SOLD_OUT)
  };
  bool booking_check(int64_t id, std::string_view user, int64_t seats, int64_t now_ms, std::optional<NoBooking>* no, int64_t* left) {
    Showtime st;
    CinemaStorage::Row row;
    int64_t held = 0;
    if (!storage.find(id, &st, &row) || (row == CinemaStorage::Row::Valid && !storage.held(user, id, &held))) return false;
    if (row != CinemaStorage::Row::Valid) *no = NoBooking{NO_SHOWTIME, 0};
    else if (st.starts_ms <= now_ms) *no = NoBooking{STARTED, 0};
    else if (held + seats > MAX_SEATS_PER_PERSON) *no = NoBooking{PER_PERSON, held};
    else if (st.seats_left < seats) *no = NoBooking{SOLD_OUT, st.seats_left};
    else *no = std::nullopt;
    *left = st.seats_left;
    return true;
  }

  // POST /cinema/showtimes/{id}/book: `seats` (1 to 10, default 1) for the
  // user (form field `user`, else the uid cookie). A refusal changes
  // nothing, so it takes no lock: read from what is stored (nothing has
  // been written this turn) it is answered at once, and a crowd on a
  // sold-out showtime costs two reads a request. Read after this turn's
  // writes, a refusal waits for the commit (what it read may be undone). A
  // booking takes the turn's write lock first and reads again, so what it
  // decides on is what the conditional UPDATE finds: no other process
  // writes in between.
  Answer book(const Request& req) {
    std::string_view rest;
    std::optional<int64_t> id = showtime_id(req.http.path, &rest);
    if (!id || rest != "book") return refusal(404, "no such page: seats are booked at /cinema/showtimes/{id}/book");
    std::optional<int64_t> asked;
    std::string user;
    if (auto no = req.whole_number_if_sent("seats", 1, MAX_SEATS_PER_BOOKING, &asked)) return *no;
    if (auto no = req.identity("user", &user)) return *no;
    int64_t seats = asked.value_or(1);
    if (redis) return book_in_redis(req, *id, user, seats);
    bool fresh = !store->turn_wrote(), locked = store->holding();
    std::optional<NoBooking> no;
    int64_t left = 0;
    if (!booking_check(*id, user, seats, req.wall_ms, &no, &left)) return read_refused();
    if (no) return fresh ? booking_refused(no->why, *id, no->n) : wait_for_commit();
    if (!locked) {  // the lock, then the same reads: another process may have written since
      if (!store->hold()) return write_refused();
      if (!booking_check(*id, user, seats, req.wall_ms, &no, &left)) return read_refused();
      if (no) return booking_refused(no->why, *id, no->n);  // nothing of this turn is written yet
    }
    bool taken = false;
    int64_t booking = 0;
    if (!storage.book(*id, user, seats, req.wall_ms, &taken, &booking)) return write_refused();
    if (!taken) return fresh ? booking_refused(SOLD_OUT, *id, left) : wait_for_commit();  // not after that read, under the lock
    booked++;
    Answer a = json_answer(200, booked_json(booking, *id, seats, left - seats));
    a.changed = true;  // the rows go with the rollback; the count with undo
    a.undo = [this] { booked--; };
    return a;
  }

  // A person's bookings of showtimes not yet started, soonest first.
  static Answer bookings_answer(std::vector<Booking> list, int64_t now_ms) {
    std::erase_if(list, [&](const Booking& b) { return b.showtime.starts_ms <= now_ms; });
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

  // GET /cinema/bookings/me: this browser's bookings (its uid cookie only)
  // of showtimes not yet started, soonest first.
  Answer mine(const Request& req) {
    std::string_view user = req.uid();
    if (!valid_user(user)) return refusal(400, "no identity: load a page first for a uid cookie");
    if (redis) return mine_in_redis(req, user);
    if (store->turn_wrote()) return wait_for_commit();  // a read now would see this turn's changes
    std::vector<Booking> list;
    if (!storage.bookings(user, &list)) return read_refused();
    return bookings_answer(std::move(list), req.wall_ms);
  }

  // The sample schedule, for a new schedule table.
  bool seed(int64_t wall_ms) {
    int64_t id = 0;
    for (const Showtime& st : sample_schedule(wall_ms))
      if (!storage.insert(st, &id)) return false;
    return true;
  }

  // ---- In Redis (--redis) ---------------------------------------------------------------
  //
  // The same routes, each one script call whose reply makes the answer.

  Redis* redis = nullptr;
  RedisScripts scripts;
  size_t state_lua = scripts.add(CINEMA_STATE_LUA.c_str()), add_lua = scripts.add(CINEMA_ADD_LUA),
         edit_lua = scripts.add(CINEMA_EDIT_LUA), erase_lua = scripts.add(CINEMA_ERASE_LUA),
         book_lua = scripts.add(CINEMA_BOOK_LUA.c_str(), 4), mine_lua = scripts.add(CINEMA_MINE_LUA);

  // Showtime fields as the scripts take them: movie, hall, starts_at, seats_total, seats_left.
  static std::vector<std::string> script_fields(const Showtime& st) {
    return {st.movie, st.hall, iso_utc(st.starts_ms), std::to_string(st.seats_total), std::to_string(st.seats_left)};
  }
  static std::vector<std::string_view> views(const std::vector<std::string>& args) { return {args.begin(), args.end()}; }

  Answer list_in_redis(const Request& req) {
    return redis_answer(req, scripts, state_lua, {}, [](const redisReply* r) {
      int invalid = 0;
      return json_answer(200, schedule_json(showtimes_from_reply(r, &invalid), reply_number(r, 1)));
    });
  }

  Answer add_in_redis(const Request& req, Showtime st) {
    std::vector<std::string> args = script_fields(st);
    args.insert(args.begin(), "");
    return redis_answer(req, scripts, add_lua, views(args), [st](const redisReply* r) mutable {
      st.id = reply_number(r, 0);
      return added(st);
    });
  }

  Answer edit_in_redis(const Request& req, const Edit& e) {
    std::vector<std::string> args = {std::to_string(e.id), e.text[0].value_or(""), e.text[1].value_or(""), e.text[2].value_or(""),
                                     e.seats ? std::to_string(*e.seats) : ""};
    return redis_answer(req, scripts, edit_lua, views(args), [id = e.id](const redisReply* r) {
      int64_t status = reply_number(r, 0);
      if (status == 404) return no_showtime(id);
      if (status == 409) return below_sold(id, reply_number(r, 1));
      if (status != 200) return redis_unclear();
      Showtime st;
      return edited(showtime_from_reply(r, 1, &st) ? &st : nullptr);
    });
  }

  Answer erase_in_redis(const Request& req, int64_t id) {
    std::string sid = std::to_string(id);
    return redis_answer(req, scripts, erase_lua, {sid}, [id](const redisReply* r) { return reply_number(r, 0) == 200 ? deleted(id) : no_showtime(id); });
  }

  Answer book_in_redis(const Request& req, int64_t id, const std::string& user, int64_t seats) {
    std::vector<std::string> args = {std::to_string(id), user, std::to_string(seats), std::to_string(MAX_SEATS_PER_PERSON)};
    return redis_answer(req, scripts, book_lua, views(args), [this, id, seats](const redisReply* r) {
      std::string_view outcome = reply_text(r, 0);
      int64_t n = reply_number(r, 1);
      if (outcome == "booked") {
        booked++;
        return json_answer(200, booked_json(reply_number(r, 2), id, seats, n));
      }
      if (outcome == "no_showtime") return booking_refused(NO_SHOWTIME, id, 0);
      if (outcome == "started") return booking_refused(STARTED, id, 0);
      if (outcome == "per_person") return booking_refused(PER_PERSON, id, n);
      if (outcome == "seats") return booking_refused(SOLD_OUT, id, n);
      return redis_unclear();
    });
  }

  Answer mine_in_redis(const Request& req, std::string_view user) {
    return redis_answer(req, scripts, mine_lua, {user}, [](const redisReply* r) {
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
      return bookings_answer(std::move(list), reply_number(r, 0));
    });
  }

  // The stream's state, read from Redis (the script also notices edits
  // made there by hand: see its chapter).
  void fetch(SnapshotDone done) {
    auto got = [this, done](const redisReply* r) {
      if (!r || reply_number(r, 0) <= 0) return done(nullptr);
      Snapshot s{schedule_json(showtimes_from_reply(r, &rows_invalid), reply_number(r, 1)), uint64_t(reply_number(r, 0))};
      done(&s);
    };
    if (!scripts.call(state_lua, {}, got)) done(nullptr);
  }

  // On every connect: the scripts, then the sample schedule if Redis has none.
  void redis_connected() override {
    scripts.load(*redis);
    auto now = std::chrono::system_clock::now().time_since_epoch();
    std::vector<std::string> args = {"EVAL", CINEMA_ADD_LUA, "0", "first"};
    for (const Showtime& st : sample_schedule(std::chrono::duration_cast<std::chrono::milliseconds>(now).count()))
      for (std::string& field : script_fields(st)) args.push_back(std::move(field));
    redis->command(views(args), nullptr);
  }

  // ---- Descriptor ---------------------------------------------------------------------

  int open(Store& s, int64_t wall_ms, std::string* why) override {
    store = &s;
    bool is_new = false;
    if (!storage.open(s, &is_new) || (is_new && (!seed(wall_ms) || !s.commit()))) return *why = storage.error(), 1;
    return 0;
  }

  const char* name() const override { return "cinema"; }
  FlagGroup flags() override {
    return {"the cinema board",
            {{"--schedule-interval", FlagKind::Seconds, &reread_ms, 0.001, 86400, "seconds between re-reads of the cinema schedule"}}};
  }
  std::vector<StreamSpec> streams() override {
    return {{.paths = {"/events", "/cinema/events"},
             .name = "cinema",
             .period_ms = reread_ms,
             .render = std::bind_front(&CinemaApp::render, this),
             .repeat = false,  // a re-read that finds the board unchanged sends nothing
             .fetch = std::bind_front(&CinemaApp::fetch, this)}};
  }
  bool has_redis_mode() const override { return true; }
  int open_redis(Redis& r, std::string*) override {
    redis = &r;
    return 0;
  }
  std::vector<RouteSpec> routes() override {
    return {{.path = "/cinema/showtimes", .methods = "GET, HEAD", .handler = std::bind_front(&CinemaApp::list, this)},
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
         [this] { return double(rows_invalid); }},
        {"sse_cinema_bookings_total", "counter", "Bookings made (seats taken and stored).", [this] { return double(booked); }}};
    for (auto [reason, label] : {std::pair{NO_SHOWTIME, "reason=\"no_showtime\""}, {STARTED, "reason=\"started\""},
                                 {PER_PERSON, "reason=\"per_person_limit\""}, {SOLD_OUT, "reason=\"seats\""}}) {
      Refused kind = reason;  // a copy to capture (clang 14 cannot capture a structured binding)
      out.push_back({"sse_cinema_bookings_refused_total", "counter", refused_help, [this, kind] { return double(refused[kind]); }, label});
    }
    return out;
  }
};

// The server's one instance (tests make their own).
inline App& cinema_app() { static CinemaApp app; return app; }
