// engine/redis.hpp — one connection to Redis, driven by the server's own epoll loop.
//
// With --redis, Redis is the shared engine several processes stand in front
// of, as engine/store.hpp's SQLite is for one. This file is the client: a socket
// the loop owns (TCP "host:port" or a unix socket path), commands written
// in Redis's wire format (RESP: "*<argc>\r\n" then "$<len>\r\n<arg>\r\n" per
// argument), and hiredis's reply reader (Debian's libhiredis 0.14) to cut
// the bytes that come back into replies. No second thread, no hiredis event
// adapter: the loop asks this class what it wants (interest()), tells it
// when the socket is ready (on_ready()), and when its next deadline is.
//
// Redis answers the commands of one connection in the order they were
// sent, so a reply belongs to the oldest command still waiting: the
// callbacks wait in a FIFO. Commands issued during a turn are appended to
// one buffer and leave in one write when the loop calls flush() at the end
// of the turn (pipelining: one syscall and one round trip for the turn's
// grabs, votes and reads, however many).
//
// Faults. Every command has a deadline (timeout_ms after it was sent); the
// oldest waiting one past it, a reply that cannot be parsed, or a closed
// socket ends the connection: every waiting callback is called with no
// reply (nullptr), so every client waiting on Redis gets an answer, and the
// client reconnects with a backoff (100 ms, doubling to 2 s, back to 100 ms
// only once a connection has answered). A connection counts as up once
// Redis has answered on it, not when connect() completes: the kernel
// completes a connect to a stopped (SIGSTOP, hung) redis-server from its
// accept queue. While it is not up, the apps' calls are refused at once:
// the caller answers 503; and lagging() tells /healthz when the oldest
// command has waited half of timeout_ms, long before it fails.
//
// A connection in subscriber mode (subscriber = true) also gets messages
// nobody asked for: each published message ("message", channel, payload)
// goes to on_message; every other reply (a SUBSCRIBE's confirmation, a
// PING's "pong") answers the oldest command, as usual.
//
// Left out on purpose: AUTH and TLS (a local or private-network Redis),
// RESP3, Redis Cluster (every process talks to one Redis).
#pragma once
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

class Redis {
 public:
  using Callback = std::function<void(const redisReply*)>;  // nullptr: no reply (the connection failed or timed out)

  explicit Redis(bool subscriber = false) : subscriber_(subscriber) {}
  ~Redis() { drop(nullptr); }
  Redis(const Redis&) = delete;
  Redis& operator=(const Redis&) = delete;

