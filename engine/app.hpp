// engine/app.hpp — the app contract: what an app gives the server, and what its
// handlers get and return.
//
// An app (one file in apps/) describes itself with an AppSpec: its flags,
// how it opens its storage, its streams (what a snapshot is and how often it
// is pushed), its routes (a path, methods, a handler, whether the admin
// token is needed), its metrics. The server (server.cpp) knows nothing more
// of it. A handler gets a Request — the parsed request, the time of this
// loop turn, helpers that read form fields and identities — and returns an
// Answer: a status and a JSON body, plus what the loop must do around it:
//
//   - changed: the answer reports a change this turn made. It leaves only
//     after the turn's commit; if the commit fails, undo() runs (the newest
//     change first) and the answer becomes a 503. The app's stream is due.
//   - wait: the answer cannot be given yet (see Wait). Nothing is sent;
//     the connection reads no further, and the same request is handled
//     again after the commit (or once the database's lock is free), or its
//     answer comes with Redis's reply. This is how an answer comes later:
//     the connection waits, every other one goes on, and pipelined answers
//     keep their order.
//
// Also here, because every app needs them: text checks (every string a
// client sends is UTF-8 before it is echoed), a small JSON writer, and the
// cookie and ETag readers.
#pragma once
#include <sys/random.h>

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../http_parse.hpp"
#include "flags.hpp"
#include "redis.hpp"
#include "store.hpp"

// ---- Text and JSON --------------------------------------------------------------------

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

// ---- What a handler returns ------------------------------------------------------------

// Why an answer is not given now, and what the loop does about it. The
// loop's connection keeps the same word while its request waits.
enum class Wait : uint8_t {
  None,    // it is the answer: sent after the turn's commit
  Commit,  // it would read a change this turn has not stored: handled again after the commit
  Lock,    // its write found the database locked by another process: handled again a few
           // milliseconds later, for at most LOCK_WAIT_MS (server.cpp), then 503
  Reply,   // it comes from Redis: the reply's callback brings it (Request::reply_later)
};

struct Answer {
  int status = 200;
  std::string body;
  std::string_view type = "application/json";
  std::string extra;           // header lines, each "Name: value\r\n"
  std::string_view prebuilt;   // instead of type and body: a response made at start-up
  size_t prebuilt_head = 0;    // (its header lines, a blank line, the body); HEAD sends prebuilt[0..prebuilt_head)
  bool changed = false;        // reports a change of this turn (see the top of this file)
  std::function<void()> undo;  // takes it back; empty when the database's rollback is undo enough
  Wait wait = Wait::None;      // not the answer yet (see Wait)
};

inline Answer json_answer(int status, std::string body, std::string extra = {}) {
  Answer a;
  a.status = status;
  a.body = std::move(body);
  a.extra = std::move(extra);
  return a;
}

// {"ok":false,"message":"..."}
inline Answer refusal(int status, std::string_view message, std::string extra = {}) {
  std::string j = "{\"ok\":false,\"message\":";
  json_string(j, message);
  return json_answer(status, j + "}", std::move(extra));
}

inline Answer answer_after(Wait wait) {
  Answer a;
  a.wait = wait;
  return a;
}
// The answer will come from a reply (Redis): the handler hands
// req.reply_later() to the command's callback and returns this.
inline Answer answer_later() { return answer_after(Wait::Reply); }
inline Answer wait_for_commit() { return answer_after(Wait::Commit); }

// The database did not take a write of this turn, and nothing changed:
// another process holds its lock (ask again soon), writes are stopped
// after an I/O error at a commit, or it is full, over --db-max-mb...
inline Answer store_refused(const Store& store) {
  if (store.locked_elsewhere()) return answer_after(Wait::Lock);
  if (store.stopped())
    return refusal(503, "the database had an I/O error at a commit: writes are stopped until the server restarts; nothing was changed");
  return refusal(503, "the database cannot take writes right now; nothing was changed", "Retry-After: 1\r\n");
}

