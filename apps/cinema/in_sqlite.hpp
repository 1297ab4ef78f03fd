// apps/cinema/in_sqlite.hpp — the cinema board in one process, stored in
// SQLite (the default mode), on the tables of tables.hpp. This app's lesson
// is that the row in SQLite decides, not memory. Nothing is held and written
// through like grants and votes: the table is read again whenever the board
// is drawn (on a change, and every --schedule-interval to catch edits made
// outside), so a row changed with the sqlite3 tool shows up like one changed
// through the API. A booking is decided by one conditional UPDATE
// (seats_left >= n) inside the turn's transaction, which holds the write
// lock from before the reads that decide it: no two bookings, and no edit
// from outside, can sell a seat twice. A refusal takes no lock at all (see
// book). A row that does not make a showtime is left off the board, counted
// in /metrics, and not booked.
#pragma once
#include "tables.hpp"

class CinemaInSqlite : public CinemaMode {
 public:
  CinemaStorage storage;

  explicit CinemaInSqlite(CinemaCounts* counts) : counts_(counts) {}

  // The tables and statements; a new schedule table gets the sample
  // schedule. 0, or the exit status with *why (see App::open).
  int open(Store& s, int64_t wall_ms, std::string* why) {
    store_ = &s;
    bool is_new = false;
    if (!storage.open(s, &is_new) || (is_new && (!seed(wall_ms) || !s.commit()))) return *why = storage.error(), 1;
    return 0;
  }

  Answer list(const Request& req) override {
    if (store_->turn_wrote()) return wait_for_commit();  // a read now would see this turn's changes
    std::vector<Showtime> rows;
    int invalid = 0;
    if (!storage.load(&rows, &invalid)) return read_refused();
    return board_answer(std::move(rows), req.wall_ms);
  }

  Answer add(const Request&, Showtime st) override {
    if (!storage.insert(st, &st.id)) return write_refused();
    return as_change(added(st));  // undone by the database's rollback, should the commit fail
  }

  // A row whose seat counts are not whole numbers (typed by hand) is not
  // edited: there is nothing to count from.
  Answer edit(const Request&, const Edit& e) override {
    bool fresh = !store_->turn_wrote(), changed = false;
    Showtime st;
    CinemaStorage::Row row;
    if (!storage.edit(e.id, e.text, e.seats, &changed)) return write_refused();
    if (!storage.find(e.id, &st, &row)) return read_refused();
    if (changed) return as_change(edit_answer(e.id, {EditOutcome::Edited, row == CinemaStorage::Row::Valid ? std::optional(st) : std::nullopt}));
    if (!fresh) return wait_for_commit();  // what was read may be this turn's, not stored yet
    if (row == CinemaStorage::Row::Missing) return edit_answer(e.id, {EditOutcome::Missing});
    if (st.seats_total < 0 || st.seats_left < 0) return edit_answer(e.id, {EditOutcome::SeatsNotWhole});
    return edit_answer(e.id, {EditOutcome::BelowSold, {}, st.seats_total - st.seats_left});
  }

  Answer erase(const Request&, int64_t id) override {
    bool fresh = !store_->turn_wrote(), found = false;
    if (!storage.erase(id, &found)) return write_refused();
    if (!found) return fresh ? erase_answer(id, false) : wait_for_commit();  // it may be this turn's delete, not stored yet
    return as_change(erase_answer(id, true));
  }

  // A refusal changes nothing, so it takes no lock: read from what is
  // stored (nothing has been written this turn) it is answered at once,
  // and a crowd on a sold-out showtime costs two reads a request. Read
  // after this turn's writes, a refusal waits for the commit (what it read
  // may be undone). A booking takes the turn's write lock first and reads
  // again, so what it decides on is what the conditional UPDATE finds: no
  // other process writes in between.
  Answer book(const Request& req, int64_t id, const std::string& user, int64_t seats) override {
    bool fresh = !store_->turn_wrote(), locked = store_->holding();
    std::optional<NoBooking> no;
    int64_t left = 0;
    if (!booking_check(id, user, seats, req.wall_ms, &no, &left)) return read_refused();
    if (no) return fresh ? booking_answer({no}, id, seats, *counts_) : wait_for_commit();
    if (!locked) {  // the lock, then the same reads: another process may have written since
      if (!store_->hold()) return write_refused();
      if (!booking_check(id, user, seats, req.wall_ms, &no, &left)) return read_refused();
      if (no) return booking_answer({no}, id, seats, *counts_);  // nothing of this turn is written yet
    }
    bool taken = false;
    int64_t booking = 0;
    if (!storage.book(id, user, seats, req.wall_ms, &taken, &booking)) return write_refused();
    if (!taken)  // not after that read, under the lock
      return fresh ? booking_answer({NoBooking{SOLD_OUT, left}}, id, seats, *counts_) : wait_for_commit();
    // The rows go with the rollback; the count with undo.
    return as_change(booking_answer({std::nullopt, booking, left - seats}, id, seats, *counts_), [this] { counts_->booked--; });
  }

  Answer mine(const Request& req, std::string_view user) override {
    if (store_->turn_wrote()) return wait_for_commit();  // a read now would see this turn's changes
    std::vector<Booking> list;
    if (!storage.bookings(user, &list)) return read_refused();
    return bookings_answer(std::move(list), req.wall_ms);
  }

  void snapshot(StreamSpec* s) override { s->render = std::bind_front(&CinemaInSqlite::render, this); }

 private:
  Store* store_ = nullptr;
  CinemaCounts* counts_;
  std::string board_;  // the last board drawn: kept when a re-read fails

  // The board, read from the database now. If the read fails (another
  // process holding a lock), the board stays as it was and the next
  // re-read tries again.
  std::string render(int64_t wall_ms) {
    std::vector<Showtime> rows;
    if (!storage.load(&rows, &counts_->rows_invalid)) log_app("cinema: cannot read the schedule: " + storage.error());
    else board_ = schedule_json(std::move(rows), wall_ms);
    return board_;
  }

  Answer write_refused() { return ::write_refused(*store_, storage.error()); }
  static Answer read_refused() { return refusal(503, "the schedule cannot be read right now", "Retry-After: 1\r\n"); }

  // Why showtime `id` cannot be booked now for `user`, read from the
  // database, in the order the checks are made; nothing when it can.
  // *left: the seats left, as read.
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

  // The sample schedule, for a new schedule table.
  bool seed(int64_t wall_ms) {
    int64_t id = 0;
    for (const Showtime& st : sample_schedule(wall_ms))
      if (!storage.insert(st, &id)) return false;
    return true;
  }
};