  // "127.0.0.1:6379", "localhost:6379", or a path such as
  // "/run/redis.sock" or "build/redis.sock". False (and *why) when it is
  // neither.
  bool set_address(std::string_view addr, std::string* why) {
    if (addr.find('/') != addr.npos) {  // a path: host:port has no slash
      if (addr.size() >= sizeof(sockaddr_un{}.sun_path)) return *why = "--redis: socket path too long", false;
      unix_path_ = addr;
      return true;
    }
    size_t colon = addr.rfind(':');
    std::string host(addr.substr(0, colon == addr.npos ? addr.size() : colon));
    if (host == "localhost") host = "127.0.0.1";
    int port = colon == addr.npos ? 6379 : atoi(std::string(addr.substr(colon + 1)).c_str());
    in_addr a{};
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, host.c_str(), &a) != 1)
      return *why = "--redis needs host:port (an IPv4 address) or a unix socket path, got '" + std::string(addr) + "'", false;
    tcp_ = sockaddr_in{};
    tcp_.sin_family = AF_INET;
    tcp_.sin_port = htons(uint16_t(port));
    tcp_.sin_addr = a;
    return true;
  }

  static constexpr size_t KEEP_OUT_BYTES = 64 * 1024;  // a larger output buffer is freed once sent

  // Set by the owner before the first connect.
  int64_t timeout_ms = 1000;
  const int64_t* clock_ms = nullptr;  // the loop's clock, read when a command is queued: its timeout starts then
  std::function<void(int fd, uint32_t before, uint32_t after)> watch;  // epoll: add (before 0), change, remove (after 0)
  std::function<void()> on_connect;                   // connected (again): load scripts, subscribe, read state
  std::function<void(const std::string& why)> on_down;  // the connection ended (once per failure)
  std::function<void(const redisReply*)> on_message;  // subscriber mode: each published message
  std::vector<std::function<void()>> before_flush;    // run by flush() first: a turn's batched calls queue their command

  // For /metrics. script_calls: the apps' script calls (RedisScripts), of
  // which a batched command carries several.
  uint64_t commands = 0, errors = 0, reconnects = 0, timeouts = 0, script_calls = 0;
  size_t freed_bytes = 0;  // buffers given back since the owner last took the count (for malloc_trim)
  double latency_seconds_sum = 0;
  uint64_t latency_count = 0;

  bool connected() const { return state_ == State::Up && answered_; }
  bool lagging(int64_t now_ms) const { return !waiting_.empty() && now_ms - waiting_.front().sent_ms >= timeout_ms / 2; }
  int fd() const { return fd_; }

  // Queues one command; `done` gets its reply once it comes (in order). Its
  // timeout runs from now (clock_ms; without one, the time of the last
  // event, which after an idle spell is long past).
  // False, and `done` is dropped, when the connection is not up.
  bool command(const std::vector<std::string_view>& argv, Callback done) {
    if (state_ != State::Up) return false;
    out_ += "*" + std::to_string(argv.size()) + "\r\n";
    for (std::string_view a : argv) out_.append("$").append(std::to_string(a.size())).append("\r\n").append(a).append("\r\n");
    waiting_.push_back({std::move(done), clock_ms ? *clock_ms : now_ms_});
    commands++;
    return true;
  }

  // Writes what the turn queued: one write() for all of it, the rest when
  // the socket is writable again.
  void flush(int64_t now_ms) {
    now_ms_ = now_ms;
    for (auto& f : before_flush) f();
    if (state_ != State::Up || out_sent_ == out_.size()) return;
    while (out_sent_ < out_.size()) {
      ssize_t n = write(fd_, out_.data() + out_sent_, out_.size() - out_sent_);
      if (n > 0) {
        out_sent_ += size_t(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      return fail("writing to redis: " + std::string(strerror(errno)), now_ms);
    }
    if (out_sent_ == out_.size()) {  // all sent: a big turn's buffer (a million-packet split is 12 MB) is not kept
      out_sent_ = 0;
      freed_bytes += out_.capacity() > KEEP_OUT_BYTES ? out_.capacity() : 0;
      out_.capacity() > KEEP_OUT_BYTES ? std::string().swap(out_) : out_.clear();
    }
    set_interest();
  }

  // The socket is ready (epoll's events for it).
  void on_ready(uint32_t events, int64_t now_ms) {
    now_ms_ = now_ms;
    if (state_ == State::Connecting) return finish_connect(now_ms);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_replies(now_ms);
    if (state_ == State::Up && (events & EPOLLOUT)) flush(now_ms);
  }

  // When on_deadline() must run next: the oldest command's timeout, a
  // connect's timeout, or the next reconnect; -1 for never.
  int64_t next_deadline_ms() const {
    if (state_ == State::Down) return retry_at_ms_;
    if (state_ == State::Connecting) return connect_started_ms_ + timeout_ms;
    return waiting_.empty() ? -1 : waiting_.front().sent_ms + timeout_ms;
  }

  void on_deadline(int64_t now_ms) {
    now_ms_ = now_ms;
    if (state_ == State::Down && retry_at_ms_ >= 0 && now_ms >= retry_at_ms_) return connect(now_ms);
    if (state_ != State::Down && next_deadline_ms() >= 0 && now_ms >= next_deadline_ms()) {
      timeouts++;
      fail(state_ == State::Connecting ? "connecting to redis timed out" : "redis did not answer in time", now_ms);
    }
  }

  // Opens the connection (nonblocking: finished in on_ready).
  void connect(int64_t now_ms) {
    drop(nullptr);
    retry_at_ms_ = -1;
    bool unix_socket = !unix_path_.empty();
    fd_ = socket(unix_socket ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return fail("socket: " + std::string(strerror(errno)), now_ms);
    int rc;
    if (unix_socket) {
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      memcpy(a.sun_path, unix_path_.data(), unix_path_.size());
      rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      int one = 1;
      setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // a turn's commands go out at once
      rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&tcp_), sizeof tcp_);
    }
    if (rc != 0 && errno != EINPROGRESS && errno != EAGAIN) return fail("connecting to redis: " + std::string(strerror(errno)), now_ms);
    state_ = State::Connecting;
    connect_started_ms_ = now_ms;
    reader_ = redisReaderCreate();
    set_interest();
  }

 private:
  enum class State { Down, Connecting, Up };
  struct Waiting {
    Callback done;
    int64_t sent_ms;
  };

  // EPOLLOUT tells that a nonblocking connect() finished, well or not.
  void finish_connect(int64_t now_ms) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail("connecting to redis: " + std::string(strerror(err)), now_ms);
    state_ = State::Up;
    answered_ = false;  // up for commands; counted as connected at the first reply
    set_interest();
    if (on_connect) on_connect();
  }

  void read_replies(int64_t now_ms) {
    char buf[64 * 1024];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) return fail(n == 0 ? "redis closed the connection" : "reading from redis: " + std::string(strerror(errno)), now_ms);
    if (redisReaderFeed(reader_, buf, size_t(n)) != REDIS_OK) return fail("redis sent what cannot be parsed", now_ms);
    for (;;) {
      void* reply = nullptr;
      if (redisReaderGetReply(reader_, &reply) != REDIS_OK) return fail("redis sent what cannot be parsed", now_ms);
      if (!reply) return;
      auto* r = static_cast<redisReply*>(reply);
      if (!answered_) {  // Redis is there: the next failure starts the backoff over
        answered_ = true;
        backoff_ms_ = 100;
      }
      if (r->type == REDIS_REPLY_ERROR) errors++;
      bool message = subscriber_ && r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING &&
                     std::string_view(r->element[0]->str, r->element[0]->len) == "message";
      if (message) {
        if (on_message) on_message(r);
      } else if (!waiting_.empty()) {
        Waiting w = std::move(waiting_.front());
        waiting_.pop_front();
        latency_seconds_sum += double(now_ms - w.sent_ms) / 1000.0;
        latency_count++;
        if (w.done) w.done(r);  // may queue more commands: they go to the back
      }
      freeReplyObject(reply);
      if (state_ != State::Up) return;  // a callback's command failed the connection
    }
  }

  // Ends the connection and tells every waiting command; reconnects later.
  void fail(const std::string& why, int64_t now_ms) {
    drop(&why);
    reconnects++;
    retry_at_ms_ = now_ms + backoff_ms_;
    backoff_ms_ = std::min<int64_t>(backoff_ms_ * 2, 2000);
  }

  // Closes the socket; each waiting callback gets nullptr. `why`: report it.
  void drop(const std::string* why) {
    bool was_open = fd_ >= 0;
    if (fd_ >= 0) {
      if (watch && interest_) watch(fd_, interest_, 0);
      close(fd_);
    }
    fd_ = -1;
    interest_ = 0;
    state_ = State::Down;
    if (reader_) redisReaderFree(reader_);
    reader_ = nullptr;
    out_.clear();
    out_sent_ = 0;
    std::deque<Waiting> failed;
    failed.swap(waiting_);
    for (Waiting& w : failed)
      if (w.done) w.done(nullptr);
    if (why && was_open && on_down) on_down(*why);
  }

  void set_interest() {
    uint32_t want = state_ == State::Connecting ? uint32_t(EPOLLOUT) : uint32_t(EPOLLIN) | (out_sent_ < out_.size() ? uint32_t(EPOLLOUT) : 0u);
    if (want == interest_ || !watch) return;
    watch(fd_, interest_, want);
    interest_ = want;
  }

  bool subscriber_;
  std::string unix_path_;
  sockaddr_in tcp_{};
  State state_ = State::Down;
  bool answered_ = false;  // Redis has replied on this connection
  int fd_ = -1;
  uint32_t interest_ = 0;
  redisReader* reader_ = nullptr;
  std::string out_;
  size_t out_sent_ = 0;
  std::deque<Waiting> waiting_;
  int64_t connect_started_ms_ = 0, retry_at_ms_ = -1, backoff_ms_ = 100;
  int64_t now_ms_ = 0;  // the loop's clock as last told: a command's send time
};

