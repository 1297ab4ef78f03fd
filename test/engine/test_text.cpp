// engine/text.hpp alone: what counts as text, times as ISO 8601, and the
// cookie and If-None-Match values.
#include <doctest/doctest.h>

#include "../../engine/text.hpp"

TEST_CASE("text checks: UTF-8, no control characters, user length") {
  CHECK(valid_user("alice"));
  CHECK(valid_user("J\xC3\xBCrgen"));
  CHECK(valid_user("\xE7\xBA\xA2\xE5\x8C\x85"));  // 红包
  CHECK(valid_user(std::string(64, 'a')));
  CHECK_FALSE(valid_user(std::string(65, 'a')));
  CHECK_FALSE(valid_user(""));
  CHECK_FALSE(valid_user("a\nb"));
  CHECK_FALSE(valid_user("a\x7f"));
  CHECK_FALSE(valid_user("\xC3"));          // cut short
  CHECK_FALSE(valid_user("\xC0\xAF"));      // overlong
  CHECK_FALSE(valid_user("\xED\xA0\x80"));  // a surrogate
  CHECK_FALSE(valid_user("\xFF"));
}

TEST_CASE("time formatting") {
  CHECK(iso_time(0) == "1970-01-01T00:00:00.000Z");
  CHECK(iso_time(1795314705617) == "2026-11-22T02:31:45.617Z");
}

TEST_CASE("cookies") {
  CHECK(http_cookie("uid=abc", "uid") == "abc");
  CHECK(http_cookie("a=1; uid=abc; b=2", "uid") == "abc");
  CHECK(http_cookie("xuid=1; uid=2", "uid") == "2");
  CHECK(http_cookie("a=1", "uid").empty());
  CHECK(http_cookie("uid=", "uid").empty());
  CHECK(http_cookie("", "uid").empty());
}

TEST_CASE("If-None-Match matching, weak and listed") {
  CHECK(http_etag_matches("\"abc\"", "\"abc\""));
  CHECK(http_etag_matches("W/\"abc\"", "\"abc\""));
  CHECK(http_etag_matches("\"x\", \"abc\"", "\"abc\""));
  CHECK(http_etag_matches("*", "\"abc\""));
  CHECK_FALSE(http_etag_matches("\"abd\"", "\"abc\""));
  CHECK_FALSE(http_etag_matches("abc", "\"abc\""));
  CHECK_FALSE(http_etag_matches("", "\"abc\""));
}
