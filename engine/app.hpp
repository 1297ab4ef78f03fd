// engine/app.hpp — the app contract: what an app gives the server, and
// what its handlers get and return.
//
// An app (a file or a folder in apps/) is an App: its flags, how it opens
// its storage, its streams (what a snapshot is and how often it is
// pushed), its routes (a path, methods, a handler, whether the admin token
// is needed), its metrics. The server (server.cpp) knows nothing more
// of it. A handler gets a Request — the parsed request, the time of this
// loop turn, helpers that read form fields and identities — and returns an
// Answer: a status and a JSON body, and one word (Then) for what the loop
// does with it:
//
//   - Send: it is the answer, sent after the turn's commit.
//   - SendChange: the same, and it reports a change this turn made: if the
//     commit fails, undo() runs (the newest change first) and the answer
//     becomes a 503. The app's stream is due.
//   - AfterCommit, AfterLock, FromRedis: not the answer yet. Nothing is
//     sent; the connection reads no further, and the same request is
//     handled again after the commit (or once the database's lock is
//     free), or its answer comes with Redis's reply. This is how an answer
//     comes later: the connection waits, every other one goes on, and
//     pipelined answers keep their order.
//
// What every app does with text (UTF-8 checks, a JSON writer, times, the
// cookie and ETag values) is in text.hpp; the form reader in http_parse.hpp.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../http_parse.hpp"
#include "flags.hpp"
#include "redis.hpp"
#include "store.hpp"
#include "text.hpp"

// ---- What a handler returns ------------------------------------------------------------

// What the loop does with an answer: one word, so that nothing that makes
// no sense (a change that waits, say) can be written. A connection whose
// request is not answered yet keeps the word it waits on.
enum class Then : uint8_t {
  Send,         // it is the answer: sent after the turn's commit
  SendChange,   // the same, reporting a change this turn made (undo() if the commit fails)
  AfterCommit,  // not yet: it would read a change this turn has not stored; handled again after the commit
  AfterLock,    // not yet: its write found the database locked by another process; handled again a few
                // milliseconds later, for at most LOCK_WAIT_MS (server.cpp), then 503
  FromRedis,    // not yet: Redis's reply brings it (Request::reply_later)
};

struct Answer {
  int status = 200;
  std::string body;
  std::string_view type = "application/json";
  std::string extra;           // header lines, each "Name: value\r\n"
  std::string_view prebuilt;   // instead of type and body: a response made at start-up
  size_t prebuilt_head = 0;    // (its header lines, a blank line, the body); HEAD sends prebuilt[0..prebuilt_head)
  Then then = Then::Send;      // what the loop does with it
  std::function<void()> undo;  // SendChange: takes it back; empty when the database's rollback is undo enough
};

// An answer made at start-up (http_prebuilt): sent without a copy but the write.
inline Answer prebuilt_answer(const PrebuiltResponse& r) {
  Answer a;
  a.prebuilt = r.bytes;
  a.prebuilt_head = r.head_len;
  return a;
}

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

// `a`, reporting a change this turn made; `undo` takes it back.
inline Answer as_change(Answer a, std::function<void()> undo = {}) {
  a.then = Then::SendChange;
  a.undo = std::move(undo);
  return a;
}

inline Answer answer_after(Then then) {
  Answer a;
  a.then = then;
  return a;
}
// The answer will come from a reply (Redis): the handler hands
// req.reply_later() to the command's callback and returns this.
inline Answer answer_later() { return answer_after(Then::FromRedis); }
inline Answer wait_for_commit() { return answer_after(Then::AfterCommit); }

// The database did not take a write of this turn, and nothing changed:
// another process holds its lock (ask again soon), writes are stopped
// after an I/O error at a commit, or it is full, over --db-max-mb...
inline Answer store_refused(const Store& store) {
  if (store.locked_elsewhere()) return answer_after(Then::AfterLock);
  if (store.stopped())
    return refusal(503, "the database had an I/O error at a commit: writes are stopped until the server restarts; nothing was changed");
  return refusal(503, "the database cannot take writes right now; nothing was changed", "Retry-After: 1\r\n");
}

