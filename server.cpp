// server.cpp — one thread, one epoll, every connection in one table.
//
// This is the loop reader's file: how a connection is accepted, read,
// answered, written and closed, and how one turn of the loop runs. It
// names no app: the apps (apps/) describe themselves through the contract
// in engine/app.hpp, and the only line here that names them is their list.
// Read it top to bottom and you follow a connection the way the kernel
// hands it to us; http_parse.hpp (bytes to requests), out_queue.hpp (what
// waits to be written), router.hpp (path to route) and sse.hpp (the event
// format and when a stream is due) are the rest of the loop reader's path;
// http_strict.hpp and net.hpp are side files it may skip.
//
// The loop. Everything the server waits on is a file descriptor registered
// with one epoll instance: the listening socket, each client socket, one
// timerfd (our alarm clock: it fires at the next deadline — a coalesced push,
// a periodic push, a heartbeat, a timeout), one signalfd (SIGINT and
// SIGTERM arrive as readable bytes instead of interrupting us) and, with
// --redis, the two sockets to Redis. One turn:
//
//   epoll_wait ──> for each ready fd:  accept  |  read → parse → route →
//        ^           handler → answer appended (or the request parked, or
//        |           its question sent to Redis)  |  Redis replies → answers
//        |         then, once per turn (turn_finish):
//        |           expire timeouts (reading what arrived first)
//        |           commit the database ── failed? undo, answers → 503
//        |           answer, in one pass, the requests parked for it
//        |           write every connection that has output
//        |           push the streams that are due
//        |           send the turn's Redis commands, in one write
//        '────────── close what was marked
//
// Answers are written only after the turn's one commit (group commit, as
// Redis answers in beforeSleep): a reply never leaves before the change it
// reports is stored. With --redis an app's answer may instead come later,
// when Redis replies; its connection waits and reads no further, so
// pipelined answers keep their order. Answers go out before the pushes: a
// broadcast to 10,000 streams should not delay the voter who caused it.
//
// Reading map — one connection's path, in the order below: on_accept,
// conn_open, on_readable, conn_parse (HttpParser::feed), on_request,
// route_request (the app's handler), respond_answer, conn_flush, and for a
// stream on_subscribe (or on_follow, for a set of them on /live),
// streams_push, sse_send; finally conn_close. A turn:
// run, on_event, turn_finish, deadlines_expire, turn_commit,
// answer_parked, timer_arm.
// With --redis: on_later_answer, live_fetch, redis_turn.
//
// Connections live in a table indexed by fd (the kernel hands out the lowest
// free fd, so the table stays dense). Writing follows "write now, queue the
// rest": a response goes straight to write(); only what the kernel refuses is
// kept, and only then do we ask epoll for EPOLLOUT. epoll is level-triggered,
// so a read that leaves bytes behind is simply called again next turn.
//
// Left out on purpose: TLS (put a proxy in front), HTTP/2, compression (SSE
// must not be compressed anyway), more than one thread serving connections
// (one core serves tens of thousands of streams). The only other thread is
// engine/store.hpp's WAL checkpointer, which never touches a connection.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>
#include <numeric>
#include <unordered_map>

#include "engine/app.hpp"
#include "engine/redis.hpp"
#include "engine/store.hpp"
#include "http_parse.hpp"
#include "net.hpp"
#include "out_queue.hpp"
#include "router.hpp"
#include "sse.hpp"

// The apps: the only lines that name them. An app is a file or a folder in
// apps/ (see the README's "a fifth app"), one entry here and one page in
// public/. Their flags are listed in this order,
// their routes added in this order (the pages last, so an app's path wins
// over a file of the same name).
#include "apps/cinema/cinema.hpp"
#include "apps/clock.hpp"
#include "apps/pages.hpp"
#include "apps/poll/poll.hpp"
#include "apps/redpacket/redpacket.hpp"
static App* const APP_LIST[] = {&clock_app(), &redpacket_app(), &poll_app(), &cinema_app(), &pages_app()};

// ---- Limits and state --------------------------------------------------------
//
// What a connection costs: one Conn slot (152 bytes with g++ 12 on
// x86-64, in a table reserved at start and touched up to the highest fd
// in use; it never moves); while it speaks HTTP, a parser (504 bytes, from
// a pool) and while a request is arriving its URL, a few header values and
// the body (bounded by the HTTP limits); its output queue while the kernel
// refuses bytes. A subscriber holds no parser and no input buffer at all,
// and no output buffer while it keeps up; a closed connection holds only
// its slot.

constexpr size_t READ_CHUNK_BYTES = 64 * 1024;        // one read(), into a buffer all connections share
constexpr int ACCEPTS_PER_WAKEUP = 256;               // then let the other connections have a turn
constexpr size_t WRITE_BUDGET_BYTES = 1024 * 1024;    // per connection per turn
constexpr size_t OUT_HIGH_WATER_BYTES = 256 * 1024;   // stop reading a client that does not read its answers
constexpr size_t KEEP_CAPACITY_BYTES = 64 * 1024;     // larger output buffers are freed once drained
constexpr size_t TRIM_AFTER_BYTES = 1024 * 1024;      // closed connections' buffers freed before memory goes back to the kernel
constexpr size_t SPARE_PARSERS = 1024;               // parsers kept for new connections; the rest are freed
constexpr int EPOLL_BATCH = 512;                      // events taken per epoll_wait
constexpr int64_t HEARTBEAT_MS = 15'000;              // a comment line on any stream quiet this long
constexpr size_t MAX_STREAMS = 8;                     // /live may follow any set of them: at most 255 sets
constexpr unsigned SSE_RETRY_MS = 3000;               // the reconnect delay we ask browsers for
constexpr int64_t STOP_GRACE_MS = 800;                // SIGTERM: time left to flush before exit
constexpr int64_t ACCEPT_RETRY_MS = 100;              // out of fds: try accept() again after this
constexpr int64_t LOCK_WAIT_MS = 250;                 // a write waits this long for a lock another process holds, then 503
constexpr int64_t LOCK_RETRY_MS = 5;                  // ...asking again this often (never sleeping: see Store::locked_elsewhere)
constexpr int FD_RESERVE = 64;                        // fds kept for files, the database, logs
constexpr int FD_CEILING = 1 << 20;

struct Config {
  int port = 8080;
  std::string bind = "127.0.0.1";
  int max_conns = 0;  // 0: the fd limit minus FD_RESERVE
  int64_t header_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 60'000;
  HttpLimits limits;
  size_t sse_max_pending = 256 * 1024;
  int64_t push_gap_ms = 100;
  std::string cors_origin;
  bool quiet = false;
  std::string db_path = "sse.db";
  bool fsync = false;
  int64_t db_max_mb = 0;    // 0: no cap
  std::string admin_token;  // empty: SSE_ADMIN_TOKEN, else a random one printed at start
  std::string redis;        // empty: no Redis, every app on the SQLite file
  int64_t redis_timeout_ms = 1000;
  bool reuse_port = false;
};

enum class ConnState : uint8_t { Free, Http, Stream, Closing };
enum DeadlineKind : int8_t { NO_DEADLINE = -1, HEADER_DEADLINE, IDLE_DEADLINE, DEADLINE_KINDS };

struct Conn {
  ConnState state = ConnState::Free;
  bool over_capacity = false;     // accepted past --max-conns: answered 503, then closed; not counted in conns_open
  bool close_after_write = false;
  bool reading_paused = false;    // output above the high-water mark: EPOLLIN is off
  bool in_flush_list = false;
  bool ahead = false;             // a subscriber still waiting in its stream's `ahead` list (stream_wait)
  Then waits = Then::Send;        // what its request waits for (AfterCommit, AfterLock, FromRedis: see park); Send: nothing
  uint32_t generation = 0;        // counts the connections this fd has carried: a late answer finds the right one
  uint32_t events = 0;            // the epoll interest registered now
  std::unique_ptr<HttpParser> http;  // while it speaks HTTP: one from the pool (take_parser); a subscriber has none
  OutQueue out;
  std::string stash;              // input not parsed yet while reading is paused
  // Its deadline: which timeout runs, where in that list, when it runs out.
  DeadlineKind deadline = NO_DEADLINE;
  int deadline_prev = -1, deadline_next = -1;
  int64_t deadline_ms = 0;
  int64_t lock_wait_since_ms = -1;  // its request first found the database locked elsewhere (Then::AfterLock)
  // A subscriber: which stream (or on /live, which set of streams), and
  // where in its subscriber list.
  int16_t stream = -1, set = -1;
  uint32_t sub_pos = 0;
};

// Two words for time, kept apart: a connection's *deadline* is when its
// header or idle timeout runs out (a field of the Conn, in a list below);
// the *timer* is the one timerfd, armed for the earliest thing due — a
// deadline, a push, a heartbeat (timer_arm).
//
// One list per timeout. Every connection in a list got the same timeout, so
// the list is sorted by deadline just by appending: expiring is popping from
// the head while the head is due, O(expired), never a scan of everyone.
struct DeadlineList {
  int head = -1, tail = -1;
  int64_t timeout_ms = 0;
};

// A stream: the SSE plumbing (sse.hpp) and the app's description of it.
// Snapshots are rendered when a push is due, never for one subscriber: a
// newcomer is sent the snapshot everyone has, and a change on its way
// reaches it with everyone else. The exception is a stream whose state is
// the time itself: a newcomer gets it fresh, made for it alone, with no id.
struct Live {
  SseStream stream;
  StreamSpec spec;
  int app;                                   // whose: due when an answer of that app changed something
  uint64_t renders = 0, snapshots_sent = 0;  // for /metrics
  bool fetching = false;                     // --redis: a read of its state is on its way
  // --redis: newcomers whose Last-Event-ID is newer than the snapshot here
  // (stream_wait), and the reads of the state sent and answered so far.
  struct Ahead {
    int fd;
    uint64_t version;       // its Last-Event-ID
    uint64_t read_awaited;  // the first read sent after it came (its number in reads_sent)
  };
  std::vector<Ahead> ahead = {};
  uint64_t reads_sent = 0, reads_done = 0;
};

// A reply that reports a change this turn made, and how to take the change
// back: if the turn's commit fails, the change is undone and the reply
// becomes a 503 — a client is never told of something that was not stored.
struct Provisional {
  int fd;
  size_t begin, end;           // the reply's bytes in the connection's output
  bool keep_alive, http10;     // how the 503 that may replace it must end
  std::function<void()> undo;  // empty when the database's rollback is undo enough
};

struct Metrics {
  uint64_t requests_by_status[600] = {};
  uint64_t bytes_written = 0, accepted = 0, slow_consumers_dropped = 0, timeouts = 0;
  uint64_t failed_commits = 0, requests_parked = 0, requests_lock_waited = 0, broadcasts = 0;
  uint64_t refused_past_table = 0;  // accepted on an fd past the connection table, closed at once
  double last_broadcast_seconds = 0;
};