// ---- What a handler gets ---------------------------------------------------------------

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

// A request as a handler sees it. The helpers that read the form return the
// refusal to answer with when the form is broken, or nothing:
//   if (auto no = req.identity("user", &user)) return *no;
// Where a later answer goes: the server sets it; ticket names the connection.
inline void (*later_answer_hook)(uint64_t ticket, const Answer& a) = nullptr;

struct Request {
  const HttpRequest& http;
  int64_t wall_ms;      // epoch ms, read once per loop turn
  uint64_t ticket = 0;  // which connection asked (for reply_later)

  // A function that answers this request later, once; calling it after the
  // client has gone does nothing.
  std::function<void(const Answer&)> reply_later() const {
    return [t = ticket](const Answer& a) { later_answer_hook(t, a); };
  }

  // Form field `key`, decoded, into *value; *present says whether it was
  // there. Refused: a body that is not a form, a broken %-escape, a value
  // that is not UTF-8 (every answer is JSON, and JSON is UTF-8).
  std::optional<Answer> form(std::string_view key, std::string* value, bool* present = nullptr) const {
    std::string_view type = http.fields[CONTENT_TYPE];
    if (!type.empty() && !http_iequals(type.substr(0, type.find(';')), "application/x-www-form-urlencoded"))
      return refusal(415, "send the body as application/x-www-form-urlencoded");
    FormLookup found = http_form_value(http.body, key, value);
    if (found == FormLookup::Malformed) return refusal(400, "the form body has a broken %-escape");
    if (found == FormLookup::Found && !valid_utf8(*value)) return refusal(400, "'" + std::string(key) + "' is not UTF-8 text");
    if (present) *present = found == FormLookup::Found;
    return std::nullopt;
  }

  // The uid cookie a page load set: who this browser is.
  std::string_view uid() const { return http_cookie(http.fields[COOKIE], "uid"); }

  // Who is asking: form field `key` (load tools, scripts), else the uid cookie.
  std::optional<Answer> identity(std::string_view key, std::string* user) const {
    bool present = false;
    if (auto no = form(key, user, &present)) return no;
    if (!present) user->assign(uid());
    if (user->empty())
      return refusal(400, "who are you? send a '" + std::string(key) + "' field, or load a page first for a uid cookie");
    if (!valid_user(*user)) return refusal(400, "'" + std::string(key) + "' must be 1 to 64 bytes of UTF-8 text without control characters");
    return std::nullopt;
  }