// ---- Replies and scripts ---------------------------------------------------------------

// Element `i` of an array reply as text, or as a whole number; empty or 0
// when it is missing or of another type.
inline std::string_view reply_text(const redisReply* r, size_t i) {
  const redisReply* e = r && i < r->elements ? r->element[i] : nullptr;
  return e && e->type == REDIS_REPLY_STRING ? std::string_view(e->str, e->len) : std::string_view();
}
inline int64_t reply_number(const redisReply* r, size_t i) {
  const redisReply* e = r && i < r->elements ? r->element[i] : nullptr;
  return e && e->type == REDIS_REPLY_INTEGER ? e->integer : 0;
}

// Element `i` as a whole number, whether Redis sent it as an integer or as
// text (a key's value comes as text: ids read with GET).
inline int64_t reply_int(const redisReply* r, size_t i) {
  std::string_view text = reply_text(r, i);
  int64_t v = 0;
  if (text.empty()) return reply_number(r, i);
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}

// Element `i` as a stream's version, which scripts send as decimal text (1
// to 19 digits: past 2^53 a Lua number is no longer exact); nothing if it
// is not one.
inline std::optional<uint64_t> reply_version(const redisReply* r, size_t i) {
  std::string_view text = reply_text(r, i);
  uint64_t v = 0;
  if (text.empty() || text.size() > 19 || std::from_chars(text.data(), text.data() + text.size(), v).ptr != text.data() + text.size())
    return std::nullopt;
  return v;
}