struct Server {
  Config cfg;
  std::vector<App*> apps;
  std::vector<MetricSpec> app_metrics;  // every app's, asked once at start-up
  int epoll_fd = -1, listen_fd = -1, timer_fd = -1, signal_fd = -1;
  std::vector<Conn> conns;  // indexed by fd; reserved up front, so never moved
  std::vector<std::unique_ptr<HttpParser>> spare_parsers;  // given back by closed connections and new subscribers
  int conns_open = 0;       // connections served, at most --max-conns
  int conns_over = 0;       // connections accepted past it, waiting to be told 503 and closed
  DeadlineList deadlines[DEADLINE_KINDS];
  std::vector<int> flush_list, close_list, resume_list;
  Router router;                     // the routes, and the admin token
  std::vector<Live> lives;
  std::vector<SseSet> sets;          // the sets of streams followed on /live, each made for its first subscriber
  // --redis: /live newcomers whose Last-Event-ID is newer than a stream here
  // (set_wait): the id, and per member of the set the read it waits for (0: none).
  struct SetAhead {
    int fd;
    std::string last_id;
    std::vector<uint64_t> read_awaited;
  };
  std::vector<SetAhead> set_ahead;
  Metrics metrics;
  Store store;
  Redis redis, redis_sub{true};  // --redis: commands, and the subscription that hears of changes
  int64_t redis_pinged_ms = 0;
  std::vector<Provisional> provisional;  // this turn's replies that wait on its commit
  // Connections whose request waits for the commit, or for the database's
  // lock (see park): the fd, and which of its connections it was.
  struct Parked {
    int fd;
    uint32_t generation;
  };
  std::vector<Parked> parked, lock_waiting, unparking;
  SseIds event_ids;                      // every snapshot's id: unique for the life of the database
  int64_t now_ms = 0;          // monotonic, read once per turn
  int64_t wall_ms = 0;         // epoch ms, read once per turn
  size_t freed_bytes = 0;      // buffers of closed connections and subscribers freed since the last malloc_trim
  int64_t timer_armed_ms = -1;
  int64_t accept_paused_until_ms = -1;  // -1: accepting
  int64_t stop_deadline_ms = -1;        // -1: running
  char date_line[40] = {};     // "Date: ...\r\n", refreshed once a second
  size_t date_len = 0;
  time_t date_sec = 0;
  char read_buf[READ_CHUNK_BYTES];
};

static Server srv;

static void refresh_date() {
  time_t t = time(nullptr);
  if (t == srv.date_sec) return;
  srv.date_sec = t;
  srv.date_len = http_format_date(t, srv.date_line);
}

static std::string_view date_line() { return {srv.date_line, srv.date_len}; }