// ---- What a handler gets ---------------------------------------------------------------

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
// initializers: {.path = "/vote", .methods = "POST", .handler =
// std::bind_front(&PollApp::vote, this)}).

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
  int64_t period_ms;               // a push this often even without a change
  std::function<std::string(int64_t wall_ms)> render = {};  // the state now, as JSON
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

// An app: the server asks these, in this order, and nothing else. Every
// hook has a default, so an app says only what it has (the clock: a name,
// a flag, a stream).
class App {
 public:
  virtual ~App() = default;
  virtual const char* name() const = 0;
  // Its rows of the flag table; the targets are the app's own fields.
  virtual FlagGroup flags() { return {}; }
  // After the flags, without --redis (or for an app with no Redis mode):
  // makes its tables and statements and loads its state (on a first start,
  // what the flags describe). 0, or the exit status with *why: 1 for the
  // database, 2 for flags that describe nothing valid.
  virtual int open(Store&, int64_t /*wall_ms*/, std::string* /*why*/) { return 0; }
  // With --redis, instead of open, for an app that keeps its state there:
  // called once at start-up, before the connection is made.
  virtual bool has_redis_mode() const { return false; }
  virtual int open_redis(Redis&, std::string* /*why*/) { return 0; }
  // On every (re)connect to Redis, before any other command on it: load
  // the scripts, make the first state if Redis has none.
  virtual void redis_connected() {}
  // Asked once, after open: a stream or route may depend on the flags and
  // on what open found.
  virtual std::vector<StreamSpec> streams() { return {}; }
  virtual std::vector<RouteSpec> routes() { return {}; }
  virtual std::vector<MetricSpec> metrics() { return {}; }
  // After every turn whose commit succeeded (one that wrote nothing too).
  virtual void committed() {}
};

// ---- With --redis: an answer from a script -------------------------------------------------

// Redis is not connected: nothing was sent, nothing changed.
inline Answer redis_unreachable() {
  return refusal(503, "redis cannot be reached right now; nothing was changed", "Retry-After: 1\r\n");
}

// Redis is reachable but holds no `what` (a round, a poll): it lost its
// data (FLUSHALL, a restart without its file) or never had one. The app
// makes the first one from its flags again, as at a first start.
inline Answer redis_has_none(std::string_view what) {
  return refusal(503, "redis has no " + std::string(what) + " right now (its data may have been lost); the first one is being made again: try again shortly; nothing was changed", "Retry-After: 1\r\n");
}

// A script's reply that never came, or makes no sense.
inline Answer redis_unclear() {
  return refusal(503, "redis did not answer in time: the change may or may not have been made", "Retry-After: 1\r\n");
}

// Redis answered with an error. NOSCRIPT: it had lost the script (SCRIPT
// FLUSH, a restart), so nothing ran; the scripts are being loaded again.
// Anything else (the script failed): in Redis's words.
inline Answer redis_refused(std::string_view error) {
  if (error.starts_with("NOSCRIPT")) return refusal(503, "redis had lost the script, which is being loaded again; nothing was changed", "Retry-After: 1\r\n");
  return refusal(503, "redis refused: " + std::string(error.substr(0, 300)), "Retry-After: 1\r\n");
}

// Runs script `lua` of `scripts` with `args`; `answer` turns its reply (an
// array) into the request's answer, which leaves when the reply comes.
// Redis not connected: 503 at once, and nothing was changed. An error
// reply: 503 saying what Redis said (redis_refused). Sent but no usable
// reply (Redis went away or was too slow): 503 saying that the change may
// or may not have been made — Redis may have run it and the reply been lost.
inline Answer redis_answer(const Request& req, RedisScripts& scripts, size_t lua, const std::vector<std::string_view>& args,
                           std::function<Answer(const redisReply*)> answer) {
  auto done = [reply = req.reply_later(), answer = std::move(answer)](const redisReply* r) {
    if (r && r->type == REDIS_REPLY_ERROR) return reply(redis_refused(std::string_view(r->str, r->len)));
    reply(r ? answer(r) : redis_unclear());
  };
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
