// engine/text.hpp — what every app does with text: checks that a string a
// client sent is UTF-8 (and text a page can show) before it is echoed, a
// small JSON writer (strings escaped, numbers without printf), times as
// ISO 8601, random identities, and the Cookie and If-None-Match values.
//
// Left out on purpose: a JSON parser (the server only writes JSON; what it
// reads is form-encoded) and Unicode normalization (names are compared as
// bytes: two spellings of one name are two names).
#pragma once
#include <sys/random.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates),
// and, unless `controls` allows them, holds no control characters.
inline bool valid_utf8(std::string_view s, bool controls = true) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size() || (!controls && (c < 0x20 || c == 0x7f))) return false;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;  // overlong, surrogate
    i += len;
  }
  return true;
}

// True when `s` is well-formed UTF-8 with no control characters: text a
// page shows (names, questions, options, movies).
inline bool valid_text(std::string_view s) { return valid_utf8(s, false); }

constexpr size_t MAX_USER_BYTES = 64;

// An identity, from a form field or the uid cookie: 1 to 64 bytes of text.
inline bool valid_user(std::string_view user) {
  return !user.empty() && user.size() <= MAX_USER_BYTES && valid_text(user);
}

// Epoch milliseconds → "2026-11-22T02:31:45.617Z".
inline std::string iso_time(int64_t epoch_ms) {
  time_t secs = time_t(epoch_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%03dZ", int(epoch_ms % 1000));
  return buf;
}

// `bytes` random bytes from the kernel as lowercase hex: identities and tokens.
inline std::string random_hex(size_t bytes) {
  unsigned char raw[32];
  std::string hex;
  if (bytes > sizeof raw || getrandom(raw, bytes, 0) != ssize_t(bytes)) return hex;
  for (size_t i = 0; i < bytes; i++) {
    hex.push_back("0123456789abcdef"[raw[i] >> 4]);
    hex.push_back("0123456789abcdef"[raw[i] & 15]);
  }
  return hex;
}

// Appends `s` as a JSON string literal, quotes included.
inline void json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(char(c));
    } else if (c < 0x20) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\u%04x", c);
      out.append(esc);
    } else {
      out.push_back(char(c));
    }
  }
  out.push_back('"');
}

// Appends a whole number in decimal.
inline void json_number(std::string& out, int64_t v) {
  char buf[24];
  out.append(buf, size_t(std::to_chars(buf, buf + sizeof buf, v).ptr - buf));
}

// ---- Header values a handler reads ------------------------------------------------

// True when an If-None-Match value ("*", or a list of possibly weak tags)
// names `etag`. RFC 9110 13.1.2 compares weakly: W/"x" matches "x".
inline bool http_etag_matches(std::string_view if_none_match, std::string_view etag) {
  if (if_none_match == "*") return true;
  while (!if_none_match.empty()) {
    size_t comma = if_none_match.find(',');
    std::string_view tag = if_none_match.substr(0, comma);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == etag) return true;
    if (comma == if_none_match.npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

// The value of cookie `name` in a Cookie header ("a=1; uid=f00"), or empty.
inline std::string_view http_cookie(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    header.remove_prefix(semi == header.npos ? header.size() : semi + 1);
    while (pair.starts_with(' ')) pair.remove_prefix(1);
    if (pair.size() > name.size() && pair.starts_with(name) && pair[name.size()] == '=') return pair.substr(name.size() + 1);
  }
  return {};
}
