// The cinema board's rules alone (apps/cinema/rules.hpp): what is a time,
// what is a showtime, what the board shows.
#include <doctest/doctest.h>

#include "../../apps/cinema/rules.hpp"

TEST_CASE("ISO 8601: what is a time, and which moment") {
  CHECK(parse_iso8601("1970-01-01T00:00Z") == 0);
  CHECK(parse_iso8601("2026-11-22T02:31:45.617Z") == 1795314705617);
  CHECK(parse_iso8601("2026-11-22T10:31:45.617+08:00") == 1795314705617);
  CHECK(parse_iso8601("2026-11-21T21:01:45.6179-05:30") == 1795314705617);
  CHECK(parse_iso8601("2024-02-29T12:00:00Z").has_value());  // leap year
  CHECK(parse_iso8601("2000-02-29T12:00:00Z").has_value());
  for (const char* bad : {"2025-02-29T12:00:00Z", "1900-02-29T12:00Z", "2026-13-01T00:00Z", "2026-04-31T00:00Z",
                          "2026-11-22T24:00Z", "2026-11-22T23:60Z", "2026-11-22T23:59:60Z", "2026-11-22 10:00Z",
                          "2026-11-22T10:00", "2026-11-22T10:00+0800", "2026-11-22T10:00+08", "2026-11-22T10:00Zjunk",
                          "2026-11-22", "", "tomorrow", "2026-11-22T10:00:.5Z", "+2026-11-22T10:00Z", "2026-1-22T10:00Z"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_iso8601(bad));
  }
  CHECK(iso_utc(1795314705617) == "2026-11-22T02:31:45Z");
}

TEST_CASE("showtime fields are checked one by one, named in the refusal") {
  int64_t now = 1795314705617;
  CHECK_FALSE(showtime_refusal("Hero", "Hall 1", "2026-11-23T19:30:00+08:00", now));
  CHECK(showtime_refusal("", "Hall 1", "2026-11-23T19:30:00Z", now)->starts_with("movie"));
  CHECK(showtime_refusal(std::string(101, 'm'), "Hall 1", "2026-11-23T19:30:00Z", now)->starts_with("movie"));
  CHECK(showtime_refusal("Hero", "", "2026-11-23T19:30:00Z", now)->starts_with("hall"));
  CHECK(showtime_refusal("Hero", "Hall\t1", "2026-11-23T19:30:00Z", now)->starts_with("hall"));
  CHECK(showtime_refusal("Hero", "Hall 1", "2026-11-23 19:30", now)->starts_with("starts_at must"));
  CHECK(showtime_refusal("Hero", "Hall 1", "2026-11-21T19:30:00Z", now) == "starts_at is in the past");
}

TEST_CASE("the board: only what has not started, sorted, escaped") {
  int64_t now = 1795314705617;
  std::vector<Showtime> rows = {
      {3, "Late \"show\"", "IMAX", now + 7200000, 200, 10},
      {1, "Gone", "Hall 1", now - 1, 100, 100},
      {2, "Soon", "Hall 2", now + 60000, 80, 80},
      {4, "Same time", "Hall 3", now + 60000, 50, 0},
  };
  std::string j = schedule_json(rows, now);
  CHECK(j.find("Gone") == std::string::npos);
  size_t soon = j.find("\"id\":2"), same = j.find("\"id\":4"), late = j.find("\"id\":3");
  CHECK(soon < same);
  CHECK(same < late);
  CHECK(j.find("{\"id\":3,\"movie\":\"Late \\\"show\\\"\",\"hall\":\"IMAX\",\"starts_at\":\"2026-11-22T04:31:45Z\",\"seats_total\":200,\"seats_left\":10}") !=
        std::string::npos);
  CHECK(schedule_json({}, now) == "{\"showtimes\":[]}");
}