// The rule every app's state script starts with: version_of(key, state),
// the version of the state it read, the same on every process, new for
// every other state, even after Redis lost data (engine/version.lua).
inline constexpr const char* VERSION_LUA =
#include "engine/version.lua.inc"
    ;

// An app's Lua scripts: each write is one script, which Redis runs
// atomically. They are loaded (SCRIPT LOAD) on every connect, before any
// other command on that connection, and called by their SHA (EVALSHA): the
// SHA is the same on every load, so calls made right after a reconnect
// find them. A Redis that lost them (SCRIPT FLUSH, a restart) answers
// NOSCRIPT: nothing ran, the callers are handed that error (they answer
// 503, nothing was changed), and the scripts are loaded again.
//
// A batched script takes a whole turn's calls in one EVALSHA. Redis's cost
// of a call is mostly fixed — running the script, and about a microsecond
// per redis.call, most of which (the round, its size, the clock, the
// publish) are the same for every grab of a turn — so the turn's grabs go
// as one: the script gets each call's `per_call` arguments one after the
// other in ARGV, decides each in order, as if they had come one by one,
// and answers an array with one reply per call, each caller its own. No
// other command runs in between (a script runs alone), so a batch is as
// exact as its calls one by one; if the script fails, every caller of the
// batch is handed Redis's error.
// call() only queues; the command is queued when the Redis client flushes
// at the end of the turn (before_flush), at most MAX_BATCH calls each.
class RedisScripts {
 public:
  static constexpr size_t MAX_BATCH = 256;  // calls in one EVALSHA: its ARGV, and what one script run may hold Redis for
  using Done = std::function<void(const redisReply*)>;

