// apps/cinema/rules.hpp — the rules of the cinema board, and the answers
// both modes give. Pure: no storage, no Redis. Both modes (in_sqlite.hpp,
// in_redis.hpp) find what a request did as the typed replies here and
// answer each with its one function, so they send the same bytes by
// construction. The end of the file is what each mode must do (CinemaMode).
#pragma once
#include <algorithm>

#include "../../engine/app.hpp"

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

struct Booking {
  int64_t id = 0, seats = 0;
  Showtime showtime;  // its seat counts are not read
};

// ---- The answers both modes give ------------------------------------------------------

inline Answer board_answer(std::vector<Showtime> rows, int64_t now_ms) { return json_answer(200, schedule_json(std::move(rows), now_ms)); }
inline std::string showtime_answer(const Showtime& st) {
  std::string j = "{\"ok\":true,\"showtime\":";
  showtime_json(j, st);
  return j + "}";
}
inline Answer added(const Showtime& st) {
  return json_answer(201, showtime_answer(st), "Location: /cinema/showtimes/" + std::to_string(st.id) + "\r\n");
}
inline Answer no_showtime(int64_t id) { return refusal(404, "no showtime " + std::to_string(id)); }
inline Answer erase_answer(int64_t id, bool found) {
  return found ? json_answer(200, "{\"ok\":true,\"deleted\":" + std::to_string(id) + "}") : no_showtime(id);
}

// What a PATCH asks: the text fields given (movie, hall, starts_at in its
// UTC form), and the seats (the total) if given.
struct Edit {
  int64_t id = 0;
  std::optional<std::string> text[3];
  std::optional<int64_t> seats;
};

// What an edit found: Edited, with the showtime as it is now (none: its row
// still makes no showtime), or why nothing changed.
enum class EditOutcome { Edited, Missing, BelowSold, SeatsNotWhole };
struct EditReply {
  EditOutcome outcome;
  std::optional<Showtime> showtime = {};  // Edited
  int64_t sold = 0;                       // BelowSold: the seats sold
};
inline Answer edit_answer(int64_t id, const EditReply& e) {
  if (e.outcome == EditOutcome::Missing) return no_showtime(id);
  if (e.outcome == EditOutcome::BelowSold)
    return refusal(409, std::to_string(e.sold) + " seats of showtime " + std::to_string(id) + " are sold: seats cannot go below that");
  if (e.outcome == EditOutcome::SeatsNotWhole)
    return refusal(409, "showtime " + std::to_string(id) + " has seat counts in the database that are not whole numbers: fix its row first");
  return json_answer(200, e.showtime ? showtime_answer(*e.showtime) : "{\"ok\":true,\"showtime\":null}");
}

// Bookings made, and refused by reason, for /metrics (both modes count
// here), and the rows the last re-read left off the board.
enum Refused { NO_SHOWTIME, STARTED, PER_PERSON, SOLD_OUT, REFUSED_KINDS };
struct CinemaCounts {
  uint64_t booked = 0, refused[REFUSED_KINDS] = {};
  int rows_invalid = 0;
};

// What a booking found: made (booking: its id; left: the seats left after
// it), or refused (no); `n` is the seats the person holds (PER_PERSON) or
// the seats left (SOLD_OUT).
struct NoBooking {
  Refused why;
  int64_t n;
};
struct BookingReply {
  std::optional<NoBooking> no;
  int64_t booking = 0, left = 0;
};

// A booking of `seats` of showtime `id`, made or refused: counted, and answered.
inline Answer booking_answer(const BookingReply& b, int64_t id, int64_t seats, CinemaCounts& counts) {
  if (!b.no) {
    counts.booked++;
    return json_answer(200, "{\"ok\":true,\"booking\":" + std::to_string(b.booking) + ",\"showtime\":" + std::to_string(id) +
                                ",\"seats\":" + std::to_string(seats) + ",\"seats_left\":" + std::to_string(b.left) + "}");
  }
  auto [why, n] = *b.no;
  counts.refused[why]++;
  std::string which = "showtime " + std::to_string(id), count = std::to_string(n);
  if (why == NO_SHOWTIME) return json_answer(404, "{\"ok\":false,\"message\":\"no " + which + "\"}");
  if (why == STARTED) return json_answer(410, "{\"ok\":false,\"message\":\"" + which + " has started\"}");
  if (why == PER_PERSON)
    return json_answer(409, "{\"ok\":false,\"message\":\"you hold " + count + " seats of " + which +
                                "; one person may hold at most 10\",\"held\":" + count + "}");
  return json_answer(409, "{\"ok\":false,\"message\":\"" + (n == 0 ? which + " is sold out" : "only " + count + " seats left of " + which) +
                              "\",\"seats_left\":" + count + "}");
}

// A person's bookings of showtimes not yet started, soonest first.
inline Answer bookings_answer(std::vector<Booking> list, int64_t now_ms) {
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

// ---- What each mode does --------------------------------------------------------------
//
// One of these is made at start-up (CinemaApp::open or open_redis); the
// routes have read and checked the form and the id, and hand it what they found.
struct CinemaMode {
  virtual ~CinemaMode() = default;
  virtual Answer list(const Request& req) = 0;  // GET /cinema/showtimes: the board, read now
  virtual Answer add(const Request& req, Showtime st) = 0;  // st: checked, every seat free, no id yet
  virtual Answer edit(const Request& req, const Edit& e) = 0;
  virtual Answer erase(const Request& req, int64_t id) = 0;
  virtual Answer book(const Request& req, int64_t id, const std::string& user, int64_t seats) = 0;
  virtual Answer mine(const Request& req, std::string_view user) = 0;
  virtual void snapshot(StreamSpec* s) = 0;  // how the stream's state is read: s->render, or s->fetch
  virtual void committed() {}                // SQLite: a turn's commit succeeded
  virtual void connected() {}                // Redis: on every (re)connect
};