  // A whole decimal number in [lo, hi] from form field `key`.
  std::optional<Answer> whole_number(std::string_view key, int64_t lo, int64_t hi, int64_t* out) const {
    std::string text;
    bool present = false;
    if (auto no = form(key, &text, &present)) return no;
    bool digits = !text.empty() && text.size() <= 18 && text.find_first_not_of("0123456789") == std::string::npos;
    if (present && digits && std::stoll(text) >= lo && std::stoll(text) <= hi) {
      *out = std::stoll(text);
      return std::nullopt;
    }
    return refusal(400, "'" + std::string(key) + "' must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi));
  }

  // The same, for a field that may be left out (*out stays empty then).
  std::optional<Answer> whole_number_if_sent(std::string_view key, int64_t lo, int64_t hi, std::optional<int64_t>* out) const {
    std::string text;
    bool present = false;
    if (auto no = form(key, &text, &present)) return no;
    if (!present) return std::nullopt;
    int64_t n = 0;
    if (auto no = whole_number(key, lo, hi, &n)) return no;
    *out = n;
    return std::nullopt;
  }
};

// ---- What an app gives the server --------------------------------------------------------
//
// Its streams, routes and metrics are declared by name (designated
// initializers: {.path = "/vote", .methods = "POST", .handler = ...}).

// With --redis, a stream's state as read from Redis, under the version
// Redis gave it (the event id: the same on every process).
struct Snapshot {
  std::string json;
  uint64_t version;
};
using SnapshotDone = std::function<void(const Snapshot*)>;  // nullptr: it could not be read

struct StreamSpec {
  std::vector<const char*> paths;  // where it is subscribed to (GET)
  const char* name;                // in /metrics and the log
  const int64_t* period_ms;        // a push this often even without a change (a flag: read once the flags are parsed)
  std::function<std::string(int64_t wall_ms)> render;  // the state now, as JSON
  bool repeat;                     // the periodic push resends an unchanged snapshot
  bool is_time = false;            // the state is the time: each newcomer gets it fresh
  // With --redis, instead of render: asks Redis for the state and its
  // version; `done` gets them when the reply comes.
  std::function<void(SnapshotDone done)> fetch = {};
};

struct RouteSpec {
  std::string path;     // a path ending in '/' (not "/" itself) also answers for every path under it
  const char* methods;  // "GET, HEAD"
  std::function<Answer(const Request&)> handler;
  bool admin = false;   // needs the admin token; the server checks it before the handler runs
};

struct MetricSpec {
  const char* name;
  const char* type;  // "gauge" or "counter"
  const char* help;
  std::function<double()> value;
  const char* labels = nullptr;  // 'reason="seats"': one sample of several under one name (listed together)
};

struct AppSpec {
  const char* name;
  FlagGroup flags;  // its rows of the flag table; the targets are the app's own fields
  // After the flags: makes its tables and statements and loads its state
  // (on a first start, what the flags describe). 0, or the exit status with
  // *why: 1 for the database, 2 for flags that describe nothing valid.
  std::function<int(Store& store, int64_t wall_ms, std::string* why)> open;
  std::vector<StreamSpec> streams;
  std::function<std::vector<RouteSpec>()> routes;  // asked once, after open (a route may depend on what it found)
  std::vector<MetricSpec> metrics;
  std::function<void()> committed;  // after every turn whose commit succeeded (one that wrote nothing too)
  // With --redis, instead of open: the app keeps its state in Redis. Called
  // once at start-up, before the connection is made; redis_connected runs
  // on every (re)connect, before any other command on it (load the
  // scripts, make the first state if Redis has none).
  std::function<int(Redis& redis, std::string* why)> open_redis;
  std::function<void()> redis_connected;
};

// ---- With --redis: an answer from a script -------------------------------------------------

// Redis is not connected: nothing was sent, nothing changed.
inline Answer redis_unreachable() {
  return refusal(503, "redis cannot be reached right now; nothing was changed", "Retry-After: 1\r\n");
}

// A script's reply that never came, or makes no sense.
inline Answer redis_unclear() {
  return refusal(503, "redis did not answer in time: the change may or may not have been made", "Retry-After: 1\r\n");
}

// Runs script `lua` of `scripts` with `args`; `answer` turns its reply (an
// array) into the request's answer, which leaves when the reply comes.
// Redis not connected: 503 at once, and nothing was changed. Sent but no
// usable reply (Redis went away, was too slow, or the script failed): 503
// saying that the change may or may not have been made — Redis may have
// run it and the reply been lost.
inline Answer redis_answer(const Request& req, RedisScripts& scripts, size_t lua, const std::vector<std::string_view>& args,
                           std::function<Answer(const redisReply*)> answer) {
  auto done = [reply = req.reply_later(), answer = std::move(answer)](const redisReply* r) { reply(r ? answer(r) : redis_unclear()); };
  return scripts.call(lua, args, std::move(done)) ? answer_later() : redis_unreachable();
}

// A log line from an app (the server sets where it goes; quiet: nowhere).
inline void (*app_log)(const std::string& line) = nullptr;
inline void log_app(const std::string& line) {
  if (app_log) app_log(line);
}

// A write the store did not take: logged (unless it waits for a lock held
// elsewhere, which is asked again, not refused), and answered.
inline Answer write_refused(const Store& store, const std::string& error) {
  if (!store.locked_elsewhere()) log_app("store: write refused: " + error);
  return store_refused(store);
}