  // Adds a script; returns its number for call(). `per_call`: batched, with
  // that many arguments a call (0: one EVALSHA per call).
  size_t add(const char* lua, size_t per_call = 0) {
    lua_.push_back(lua);
    sha_.emplace_back();
    batches_.push_back({per_call, {}, {}});
    return lua_.size() - 1;
  }
  void load(Redis& redis) {
    if (redis_ != &redis) redis.before_flush.push_back([this] { send_batches(); });
    redis_ = &redis;
    for (size_t i = 0; i < lua_.size(); i++)
      redis.command({"SCRIPT", "LOAD", lua_[i]}, [this, i](const redisReply* r) {
        if (r && r->type == REDIS_REPLY_STRING) sha_[i].assign(r->str, r->len);
      });
  }
  // Runs script `i` with `args` (no keys: see each script). `done` gets an
  // array reply; or Redis's error reply (NOSCRIPT, or the script failed);
  // or nullptr (no reply, or one of another kind). False, and `done`
  // dropped, when the call cannot be sent.
  bool call(size_t i, const std::vector<std::string_view>& args, Done done) {
    if (!redis_ || sha_[i].empty() || !redis_->connected()) return false;
    redis_->script_calls++;
    Batch& b = batches_[i];
    if (b.per_call == 0) {
      std::vector<Done> one;
      one.push_back(std::move(done));  // moved: a braced list would copy it
      return send(i, args, std::move(one));
    }
    b.args.insert(b.args.end(), args.begin(), args.end());
    b.dones.push_back(std::move(done));
    if (b.dones.size() == MAX_BATCH) send_batch(i);
    return true;
  }

 private:
  struct Batch {
    size_t per_call;
    std::vector<std::string> args;  // copies: a handler's views end with it
    std::vector<Done> dones;
  };

  // One EVALSHA; its reply goes to the one caller, or element k to caller k.
  bool send(size_t i, const std::vector<std::string_view>& args, std::vector<Done> dones) {
    std::vector<std::string_view> argv = {"EVALSHA", sha_[i], "0"};
    argv.insert(argv.end(), args.begin(), args.end());
    bool batched = batches_[i].per_call > 0;
    return redis_->command(argv, [this, batched, dones = std::move(dones)](const redisReply* r) {
      const redisReply* error = r && r->type == REDIS_REPLY_ERROR ? r : nullptr;
      if (error && std::string_view(r->str, r->len).starts_with("NOSCRIPT")) load(*redis_);
      if (r && r->type != REDIS_REPLY_ARRAY) r = error;
      if (!batched) return dones[0](r);
      for (size_t k = 0; k < dones.size(); k++) {
        const redisReply* mine = error ? error : r && r->elements == dones.size() ? r->element[k] : nullptr;
        dones[k](mine && (mine == error || mine->type == REDIS_REPLY_ARRAY) ? mine : nullptr);
      }
    });
  }
  void send_batch(size_t i) {
    Batch& b = batches_[i];
    std::vector<std::string> args;
    std::vector<Done> dones;
    args.swap(b.args);  // emptied first: a caller told of a failure may call again
    dones.swap(b.dones);
    if (!redis_->connected()) {  // it went down within the turn: nothing was sent
      for (Done& d : dones) d(nullptr);
      return;
    }
    send(i, std::vector<std::string_view>(args.begin(), args.end()), std::move(dones));
  }
  void send_batches() {
    for (size_t i = 0; i < batches_.size(); i++)
      if (!batches_[i].dones.empty()) send_batch(i);
  }

  Redis* redis_ = nullptr;
  std::vector<const char*> lua_;
  std::vector<std::string> sha_;
  std::vector<Batch> batches_;
};
