// apps/cinema/tables.hpp — the cinema's tables in SQLite (a row per
// showtime, as anyone may edit it with the sqlite3 tool, and a row per
// booking), and the statements the SQLite mode (in_sqlite.hpp) runs on them.
#pragma once
#include "../../engine/store.hpp"
#include "rules.hpp"

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