[[noreturn]] static void die(const char* what) {
  fprintf(stderr, "sse-server: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void log_line(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char* fmt, ...) {
  if (srv.cfg.quiet) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  n = std::min<int>(n, sizeof line - 2);
  line[n] = '\n';
  (void)!write(STDERR_FILENO, line, size_t(n) + 1);  // one write per line: lines never interleave
}

// ---- One connection: accept ----------------------------------------------------
//
// From here to "close", one connection's life in the order it happens.

// The only place that changes a client's epoll mask once conn_open has
// added it, and only when the wanted mask differs from the registered
// one: a request answered in one write costs no epoll_ctl at all.
static void conn_set_interest(int fd) {
  Conn& c = srv.conns[fd];
  uint32_t want = 0;
  if (!c.reading_paused && c.waits == Then::Send && !c.close_after_write) want |= EPOLLIN;
  if (c.out.pending() > 0) want |= EPOLLOUT;
  if (want == c.events) return;
  epoll_set(srv.epoll_fd, EPOLL_CTL_MOD, fd, want);
  c.events = want;
}

static void flush_later(int fd) {
  Conn& c = srv.conns[fd];
  if (c.in_flush_list) return;
  c.in_flush_list = true;
  srv.flush_list.push_back(fd);
}

// Marks the connection to be closed at the end of this turn. Deferred so that
// nothing closes under a loop that is walking connections (a broadcast, the
// events of one epoll_wait), and so an fd is never reused within a turn.
static void conn_close_later(int fd) {
  Conn& c = srv.conns[fd];
  if (c.state == ConnState::Closing || c.state == ConnState::Free) return;
  c.state = ConnState::Closing;
  srv.close_list.push_back(fd);
}

static void deadline_clear(int fd) {
  Conn& c = srv.conns[fd];
  if (c.deadline == NO_DEADLINE) return;
  DeadlineList& l = srv.deadlines[c.deadline];
  (c.deadline_prev >= 0 ? srv.conns[c.deadline_prev].deadline_next : l.head) = c.deadline_next;
  (c.deadline_next >= 0 ? srv.conns[c.deadline_next].deadline_prev : l.tail) = c.deadline_prev;
  c.deadline = NO_DEADLINE;
  c.deadline_prev = c.deadline_next = -1;
}

// Starts (or restarts) the connection's clock in list `kind`: O(1).
static void deadline_set(int fd, DeadlineKind kind) {
  deadline_clear(fd);
  Conn& c = srv.conns[fd];
  DeadlineList& l = srv.deadlines[kind];
  c.deadline = kind;
  c.deadline_ms = srv.now_ms + l.timeout_ms;
  c.deadline_prev = l.tail;
  (l.tail >= 0 ? srv.conns[l.tail].deadline_next : l.head) = fd;
  l.tail = fd;
}

// A connection speaking HTTP holds a parser (about 500 bytes); a
// subscriber sends no more requests and holds none, so its slot costs a
// fraction of that. Parsers are kept for the next connection rather than
// freed: a connection per request costs no allocation.
static std::unique_ptr<HttpParser> take_parser() {
  if (srv.spare_parsers.empty()) return std::make_unique<HttpParser>(&srv.cfg.limits);
  std::unique_ptr<HttpParser> p = std::move(srv.spare_parsers.back());
  srv.spare_parsers.pop_back();
  p->reset(&srv.cfg.limits);
  return p;
}
static void give_back_parser(Conn& c) {
  if (!c.http) return;
  c.http->release();  // its buffer is freed: a spare parser holds no request's bytes
  if (srv.spare_parsers.size() < SPARE_PARSERS) srv.spare_parsers.push_back(std::move(c.http));
  c.http.reset();
}

static void conn_open(int fd) {
  while (srv.conns.size() <= size_t(fd)) srv.conns.emplace_back();  // within the reserve (see on_accept): no move
  Conn& c = srv.conns[fd];
  c.state = ConnState::Http;
  c.over_capacity = srv.conns_open >= srv.cfg.max_conns;
  ++(c.over_capacity ? srv.conns_over : srv.conns_open);
  c.close_after_write = c.reading_paused = c.in_flush_list = c.ahead = false;
  c.waits = Then::Send;
  c.lock_wait_since_ms = -1;
  c.generation++;
  c.http = take_parser();
  c.out.clear(false);
  c.stash.clear();
  c.stream = c.set = -1;
  c.events = EPOLLIN;
  epoll_set(srv.epoll_fd, EPOLL_CTL_ADD, fd, EPOLLIN);
  deadline_set(fd, HEADER_DEADLINE);  // the first request must arrive in time too
  srv.metrics.accepted++;
}

static void accept_pause(bool pause) {
  epoll_set(srv.epoll_fd, pause ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, srv.listen_fd, EPOLLIN);
  srv.accept_paused_until_ms = pause ? srv.now_ms + ACCEPT_RETRY_MS : -1;
}

// Accepts waiting connections until EAGAIN or the per-wakeup bound.
static void on_accept() {
  for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
    int fd = accept4(srv.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0 && size_t(fd) >= srv.conns.capacity()) {
      // The table was sized once, at start (setup_fd_table): this one is far
      // past --max-conns, or the fd limit was raised since (prlimit).
      // Growing the table would move every Conn, so a connection it has no
      // slot for is closed unanswered.
      close(fd);
      srv.metrics.refused_past_table++;
      continue;
    }
    if (fd >= 0) {
      conn_open(fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;  // that client gave up; try the next
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      // Out of fds. The pending connection stays in the backlog, so the
      // listening socket stays readable: with level-triggered epoll we would
      // spin at 100% CPU. Stop listening for a moment instead; a close or
      // ACCEPT_RETRY_MS later we try again.
      log_line("accept: %s; pausing accepts", strerror(errno));
      accept_pause(true);
    }
    return;  // EAGAIN: the backlog is empty
  }
}

// ---- One connection: read ------------------------------------------------------

static void on_request(int fd, const HttpRequest& req);
static void on_expect_continue(int fd, const HttpRequest& req);
static void respond_error(int fd, int status, std::string_view message, std::string_view extra = {}, bool head = false);

// Runs the parser over bytes that arrived and dispatches each whole request.
// Stops early when the connection turned into a stream, is closing, parked
// a request, or has more unsent output than OUT_HIGH_WATER_BYTES (the rest
// is stashed and reading paused until the client has read its answers).
static void conn_parse(int fd, const char* data, size_t len) {
  Conn& c = srv.conns[fd];
  bool completed = false;
  size_t off = 0;
  while (c.state == ConnState::Http && !c.close_after_write) {
    if (c.out.pending() > OUT_HIGH_WATER_BYTES) {
      c.stash.assign(data + off, len - off);
      c.reading_paused = true;
      conn_set_interest(fd);
      break;
    }
    size_t used = 0;
    HttpParse r = c.http->feed(data + off, len - off, &used);
    off += used;
    if (r == HttpParse::NeedMore) break;
    if (r == HttpParse::Error) return respond_error(fd, c.http->error_status(), c.http->error_reason(), {}, c.http->is_head());
    if (r == HttpParse::Continue) {
      on_expect_continue(fd, c.http->request());
      continue;
    }
    on_request(fd, c.http->request());
    if (c.waits != Then::Send) {  // the request stays in the parser; what came after it waits in the stash
      c.stash.assign(data + off, len - off);
      return;  // still reading: see on_readable
    }
    c.http->next();
    completed = true;
  }
  if (c.state == ConnState::Stream) give_back_parser(c);  // a subscriber sends no more requests
  if (c.state != ConnState::Http || c.close_after_write) return;
  // A request that has begun must be whole within the header timeout; a
  // connection between requests may idle for the idle timeout.
  if (completed) deadline_set(fd, c.http->mid_request() ? HEADER_DEADLINE : IDLE_DEADLINE);
  else if (c.http->mid_request() && c.deadline != HEADER_DEADLINE) deadline_set(fd, HEADER_DEADLINE);
}

// Parses what a paused connection left stashed, now that its output drained.
static void on_resume(int fd) {
  Conn& c = srv.conns[fd];
  if (c.state != ConnState::Http || c.waits != Then::Send) return;
  std::string input;
  input.swap(c.stash);
  conn_parse(fd, input.data(), input.size());
  if (c.stash.empty()) c.stash.swap(input), c.stash.clear();  // keep the capacity
}

// The socket is readable, or at its end (read() returns 0: the client closed
// its side). A reset or an error never comes here: on_event closes at once.
//
// A connection waiting for its answer (Conn::wait) reads nothing more, but
// its EPOLLIN is dropped only here, when more input actually arrives: a
// client that sends one request and waits, as nearly all do, then costs
// no epoll_ctl to stop reading and another to start again.
static void on_readable(int fd) {
  Conn& c = srv.conns[fd];
  if (c.waits != Then::Send) return conn_set_interest(fd);
  if (c.reading_paused) return;
  if (!c.stash.empty()) return on_resume(fd);  // older bytes first; the socket keeps the newer ones
  ssize_t n = read(fd, srv.read_buf, sizeof srv.read_buf);
  if (n > 0) {
    // A stream's client has nothing more to say; whatever it sends is dropped.
    if (c.state == ConnState::Http) conn_parse(fd, srv.read_buf, size_t(n));
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;  // level-triggered: we get called again
  // 0 is end of file: the client closed (or half-closed) its side. An answer
  // still queued is sent first; anything else (ECONNRESET...) ends it now.
  if (n == 0 && c.out.pending() > 0 && c.state == ConnState::Http) {
    c.close_after_write = true;
    return conn_set_interest(fd);
  }
  conn_close_later(fd);
}

// ---- One connection: route -----------------------------------------------------

static void respond_answer(int fd, const HttpRequest& req, const Answer& a);
static void respond_refusal(int fd, const HttpRequest& req, int status, std::string_view message, std::string_view extra = {});
static void on_subscribe(int fd, const HttpRequest& req, int stream);
static void on_follow(int fd, const HttpRequest& req);
static void sse_send(int fd, std::string_view bytes, bool snapshot, int stream = -1);

// The request's answer cannot be given yet (see Then in engine/app.hpp).
// Nothing is answered; the connection reads no further, so the requests its
// client sent after this one wait their turn and answers keep their order;
// and its timeout stops: a request that arrived whole is never told 408 while it
// waits. AfterCommit and AfterLock put it on a list handled again after each
// commit (answer_parked), by ticket — the fd and its generation — so a
// connection that closed meanwhile, or another one the kernel gave the
// same fd, is never answered for it. FromRedis waits for Redis's reply
// (on_later_answer, which checks the same ticket), within --redis-timeout.
static void park(int fd, Then then) {
  Conn& c = srv.conns[fd];
  c.waits = then;
  deadline_clear(fd);
  if (then == Then::AfterCommit) {
    srv.parked.push_back({fd, c.generation});
    srv.metrics.requests_parked++;
  } else if (then == Then::AfterLock) {
    if (c.lock_wait_since_ms < 0) c.lock_wait_since_ms = srv.now_ms, srv.metrics.requests_lock_waited++;
    srv.lock_waiting.push_back({fd, c.generation});
  }
}

// What every route shares, checked before its handler runs: a route for
// the path, room under --max-conns, a method the path answers, the admin
// token where it is needed. Returns the route's entry; or answers the
// refusal and returns nullptr. `before_body`: the client waits for "100
// Continue" (on_expect_continue), so the refusal closes the connection
// (the body it may send anyway cannot be told from a next request), and
// the admin token must come in the Authorization header (a form field
// would be in the body).
static const Route::Entry* admit(int fd, const HttpRequest& req, bool before_body) {
  Conn& c = srv.conns[fd];
  auto refuse = [&](int status, std::string_view message, std::string_view extra = {}) -> const Route::Entry* {
    if (before_body) respond_error(fd, status, message, extra, req.method == HTTP_HEAD);
    else respond_refusal(fd, req, status, message, extra);
    return nullptr;
  };
  // A proxy's method: well-formed, but not ours (llhttp reads what follows
  // its head as a tunnel, so the connection ends with the answer).
  if (req.method == HTTP_CONNECT) return refuse(501, "CONNECT is not served: this server is no proxy");
  const Route* route = srv.router.find(req.path);
  if (!route) return refuse(404, "no such page");
  if (c.over_capacity) {
    // A browser's EventSource gives up for good on an error status but
    // retries a dropped connection, so a stream over capacity is just closed.
    if (Router::is_stream(*route) && !before_body) conn_close_later(fd);
    else respond_error(fd, 503, "server at its connection limit, try again shortly", "Retry-After: 1\r\n", req.method == HTTP_HEAD);
    return nullptr;
  }
  const Route::Entry* entry = Router::entry(*route, req.method);
  if (!entry) return refuse(405, "method not allowed here", "Allow: " + route->allow + "\r\n");
  if (entry->admin && before_body && !srv.router.bearer_ok(req))
    return refuse(401, "admin token missing or wrong (with Expect: 100-continue, send it as Authorization: Bearer)", "WWW-Authenticate: Bearer\r\n");
  if (entry->admin && !before_body && !srv.router.admin_ok(req)) {
    respond_answer(fd, req, refusal(401, "admin token missing or wrong", "WWW-Authenticate: Bearer\r\n"));
    return nullptr;
  }
  return entry;
}

// The server's own answers. GET /healthz, the request everyone benchmarks
// first: "ok", or "degraded" while --redis is set and its connection is
// down or its oldest command has waited half of --redis-timeout (a hung
// Redis), or after an I/O error at a commit stopped the database's writes
// (streams go on, writes get 503). "OPTIONS *" (RFC 9112 3.2.4): what the
// server as a whole answers. Each answer is made once.
static Answer on_healthz() {
  static const PrebuiltResponse ok = http_prebuilt("text/plain", "ok\n"), degraded = http_prebuilt("text/plain", "degraded\n");
  bool redis_down = !srv.redis.connected() || srv.redis.lagging(srv.now_ms) || srv.redis_sub.lagging(srv.now_ms);
  bool down = (!srv.cfg.redis.empty() && redis_down) || srv.store.stopped();
  return prebuilt_answer(down ? degraded : ok);
}
static Answer on_options() {
  static const PrebuiltResponse allow = http_prebuilt("text/plain", "", "Allow: GET, HEAD, POST, PATCH, DELETE, OPTIONS\r\n");
  return prebuilt_answer(allow);
}

// Admits the request and runs its handler. What the answer says decides
// the rest: the request waits (park), or the answer is appended, waiting
// on the turn's commit when it reports a change (then the app's streams
// are due). A write that keeps finding the database locked by another
// process is asked again until LOCK_WAIT_MS have passed since it first
// did, then answered 503: the loop never sleeps on the lock.
static void route_request(int fd, const HttpRequest& req) {
  const Route::Entry* entry = admit(fd, req, false);
  if (!entry) return;
  if (entry->stream >= 0) return on_subscribe(fd, req, entry->stream);
  if (entry->streams_in_query) return on_follow(fd, req);
  Conn& c = srv.conns[fd];
  Answer a = entry->handler(Request{req, srv.wall_ms, uint64_t(fd) << 32 | c.generation});
  if (a.then == Then::AfterLock && (c.lock_wait_since_ms < 0 || srv.now_ms - c.lock_wait_since_ms < LOCK_WAIT_MS)) return park(fd, a.then);
  if (a.then == Then::AfterLock)
    a = refusal(503, "the database is locked by another process; nothing was changed", "Retry-After: 1\r\n");
  if (a.then != Then::Send && a.then != Then::SendChange) return park(fd, a.then);
  c.lock_wait_since_ms = -1;
  if (a.then == Then::SendChange) {
    size_t at = c.out.bytes.size();  // on_request notes where the reply ends
    srv.provisional.push_back({fd, at, at, req.keep_alive && !req.upgrade, req.http10, std::move(a.undo)});
    for (Live& l : srv.lives) l.stream.dirty = l.stream.dirty || l.app == entry->app;
  }
  respond_answer(fd, req, a);
}

// One whole request: route it, then close after the answer if the request
// asked for that (HTTP/1.0 without keep-alive, Connection: close, Upgrade).
// A stream ends when the connection does, whatever the request asked for.
static void on_request(int fd, const HttpRequest& req) {
  Conn& c = srv.conns[fd];
  size_t changes = srv.provisional.size();
  route_request(fd, req);
  if (srv.provisional.size() > changes) srv.provisional.back().end = c.out.bytes.size();
  if (c.waits != Then::Send) return;  // not answered yet
  if (c.state == ConnState::Http && (req.upgrade || !req.keep_alive)) c.close_after_write = true;
}

// A request head that asks for "100 Continue" before it sends its body
// (RFC 9110 10.1.1). The invitation goes out only when the request would
// be handled: an unknown path, a wrong method, a full server or a missing
// admin token is refused at once, before the client sends a byte of body
// (admit, which then closes the connection).
static void on_expect_continue(int fd, const HttpRequest& req) {
  if (!admit(fd, req, true)) return;
  srv.conns[fd].out.bytes += "HTTP/1.1 100 Continue\r\n\r\n";
  flush_later(fd);
}

// A waiting request has been answered: on to the next one, which its
// client may have sent already (stashed: parsed at the end of the turn).
static void conn_next_request(int fd) {
  Conn& c = srv.conns[fd];
  c.http->next();
  // The answer's write sets the interest once it is done (conn_flush): set
  // now, it would ask for EPOLLOUT only to take it back within the turn.
  if (c.out.pending() > 0) flush_later(fd);
  else conn_set_interest(fd);
  if (c.close_after_write) return;
  deadline_set(fd, IDLE_DEADLINE);
  if (!c.stash.empty()) srv.resume_list.push_back(fd);
}

// The answer to a request that waited for Redis, now that the reply came
// (or failed: the app says 503). `ticket` names the connection and which
// of the fd's connections it was: one closed meanwhile, its fd perhaps
// reused, gets nothing. Called from inside the Redis client's reply loop.
static void on_later_answer(uint64_t ticket, const Answer& a) {
  size_t fd = size_t(ticket >> 32);
  if (fd >= srv.conns.size()) return;
  Conn& c = srv.conns[fd];
  if (c.state != ConnState::Http || c.waits != Then::FromRedis || c.generation != uint32_t(ticket)) return;
  c.waits = Then::Send;
  const HttpRequest& req = c.http->request();
  respond_answer(int(fd), req, a);
  if (req.upgrade || !req.keep_alive) c.close_after_write = true;
  conn_next_request(int(fd));
}

// ---- One connection: answer ----------------------------------------------------

// Appends an app's answer: a status line, the Date, its headers and body
// (or the response it had built at start-up). The connection is closed
// after the write when the request asked for that (on_request).
static void respond_answer(int fd, const HttpRequest& req, const Answer& a) {
  Conn& c = srv.conns[fd];
  bool keep = req.keep_alive && !req.upgrade, head = req.method == HTTP_HEAD;
  if (a.prebuilt.empty() && a.status != 304) {
    http_respond(c.out.bytes, a.status, date_line(), keep, req.http10, a.type, a.body, a.extra, head);
  } else {
    http_begin(c.out.bytes, a.status, date_line(), keep, req.http10);
    c.out.bytes += a.extra;
    if (a.status == 304) c.out.bytes += "\r\n";  // no body, no length
    else c.out.bytes.append(a.prebuilt.substr(0, head ? a.prebuilt_head : a.prebuilt.size()));
  }
  srv.metrics.requests_by_status[a.status]++;
  flush_later(fd);
}

// "404 Not Found: no such page\n": the body of the plain-text errors.
static std::string error_text(int status, std::string_view message) {
  return std::to_string(status) + " " + std::string(http_status_text(status)) + ": " + std::string(message) + "\n";
}

// An error after which the connection cannot go on: a request whose
// framing cannot be trusted (400, 413, 414, 431, 501, 505: where the next
// request would start is unknown), one that came too slowly (408), one
// past the connection limit, one refused before its body (see
// on_expect_continue). Answered, then closed. `head`: the request was a
// HEAD, so the answer has no body.
static void respond_error(int fd, int status, std::string_view message, std::string_view extra, bool head) {
  Conn& c = srv.conns[fd];
  http_respond(c.out.bytes, status, date_line(), false, false, "text/plain; charset=utf-8", error_text(status, message), extra, head);
  srv.metrics.requests_by_status[status]++;
  c.close_after_write = true;
  conn_set_interest(fd);  // stop reading
  flush_later(fd);
}

// A refusal of a well-formed request (404, 405): its framing was sound, so
// the connection stays open for the next one if the request asked for that.
static void respond_refusal(int fd, const HttpRequest& req, int status, std::string_view message, std::string_view extra) {
  Answer a;
  a.status = status;
  a.type = "text/plain; charset=utf-8";
  a.body = error_text(status, message);
  a.extra = extra;
  respond_answer(fd, req, a);
}

// The head of every stream's response; and a subscriber's socket buffer.
static void stream_begin(int fd, const HttpRequest& req) {
  Conn& c = srv.conns[fd];
  http_begin(c.out.bytes, 200, date_line(), req.keep_alive, req.http10);
  if (req.keep_alive && !req.http10) c.out.bytes += "Connection: keep-alive\r\n";  // implied by HTTP/1.1, said for proxies and readers
  c.out.bytes += "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n";
  if (!srv.cfg.cors_origin.empty()) c.out.bytes.append("Access-Control-Allow-Origin: ").append(srv.cfg.cors_origin).append("\r\n");
  c.out.bytes += "\r\n";
  // A subscriber may fall at most --sse-max-pending bytes behind in our
  // queue; its kernel send buffer gets the same bound, or the kernel would
  // hold megabytes for a client that stopped reading before we noticed.
  int sndbuf = int(std::min<size_t>(srv.cfg.sse_max_pending, INT32_MAX / 2));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
}

// The browser sends Last-Event-ID when it reconnects; a page may pass
// ?lastEventId= on its first connect. Decoded into *from_query if need be.
static std::string_view last_event_id(const HttpRequest& req, std::string* from_query) {
  std::string_view last = req.fields[LAST_EVENT_ID];
  if (last.empty() && http_form_value(req.query, "lastEventId", from_query) == FormLookup::Found) last = *from_query;
  return last;
}

// The connection, its first events queued, is a subscriber at `pos` of
// its list (of `count`).
static void stream_started(int fd, size_t pos, const char* what, size_t count) {
  Conn& c = srv.conns[fd];
  srv.metrics.requests_by_status[200]++;
  c.state = ConnState::Stream;
  c.sub_pos = uint32_t(pos);
  deadline_clear(fd);  // streams are exempt from the idle timeout
  flush_later(fd);
  if (!srv.cfg.quiet) log_line("sse: + %s %s (%zu subscribers)", what, peer_name(fd).c_str(), count);
}

static void stream_join(int fd, std::vector<int>& subscribers, const char* what) {
  size_t pos = sse_subscribe(subscribers, fd);
  stream_started(fd, pos, what, subscribers.size());
}

// --redis, where every process reads its versions from Redis: a newcomer
// whose Last-Event-ID is newer than the snapshot here saw that version on
// another process, and this one lags (its read is on the way, or it is
// inside its push gap). Sending ours would take the browser back in time,
// so it is sent nothing and waits, off the subscriber list, while the state
// is read now: it joins once the stream has its version, or when that read
// comes back whatever it says (Redis is the truth: a version newer than
// Redis's own is from before Redis lost its data, or made up).
static void stream_wait(int fd, Live& l, uint64_t version) {
  sse_retry(srv.conns[fd].out.bytes, SSE_RETRY_MS);
  srv.conns[fd].ahead = true;
  l.ahead.push_back({fd, version, l.reads_sent + 1});  // (a read on its way was sent before it came)
  l.stream.dirty = true;
  stream_started(fd, l.ahead.size() - 1, l.spec.paths[0], l.stream.subscribers.size() + l.ahead.size());
}

// Takes the newcomer at `pos` out of l.ahead (the last one moves into its place).
static void ahead_leave(Live& l, size_t pos) {
  l.ahead[pos] = l.ahead.back();
  l.ahead.pop_back();
  if (pos < l.ahead.size()) srv.conns[l.ahead[pos].fd].sub_pos = uint32_t(pos);
}

// After a read of the stream's state: the newcomers it has caught up with
// join its subscribers, sent the snapshot if it is newer than theirs.
static void ahead_caught_up(Live& l) {
  for (size_t i = 0; i < l.ahead.size();) {
    Live::Ahead a = l.ahead[i];
    if (a.version > l.stream.version && l.reads_done < a.read_awaited) {
      i++;
      continue;
    }
    ahead_leave(l, i);
    srv.conns[a.fd].ahead = false;
    srv.conns[a.fd].sub_pos = uint32_t(sse_subscribe(l.stream.subscribers, a.fd));
    if (a.version != l.stream.version) sse_send(a.fd, l.stream.frame, true);
  }
}

// Turns the connection into a subscriber of stream `stream`: the SSE
// headers, the reconnect delay and the snapshot every subscriber has go out
// at once (or, for a stream of the time, the time now) — unless its
// Last-Event-ID names that snapshot, or (--redis) one newer than it
// (stream_wait).
static void on_subscribe(int fd, const HttpRequest& req, int stream) {
  Conn& c = srv.conns[fd];
  Live& l = srv.lives[size_t(stream)];
  stream_begin(fd, req);
  c.stream = int16_t(stream);
  std::string from_query;
  if (l.spec.is_time) {
    sse_retry(c.out.bytes, SSE_RETRY_MS);
    sse_event(c.out.bytes, {}, {}, l.spec.render(srv.wall_ms));
    l.renders++;
  } else {
    std::optional<uint64_t> last = sse_parse_id(last_event_id(req, &from_query));
    if (last > l.stream.version && l.spec.fetch && !srv.cfg.redis.empty()) return stream_wait(fd, l, *last);
    sse_open(c.out.bytes, l.stream, last, SSE_RETRY_MS);
  }
  stream_join(fd, l.stream.subscribers, l.spec.paths[0]);
}

// The streams a /live request names (?stream=clock&stream=poll), as bits
// of srv.lives; 0 with the message for a 400 when the set is empty, names
// a stream twice or names one that does not exist.
static uint32_t streams_named(std::string_view query, std::string* error) {
  std::string all;  // "clock, redpacket, poll, cinema", for the messages
  for (const Live& l : srv.lives) all.append(all.empty() ? "" : ", ").append(l.spec.name);
  uint32_t streams = 0;
  size_t named = 0;
  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    std::string name;
    FormLookup found = http_form_value(pair, "stream", &name);
    if (found == FormLookup::Absent) continue;
    if (found == FormLookup::Malformed) return *error = "a stream name has a broken %-escape", 0;
    if (++named > srv.lives.size()) return *error = "more streams named than there are (" + all + ")", 0;
    name.resize(std::min<size_t>(name.size(), 64));
    auto it = std::find_if(srv.lives.begin(), srv.lives.end(), [&](const Live& l) { return name == l.spec.name; });
    if (it == srv.lives.end()) return *error = "no stream is named '" + name + "' (there are " + all + ")", 0;
    uint32_t bit = uint32_t(1) << (it - srv.lives.begin());
    if (streams & bit) return *error = "the stream '" + name + "' is named twice", 0;
    streams |= bit;
  }
  if (streams == 0) *error = "name the streams to follow, as in /live?stream=clock&stream=poll (there are " + all + ")";
  return streams;
}

// The set of `streams`, made for its first subscriber: every stream framed
// from what it holds now, one after another, so each frame's id is true.
// Sets are kept when their last subscriber leaves: there are at most
// 2^streams - 1 of them (15 for the four apps).
static int set_of(uint32_t streams) {
  for (size_t i = 0; i < srv.sets.size(); i++)
    if (srv.sets[i].streams == streams) return int(i);
  SseSet& set = srv.sets.emplace_back();
  set.streams = streams;
  set.last_send_ms = srv.now_ms;
  for (size_t i = 0; i < srv.lives.size(); i++)
    if (streams & (uint32_t(1) << i)) set.members.push_back({.stream = &srv.lives[i].stream, .bit = int(i), .in_id = !srv.lives[i].spec.is_time});
  for (size_t m = 0; m < set.members.size(); m++)
    if (set.members[m].in_id && set.members[m].stream->version != 0) sse_set_frame(set, m);
  return int(srv.sets.size()) - 1;
}

// Takes the /live newcomer at `pos` out of srv.set_ahead (the last one moves into its place).
static void set_ahead_leave(size_t pos) {
  srv.set_ahead[pos] = std::move(srv.set_ahead.back());
  srv.set_ahead.pop_back();
  if (pos < srv.set_ahead.size()) srv.conns[srv.set_ahead[pos].fd].sub_pos = uint32_t(pos);
}

// As stream_wait, for a /live newcomer: if its id names, for any stream of
// the set, a version newer than the one here (--redis), it is sent nothing
// more and waits until every such stream has caught up or been read since
// (sets_caught_up). Returns whether it waits.
static bool set_wait(int fd, const SseSet& set, std::string_view last_id) {
  if (srv.cfg.redis.empty()) return false;
  std::vector<uint64_t> held = sse_set_parse_id(set, last_id), awaited(set.members.size(), 0);
  bool ahead = false;
  for (size_t m = 0; m < set.members.size(); m++) {
    Live& l = srv.lives[size_t(set.members[m].bit)];
    if (held[m] <= l.stream.version || !l.spec.fetch) continue;
    awaited[m] = l.reads_sent + 1;  // (a read on its way was sent before it came)
    l.stream.dirty = ahead = true;
  }
  if (!ahead) return false;
  srv.conns[fd].ahead = true;
  srv.set_ahead.push_back({fd, std::string(last_id), std::move(awaited)});
  stream_started(fd, srv.set_ahead.size() - 1, "/live", set.subscribers.size());
  return true;
}

// GET /live: follows every stream the query names on this one connection
// (sse.hpp, "Many streams on one connection"). A newcomer gets the time
// now, then each stream its Last-Event-ID does not name at its current version.
static void on_follow(int fd, const HttpRequest& req) {
  std::string error;
  uint32_t streams = streams_named(req.query, &error);
  if (streams == 0) return respond_refusal(fd, req, 400, error);
  Conn& c = srv.conns[fd];
  int index = set_of(streams);
  SseSet& set = srv.sets[size_t(index)];
  stream_begin(fd, req);
  sse_retry(c.out.bytes, SSE_RETRY_MS);
  for (const SseSetMember& member : set.members) {
    if (member.in_id) continue;
    Live& l = srv.lives[size_t(member.bit)];
    sse_event(c.out.bytes, {}, l.spec.name, l.spec.render(srv.wall_ms));
    l.renders++;
  }
  std::string from_query;
  std::string_view last = last_event_id(req, &from_query);
  c.set = int16_t(index);
  if (set_wait(fd, set, last)) return;
  sse_set_catch_up(c.out.bytes, set, last);
  stream_join(fd, set.subscribers, "/live");
}

// The /live newcomers a read has caught up with (as ahead_caught_up, for a
// set): each is sent what its id lacks and joins the set's subscribers.
static void sets_caught_up() {
  for (size_t i = 0; i < srv.set_ahead.size();) {
    const Server::SetAhead& a = srv.set_ahead[i];
    int fd = a.fd;
    Conn& c = srv.conns[fd];
    SseSet& set = srv.sets[size_t(c.set)];
    std::vector<uint64_t> held = sse_set_parse_id(set, a.last_id);
    bool waits = false;
    for (size_t m = 0; m < set.members.size(); m++) {
      const Live& l = srv.lives[size_t(set.members[m].bit)];
      waits = waits || (held[m] > l.stream.version && l.reads_done < a.read_awaited[m]);
    }
    if (waits) {
      i++;
      continue;
    }
    std::string catch_up;
    sse_set_catch_up(catch_up, set, a.last_id);
    set_ahead_leave(i);  // (`a` is gone)
    c.out.add(catch_up, false);
    flush_later(fd);
    c.ahead = false;
    c.sub_pos = uint32_t(sse_subscribe(set.subscribers, fd));
  }
}

// ---- One connection: write -----------------------------------------------------

// Writes as much pending output as the kernel takes, up to the per-turn
// budget. May mark the connection for closing (write error, or done and
// close_after_write).
static void conn_flush(int fd) {
  Conn& c = srv.conns[fd];
  c.in_flush_list = false;
  if (c.state == ConnState::Closing || c.state == ConnState::Free) return;
  size_t budget = WRITE_BUDGET_BYTES;
  while (c.out.pending() > 0 && budget > 0) {
    std::string_view next = c.out.unsent(budget);
    ssize_t n = write(fd, next.data(), next.size());
    if (n > 0) {
      c.out.written(size_t(n));
      budget -= size_t(n);
      srv.metrics.bytes_written += uint64_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;  // the kernel's buffer is full: EPOLLOUT will tell us
    return conn_close_later(fd);          // EPIPE, ECONNRESET: SIGPIPE is ignored, so we learn it here
  }
  size_t held = c.out.bytes.capacity();
  c.out.settle(KEEP_CAPACITY_BYTES, c.state == ConnState::Stream);  // a subscriber keeps no buffer while it keeps up
  if (c.state == ConnState::Stream) srv.freed_bytes += held - c.out.bytes.capacity();  // counted for malloc_trim, as a close's
  if (c.out.pending() == 0) {
    if (c.close_after_write) return conn_close_later(fd);
    if (c.reading_paused) {
      c.reading_paused = false;
      if (!c.stash.empty()) srv.resume_list.push_back(fd);
    }
  }
  conn_set_interest(fd);
}

// A broadcast's send function: write to the subscriber now if it has nothing
// queued; otherwise queue, replacing a queued snapshot nothing of which has
// left yet (snapshots are whole state: only the newest matters). Heartbeats go
// only to idle subscribers. Over --sse-max-pending the subscriber is dropped.
// On /live the queue keeps the newest snapshot of each stream (`stream`:
// whose this one is), in the order the set framed them.
static void sse_send(int fd, std::string_view bytes, bool snapshot, int stream) {
  Conn& c = srv.conns[fd];
  if (c.state != ConnState::Stream) return;  // closing already
  if (c.out.pending() == 0) {
    ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n == ssize_t(bytes.size())) {
      srv.metrics.bytes_written += uint64_t(n);
      return;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return conn_close_later(fd);
    n = std::max<ssize_t>(n, 0);
    srv.metrics.bytes_written += uint64_t(n);
    c.out.add(bytes.substr(size_t(n)), snapshot && n == 0);
    if (snapshot && n == 0 && c.set >= 0) c.out.snapshot_streams = uint32_t(1) << stream;
    return conn_set_interest(fd);
  }
  if (!snapshot) return;
  static std::string latest;
  if (c.set >= 0) {
    c.out.snapshot_streams |= uint32_t(1) << stream;
    latest.clear();
    sse_set_latest(latest, srv.sets[size_t(c.set)], c.out.snapshot_streams);
    bytes = latest;
  }
  if (c.out.pending_before_snapshots() + bytes.size() > srv.cfg.sse_max_pending) {
    srv.metrics.slow_consumers_dropped++;
    if (!srv.cfg.quiet) log_line("sse: slow consumer %s dropped (%zu bytes pending)", peer_name(fd).c_str(), c.out.pending_before_snapshots());
    return conn_close_later(fd);
  }
  c.out.replace_snapshots(bytes);
}

// ---- One connection: close -----------------------------------------------------

static void conn_close(int fd) {
  Conn& c = srv.conns[fd];
  if (c.ahead) {
    c.set >= 0 ? set_ahead_leave(c.sub_pos) : ahead_leave(srv.lives[size_t(c.stream)], c.sub_pos);
    c.ahead = false;
    c.stream = c.set = -1;
  }
  if (c.stream >= 0 || c.set >= 0) {
    std::vector<int>& subscribers = c.set >= 0 ? srv.sets[size_t(c.set)].subscribers : srv.lives[size_t(c.stream)].stream.subscribers;
    int moved = sse_unsubscribe(subscribers, c.sub_pos);
    if (moved >= 0) srv.conns[moved].sub_pos = c.sub_pos;
    const char* what = c.set >= 0 ? "/live" : srv.lives[size_t(c.stream)].spec.paths[0];
    if (!srv.cfg.quiet) log_line("sse: - %s %s (%zu subscribers)", what, peer_name(fd).c_str(), subscribers.size());
    c.stream = c.set = -1;
  }
  deadline_clear(fd);
  close(fd);  // also removes it from epoll: no other process shares this socket
  c.state = ConnState::Free;
  c.in_flush_list = false;
  // A closed connection holds its Conn slot and nothing else: with its
  // buffers kept, every fd that once carried a 64 KiB body would pin one.
  srv.freed_bytes += c.out.bytes.capacity() + c.stash.capacity() + (c.http ? c.http->capacity() : 0);
  c.out.clear(true);
  std::string().swap(c.stash);
  give_back_parser(c);
  --(c.over_capacity ? srv.conns_over : srv.conns_open);
  if (srv.accept_paused_until_ms >= 0 && srv.stop_deadline_ms < 0) accept_pause(false);  // an fd is free again
}

static void close_marked() {
  for (size_t i = 0; i < srv.close_list.size(); i++) conn_close(srv.close_list[i]);
  srv.close_list.clear();
  // free() keeps what it gets back for later use, and the kernel sees the
  // pages as ours until the allocator returns them: it does so on its own
  // only from the top of the heap. Once a MiB of buffers has been freed,
  // malloc_trim hands back every whole free page (a walk over the free
  // chunks: rare, and cheap next to a MiB of closes).
  if (srv.freed_bytes >= TRIM_AFTER_BYTES) {
    malloc_trim(0);
    srv.freed_bytes = 0;
  }
  if (srv.stop_deadline_ms >= 0 && srv.listen_fd >= 0) {  // stopping: the listener goes with this turn
    close(srv.listen_fd);
    srv.listen_fd = -1;
  }
}

// ---- One turn: the commit ------------------------------------------------------

// Rebuilds one connection's output after a failed commit: each reply in
// `changes` (this connection's, in order) becomes a 503 saying `what`,
// with `extra` headers; every other reply stands, so a pipelining client
// still gets one answer per request, in order.
static void replace_with_503(int fd, const Provisional* changes, size_t count, std::string_view what, std::string_view extra) {
  Conn& c = srv.conns[fd];
  std::string out;
  size_t at = c.out.sent;  // nothing of this turn's replies has been sent
  for (size_t i = 0; i < count; i++) {
    const Provisional& p = changes[i];
    out.append(c.out.bytes, at, p.begin - at);
    http_respond(out, 503, date_line(), p.keep_alive, p.http10, "application/json", what, extra);
    srv.metrics.requests_by_status[503]++;
    at = p.end;
  }
  out.append(c.out.bytes, at);
  c.out.clear(false);  // no snapshot has been queued yet: pushes come after the commit
  c.out.bytes.swap(out);
}

// Commits everything this turn wrote, before any of its replies leaves. If
// the database refuses (disk full, over --db-max-mb, an I/O error), every
// change of the turn is undone, newest first, and each reply that
// reported one becomes a 503: no client leaves believing in a change that
// was not stored, and the server keeps serving. An I/O error at the
// COMMIT itself leaves the outcome unknown (the commit record may be in
// the WAL, and the next start would replay it): those 503s say the change
// may or may not have been made, and the store takes no more writes
// (Store::stopped; /healthz says degraded). When the commit succeeds,
// each app learns that what it holds is stored.
static void turn_commit() {
  if (srv.store.commit()) {
    for (App* app : srv.apps) app->committed();
    srv.provisional.clear();
    return;
  }
  srv.metrics.failed_commits++;
  bool unknown = srv.store.outcome_unknown();
  log_line("store: commit failed: %s; undoing %zu changes%s", srv.store.error().c_str(), srv.provisional.size(),
           unknown ? "; they may be stored all the same: no more writes until a restart" : "");
  for (auto it = srv.provisional.rbegin(); it != srv.provisional.rend(); ++it)
    if (it->undo) it->undo();
  // After an unknown outcome the store takes no more writes: no Retry-After, a retry would only be refused.
  std::string_view what = unknown ? "{\"ok\":false,\"message\":\"the database had an I/O error while committing: "
                                    "the change may or may not have been made\"}\n"
                                  : "{\"ok\":false,\"message\":\"the database cannot take writes right now; nothing was changed\"}\n";
  std::string_view extra = unknown ? "" : "Retry-After: 1\r\n";
  // Each connection's replies, together and in order: one rebuild per connection.
  std::stable_sort(srv.provisional.begin(), srv.provisional.end(), [](const Provisional& a, const Provisional& b) { return a.fd < b.fd; });
  for (size_t i = 0, j; i < srv.provisional.size(); i = j) {
    for (j = i + 1; j < srv.provisional.size() && srv.provisional[j].fd == srv.provisional[i].fd; j++) {
    }
    ConnState state = srv.conns[srv.provisional[i].fd].state;  // a stream may follow the reply: it stays
    if (state == ConnState::Http || state == ConnState::Stream)
      replace_with_503(srv.provisional[i].fd, &srv.provisional[i], j - i, what, extra);
  }
  srv.provisional.clear();
}

// Parses what paused or waiting connections left stashed, now that their
// output drained or their waiting request was answered.
static void resume_stashed() {
  for (size_t i = 0; i < srv.resume_list.size(); i++) on_resume(srv.resume_list[i]);
  srv.resume_list.clear();
}

// After the commit: every request that waited for it, or for the
// database's lock, is handled again — all of them, in one pass, reading
// what is now stored — and then what their clients sent after them. A
// refusal reads and writes nothing, so the thousand refusals that waited
// behind one booking are all answered with this turn's answers, and none
// waits twice. A request that writes here (a packet free again after an
// undo, a lock now free) opens the next transaction, which turn_finish
// commits before any of it is answered; one that would read that write
// waits for the next turn's commit. Returns whether any request waited.
static bool answer_parked() {
  if (srv.parked.empty() && srv.lock_waiting.empty()) return false;  // most turns
  // The lock, asked for once: while another process still holds it, the
  // writes that wait for it are not handled again (each would only find
  // it held), but for those whose LOCK_WAIT_MS is over, to be told 503.
  bool still_locked = !srv.lock_waiting.empty() && !srv.store.hold() && srv.store.locked_elsewhere();
  for (std::vector<Server::Parked>* list : {&srv.parked, &srv.lock_waiting}) {
    srv.unparking.swap(*list);
    for (Server::Parked p : srv.unparking) {
      Conn& c = srv.conns[size_t(p.fd)];
      // Closed while it waited (its fd perhaps given to a new connection): nothing to answer.
      if (c.state != ConnState::Http || c.generation != p.generation || (c.waits != Then::AfterCommit && c.waits != Then::AfterLock)) continue;
      if (c.waits == Then::AfterLock && still_locked && srv.now_ms - c.lock_wait_since_ms < LOCK_WAIT_MS) {
        srv.lock_waiting.push_back(p);
        continue;
      }
      c.waits = Then::Send;
      on_request(p.fd, c.http->request());
      if (c.waits == Then::Send) conn_next_request(p.fd);
    }
    srv.unparking.clear();
  }
  resume_stashed();
  return true;
}

// ---- One turn: the pushes ------------------------------------------------------

// Renders the stream's state; a new version only if it differs from the
// last. Returns whether it changed. Runs after the turn's commit, so what it
// renders is stored.
static bool live_refresh(Live& l) {
  std::string json = l.spec.render(clock_ms(CLOCK_REALTIME));
  l.renders++;
  if (json == l.stream.json) return false;
  sse_set_snapshot(l.stream, json, srv.event_ids.take());
  return true;
}

// Sends a stream's new snapshot to every set that holds it, framed once
// per set. A periodic push of an unchanged snapshot is not repeated on a
// set: its subscribers have it, under the id they hold, and on one
// connection the repeats of every stream would add up for nothing (the
// heartbeat keeps the connection warm).
static void sets_broadcast(const Live& l) {
  int bit = int(&l - srv.lives.data());
  for (SseSet& set : srv.sets) {
    if (!(set.streams & (uint32_t(1) << bit))) continue;
    size_t m = size_t(std::find_if(set.members.begin(), set.members.end(), [bit](auto& e) { return e.bit == bit; }) - set.members.begin());
    if (set.members[m].version == l.stream.version) continue;
    sse_set_frame(set, m);
    set.last_send_ms = srv.now_ms;
    sse_broadcast(set.subscribers, set.members[m].frame, [bit](int fd, std::string_view bytes) { sse_send(fd, bytes, true, bit); });
  }
}

// Sends the stream's snapshot (or a heartbeat) to every subscriber, those
// following it on /live too.
static void live_broadcast(Live& l, bool snapshot) {
  SseStream& s = l.stream;
  timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  sse_broadcast(s.subscribers, snapshot ? std::string_view(s.frame) : SSE_HEARTBEAT,
                [snapshot](int fd, std::string_view bytes) { sse_send(fd, bytes, snapshot); });
  if (snapshot) sets_broadcast(l);
  if (!snapshot)  // newcomers waiting for the stream to catch up (stream_wait) get the heartbeat too
    for (const Live::Ahead& a : l.ahead) sse_send(a.fd, SSE_HEARTBEAT, false);
  clock_gettime(CLOCK_MONOTONIC, &b);
  if (snapshot) {
    l.snapshots_sent++;
    srv.metrics.broadcasts++;
    srv.metrics.last_broadcast_seconds = double(b.tv_sec - a.tv_sec) + double(b.tv_nsec - a.tv_nsec) / 1e9;
  }
  sse_sent(s, srv.now_ms, snapshot);
}

// --redis: the state lives in Redis, so a due snapshot is a read, and the
// push happens when its reply comes — with Redis's version as the event id,
// the same on every process. One read per stream at a time; a change that
// arrives meanwhile makes the stream due again.
static void live_fetch(Live& l) {
  l.fetching = true;
  sse_skipped(l.stream, srv.now_ms);  // clean until a new change; the period starts over
  size_t index = size_t(&l - srv.lives.data());
  uint64_t read = ++l.reads_sent;
  l.spec.fetch([index, read](const Snapshot* snap) {
    Live& l = srv.lives[index];
    l.fetching = false;
    if (!snap) return;  // Redis is down: the next period or change asks again
    l.renders++;
    l.reads_done = read;
    bool again = l.stream.dirty;  // a change heard while this read was on its way: it may not be in it
    // The bytes too: a version is one state (engine/version.lua), and should
    // Redis ever say otherwise, subscribers are sent what it holds.
    bool changed = snap->version != l.stream.version || snap->json != l.stream.json;
    if (changed) sse_set_snapshot(l.stream, snap->json, snap->version);
    if (changed || l.spec.repeat) live_broadcast(l, true);  // (which marks the stream clean)
    ahead_caught_up(l);
    sets_caught_up();
    l.stream.dirty = again || !l.ahead.empty();
  });
}

// Pushes every stream that is due (sse_due): a new snapshot — the leading
// or trailing edge of a change, or its period — or a heartbeat.
static void streams_push() {
  for (Live& l : srv.lives) {
    SseDue due = sse_due(l.stream, srv.now_ms, srv.cfg.push_gap_ms, HEARTBEAT_MS);
    if (due == SseDue::Nothing) continue;
    bool snapshot = due == SseDue::Snapshot;
    if (snapshot && l.spec.fetch && !srv.cfg.redis.empty()) {
      if (!l.fetching) live_fetch(l);
      continue;
    }
    if (snapshot && !live_refresh(l) && !l.spec.repeat) {
      sse_skipped(l.stream, srv.now_ms);
      continue;
    }
    live_broadcast(l, snapshot);
  }
  for (SseSet& set : srv.sets) {  // a set's heartbeat is its own: its streams' may all be busy elsewhere
    if (srv.now_ms < set.last_send_ms + HEARTBEAT_MS) continue;
    sse_broadcast(set.subscribers, SSE_HEARTBEAT, [](int fd, std::string_view bytes) { sse_send(fd, bytes, false); });
    for (const Server::SetAhead& a : srv.set_ahead)
      if (&srv.sets[size_t(srv.conns[a.fd].set)] == &set) sse_send(a.fd, SSE_HEARTBEAT, false);
    set.last_send_ms = srv.now_ms;
  }
}

// ---- One turn: Redis (--redis) ---------------------------------------------------
//
// Two connections, both fds in our epoll like any other (engine/redis.hpp):
// one for the apps' commands, one subscribed to "sse:changed", where every write
// script publishes "<stream>" (and a state script that made a version by
// itself, "<stream> <version>"). Hearing of a change it has not read marks
// the stream dirty: the usual push rules then read it once and
// push it to this process's subscribers. Pub/sub may lose a message (on a
// reconnect); each stream's period reads it anyway, so a lost one costs at
// most a period, and every (re)connect reads every stream afresh.

static void redis_streams_dirty() {
  for (Live& l : srv.lives)
    if (l.spec.fetch) l.stream.dirty = true;
}

static void on_redis_message(const redisReply* r) {
  std::string_view text(r->element[2]->str ? r->element[2]->str : "", r->element[2]->len);
  size_t sp = std::min(text.find(' '), text.size());
  std::optional<uint64_t> version = sp < text.size() ? sse_parse_id(text.substr(sp + 1)) : std::nullopt;
  for (Live& l : srv.lives)
    if (l.spec.fetch && text.substr(0, sp) == l.spec.name && version != l.stream.version) l.stream.dirty = true;
}

// Registers a Redis connection's socket with epoll, or changes or ends that.
static void redis_watch(int fd, uint32_t before, uint32_t after) {
  epoll_set(srv.epoll_fd, before == 0 ? EPOLL_CTL_ADD : after == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD, fd, after);
}

// Once a turn: what the turn's handlers asked of Redis goes out in one
// write per connection; deadlines and reconnects; a PING a second on the
// subscription, so a dead one is noticed within --redis-timeout.
static void redis_turn() {
  if (srv.cfg.redis.empty()) return;
  if (srv.redis_sub.connected() && srv.now_ms - srv.redis_pinged_ms >= 1000) {
    srv.redis_pinged_ms = srv.now_ms;
    srv.redis_sub.command({"PING"}, nullptr);
  }
  for (Redis* r : {&srv.redis, &srv.redis_sub}) {
    r->on_deadline(srv.now_ms);
    r->flush(srv.now_ms);
    srv.freed_bytes += std::exchange(r->freed_bytes, 0);  // given back to the kernel with the closed connections' (close_marked)
  }
}

// ---- One turn: deadlines and signals -------------------------------------------

// A request begun but not finished in time is told 408 before the close;
// an idle connection is just closed (a client reusing it would take a 408
// for the answer to a request it has not sent yet). What the kernel holds
// for the connection has arrived, whether or not this turn's events said
// so (a turn that took longer than the timeout, a batch cut at
// EPOLL_BATCH), so it is read before the verdict: a request it completes
// is answered, and one it begins on an idle connection gets its own
// header timeout. A request that is still partial keeps its old clock, so
// a client dribbling bytes gains nothing.
static void deadlines_expire() {
  for (DeadlineList& l : srv.deadlines) {
    while (l.head >= 0 && srv.conns[l.head].deadline_ms <= srv.now_ms) {
      int fd = l.head;
      Conn& c = srv.conns[fd];
      if (c.state == ConnState::Http) on_readable(fd);
      if (c.deadline == NO_DEADLINE || c.deadline_ms > srv.now_ms) continue;  // answered, waiting, or its clock restarted
      deadline_clear(fd);
      if (c.state != ConnState::Http) continue;  // closing already
      srv.metrics.timeouts++;
      if (c.http->mid_request() && !c.close_after_write) respond_error(fd, 408, "the request did not arrive in time");
      else conn_close_later(fd);
    }
  }
}

// The next moment something is due: a stream, a timeout, a paused accept.
// (Every stream has a heartbeat due within HEARTBEAT_MS, so there always is one.)
// A stream whose read from Redis is on its way waits for that reply, not
// for a time: the reply, or the command's deadline, wakes the loop.
static int64_t next_deadline_ms() {
  int64_t t = srv.now_ms + HEARTBEAT_MS;
  for (const Live& l : srv.lives)
    if (!l.fetching) t = std::min(t, sse_next_due_ms(l.stream, srv.cfg.push_gap_ms, HEARTBEAT_MS));
  for (const SseSet& set : srv.sets) t = std::min(t, set.last_send_ms + HEARTBEAT_MS);
  for (const DeadlineList& l : srv.deadlines)
    if (l.head >= 0) t = std::min(t, srv.conns[l.head].deadline_ms);
  if (srv.accept_paused_until_ms >= 0) t = std::min(t, srv.accept_paused_until_ms);
  if (srv.stop_deadline_ms >= 0) t = std::min(t, srv.stop_deadline_ms);
  if (!srv.lock_waiting.empty()) t = std::min(t, srv.now_ms + LOCK_RETRY_MS);  // asked again, never spun on
  for (const Redis* r : {&srv.redis, &srv.redis_sub})
    if (r->next_deadline_ms() >= 0) t = std::min(t, r->next_deadline_ms());
  if (srv.redis_sub.connected()) t = std::min(t, srv.redis_pinged_ms + 1000);
  return std::max(t, srv.now_ms + 1);
}

// Sets the timerfd to fire at the next deadline (absolute, monotonic clock).
// Deadlines move later all the time (every answer restarts an idle clock),
// so a later one is left alone: the timer fires a little early, once, and
// is armed again then. That keeps timerfd_settime out of the request path.
static void timer_arm() {
  int64_t t = next_deadline_ms();
  if (srv.timer_armed_ms >= 0 && t >= srv.timer_armed_ms) return;
  srv.timer_armed_ms = t;
  timer_fire_at(srv.timer_fd, t);
}

static void on_timer() {
  uint64_t expirations;
  (void)!read(srv.timer_fd, &expirations, sizeof expirations);  // drain it, or it stays readable
  srv.timer_armed_ms = -1;
  if (srv.accept_paused_until_ms >= 0 && srv.now_ms >= srv.accept_paused_until_ms && srv.stop_deadline_ms < 0)
    accept_pause(false);
}

// SIGTERM or SIGINT: stop accepting, let queued answers and streams flush,
// close everything else, and leave within STOP_GRACE_MS.
static void on_signal() {
  signalfd_siginfo si;
  (void)!read(srv.signal_fd, &si, sizeof si);
  if (srv.stop_deadline_ms >= 0) return;
  log_line("signal %u: stopping", si.ssi_signo);
  srv.stop_deadline_ms = srv.now_ms + STOP_GRACE_MS;
  // Out of epoll now; closed at the end of the turn (close_marked), so no
  // later event of this batch can meet its fd number reused or unknown.
  if (srv.accept_paused_until_ms < 0) epoll_set(srv.epoll_fd, EPOLL_CTL_DEL, srv.listen_fd, 0);
  for (size_t fd = 0; fd < srv.conns.size(); fd++) {
    Conn& c = srv.conns[fd];
    if (c.state != ConnState::Http && c.state != ConnState::Stream) continue;
    if (c.out.pending() == 0 && c.waits == Then::Send) {  // a waiting request is answered first, then closed
      conn_close_later(int(fd));
    } else {
      c.close_after_write = true;
      conn_set_interest(int(fd));
    }
  }
}

// ---- One turn: the loop --------------------------------------------------------

static void on_event(const epoll_event& ev) {
  int fd = ev.data.fd;
  if (fd == srv.listen_fd) return srv.stop_deadline_ms < 0 ? on_accept() : void();  // stopping: taken out, not yet closed
  if (fd == srv.timer_fd) return on_timer();
  if (fd == srv.signal_fd) return on_signal();
  if (fd == srv.redis.fd()) return srv.redis.on_ready(ev.events, srv.now_ms);
  if (fd == srv.redis_sub.fd()) return srv.redis_sub.on_ready(ev.events, srv.now_ms);
  Conn& c = srv.conns[size_t(fd)];
  if (c.state == ConnState::Closing || c.state == ConnState::Free) return;
  // EPOLLHUP and EPOLLERR come whatever we asked for, and say the socket is
  // finished (a reset, or both directions shut): no answer can reach the
  // client. Closed now. Left to read() and write() to notice, a connection
  // waiting for its answer (which does neither) would come back from every
  // epoll_wait until the answer came: a spin. An answer that comes later
  // finds its ticket stale (on_later_answer).
  if (ev.events & (EPOLLHUP | EPOLLERR)) return conn_close_later(fd);
  if (ev.events & EPOLLIN) on_readable(fd);
  if (ev.events & EPOLLOUT) flush_later(fd);
}

// The second half of a turn, after the events: parse what paused
// connections stashed, expire timeouts, commit, answer the requests that
// waited for that commit (and commit what they wrote), write the answers,
// push the streams that are due, send what the turn asked of Redis, close
// what was marked.
static void turn_finish() {
  resume_stashed();
  deadlines_expire();
  turn_commit();  // whatever a reply reports is stored before the reply leaves
  if (answer_parked()) turn_commit();  // what they wrote, if anything
  for (size_t i = 0; i < srv.flush_list.size(); i++) conn_flush(srv.flush_list[i]);
  srv.flush_list.clear();
  streams_push();
  redis_turn();  // the turn's commands (writes, and reads for due pushes) leave together
  close_marked();
}

static void run() {
  static epoll_event events[EPOLL_BATCH];
  for (;;) {
    timer_arm();
    // Connections with stashed input or a request parked again by the last
    // pass have work even if no socket is ready; so do answers that came
    // after this turn's writes (Redis callbacks run by redis_turn: a
    // timeout, a batch that could not leave). A request waiting for the
    // database's lock has none: the timer asks again (next_deadline_ms).
    bool waiting = !srv.resume_list.empty() || !srv.parked.empty() || !srv.flush_list.empty();
    int n = epoll_wait(srv.epoll_fd, events, EPOLL_BATCH, waiting ? 0 : -1);
    // EINTR: after SIGSTOP and SIGCONT, epoll_wait fails even though no
    // handler ran (signal(7)). No event was taken: wait again, they are
    // all still there. (A turn now would judge timeouts on sockets whose
    // requests sit unread in the kernel.)
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("epoll_wait");
    srv.now_ms = clock_ms(CLOCK_MONOTONIC);
    srv.wall_ms = clock_ms(CLOCK_REALTIME);
    refresh_date();
    for (int i = 0; i < n; i++) on_event(events[i]);
    turn_finish();
    if (srv.stop_deadline_ms >= 0 && (srv.conns_open + srv.conns_over == 0 || srv.now_ms >= srv.stop_deadline_ms)) return;
  }
}

// =================================================================================
// Appendix: what the loop does not need to be read. /metrics, start-up (the
// routes, the connection table, the database, the listener, the loop's own
// fds, Redis), the server's flags and main.
// =================================================================================

// ---- /metrics --------------------------------------------------------------------
//
// /metrics in Prometheus's text format, from one table: a name, a type, a
// help line and how to read the value now — one sample, or one per stream
// (labelled stream="...") — then each app's own rows.

struct ConnTotals {
  size_t queued = 0, stashed = 0, buffers = 0;
};
static ConnTotals conn_totals;  // summed once per /metrics answer

struct MetricRow {
  const char* name;
  const char* type;
  const char* help;
  double (*value)();
  double (*per_stream)(const Live&) = nullptr;
};

static const MetricRow METRICS[] = {
    {"sse_connections_open", "gauge", "Client connections served now (those past --max-conns are counted apart).",
     [] { return double(srv.conns_open); }},
    {"sse_connections_over_capacity", "gauge", "Connections accepted past --max-conns, not yet answered 503 and closed.",
     [] { return double(srv.conns_over); }},
    {"sse_connections_refused_total", "counter", "Connections closed unanswered: their fd lay past the table sized at start.",
     [] { return double(srv.metrics.refused_past_table); }},
    {"sse_connections_accepted_total", "counter", "Connections accepted since start.", [] { return double(srv.metrics.accepted); }},
    {"sse_bytes_written_total", "counter", "Bytes written to client sockets.", [] { return double(srv.metrics.bytes_written); }},
    {"sse_slow_consumers_dropped_total", "counter", "Subscribers closed for falling --sse-max-pending behind.",
     [] { return double(srv.metrics.slow_consumers_dropped); }},
    {"sse_output_queued_bytes", "gauge", "Answers and events written that the kernel has not taken yet.",
     [] { return double(conn_totals.queued); }},
    {"sse_input_stashed_bytes", "gauge", "Requests received but parked until their client reads its answers.",
     [] { return double(conn_totals.stashed); }},
    {"sse_connection_buffer_bytes", "gauge", "Memory the connection table's buffers hold (output, stash, parser), open or not.",
     [] { return double(conn_totals.buffers); }},
    {"sse_timeouts_total", "counter", "Connections closed by the header or idle timeout.", [] { return double(srv.metrics.timeouts); }},
    {"sse_store_commits_total", "counter", "Database transactions committed (one per loop turn that wrote).",
     [] { return double(srv.store.commits); }},
    {"sse_store_rows_written_total", "counter", "Rows written to the database by committed transactions.",
     [] { return double(srv.store.rows_written); }},
    {"sse_store_failed_writes_total", "counter", "Turns whose writes the database refused; their changes were undone and answered 503.",
     [] { return double(srv.metrics.failed_commits); }},
    {"sse_requests_parked_total", "counter", "Requests that waited for a commit because their answer read a change not yet stored.",
     [] { return double(srv.metrics.requests_parked); }},
    {"sse_requests_lock_waited_total", "counter", "Writes that found the database locked by another process and waited (up to 250 ms).",
     [] { return double(srv.metrics.requests_lock_waited); }},
    {"sse_store_writes_stopped", "gauge", "1 once an I/O error at a commit stopped every write until a restart, else 0.",
     [] { return double(srv.store.stopped()); }},
    {"sse_store_checkpoints_total", "counter", "WAL checkpoints done by the helper thread.", [] { return double(srv.store.checkpoints()); }},
    {"sse_broadcasts_total", "counter", "Snapshots pushed to a stream's subscribers.", [] { return double(srv.metrics.broadcasts); }},
    {"sse_last_broadcast_seconds", "gauge", "How long the last snapshot broadcast took.",
     [] { return srv.metrics.last_broadcast_seconds; }},
    {"sse_redis_connected", "gauge", "1 while the connection to Redis is up (--redis), else 0.",
     [] { return double(srv.redis.connected()); }},
    {"sse_redis_commands_total", "counter", "Commands sent to Redis.", [] { return double(srv.redis.commands + srv.redis_sub.commands); }},
    {"sse_redis_script_calls_total", "counter", "Script calls, one per write; a batched script takes a turn's calls as one command.",
     [] { return double(srv.redis.script_calls); }},
    {"sse_redis_errors_total", "counter", "Error replies from Redis.", [] { return double(srv.redis.errors + srv.redis_sub.errors); }},
    {"sse_redis_reconnects_total", "counter", "Connections to Redis lost (each followed by reconnecting with backoff).",
     [] { return double(srv.redis.reconnects + srv.redis_sub.reconnects); }},
    {"sse_redis_timeouts_total", "counter", "Commands or connects Redis did not answer within --redis-timeout.",
     [] { return double(srv.redis.timeouts + srv.redis_sub.timeouts); }},
    {"sse_redis_command_seconds_sum", "counter", "Time from sending a command to its reply, summed.",
     [] { return srv.redis.latency_seconds_sum; }},
    {"sse_redis_command_seconds_count", "counter", "Replies timed in sse_redis_command_seconds_sum.",
     [] { return double(srv.redis.latency_count); }},
    {"sse_live_subscribers", "gauge", "Connections following a set of streams on /live (each also counted in sse_subscribers).",
     [] { return double(std::accumulate(srv.sets.begin(), srv.sets.end(), size_t(0), [](size_t n, const SseSet& s) { return n + s.subscribers.size(); })); }},
    {"sse_subscribers", "gauge", "SSE subscribers per stream, on its own route or on /live.", nullptr, [](const Live& l) {
       size_t n = l.stream.subscribers.size() + l.ahead.size(), bit = size_t(&l - srv.lives.data());
       for (const SseSet& set : srv.sets) n += set.streams & (uint32_t(1) << bit) ? set.subscribers.size() : 0;
       return double(n);
     }},
    {"sse_stream_snapshots_total", "counter", "Snapshots pushed, per stream.", nullptr, [](const Live& l) { return double(l.snapshots_sent); }},
    {"sse_stream_renders_total", "counter", "Times a stream's state was rendered (pushes due, and a time stream's newcomers).", nullptr,
     [](const Live& l) { return double(l.renders); }},
};

static Answer on_metrics() {
  conn_totals = {};
  for (const Conn& c : srv.conns) {
    conn_totals.buffers += c.out.bytes.capacity() + c.stash.capacity() + (c.http ? c.http->capacity() : 0);
    if (c.state == ConnState::Free) continue;
    conn_totals.queued += c.out.pending();
    conn_totals.stashed += c.stash.size();
  }
  Answer a;
  a.type = "text/plain; version=0.0.4; charset=utf-8";
  char line[256];
  auto add = [&](const char* fmt, auto... v) {
    snprintf(line, sizeof line, fmt, v...);
    a.body += line;
  };
  for (const MetricRow& row : METRICS) {
    add("# HELP %s %s\n# TYPE %s %s\n", row.name, row.help, row.name, row.type);
    if (row.value) add("%s %.15g\n", row.name, row.value());
    else
      for (const Live& l : srv.lives) add("%s{stream=\"%s\"} %.15g\n", row.name, l.spec.name, row.per_stream(l));
  }
  const char* last = "";
  for (const MetricSpec& m : srv.app_metrics) {
      if (strcmp(m.name, last) != 0) add("# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.type);
      last = m.name;
      m.labels ? add("%s{%s} %.15g\n", m.name, m.labels, m.value()) : add("%s %.15g\n", m.name, m.value());
    }
  a.body += "# HELP sse_http_requests_total Responses sent, by status code.\n# TYPE sse_http_requests_total counter\n";
  srv.metrics.requests_by_status[200]++;  // count this very answer
  for (int code = 100; code < 600; code++)
    if (srv.metrics.requests_by_status[code]) add("sse_http_requests_total{code=\"%d\"} %" PRIu64 "\n", code, srv.metrics.requests_by_status[code]);
  srv.metrics.requests_by_status[200]--;
  return a;
}

// ---- Start-up --------------------------------------------------------------------

static void setup_routes() {
  auto builtin = [](Answer (*answer)()) { return Route::Entry{HTTP_GET, [answer](const Request&) { return answer(); }}; };
  srv.router.add("/healthz", "GET, HEAD", builtin(on_healthz));
  srv.router.add("/metrics", "GET, HEAD", builtin(on_metrics));
  srv.router.add(std::string(HTTP_ASTERISK), "OPTIONS", builtin(on_options));
  for (size_t app = 0; app < srv.apps.size(); app++) {
    for (const StreamSpec& s : srv.apps[app]->streams()) {
      srv.lives.push_back({SseStream{}, s, int(app)});
      srv.lives.back().stream.name = s.name;
      srv.lives.back().stream.period_ms = s.period_ms;
      for (const char* path : s.paths) srv.router.add(path, "GET", {HTTP_GET, {}, int(app), int(srv.lives.size()) - 1});
    }
    for (RouteSpec& r : srv.apps[app]->routes()) srv.router.add(r.path, r.methods, {HTTP_GET, std::move(r.handler), int(app), -1, r.admin});
    for (MetricSpec& m : srv.apps[app]->metrics()) srv.app_metrics.push_back(std::move(m));
  }
  // Any set of the streams on one connection; one SseSet per set followed
  // (at most 2^streams - 1), so their number is bounded here.
  if (srv.lives.size() > MAX_STREAMS) {
    fprintf(stderr, "sse-server: %zu streams, more than /live can combine (%zu)\n", srv.lives.size(), MAX_STREAMS);
    exit(1);
  }
  srv.router.add("/live", "GET", {.method = HTTP_GET, .handler = {}, .streams_in_query = true});
}

// Sizes the connection table from the fd limit, raising the soft limit to
// the hard one (capped at FD_CEILING) first.
static void setup_fd_table() {
  int fds = fd_limit_raised(FD_CEILING);
  if (fds < 0) die("getrlimit");
  if (fds <= FD_RESERVE + 8) {
    fprintf(stderr, "sse-server: the fd limit (%d) is too low\n", fds);
    exit(1);
  }
  if (srv.cfg.max_conns == 0 || srv.cfg.max_conns > fds - FD_RESERVE) srv.cfg.max_conns = fds - FD_RESERVE;
  // Slots for the connections served, and FD_RESERVE more: the few fds the
  // server holds itself, then room to tell connections past --max-conns
  // "503". Reserving never touches the memory, so the table's RSS follows
  // the highest fd in use; and since it is never grown past this (see
  // on_accept), a Conn never moves.
  srv.conns.reserve(size_t(srv.cfg.max_conns + FD_RESERVE));
}

// Opens the database, then each app its tables and state (on a first
// start, what the flags describe), then takes this start's run number,
// stored before any event id made from it leaves (with no file, the ids
// come from the clock instead: see SseIds). Any failure is a message
// and exit 1 (2 for flags that describe nothing valid): never a silent
// fresh start.
static void setup_store() {
  uint64_t key[2];  // the name index's key, before anything is loaded into one
  if (getrandom(key, sizeof key, 0) != sizeof key) die("getrandom");
  NameIndex::set_key(key[0], key[1]);
  srv.wall_ms = clock_ms(CLOCK_REALTIME);
  std::string why = srv.store.error();
  int status = srv.store.open(srv.cfg.db_path, srv.cfg.fsync, srv.cfg.db_max_mb) ? 0 : 1;
  if (status) why = "cannot use database " + srv.cfg.db_path + ": " + srv.store.error();
  for (size_t i = 0; status == 0 && i < srv.apps.size(); i++) {
    App* app = srv.apps[i];
    bool in_redis = !srv.cfg.redis.empty() && app->has_redis_mode();
    status = in_redis ? app->open_redis(srv.redis, &why) : app->open(srv.store, srv.wall_ms, &why);
    if (status != 0) why = std::string(app->name()) + ": " + why;
  }
  int64_t run = 0;
  if (status == 0 && (!srv.store.start_run(srv.wall_ms, &run) || !srv.store.commit()))
    status = 1, why = "cannot write to " + srv.cfg.db_path + ": " + srv.store.error();
  if (status == 0 && uint64_t(run) > SseIds::MAX_RUN) status = 1, why = srv.cfg.db_path + " has counted more runs than event ids can tell apart";
  if (status) {
    fprintf(stderr, "sse-server: %s\n", why.c_str());
    exit(status);
  }
  srv.event_ids = srv.cfg.db_path == ":memory:" ? SseIds::from_clock(srv.wall_ms) : SseIds(uint64_t(run));
  srv.store.lock_wait_ms(0);  // from here on the loop runs: it never sleeps on another process's lock
  srv.router.admin_token = srv.cfg.admin_token;
  if (srv.router.admin_token.empty() && getenv("SSE_ADMIN_TOKEN")) srv.router.admin_token = getenv("SSE_ADMIN_TOKEN");
}

static void setup_listener() {
  std::string why;
  bool bad_address = false;
  srv.listen_fd = listen_tcp(srv.cfg.bind, &srv.cfg.port, srv.cfg.reuse_port, &why, &bad_address);
  if (srv.listen_fd < 0) {
    fprintf(stderr, "sse-server: %s\n", why.c_str());
    exit(bad_address ? 2 : 1);
  }
}

static void setup_loop() {
  srv.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  srv.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  srv.signal_fd = signalfd(-1, &stop_signals(), SFD_NONBLOCK | SFD_CLOEXEC);
  if (srv.epoll_fd < 0 || srv.timer_fd < 0 || srv.signal_fd < 0) die("epoll, timerfd or signalfd");
  for (int fd : {srv.listen_fd, srv.timer_fd, srv.signal_fd}) epoll_set(srv.epoll_fd, EPOLL_CTL_ADD, fd, EPOLLIN);
  srv.deadlines[HEADER_DEADLINE].timeout_ms = srv.cfg.header_timeout_ms;
  srv.deadlines[IDLE_DEADLINE].timeout_ms = srv.cfg.idle_timeout_ms;
  srv.now_ms = clock_ms(CLOCK_MONOTONIC);
  for (Live& l : srv.lives) l.stream.last_send_ms = srv.now_ms;
  refresh_date();
}

// --redis: both connections are started here and finished by the loop
// What this server needs of Redis, checked on every connect and said on
// stderr even with --quiet: version 5 or later (the scripts read TIME
// before they write, which older Redis refuses), and maxmemory-policy
// noeviction (an evicted key, say a round's users, would grant its packets
// again). A Redis that does not let CONFIG be read is not asked.
static void redis_check_settings() {
  srv.redis.command({"INFO", "server"}, [](const redisReply* r) {
    std::string_view info = r && r->type == REDIS_REPLY_STRING ? std::string_view(r->str, r->len) : "";
    size_t at = info.find("redis_version:");
    if (at != info.npos && std::atoi(info.data() + at + 14) < 5)
      fprintf(stderr, "sse-server: redis %.*s is too old: this server needs Redis 5 or later (its scripts read TIME before they write)\n",
              int(info.find_first_of("\r\n", at) - at - 14), info.data() + at + 14);
  });
  srv.redis.command({"CONFIG", "GET", "maxmemory-policy"}, [](const redisReply* r) {
    std::string_view policy = reply_text(r, 1);
    if (r && r->type == REDIS_REPLY_ARRAY && !policy.empty() && policy != "noeviction")
      fprintf(stderr, "sse-server: redis's maxmemory-policy is %.*s: Redis may evict the apps' keys (a round's users: packets granted twice); set it to noeviction\n",
              int(policy.size()), policy.data());
  });
}

// (nonblocking); until they are up, writes get 503 and streams wait.
static void setup_redis() {
  if (srv.cfg.redis.empty()) return;
  std::string why;
  if (!srv.redis.set_address(srv.cfg.redis, &why) || !srv.redis_sub.set_address(srv.cfg.redis, &why)) {
    fprintf(stderr, "sse-server: %s\n", why.c_str());
    exit(2);
  }
  for (Redis* r : {&srv.redis, &srv.redis_sub}) {
    r->timeout_ms = srv.cfg.redis_timeout_ms;
    r->clock_ms = &srv.now_ms;
    r->watch = redis_watch;
    r->on_down = [](const std::string& why) { log_line("redis: %s; reconnecting", why.c_str()); };
  }
  srv.redis.on_connect = [] {
    log_line("redis: connected to %s", srv.cfg.redis.c_str());
    redis_check_settings();
    for (App* app : srv.apps) app->redis_connected();
    // Replies come in order: when this one comes, the apps' scripts are loaded. Then every stream is read afresh.
    srv.redis.command({"PING"}, [](const redisReply* r) { if (r) redis_streams_dirty(); });
  };
  srv.redis_sub.on_connect = [] {
    // Subscribed first, then every stream read: no change can fall between the two.
    srv.redis_sub.command({"SUBSCRIBE", "sse:changed"}, [](const redisReply* r) { if (r) redis_streams_dirty(); });
  };
  srv.redis_sub.on_message = on_redis_message;
  srv.redis.connect(srv.now_ms);
  srv.redis_sub.connect(srv.now_ms);
}

// The flag table: the server's rows, then each app's (engine/flags.hpp).
static std::vector<FlagGroup> flag_table() {
  Config& c = srv.cfg;
  std::vector<FlagGroup> groups = {{"the server", {
      {"--port", FlagKind::Int, &c.port, 0, 65535, "TCP port; 0 picks a free one and prints it"},
      {"--bind", FlagKind::Text, &c.bind, 0, 0, "IPv4 address to listen on"},
      {"--max-conns", FlagKind::Int, &c.max_conns, 0, FD_CEILING, "connections served before 503 (0: the fd limit - 64)"},
      {"--header-timeout", FlagKind::Seconds, &c.header_timeout_ms, 0.001, 86400, "seconds for a request to arrive whole"},
      {"--idle-timeout", FlagKind::Seconds, &c.idle_timeout_ms, 0.001, 86400, "seconds a keep-alive connection may idle"},
      {"--max-header-bytes", FlagKind::Size, &c.limits.max_head_bytes, 256, 1 << 20, "request line + headers limit (431)"},
      {"--max-url-bytes", FlagKind::Size, &c.limits.max_url_bytes, 16, 1 << 20, "URL limit (414)"},
      {"--max-body-bytes", FlagKind::Size, &c.limits.max_body_bytes, 0, 64 << 20, "request body limit (413)"},
      {"--sse-max-pending", FlagKind::Size, &c.sse_max_pending, 64, 1 << 30, "bytes queued for one subscriber before it is dropped"},
      {"--push-gap-ms", FlagKind::Millis, &c.push_gap_ms, 0, 60000, "least ms between two change pushes of a stream"},
      {"--cors-origin", FlagKind::Text, &c.cors_origin, 0, 0, "Access-Control-Allow-Origin for streams (empty: none)"},
      {"--quiet", FlagKind::Switch, &c.quiet, 0, 0, "no log lines on stderr"},
      {"--db", FlagKind::Text, &c.db_path, 0, 0, "SQLite file (':memory:' keeps nothing)"},
      {"--db-max-mb", FlagKind::Int64, &c.db_max_mb, 0, 1e7, "cap on the database file in MiB; past it writes get 503 (0: none)"},
      {"--fsync", FlagKind::Switch, &c.fsync, 0, 0, "fsync every commit (synchronous=FULL): survives power loss"},
      {"--admin-token", FlagKind::Text, &c.admin_token, 0, 0, "token for admin routes (else $SSE_ADMIN_TOKEN, else random)"},
      {"--redis", FlagKind::Text, &c.redis, 0, 0, "host:port or unix socket of the Redis that keeps the apps' state (several processes share it)"},
      {"--redis-timeout", FlagKind::Seconds, &c.redis_timeout_ms, 0.001, 60, "seconds Redis has to answer a command before the connection is reset"},
      {"--reuse-port", FlagKind::Switch, &c.reuse_port, 0, 0, "SO_REUSEPORT: several processes share --port"}}}};
  for (App* app : srv.apps)
    if (FlagGroup g = app->flags(); !g.rows.empty()) groups.push_back(std::move(g));
  return groups;
}

// Describes the apps and reads the command line into the server's and the
// apps' settings; --help and bad flags exit here.
static void setup_apps(int argc, char** argv) {
  srv.apps.assign(std::begin(APP_LIST), std::end(APP_LIST));
  flags_parse(argc, argv, flag_table());
  app_log = [](const std::string& line) { log_line("%s", line.c_str()); };
  later_answer_hook = on_later_answer;
}

#ifndef SSE_FUZZ  // test/fuzz/fuzz_request.cpp includes this file and brings its own entry point
int main(int argc, char** argv) {
  std::set_new_handler([] {
    fputs("sse-server: out of memory\n", stderr);  // nothing sensible to limp on with
    abort();
  });
  setup_apps(argc, argv);
  // A write to a socket the peer has closed raises SIGPIPE, which kills the
  // process by default. We ignore it and read EPIPE from write() instead.
  signal(SIGPIPE, SIG_IGN);
  sigprocmask(SIG_BLOCK, &stop_signals(), nullptr);
  setup_fd_table();
  setup_store();
  setup_routes();
  setup_listener();
  setup_loop();
  setup_redis();
  printf("sse-server listening on http://%s:%d\n", srv.cfg.bind.c_str(), srv.cfg.port);
  if (srv.router.admin_token.empty()) {
    srv.router.admin_token = random_hex(16);  // printed here only, never logged
    printf("admin token (set --admin-token or SSE_ADMIN_TOKEN to choose one): %s\n", srv.router.admin_token.c_str());
  }
  fflush(stdout);
  run();
  log_line("stopped");
  return 0;
}
#endif
