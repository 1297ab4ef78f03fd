// server.cpp — one thread, one epoll, every connection in one table.
//
// This is the whole server: flags, the event loop, the life of a connection
// from accept() to close(), the route table and the handlers. Read it top to
// bottom and you follow a connection the way the kernel hands it to us.
//
// The loop. Everything the server waits on is a file descriptor registered
// with one epoll instance: the listening socket, each client socket, one
// timerfd (our alarm clock: it fires at the next deadline — a coalesced push,
// a periodic push, a heartbeat, a timeout) and one signalfd (SIGINT and
// SIGTERM arrive as readable bytes instead of interrupting us). One turn of
// the loop:
//
//   wait → read every ready socket and run the parser over what arrived →
//   handlers run inline and append responses to the connection's output
//   (or park a request whose answer must wait for the commit) → handle
//   the requests parked last turn → expire timeouts → commit → write every
//   connection with pending output → push the SSE streams that are due →
//   close what was marked for closing.
//
// Responses are written only at the end of the turn, all together, after
// the store's one commit per turn (group commit, as Redis answers in
// beforeSleep): a reply never leaves before the change it reports is safe,
// and if the commit fails, the replies that reported its changes become
// 503s. Answers go out before the pushes: a broadcast to 10,000 streams
// should not delay the voter who caused it.
//
// Connections live in a table indexed by fd (the kernel hands out the lowest
// free fd, so the table stays dense). Writing follows "write now, queue the
// rest": a response goes straight to write(); only what the kernel refuses is
// kept, and only then do we ask epoll for EPOLLOUT. epoll is level-triggered,
// so a read that leaves bytes behind is simply called again next turn.
//
// Left out on purpose: TLS (put a proxy in front), HTTP/2, compression (SSE
// must not be compressed anyway), more than one thread serving connections
// (one core serves tens of thousands of streams; several processes can share
// a port later). The only other thread is store.hpp's WAL checkpointer,
// which keeps fsync out of the loop and never touches a connection.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "app.hpp"
#include "http_parse.hpp"
#include "sse.hpp"
#include "store.hpp"

// ---- Limits -------------------------------------------------------------------
//
// What a connection costs: one Conn slot (about 540 bytes, in a table
// reserved at start and touched up to the highest fd in use; it never
// moves), plus its output queue while the kernel refuses bytes, plus while
// a request is arriving its URL, a few header values and the body (bounded
// by the HTTP limits). An SSE subscriber holds no input buffer at all and
// no output buffer while it keeps up; a closed connection holds only its slot.

constexpr size_t READ_CHUNK_BYTES = 64 * 1024;        // one read(), into a buffer all connections share
constexpr int ACCEPTS_PER_WAKEUP = 256;               // then let the other connections have a turn
constexpr size_t WRITE_BUDGET_BYTES = 1024 * 1024;    // per connection per turn
constexpr size_t OUT_HIGH_WATER_BYTES = 256 * 1024;   // stop reading a client that does not read its answers
constexpr size_t KEEP_CAPACITY_BYTES = 64 * 1024;     // larger output buffers are freed once drained
constexpr size_t TRIM_AFTER_BYTES = 1024 * 1024;      // closed connections' buffers freed before memory goes back to the kernel
constexpr int EPOLL_BATCH = 512;                      // events taken per epoll_wait
constexpr int64_t HEARTBEAT_MS = 15'000;              // a comment line on any stream quiet this long
constexpr unsigned SSE_RETRY_MS = 3000;               // the reconnect delay we ask browsers for
constexpr int64_t STOP_GRACE_MS = 800;                // SIGTERM: time left to flush before exit
constexpr int64_t ACCEPT_RETRY_MS = 100;              // out of fds: try accept() again after this
constexpr int FD_RESERVE = 64;                        // fds kept for files, the database, logs
constexpr int FD_CEILING = 1 << 20;

struct Config {
  int port = 8080;
  std::string bind = "127.0.0.1";
  std::string public_dir = "public";
  int max_conns = 0;  // 0: the fd limit minus FD_RESERVE
  int64_t header_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 60'000;
  HttpLimits limits;
  size_t sse_max_pending = 256 * 1024;
  int64_t clock_interval_ms = 3000;
  int64_t push_gap_ms = 100;
  std::string cors_origin;
  bool quiet = false;
  std::string db_path = "sse.db";
  bool fsync = false;
  int64_t db_max_mb = 0;  // 0: no cap
  std::string admin_token;  // empty: SSE_ADMIN_TOKEN, else a random one printed at start
  int64_t redpacket_total_cents = 10000;
  int64_t redpacket_count = 100;
  int64_t vote_interval_ms = 5000;
  size_t max_voters = 1'000'000;  // per poll; each costs memory for the poll's life (see the limits)
  int64_t schedule_interval_ms = 5000;
  std::string poll_question = "Which live demo should we build next?";
  std::string poll_options = "Stock ticker,Chat room,Live scores,Auction";
};

// ---- Types ----------------------------------------------------------------------

enum class ConnState : uint8_t { Free, Http, Stream, Closing };
enum TimerKind : int8_t { NO_TIMER = -1, HEADER_TIMER, IDLE_TIMER, TIMER_KINDS };

struct Conn {
  ConnState state = ConnState::Free;
  bool over_capacity = false;     // accepted past --max-conns: answered 503, then closed; not counted in conns_open
  bool close_after_write = false;
  bool reading_paused = false;    // output above the high-water mark: EPOLLIN is off
  bool in_flush_list = false;
  bool parked = false;            // its request waits for the turn's commit: it is handled again next turn
  uint32_t events = 0;            // the epoll interest registered now
  HttpParser http;
  std::string out;                // bytes to send are out[out_off..]
  size_t out_off = 0;
  size_t out_replaceable = std::string::npos;  // SSE: out[this..] is unsent snapshots only
  std::string stash;              // input not parsed yet while reading is paused
  // Timeouts: each connection waiting on a deadline sits in one FIFO list.
  TimerKind timer = NO_TIMER;
  int timer_prev = -1, timer_next = -1;
  int64_t deadline_ms = 0;
  // SSE: which stream, and where in its subscriber list.
  int stream = -1;
  size_t sub_pos = 0;
};

// One list per timeout. Every connection in a list got the same timeout, so
// the list is sorted by deadline just by appending: expiring is popping from
// the head while the head is due, O(expired), never a scan of everyone.
struct TimerList {
  int head = -1, tail = -1;
  int64_t timeout_ms = 0;
};

// A file from public/, read once at start-up and kept as ready response bytes.
struct StaticFile {
  std::string response;  // headers after the Connection line, blank line, body
  size_t head_len = 0;   // response[0..head_len) is what HEAD sends
  std::string etag;
  bool is_page = false;  // HTML: hands out the uid cookie
};

struct Server;
using Handler = void (*)(int fd, const HttpRequest& req, int arg);

// What one path answers: a handler per method (a page and a form post may
// share a path, as GET /vote and POST /vote do).
struct Route {
  struct Entry {
    llhttp_method_t method;
    Handler handler;
    int arg;     // which static file, or which stream
    bool admin;  // needs the admin token (checked before the handler runs)
  };
  std::vector<Entry> entries;
  std::string allow;  // the methods, as the Allow header lists them
};

// The live apps, in the order they are set up; an App's index is its id.
enum AppId { CLOCK_APP, REDPACKET_APP, POLL_APP, CINEMA_APP };

// A live app's stream: the SSE plumbing plus how to render its snapshot.
// Snapshots are rendered when a push is due, never for one subscriber: a
// newcomer is sent the snapshot everyone has, and the change on its way
// reaches it with everyone else (within --push-gap-ms). The exception is a
// stream whose state is the time itself (the clock): a newcomer gets the
// current time at once, rendered for it alone and sent without an id.
struct App {
  const char* path;
  SseStream stream;
  std::string (*render)(int64_t wall_ms);  // the current state as JSON
  bool repeat;      // the periodic push resends an unchanged snapshot (the tutorials' rhythm)
  bool is_time;     // the state is the time: each newcomer gets it fresh (see above)
  uint64_t renders = 0;         // calls of render(), for /metrics
  uint64_t snapshots_sent = 0;  // broadcasts of a snapshot (not heartbeats), for /metrics
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

// What the database held after the last commit. An answer that would read
// past it (a grant or a vote this turn made, a round or poll this turn
// started) is not built now: the request waits for the commit (see
// park_until_commit), so that no answer reports what may yet be undone.
struct Stored {
  int64_t round = 0;  // the round and how many of its grants are stored
  size_t grants = 0;
  int64_t poll = 0;   // the poll and how many of its votes are stored
  size_t ballots = 0;
};

struct Metrics {
  uint64_t requests_by_status[600] = {};
  uint64_t bytes_written = 0;
  uint64_t accepted = 0;
  uint64_t slow_consumers_dropped = 0;
  uint64_t timeouts = 0;
  uint64_t failed_commits = 0;
  uint64_t requests_parked = 0;
  uint64_t refused_past_table = 0;  // accepted on an fd past the connection table, closed at once
  uint64_t broadcasts = 0;
  double last_broadcast_seconds = 0;
  int showtime_rows_invalid = 0;  // rows the last read of the schedule had to leave off
};

// Routes are looked up by the request's path, a string_view into the
// parser's buffer: a transparent hash finds it without building a string.
struct PathHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

struct Server {
  Config cfg;
  int epoll_fd = -1, listen_fd = -1, timer_fd = -1, signal_fd = -1;
  std::vector<Conn> conns;  // indexed by fd; reserved up front, so never moved
  int conns_open = 0;   // connections served, at most --max-conns
  int conns_over = 0;   // connections accepted past it, waiting to be told 503 and closed
  TimerList timers[TIMER_KINDS];
  std::vector<int> flush_list, close_list, resume_list;
  std::vector<StaticFile> files;
  std::unordered_map<std::string, Route, PathHash, std::equal_to<>> routes;
  std::vector<App> apps;
  Metrics metrics;
  Store store;
  std::vector<Provisional> provisional;  // this turn's replies that wait on its commit
  std::vector<int> parked, unparking;    // connections whose request waits for the commit
  Stored stored;                         // what the last commit left in the database
  SseIds event_ids;                      // every snapshot's id: unique for the life of the database
  Round round;                 // the red-packet round being grabbed
  Poll poll;                   // the poll being voted on
  Rng rng{0};                  // seeded from getrandom() at start
  std::string admin_token;
  int64_t now_ms = 0;          // monotonic, read once per turn
  int64_t wall_ms = 0;         // epoch ms, read once per turn
  size_t freed_bytes = 0;      // buffers of closed connections freed since the last malloc_trim
  int64_t timer_armed_ms = -1;
  int64_t accept_paused_until_ms = -1;  // -1: accepting
  int64_t stop_deadline_ms = -1;        // -1: running
  char date_line[40] = {};     // "Date: ...\r\n", refreshed once a second
  size_t date_len = 0;
  time_t date_sec = 0;
  char read_buf[READ_CHUNK_BYTES];
};

static Server srv;

// ---- Small helpers -----------------------------------------------------------------

static int64_t clock_ms(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

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

// "127.0.0.1:50312": a getpeername() and a string, so callers ask for it
// only when a log line will really be written (not under --quiet).
static std::string peer_name(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
      port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
      port = ntohs(a->sin6_port);
    }
  }
  return std::string(host) + ":" + std::to_string(port);
}

static size_t pending(const Conn& c) { return c.out.size() - c.out_off; }

// `bytes` random bytes from the kernel as lowercase hex: identities and tokens.
static std::string random_hex(size_t bytes) {
  unsigned char raw[32];
  if (getrandom(raw, bytes, 0) != ssize_t(bytes)) die("getrandom");
  std::string hex;
  for (size_t i = 0; i < bytes; i++) {
    hex.push_back("0123456789abcdef"[raw[i] >> 4]);
    hex.push_back("0123456789abcdef"[raw[i] & 15]);
  }
  return hex;
}

// Marks the reply the handler is about to append as depending on this turn's
// commit, with how to undo its change (see Provisional). on_request records
// where the reply ends.
static void expect_commit(int fd, const HttpRequest& req, std::function<void()> undo = {}) {
  size_t at = srv.conns[fd].out.size();
  srv.provisional.push_back({fd, at, at, req.keep_alive && !req.upgrade, req.http10, std::move(undo)});
}

// The answer to the request being handled would read a change this turn has
// not committed (see Stored). The handler answers nothing; the connection
// stops reading, and at the start of the next turn's second half, after this
// turn's commit (or its undo), the same request is handled again, reading
// only what is stored. Requests the client sent after it wait their turn, so
// answers keep their order. Returns nothing, so a handler can `return park_until_commit(fd);`.
static void park_until_commit(int fd) {
  srv.conns[fd].parked = true;
  srv.parked.push_back(fd);
  srv.metrics.requests_parked++;
}

// The only place that calls epoll_ctl for a client, and only when the wanted
// mask differs from the registered one: a request answered in one write
// costs no epoll_ctl at all.
static void conn_set_interest(int fd) {
  Conn& c = srv.conns[fd];
  uint32_t want = 0;
  if (!c.reading_paused && !c.parked && !c.close_after_write) want |= EPOLLIN;
  if (pending(c) > 0) want |= EPOLLOUT;
  if (want == c.events) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = fd;
  epoll_ctl(srv.epoll_fd, EPOLL_CTL_MOD, fd, &ev);
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

// ---- Timeouts --------------------------------------------------------------------

static void respond_error(int fd, int status, std::string_view message, std::string_view extra = {}, bool head = false);

static void timer_unlink(int fd) {
  Conn& c = srv.conns[fd];
  if (c.timer == NO_TIMER) return;
  TimerList& l = srv.timers[c.timer];
  (c.timer_prev >= 0 ? srv.conns[c.timer_prev].timer_next : l.head) = c.timer_next;
  (c.timer_next >= 0 ? srv.conns[c.timer_next].timer_prev : l.tail) = c.timer_prev;
  c.timer = NO_TIMER;
  c.timer_prev = c.timer_next = -1;
}

// Starts (or restarts) the connection's clock in list `kind`: O(1).
static void timer_start(int fd, TimerKind kind) {
  timer_unlink(fd);
  Conn& c = srv.conns[fd];
  TimerList& l = srv.timers[kind];
  c.timer = kind;
  c.deadline_ms = srv.now_ms + l.timeout_ms;
  c.timer_prev = l.tail;
  (l.tail >= 0 ? srv.conns[l.tail].timer_next : l.head) = fd;
  l.tail = fd;
}

// Closes every connection whose deadline has passed, oldest first.
// A request begun but not finished in time is told 408 before the close;
// an idle connection is just closed (a client reusing it would take a 408
// for the answer to a request it has not sent yet).
static void timers_expire() {
  for (TimerList& l : srv.timers) {
    while (l.head >= 0 && srv.conns[l.head].deadline_ms <= srv.now_ms) {
      int fd = l.head;
      timer_unlink(fd);
      srv.metrics.timeouts++;
      Conn& c = srv.conns[fd];
      if (c.http.mid_request() && !c.close_after_write) respond_error(fd, 408, "the request did not arrive in time");
      else conn_close_later(fd);
    }
  }
}

// ---- Accept -----------------------------------------------------------------------

static void conn_open(int fd) {
  while (srv.conns.size() <= size_t(fd)) srv.conns.emplace_back();  // within the reserve (see on_accept): no move
  Conn& c = srv.conns[fd];
  c.state = ConnState::Http;
  c.over_capacity = srv.conns_open >= srv.cfg.max_conns;
  ++(c.over_capacity ? srv.conns_over : srv.conns_open);
  c.close_after_write = c.reading_paused = c.in_flush_list = c.parked = false;
  c.http.reset();
  c.out.clear();
  c.out_off = 0;
  c.out_replaceable = std::string::npos;
  c.stash.clear();
  c.stream = -1;
  c.events = EPOLLIN;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  epoll_ctl(srv.epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  timer_start(fd, HEADER_TIMER);  // the first request must arrive in time too
  srv.metrics.accepted++;
}

static void accept_pause(bool pause) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = srv.listen_fd;
  epoll_ctl(srv.epoll_fd, pause ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, srv.listen_fd, pause ? nullptr : &ev);
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

// ---- Read -------------------------------------------------------------------------

static void on_request(int fd, const HttpRequest& req);
static void on_expect_continue(int fd, const HttpRequest& req);

// Runs the parser over bytes that arrived and dispatches each whole request.
// Stops early when the connection turned into a stream, is closing, or has
// more unsent output than OUT_HIGH_WATER_BYTES (the rest is stashed and
// reading paused until the client has read its answers).
static void conn_parse(int fd, const char* data, size_t len) {
  Conn& c = srv.conns[fd];
  bool completed = false;
  size_t off = 0;
  while (c.state == ConnState::Http && !c.close_after_write) {
    if (pending(c) > OUT_HIGH_WATER_BYTES) {
      c.stash.assign(data + off, len - off);
      c.reading_paused = true;
      conn_set_interest(fd);
      break;
    }
    size_t used = 0;
    HttpParse r = c.http.feed(data + off, len - off, &used);
    off += used;
    if (r == HttpParse::NeedMore) break;
    if (r == HttpParse::Error) {
      respond_error(fd, c.http.error_status(), c.http.error_reason(), {}, c.http.is_head());
      return;
    }
    if (r == HttpParse::Continue) {
      on_expect_continue(fd, c.http.request());
      continue;
    }
    on_request(fd, c.http.request());
    if (c.parked) {  // the request stays in the parser; what came after it waits in the stash
      c.stash.assign(data + off, len - off);
      conn_set_interest(fd);
      return;
    }
    c.http.next();
    completed = true;
  }
  if (c.state == ConnState::Stream) c.http.release();  // a subscriber sends no more requests
  if (c.state != ConnState::Http || c.close_after_write) return;
  // A request that has begun must be whole within the header timeout; a
  // connection between requests may idle for the idle timeout.
  if (completed) timer_start(fd, c.http.mid_request() ? HEADER_TIMER : IDLE_TIMER);
  else if (c.http.mid_request() && c.timer != HEADER_TIMER) timer_start(fd, HEADER_TIMER);
}

// Parses what a paused connection left stashed, now that its output drained.
static void on_resume(int fd) {
  Conn& c = srv.conns[fd];
  if (c.state != ConnState::Http || c.parked) return;
  std::string input;
  input.swap(c.stash);
  conn_parse(fd, input.data(), input.size());
  if (c.stash.empty()) c.stash.swap(input), c.stash.clear();  // keep the capacity
}

// The socket is readable (or hung up, or in error: read() tells which).
static void on_readable(int fd) {
  Conn& c = srv.conns[fd];
  if (c.reading_paused || c.parked) return;
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
  if (n == 0 && pending(c) > 0 && c.state == ConnState::Http) {
    c.close_after_write = true;
    conn_set_interest(fd);
    return;
  }
  conn_close_later(fd);
}

// ---- Dispatch ---------------------------------------------------------------------

static bool is_stream_route(const Route& r);
static bool admin_ok(int fd, const HttpRequest& req);
static bool bearer_ok(const HttpRequest& req);
static void respond_refusal(int fd, const HttpRequest& req, int status, std::string_view message, std::string_view extra = {});

// The route for `path`: its own, else the one of its parent when that ends
// in a slash ("/a/b/" answers for "/a/b/42"; "/" itself is the home page
// and answers for nothing under it). nullptr when there is none.
static const Route* route_for(std::string_view path) {
  auto it = srv.routes.find(path);
  if (it != srv.routes.end()) return &it->second;
  std::string_view parent = path.substr(0, path.rfind('/') + 1);
  if (parent.size() > 1) it = srv.routes.find(parent);
  return it == srv.routes.end() ? nullptr : &it->second;
}

// The handler `route` has for `method`, or nullptr.
static const Route::Entry* route_entry(const Route& route, llhttp_method_t method) {
  for (const Route::Entry& e : route.entries)
    if (e.method == method) return &e;
  return nullptr;
}

static void route_request(int fd, const HttpRequest& req);

// One whole request: route it, then close after the answer if the request
// asked for that (HTTP/1.0 without keep-alive, Connection: close, Upgrade).
// A stream ends when the connection does, whatever the request asked for.
static void on_request(int fd, const HttpRequest& req) {
  Conn& c = srv.conns[fd];
  size_t changes = srv.provisional.size();
  route_request(fd, req);
  if (srv.provisional.size() > changes) srv.provisional.back().end = c.out.size();
  if (c.parked) return;  // not answered yet
  if (c.state == ConnState::Http && (req.upgrade || !req.keep_alive)) c.close_after_write = true;
}

// Finds the request's route, checks what all routes share (the connection
// limit, the method, the admin token), and runs the handler, which appends
// the answer to the connection's output (or parks the request).
static void route_request(int fd, const HttpRequest& req) {
  Conn& c = srv.conns[fd];
  const Route* route = route_for(req.path);
  if (!route) return respond_refusal(fd, req, 404, "no such page");
  if (c.over_capacity) {
    // A browser's EventSource gives up for good on an error status but
    // retries a dropped connection, so a stream over capacity is just closed.
    if (is_stream_route(*route)) return conn_close_later(fd);
    return respond_error(fd, 503, "server at its connection limit, try again shortly", "Retry-After: 1\r\n", req.method == HTTP_HEAD);
  }
  const Route::Entry* entry = route_entry(*route, req.method);
  if (!entry) return respond_refusal(fd, req, 405, "method not allowed here", "Allow: " + route->allow + "\r\n");
  if (entry->admin && !admin_ok(fd, req)) return;  // answered 401
  entry->handler(fd, req, entry->arg);
}

// A request head that asks for "100 Continue" before it sends its body
// (RFC 9110 10.1.1). The invitation goes out only when the request would
// be handled: an unknown path, a wrong method, a full server or a missing
// admin token is refused at once, before the client sends a byte of body,
// and the connection is then closed, since the body it may send anyway
// cannot be told from a next request. With Expect, the admin token must
// come in the Authorization header (a form field would be in the body).
static void on_expect_continue(int fd, const HttpRequest& req) {
  Conn& c = srv.conns[fd];
  const Route* route = route_for(req.path);
  const Route::Entry* entry = route ? route_entry(*route, req.method) : nullptr;
  if (!route) return respond_error(fd, 404, "no such page");
  if (c.over_capacity) return respond_error(fd, 503, "server at its connection limit, try again shortly", "Retry-After: 1\r\n");
  if (!entry) return respond_error(fd, 405, "method not allowed here", "Allow: " + route->allow + "\r\n");
  if (entry->admin && !bearer_ok(req))
    return respond_error(fd, 401, "admin token missing or wrong (with Expect: 100-continue, send it as Authorization: Bearer)",
                         "WWW-Authenticate: Bearer\r\n");
  c.out += "HTTP/1.1 100 Continue\r\n\r\n";
  flush_later(fd);
}

// Handles a parked request again, now that the commit it waited for is
// done, then whatever its client sent after it.
static void on_unpark(int fd) {
  Conn& c = srv.conns[fd];
  c.parked = false;
  if (c.state != ConnState::Http) return;  // closed while it waited
  on_request(fd, c.http.request());
  if (c.parked) return;  // waits one more turn (it reads a change made this turn)
  c.http.next();
  if (c.close_after_write) return conn_set_interest(fd);
  timer_start(fd, IDLE_TIMER);
  conn_set_interest(fd);
  on_resume(fd);
}

// ---- Respond ------------------------------------------------------------------------

// Appends a whole response and counts it. The connection is closed after the
// write when the request asked for that.
static void respond(int fd, const HttpRequest& req, int status, std::string_view type, std::string_view body,
                    std::string_view extra = {}) {
  Conn& c = srv.conns[fd];
  bool keep = req.keep_alive && !req.upgrade;
  http_respond(c.out, status, date_line(), keep, req.http10, type, body, extra, req.method == HTTP_HEAD);
  srv.metrics.requests_by_status[status]++;
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
  http_respond(c.out, status, date_line(), false, false, "text/plain; charset=utf-8", error_text(status, message), extra, head);
  srv.metrics.requests_by_status[status]++;
  c.close_after_write = true;
  conn_set_interest(fd);  // stop reading
  flush_later(fd);
}

// A refusal of a well-formed request (404, 405): its framing was sound, so
// the connection stays open for the next one if the request asked for that.
static void respond_refusal(int fd, const HttpRequest& req, int status, std::string_view message, std::string_view extra) {
  respond(fd, req, status, "text/plain; charset=utf-8", error_text(status, message), extra);
}

static void on_static(int fd, const HttpRequest& req, int file) {
  Conn& c = srv.conns[fd];
  const StaticFile& f = srv.files[size_t(file)];
  bool keep = req.keep_alive && !req.upgrade;
  bool fresh = !req.fields[IF_NONE_MATCH].empty() && http_etag_matches(req.fields[IF_NONE_MATCH], f.etag);
  http_begin(c.out, fresh ? 304 : 200, date_line(), keep, req.http10);
  srv.metrics.requests_by_status[fresh ? 304 : 200]++;
  // A page load is where a browser gets its identity for grabs and votes:
  // 128 random bits, out of reach of scripts (HttpOnly).
  if (f.is_page && !valid_user(http_cookie(req.fields[COOKIE], "uid")))
    c.out.append("Set-Cookie: uid=").append(random_hex(16)).append("; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax\r\n");
  if (fresh) c.out.append("ETag: ").append(f.etag).append("\r\n\r\n");
  else c.out.append(f.response, 0, req.method == HTTP_HEAD ? f.head_len : f.response.size());
  flush_later(fd);
}

static void on_healthz(int fd, const HttpRequest& req, int) { respond(fd, req, 200, "text/plain", "ok\n"); }

static void on_metrics(int fd, const HttpRequest& req, int);

// Turns the connection into a subscriber of app `app`: the SSE headers, the
// reconnect delay and the snapshot every subscriber has go out at once (see App).
static void on_subscribe(int fd, const HttpRequest& req, int app) {
  Conn& c = srv.conns[fd];
  App& a = srv.apps[size_t(app)];
  SseStream& s = a.stream;
  http_begin(c.out, 200, date_line(), req.keep_alive, req.http10);
  if (req.keep_alive && !req.http10) c.out += "Connection: keep-alive\r\n";  // design.md's headers, said explicitly
  c.out += "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n";
  if (!srv.cfg.cors_origin.empty()) c.out.append("Access-Control-Allow-Origin: ").append(srv.cfg.cors_origin).append("\r\n");
  c.out += "\r\n";
  // A subscriber may fall at most --sse-max-pending bytes behind in our
  // queue; its kernel send buffer gets the same bound, or the kernel would
  // hold megabytes for a client that stopped reading before we noticed.
  int sndbuf = int(std::min<size_t>(srv.cfg.sse_max_pending, INT32_MAX / 2));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  // The browser sends Last-Event-ID when it reconnects; a page can pass the
  // id it already has as ?lastEventId= on its first connect.
  std::string_view last = req.fields[LAST_EVENT_ID];
  std::string from_query;
  if (last.empty() && http_form_value(req.query, "lastEventId", &from_query) == FormLookup::Found) last = from_query;
  if (a.is_time) {
    sse_retry(c.out, SSE_RETRY_MS);
    sse_event(c.out, {}, {}, a.render(srv.wall_ms));
    a.renders++;
  } else {
    sse_open(c.out, s, sse_parse_id(last), SSE_RETRY_MS);
  }
  srv.metrics.requests_by_status[200]++;
  c.state = ConnState::Stream;
  c.stream = app;
  c.sub_pos = sse_subscribe(s, fd);
  timer_unlink(fd);  // streams are exempt from the idle timeout
  flush_later(fd);
  if (!srv.cfg.quiet) log_line("sse: + %s %s (%zu subscribers)", a.path, peer_name(fd).c_str(), s.subscribers.size());
}

static bool is_stream_route(const Route& r) {
  return std::any_of(r.entries.begin(), r.entries.end(), [](const Route::Entry& e) { return e.handler == on_subscribe; });
}

// ---- The apps' handlers -------------------------------------------------------------
//
// Thin on purpose: decode the form, call app.hpp, write the change to the
// store (committed at the end of the turn), mark the stream dirty, answer.

static void respond_json(int fd, const HttpRequest& req, int status, std::string_view json, std::string_view extra = {}) {
  respond(fd, req, status, "application/json", json, extra);
}

static void respond_json_error(int fd, const HttpRequest& req, int status, std::string_view message,
                               std::string_view extra = {}) {
  std::string j = "{\"ok\":false,\"message\":";
  json_string(j, message);
  respond_json(fd, req, status, j + "}", extra);
}

// Reads form field `key` from the body. Answers 415 or 400 itself and
// returns Malformed when the body is not a well-formed form, or the value
// is not UTF-8 (every answer is JSON, and JSON is UTF-8: a value that may
// be echoed in one must be text).
static FormLookup form_field(int fd, const HttpRequest& req, std::string_view key, std::string* value) {
  std::string_view type = req.fields[CONTENT_TYPE];
  if (!type.empty() && !http_iequals(type.substr(0, type.find(';')), "application/x-www-form-urlencoded")) {
    respond_json_error(fd, req, 415, "send the body as application/x-www-form-urlencoded");
    return FormLookup::Malformed;
  }
  FormLookup found = http_form_value(req.body, key, value);
  if (found == FormLookup::Malformed) respond_json_error(fd, req, 400, "the form body has a broken %-escape");
  if (found == FormLookup::Found && !valid_utf8(*value)) {
    respond_json_error(fd, req, 400, "'" + std::string(key) + "' is not UTF-8 text");
    return FormLookup::Malformed;
  }
  return found;
}

// Who is asking: form field `key` (load tools, scripts), else the uid cookie
// a page load set. Answers 400 itself and returns false when neither is usable.
static bool request_user(int fd, const HttpRequest& req, std::string_view key, std::string* user) {
  FormLookup found = form_field(fd, req, key, user);
  if (found == FormLookup::Malformed) return false;
  if (found == FormLookup::Absent) user->assign(http_cookie(req.fields[COOKIE], "uid"));
  if (user->empty()) {
    respond_json_error(fd, req, 400, "who are you? send a '" + std::string(key) + "' field, or load a page first for a uid cookie");
    return false;
  }
  if (!valid_user(*user)) {
    respond_json_error(fd, req, 400, "'" + std::string(key) + "' must be 1 to 64 bytes of UTF-8 text without control characters");
    return false;
  }
  return true;
}

// Compares in time that depends only on the expected token's length, so
// response timing does not reveal how much of a guess was right.
static bool token_equal(std::string_view given, std::string_view expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); i++) diff |= uint8_t(expected[i] ^ (i < given.size() ? given[i] : 0));
  return diff == 0;
}

// True when the request carries "Authorization: Bearer <the admin token>".
static bool bearer_ok(const HttpRequest& req) {
  std::string_view auth = req.fields[AUTHORIZATION];
  return auth.size() > 7 && http_iequals(auth.substr(0, 7), "bearer ") && token_equal(auth.substr(7), srv.admin_token);
}

// True for the admin token, as "Authorization: Bearer <token>" or form field
// `token`; otherwise answers 401 itself. on_request asks it for the routes
// marked ADMIN.
static bool admin_ok(int fd, const HttpRequest& req) {
  std::string_view auth = req.fields[AUTHORIZATION];
  std::string token;
  if (auth.size() > 7 && http_iequals(auth.substr(0, 7), "bearer ")) token.assign(auth.substr(7));
  else if (form_field(fd, req, "token", &token) == FormLookup::Malformed) return false;
  if (token_equal(token, srv.admin_token)) return true;
  respond_json_error(fd, req, 401, "admin token missing or wrong", "WWW-Authenticate: Bearer\r\n");
  return false;
}

// A whole decimal number in [lo, hi] from form field `key`; answers 400 itself otherwise.
static bool form_int(int fd, const HttpRequest& req, std::string_view key, int64_t lo, int64_t hi, int64_t* out) {
  std::string text;
  FormLookup found = form_field(fd, req, key, &text);
  if (found == FormLookup::Malformed) return false;
  bool digits = !text.empty() && text.size() <= 18 && text.find_first_not_of("0123456789") == std::string::npos;
  if (found == FormLookup::Found && digits && std::stoll(text) >= lo && std::stoll(text) <= hi) {
    *out = std::stoll(text);
    return true;
  }
  respond_json_error(fd, req, 400, "'" + std::string(key) + "' must be a whole number from " + std::to_string(lo) +
                                       " to " + std::to_string(hi));
  return false;
}

// True when the current round, or the grant of `packet` in it (-1: none),
// is not in the database yet: an answer that reads it must wait (see Stored).
static bool round_unstored(int64_t packet) {
  return srv.round.id != srv.stored.round || (packet >= 0 && size_t(packet) >= srv.stored.grants);
}

// The same for the current poll and the ballot in row `row` (-1: none).
static bool poll_unstored(int64_t row) {
  return srv.poll.id != srv.stored.poll || (row >= 0 && size_t(row) >= srv.stored.ballots);
}

static void on_grab(int fd, const HttpRequest& req, int) {
  std::string user;
  if (!request_user(fd, req, "user", &user)) return;
  Round& r = srv.round;
  GrabResult g = round_grab(r, user, srv.wall_ms);
  // "Already" and "all taken" change nothing, so they have no commit to wait
  // for of their own; but what they report (the packet held, what remains)
  // must be stored before they say it.
  if (g.outcome != GrabOutcome::Granted && round_unstored(int64_t(r.grants.size()) - 1)) return park_until_commit(fd);
  if (g.outcome == GrabOutcome::Empty) return respond_json_error(fd, req, 410, "all red packets have been taken");
  if (g.outcome == GrabOutcome::Granted) {
    srv.store.insert_grant(r.id, g.packet, r.grants[g.packet]);  // written by this turn's commit
    srv.apps[REDPACKET_APP].stream.dirty = true;
    expect_commit(fd, req, [] { round_undo_last_grant(srv.round); });  // undone in reverse order: this grant is the last
  }
  static std::string j;  // reused: its capacity outlives the request
  j.clear();
  j += g.outcome == GrabOutcome::Already ? "{\"ok\":true,\"already\":true,\"amount_cents\":" : "{\"ok\":true,\"amount_cents\":";
  json_number(j, g.amount_cents);
  j.append(",\"amount\":\"").append(cents_text(g.amount_cents)).append("\",\"remaining\":");
  json_number(j, r.remaining());
  j += ",\"round\":";
  json_number(j, r.id);
  j += ",\"packet\":";
  json_number(j, int64_t(g.packet));
  j += ",\"user\":";
  json_string(j, display_name(user));
  j += '}';
  respond_json(fd, req, 200, j);
}

// What this browser holds in the current round, so a reloaded page can show
// it. Identity from the uid cookie only, like /vote/me.
static void on_redpacket_me(int fd, const HttpRequest& req, int) {
  std::string user(http_cookie(req.fields[COOKIE], "uid"));
  if (!valid_user(user)) return respond_json_error(fd, req, 400, "no identity: load a page first for a uid cookie");
  const Round& r = srv.round;
  int64_t packet = r.packet_of(user);
  if (round_unstored(packet)) return park_until_commit(fd);
  std::string j = "{\"ok\":true,\"round\":" + std::to_string(r.id) + ",\"user\":";
  json_string(j, display_name(user));
  if (packet < 0) return respond_json(fd, req, 200, j + ",\"grabbed\":false}");
  int64_t cents = r.amounts[size_t(packet)];
  respond_json(fd, req, 200, j + ",\"grabbed\":true,\"packet\":" + std::to_string(packet) + ",\"amount_cents\":" +
                                 std::to_string(cents) + ",\"amount\":\"" + cents_text(cents) + "\"}");
}

// Splits a new round and makes it the current one. Returns the round it
// replaced, or nullptr (with store.error()) if the store refused the new one.
static std::shared_ptr<Round> start_round(int64_t total_cents, int64_t count) {
  Round r = round_new(srv.round.id + 1, total_cents, split_double_mean(total_cents, count, srv.rng));
  if (!srv.store.insert_round(r, srv.wall_ms)) return nullptr;
  auto previous = std::make_shared<Round>(std::move(srv.round));
  srv.round = std::move(r);
  srv.apps[REDPACKET_APP].stream.dirty = true;
  return previous;
}

// The answer when the database will not take a write (disk full, locked):
// nothing changed, and the server goes on serving.
static void respond_store_unavailable(int fd, const HttpRequest& req) {
  log_line("store: write refused: %s", srv.store.error().c_str());
  respond_json_error(fd, req, 503, "the database cannot take writes right now; nothing was changed", "Retry-After: 1\r\n");
}

static void on_new_round(int fd, const HttpRequest& req, int) {
  int64_t total = 0, count = 0;
  if (!form_int(fd, req, "total_cents", 1, MAX_TOTAL_CENTS, &total) || !form_int(fd, req, "count", 1, MAX_PACKETS, &count))
    return;
  if (auto why = round_refusal(total, count)) return respond_json_error(fd, req, 400, *why);
  std::shared_ptr<Round> previous = start_round(total, count);
  if (!previous) return respond_store_unavailable(fd, req);
  expect_commit(fd, req, [previous] { srv.round = std::move(*previous); });
  log_line("redpacket: round %lld started: %lld cents in %lld packets", (long long)srv.round.id, (long long)total,
           (long long)count);
  respond_json(fd, req, 200, "{\"ok\":true,\"round\":" + std::to_string(srv.round.id) + ",\"total_cents\":" +
                                 std::to_string(total) + ",\"count\":" + std::to_string(count) + "}");
}

static std::string render_redpacket(int64_t) { return round_json(srv.round); }

// The answer to a vote: ok, the voter's choice and the new tallies, as
// counts in option order (names, question and percentages come with the
// stream; repeating them on every vote cost more than the vote itself).
static std::string vote_answer(bool ok, std::string_view message, size_t option) {
  const Poll& p = srv.poll;
  std::string j = ok ? "{\"ok\":true," : "{\"ok\":false,\"message\":";
  if (!ok) {
    json_string(j, message);
    j += ',';
  }
  j += "\"poll\":";
  json_number(j, p.id);
  j += ",\"voted_for\":";
  json_string(j, p.options[option]);
  j += ",\"counts\":[";
  for (size_t i = 0; i < p.counts.size(); i++) {
    if (i) j += ',';
    json_number(j, p.counts[i]);
  }
  j += "],\"total\":";
  json_number(j, p.total());
  return j + "}";
}

static void on_vote(int fd, const HttpRequest& req, int) {
  std::string voter, option;
  if (!request_user(fd, req, "voter", &voter)) return;
  FormLookup found = form_field(fd, req, "option", &option);
  if (found == FormLookup::Malformed) return;
  // A page sends the poll it shows: a vote for a poll an admin has just
  // replaced must not land in the new one under a matching option name.
  std::string shown;
  FormLookup has_poll = form_field(fd, req, "poll", &shown);
  if (has_poll == FormLookup::Malformed) return;
  Poll& p = srv.poll;
  if (poll_unstored(-1)) return park_until_commit(fd);  // a poll started this turn: nothing said of it yet
  if (has_poll == FormLookup::Found && shown != std::to_string(p.id))
    return respond_json_error(fd, req, 410, "that poll is over; vote in poll " + std::to_string(p.id));
  int index = poll_option(p, option);
  if (index < 0) {
    std::string valid;
    for (const std::string& o : p.options) valid += (valid.empty() ? "'" : ", '") + o + "'";
    std::string what = found == FormLookup::Absent ? "send an 'option' field" : "no option '" + option + "'";
    return respond_json_error(fd, req, 400, what + "; the options are " + valid);
  }
  VoteResult v = poll_vote(p, voter, size_t(index), srv.cfg.max_voters);
  // A refusal changes nothing, but the tallies it reports must be stored first.
  if (v.outcome != VoteOutcome::Counted && poll_unstored(p.total() - 1)) return park_until_commit(fd);
  if (v.outcome == VoteOutcome::Full)
    return respond_json_error(fd, req, 503, "this poll has reached its limit of " + std::to_string(srv.cfg.max_voters) +
                                                " voters (--max-voters); a new poll starts counting again");
  if (v.outcome == VoteOutcome::Already) return respond_json(fd, req, 409, vote_answer(false, "already voted", v.option));
  srv.store.insert_vote(p.id, int64_t(v.row), voter, v.option, srv.wall_ms);  // written by this turn's commit
  srv.apps[POLL_APP].stream.dirty = true;
  expect_commit(fd, req, [] { poll_undo_last_vote(srv.poll); });  // undone in reverse order: this vote is the last
  respond_json(fd, req, 200, vote_answer(true, {}, v.option));
}

// What this browser (its uid cookie) voted for in the current poll. Only the
// cookie: a ?voter= parameter would let anyone look up anyone's vote.
static void on_vote_me(int fd, const HttpRequest& req, int) {
  std::string voter(http_cookie(req.fields[COOKIE], "uid"));
  if (!valid_user(voter)) return respond_json_error(fd, req, 400, "no identity: load a page first for a uid cookie");
  int64_t row = srv.poll.ballot_of(voter);
  if (poll_unstored(row)) return park_until_commit(fd);
  std::string j = "{\"ok\":true,\"poll\":" + std::to_string(srv.poll.id);
  if (row < 0) return respond_json(fd, req, 200, j + ",\"voted\":false}");
  j += ",\"voted\":true,\"voted_for\":";
  json_string(j, srv.poll.options[srv.poll.ballots[size_t(row)].option]);
  respond_json(fd, req, 200, j + "}");
}

// Makes a new poll the current one. Returns the poll it replaced, or nullptr
// (with store.error()) if the store refused the new one.
static std::shared_ptr<Poll> start_poll(std::string question, std::vector<std::string> options) {
  Poll p = poll_new(srv.poll.id + 1, std::move(question), std::move(options));
  if (!srv.store.insert_poll(p, srv.wall_ms)) return nullptr;
  auto previous = std::make_shared<Poll>(std::move(srv.poll));
  srv.poll = std::move(p);
  srv.apps[POLL_APP].stream.dirty = true;
  return previous;
}

static void on_new_poll(int fd, const HttpRequest& req, int) {
  std::string question, options;
  if (form_field(fd, req, "question", &question) == FormLookup::Malformed) return;
  if (form_field(fd, req, "options", &options) == FormLookup::Malformed) return;
  std::vector<std::string> list = split_options(options);
  if (auto why = poll_refusal(question, list)) return respond_json_error(fd, req, 400, *why);
  std::shared_ptr<Poll> previous = start_poll(std::move(question), std::move(list));
  if (!previous) return respond_store_unavailable(fd, req);
  expect_commit(fd, req, [previous] { srv.poll = std::move(*previous); });
  log_line("poll: poll %lld started with %zu options", (long long)srv.poll.id, srv.poll.options.size());
  respond_json(fd, req, 200, "{\"ok\":true," + poll_json(srv.poll).substr(1));
}

static std::string render_poll(int64_t) { return poll_json(srv.poll); }

// The board, read from the database now: the table is the truth, whoever
// wrote it (the API, or someone with the sqlite3 tool). If the read fails
// (another process holding a lock past the busy timeout), the board stays
// as it was and the next re-read tries again.
static std::string render_cinema(int64_t wall_ms) {
  std::vector<Showtime> rows;
  if (!srv.store.load_showtimes(&rows, &srv.metrics.showtime_rows_invalid)) {
    log_line("cinema: cannot read the schedule: %s", srv.store.error().c_str());
    return srv.apps[CINEMA_APP].stream.json;
  }
  return schedule_json(std::move(rows), wall_ms);
}

static void on_showtimes_list(int fd, const HttpRequest& req, int) {
  if (srv.store.in_transaction()) return park_until_commit(fd);  // a read now would see this turn's changes
  std::vector<Showtime> rows;
  int invalid = 0;
  if (!srv.store.load_showtimes(&rows, &invalid)) return respond_json_error(fd, req, 503, "the schedule cannot be read right now");
  respond_json(fd, req, 200, schedule_json(std::move(rows), srv.wall_ms));
}

static void on_showtime_add(int fd, const HttpRequest& req, int) {
  Showtime st;
  std::string starts_at;
  for (auto [key, value] : {std::pair{"movie", &st.movie}, {"hall", &st.hall}, {"starts_at", &starts_at}}) {
    if (form_field(fd, req, key, value) == FormLookup::Malformed) return;
    // "Hero " and "Hero" must be one movie on the board: no edge spaces.
    value->erase(0, value->find_first_not_of(' '));
    value->erase(value->find_last_not_of(' ') + 1);
  }
  if (auto why = showtime_refusal(st.movie, st.hall, starts_at, srv.wall_ms)) return respond_json_error(fd, req, 400, *why);
  if (!form_int(fd, req, "seats", 1, MAX_SEATS, &st.seats_total)) return;
  st.seats_left = st.seats_total;
  st.starts_ms = *parse_iso8601(starts_at);
  if (!srv.store.insert_showtime(st, &st.id)) return respond_store_unavailable(fd, req);
  expect_commit(fd, req);
  srv.apps[CINEMA_APP].stream.dirty = true;
  std::string j = "{\"ok\":true,\"showtime\":";
  showtime_json(j, st);
  respond_json(fd, req, 201, j + "}", "Location: /cinema/showtimes/" + std::to_string(st.id) + "\r\n");
}

// DELETE /cinema/showtimes/{id}
static void on_showtime_delete(int fd, const HttpRequest& req, int) {
  std::string_view digits = req.path.substr(req.path.rfind('/') + 1);
  bool numeric = !digits.empty() && digits.size() <= 18 && digits.find_first_not_of("0123456789") == std::string_view::npos;
  if (!numeric) return respond_json_error(fd, req, 404, "no showtime there: a showtime's id is a whole number");
  int64_t id = std::stoll(std::string(digits));  // "0007" is 7, and is answered as 7
  bool found = false;
  if (!srv.store.delete_showtime(id, &found)) return respond_store_unavailable(fd, req);
  if (!found) return respond_json_error(fd, req, 404, "no showtime " + std::to_string(id));
  expect_commit(fd, req);
  srv.apps[CINEMA_APP].stream.dirty = true;
  respond_json(fd, req, 200, "{\"ok\":true,\"deleted\":" + std::to_string(id) + "}");
}

// Puts a dozen showtimes over the next days into a new schedule table.
static bool seed_schedule() {
  static constexpr std::pair<const char*, const char*> films[] = {
      {"Spirited Away", "Hall 1"}, {"The Wandering Earth", "IMAX"}, {"In the Mood for Love", "Hall 2"}, {"Hero", "Hall 3"}};
  int64_t hour_ms = 3600 * 1000, day_ms = 24 * hour_ms;
  int64_t today = srv.wall_ms - srv.wall_ms % day_ms;
  int64_t id = 0;
  for (int day = 1; day <= 3; day++)
    for (int k = 0; k < 4; k++) {
      Showtime st{0, films[k].first, films[k].second, today + day * day_ms + (10 + 3 * k) * hour_ms + (k % 2) * 30 * 60000,
                  k == 1 ? 320 : 120, 0};
      st.seats_left = st.seats_total - (day * 37 + k * 23) % st.seats_total;
      if (!srv.store.insert_showtime(st, &id)) return false;
    }
  return true;
}

// ---- Write --------------------------------------------------------------------------

// Writes as much pending output as the kernel takes, up to the per-turn
// budget. May mark the connection for closing (write error, or done and
// close_after_write).
static void conn_flush(int fd) {
  Conn& c = srv.conns[fd];
  c.in_flush_list = false;
  if (c.state == ConnState::Closing || c.state == ConnState::Free) return;
  size_t budget = WRITE_BUDGET_BYTES;
  while (pending(c) > 0 && budget > 0) {
    ssize_t n = write(fd, c.out.data() + c.out_off, std::min(pending(c), budget));
    if (n > 0) {
      c.out_off += size_t(n);
      budget -= size_t(n);
      srv.metrics.bytes_written += uint64_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;  // the kernel's buffer is full: EPOLLOUT will tell us
    return conn_close_later(fd);          // EPIPE, ECONNRESET: SIGPIPE is ignored, so we learn it here
  }
  if (c.out_off > c.out_replaceable) c.out_replaceable = std::string::npos;  // a snapshot began to leave
  if (c.out_off >= KEEP_CAPACITY_BYTES && c.out_off > pending(c)) {  // compact, lazily: the front is sent
    c.out.erase(0, c.out_off);
    if (c.out_replaceable != std::string::npos) c.out_replaceable -= c.out_off;
    c.out_off = 0;
  }
  if (pending(c) == 0) {
    c.out.clear();
    c.out_off = 0;
    if (c.out.capacity() > KEEP_CAPACITY_BYTES || c.state == ConnState::Stream) std::string().swap(c.out);
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
static void sse_send(int fd, std::string_view bytes, bool snapshot) {
  Conn& c = srv.conns[fd];
  if (c.state != ConnState::Stream) return;  // closing already
  if (pending(c) == 0) {
    ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n == ssize_t(bytes.size())) {
      srv.metrics.bytes_written += uint64_t(n);
      return;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return conn_close_later(fd);
    n = std::max<ssize_t>(n, 0);
    srv.metrics.bytes_written += uint64_t(n);
    c.out.assign(bytes.substr(size_t(n)));
    c.out_off = 0;
    c.out_replaceable = n == 0 && snapshot ? 0 : std::string::npos;
    return conn_set_interest(fd);
  }
  if (!snapshot) return;
  if (c.out_replaceable == std::string::npos) c.out_replaceable = c.out.size();
  c.out.resize(c.out_replaceable);
  if (pending(c) + bytes.size() > srv.cfg.sse_max_pending) {
    srv.metrics.slow_consumers_dropped++;
    if (!srv.cfg.quiet) log_line("sse: slow consumer %s dropped (%zu bytes pending)", peer_name(fd).c_str(), pending(c));
    return conn_close_later(fd);
  }
  c.out.append(bytes);
}

// ---- Close --------------------------------------------------------------------------

static void conn_close(int fd) {
  Conn& c = srv.conns[fd];
  if (c.stream >= 0) {
    App& app = srv.apps[size_t(c.stream)];
    int moved = sse_unsubscribe(app.stream, c.sub_pos);
    if (moved >= 0) srv.conns[moved].sub_pos = c.sub_pos;
    if (!srv.cfg.quiet) log_line("sse: - %s %s (%zu subscribers)", app.path, peer_name(fd).c_str(), app.stream.subscribers.size());
    c.stream = -1;
  }
  timer_unlink(fd);
  close(fd);  // also removes it from epoll: no other process shares this socket
  c.state = ConnState::Free;
  c.in_flush_list = false;
  // A closed connection holds its Conn slot and nothing else: with its
  // buffers kept, every fd that once carried a 64 KiB body would pin one.
  srv.freed_bytes += c.out.capacity() + c.stash.capacity() + c.http.capacity();
  std::string().swap(c.out);
  std::string().swap(c.stash);
  c.http.release();
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

// ---- Tick: streams and the clock -----------------------------------------------------

static std::string render_clock(int64_t wall_ms) {
  time_t secs = time_t(wall_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char iso[32];
  strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &tm);
  char json[96];
  snprintf(json, sizeof json, "{\"time\":\"%s.%03dZ\",\"epoch_ms\":%" PRId64 "}", iso, int(wall_ms % 1000), wall_ms);
  return json;
}

// Rebuilds one connection's output after a failed commit: each reply in
// `changes` (this connection's, in order) becomes a 503; every other reply
// stands, so a pipelining client still gets one answer per request, in order.
static void replace_with_503(int fd, const Provisional* changes, size_t count) {
  Conn& c = srv.conns[fd];
  std::string out;
  size_t at = c.out_off;  // nothing of this turn's replies has been sent
  for (size_t i = 0; i < count; i++) {
    const Provisional& p = changes[i];
    out.append(c.out, at, p.begin - at);
    http_respond(out, 503, date_line(), p.keep_alive, p.http10, "application/json",
                 "{\"ok\":false,\"message\":\"the database cannot take writes right now; nothing was changed\"}\n",
                 "Retry-After: 1\r\n");
    srv.metrics.requests_by_status[503]++;
    at = p.end;
  }
  out.append(c.out, at);
  c.out.swap(out);
  c.out_off = 0;
  c.out_replaceable = std::string::npos;  // no snapshot has been queued yet: pushes come after the commit
}

// Commits everything this turn wrote, before any of its replies leaves. If
// the database refuses (disk full, over --db-max-mb, locked by another
// process), every change of the turn is undone, newest first, and each
// reply that reported one becomes a 503: no client leaves believing in a
// change that was not stored, and the server keeps serving. Either way,
// srv.stored then says what the database holds.
static void turn_commit() {
  if (srv.store.commit()) {
    srv.stored = {srv.round.id, srv.round.grants.size(), srv.poll.id, srv.poll.ballots.size()};
  } else {
    srv.metrics.failed_commits++;
    log_line("store: commit failed: %s; undoing %zu changes", srv.store.error().c_str(), srv.provisional.size());
    for (auto it = srv.provisional.rbegin(); it != srv.provisional.rend(); ++it)
      if (it->undo) it->undo();
    // Each connection's replies, together and in order: one rebuild per connection.
    std::stable_sort(srv.provisional.begin(), srv.provisional.end(), [](const Provisional& a, const Provisional& b) { return a.fd < b.fd; });
    for (size_t i = 0, j; i < srv.provisional.size(); i = j) {
      for (j = i + 1; j < srv.provisional.size() && srv.provisional[j].fd == srv.provisional[i].fd; j++) {
      }
      ConnState state = srv.conns[srv.provisional[i].fd].state;  // a stream may follow the reply: it stays
      if (state == ConnState::Http || state == ConnState::Stream) replace_with_503(srv.provisional[i].fd, &srv.provisional[i], j - i);
    }
  }
  srv.provisional.clear();
}

// Renders the app's state; a new version only if it differs from the last.
// Returns whether it changed. Runs after the turn's commit, so what it
// renders is stored.
static bool app_refresh(App& app) {
  std::string json = app.render(clock_ms(CLOCK_REALTIME));
  app.renders++;
  if (json == app.stream.json) return false;
  sse_set_snapshot(app.stream, json, srv.event_ids.take());
  return true;
}

// Pushes every stream that is due: a new snapshot (leading or trailing edge
// of a change, or its period) or a heartbeat.
static void streams_push() {
  for (App& app : srv.apps) {
    SseStream& s = app.stream;
    SseDue due = sse_due(s, srv.now_ms, srv.cfg.push_gap_ms, HEARTBEAT_MS);
    if (due == SseDue::Nothing) continue;
    bool snapshot = due == SseDue::Snapshot;
    if (snapshot && !app_refresh(app) && !app.repeat) {
      sse_skipped(s, srv.now_ms);
      continue;
    }
    timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    sse_broadcast(s, snapshot ? std::string_view(s.frame) : SSE_HEARTBEAT,
                  [snapshot](int fd, std::string_view bytes) { sse_send(fd, bytes, snapshot); });
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (snapshot) {
      app.snapshots_sent++;
      srv.metrics.broadcasts++;
      srv.metrics.last_broadcast_seconds = double(b.tv_sec - a.tv_sec) + double(b.tv_nsec - a.tv_nsec) / 1e9;
    }
    sse_sent(s, srv.now_ms, snapshot);
  }
}

// The next moment something is due: a stream, a timeout, a paused accept.
// (Every stream has a heartbeat due within HEARTBEAT_MS, so there always is one.)
static int64_t next_deadline_ms() {
  int64_t t = srv.now_ms + HEARTBEAT_MS;
  for (const App& app : srv.apps) t = std::min(t, sse_next_due_ms(app.stream, srv.cfg.push_gap_ms, HEARTBEAT_MS));
  for (const TimerList& l : srv.timers)
    if (l.head >= 0) t = std::min(t, srv.conns[l.head].deadline_ms);
  if (srv.accept_paused_until_ms >= 0) t = std::min(t, srv.accept_paused_until_ms);
  if (srv.stop_deadline_ms >= 0) t = std::min(t, srv.stop_deadline_ms);
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
  itimerspec its{};
  its.it_value.tv_sec = t / 1000;
  its.it_value.tv_nsec = (t % 1000) * 1'000'000;
  timerfd_settime(srv.timer_fd, TFD_TIMER_ABSTIME, &its, nullptr);
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
  if (srv.accept_paused_until_ms < 0) epoll_ctl(srv.epoll_fd, EPOLL_CTL_DEL, srv.listen_fd, nullptr);
  for (size_t fd = 0; fd < srv.conns.size(); fd++) {
    Conn& c = srv.conns[fd];
    if (c.state != ConnState::Http && c.state != ConnState::Stream) continue;
    if (pending(c) == 0 && !c.parked) {  // a parked request is answered next turn, then closed
      conn_close_later(int(fd));
    } else {
      c.close_after_write = true;
      conn_set_interest(int(fd));
    }
  }
}

// ---- Metrics ----------------------------------------------------------------------------
//
// /metrics in Prometheus's text format, from one table: each row a name, its
// type, its help line, and how to read its value now (one sample), or its
// value for each stream (a sample per stream, labelled stream="...").

// What the connection table holds, summed once per /metrics answer.
struct ConnTotals {
  size_t queued = 0, stashed = 0, buffers = 0;
};
static ConnTotals conn_totals;

struct MetricRow {
  const char* name;
  const char* type;
  const char* help;
  double (*value)();
  double (*per_stream)(const App&) = nullptr;
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
    {"sse_store_rows_written_total", "counter", "Rows written to the database (grants, votes, showtimes).",
     [] { return double(srv.store.rows_written); }},
    {"sse_store_failed_writes_total", "counter", "Turns whose writes the database refused; their changes were undone and answered 503.",
     [] { return double(srv.metrics.failed_commits); }},
    {"sse_requests_parked_total", "counter", "Requests that waited for a commit because their answer read a change not yet stored.",
     [] { return double(srv.metrics.requests_parked); }},
    {"sse_store_checkpoints_total", "counter", "WAL checkpoints done by the helper thread.", [] { return double(srv.store.checkpoints()); }},
    {"sse_broadcasts_total", "counter", "Snapshots pushed to a stream's subscribers.", [] { return double(srv.metrics.broadcasts); }},
    {"sse_last_broadcast_seconds", "gauge", "How long the last snapshot broadcast took.",
     [] { return srv.metrics.last_broadcast_seconds; }},
    {"sse_showtime_rows_invalid", "gauge", "Rows of the showtimes table the last re-read left off the board.",
     [] { return double(srv.metrics.showtime_rows_invalid); }},
    {"sse_subscribers", "gauge", "SSE subscribers per stream.", nullptr, [](const App& a) { return double(a.stream.subscribers.size()); }},
    {"sse_stream_snapshots_total", "counter", "Snapshots pushed, per stream.", nullptr, [](const App& a) { return double(a.snapshots_sent); }},
    {"sse_stream_renders_total", "counter", "Times a stream's state was rendered (pushes due, and the clock's newcomers).", nullptr,
     [](const App& a) { return double(a.renders); }},
};

static void on_metrics(int fd, const HttpRequest& req, int) {
  conn_totals = {};
  for (const Conn& c : srv.conns) {
    conn_totals.buffers += c.out.capacity() + c.stash.capacity() + c.http.capacity();
    if (c.state == ConnState::Free) continue;
    conn_totals.queued += pending(c);
    conn_totals.stashed += c.stash.size();
  }
  std::string m;
  char line[256];
  auto add = [&](const char* fmt, auto... v) {
    snprintf(line, sizeof line, fmt, v...);
    m += line;
  };
  for (const MetricRow& row : METRICS) {
    add("# HELP %s %s\n# TYPE %s %s\n", row.name, row.help, row.name, row.type);
    if (row.value) add("%s %.15g\n", row.name, row.value());
    else
      for (const App& app : srv.apps) add("%s{stream=\"%s\"} %.15g\n", row.name, app.stream.name.c_str(), row.per_stream(app));
  }
  m += "# HELP sse_http_requests_total Responses sent, by status code.\n# TYPE sse_http_requests_total counter\n";
  srv.metrics.requests_by_status[200]++;  // count this very answer
  for (int code = 100; code < 600; code++)
    if (srv.metrics.requests_by_status[code])
      add("sse_http_requests_total{code=\"%d\"} %" PRIu64 "\n", code, srv.metrics.requests_by_status[code]);
  srv.metrics.requests_by_status[200]--;
  respond(fd, req, 200, "text/plain; version=0.0.4; charset=utf-8", m);
}

// ---- The loop -----------------------------------------------------------------------------

static void on_event(const epoll_event& ev) {
  int fd = ev.data.fd;
  if (fd == srv.listen_fd) return srv.stop_deadline_ms < 0 ? on_accept() : void();  // stopping: taken out, not yet closed
  if (fd == srv.timer_fd) return on_timer();
  if (fd == srv.signal_fd) return on_signal();
  Conn& c = srv.conns[size_t(fd)];
  if (c.state == ConnState::Closing || c.state == ConnState::Free) return;
  // EPOLLHUP and EPOLLERR come whatever we asked for; read() and write()
  // report the actual error, so both paths simply run.
  if (ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(fd);
  if (ev.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) flush_later(fd);
}

// The second half of a turn, after the events: handle again the requests
// parked until the last commit, parse what paused connections stashed,
// expire timeouts, commit, write the answers, push the streams that are
// due, close what was marked.
static void turn_finish() {
  if (!srv.parked.empty()) {  // parked in an earlier turn: their commit is done
    srv.unparking.swap(srv.parked);
    for (int fd : srv.unparking) on_unpark(fd);
    srv.unparking.clear();
  }
  for (size_t i = 0; i < srv.resume_list.size(); i++) on_resume(srv.resume_list[i]);
  srv.resume_list.clear();
  timers_expire();
  // Every answer of this turn is appended but none is sent: commit now, so
  // that whatever a reply reports is on disk before the reply leaves.
  turn_commit();
  // Answers before pushes: a broadcast to 10,000 subscribers is 10,000
  // writes (~80 ms here), and the voter whose vote caused it should not
  // wait for them to hear that it counted.
  for (size_t i = 0; i < srv.flush_list.size(); i++) conn_flush(srv.flush_list[i]);
  srv.flush_list.clear();
  streams_push();
  close_marked();
}

static void run() {
  static epoll_event events[EPOLL_BATCH];
  for (;;) {
    timer_arm();
    // Connections with stashed input or a parked request have work even if no socket is ready.
    bool waiting = !srv.resume_list.empty() || !srv.parked.empty();
    int n = epoll_wait(srv.epoll_fd, events, EPOLL_BATCH, waiting ? 0 : -1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    srv.now_ms = clock_ms(CLOCK_MONOTONIC);
    srv.wall_ms = clock_ms(CLOCK_REALTIME);
    refresh_date();
    for (int i = 0; i < n; i++) on_event(events[i]);
    turn_finish();
    if (srv.stop_deadline_ms >= 0 && (srv.conns_open + srv.conns_over == 0 || srv.now_ms >= srv.stop_deadline_ms)) return;
  }
}

// ---- Start-up ------------------------------------------------------------------------------

// Routes `methods` ("GET, HEAD") of `path` to `handler`. A method the path
// already answers keeps its first handler: app routes, added before the
// pages, win over a file of the same name.
constexpr bool ADMIN = true;  // route_add's last argument, for the routes that need the admin token

static void route_add(const std::string& path, std::string_view methods, Handler handler, int arg, bool admin = false) {
  Route& route = srv.routes[path];
  while (!methods.empty()) {
    std::string_view name = methods.substr(0, methods.find(','));
    methods.remove_prefix(std::min(methods.size(), name.size() + 2));
    llhttp_method_t method = name == "GET" ? HTTP_GET : name == "HEAD" ? HTTP_HEAD : name == "POST" ? HTTP_POST : HTTP_DELETE;
    bool taken = std::any_of(route.entries.begin(), route.entries.end(), [&](const Route::Entry& e) { return e.method == method; });
    if (taken) continue;
    route.entries.push_back({method, handler, arg, admin});
    route.allow += (route.allow.empty() ? "" : ", ") + std::string(name);
  }
}

static const char* content_type_for(std::string_view name) {
  static constexpr std::pair<std::string_view, const char*> types[] = {
      {".html", "text/html; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"}, {".json", "application/json"},
      {".svg", "image/svg+xml"}, {".png", "image/png"}, {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"}, {".webmanifest", "application/manifest+json"}};
  for (auto& [ext, type] : types)
    if (name.ends_with(ext)) return type;
  return "application/octet-stream";
}

// Reads every regular file directly in `dir` into a prebuilt response and
// routes "/<name>" to it; "x.html" is also "/x", and index.html is "/". Only
// these names are ever served: no request path is joined to a directory.
static void load_public(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) die(("cannot open the public directory " + dir).c_str());
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name, path = dir + "/" + name;
    struct stat st;
    if (name[0] == '.' || stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) die(("cannot read " + path).c_str());
    std::string body(size_t(st.st_size), '\0');
    size_t got = fread(body.data(), 1, body.size(), f);
    fclose(f);
    body.resize(got);
    uint64_t h = 1469598103934665603ull;  // FNV-1a: a content hash is all an ETag needs
    for (unsigned char ch : body) h = (h ^ ch) * 1099511628211ull;
    char etag[24];
    snprintf(etag, sizeof etag, "\"%016" PRIx64 "\"", h);
    StaticFile file;
    file.etag = etag;
    file.is_page = name.ends_with(".html");
    file.response = std::string("Content-Type: ") + content_type_for(name) + "\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nETag: " + etag + "\r\nCache-Control: no-cache\r\n\r\n";
    file.head_len = file.response.size();
    file.response += body;
    int idx = int(srv.files.size());
    srv.files.push_back(std::move(file));
    route_add("/" + name, "GET, HEAD", on_static, idx);
    if (name.ends_with(".html")) route_add("/" + name.substr(0, name.size() - 5), "GET, HEAD", on_static, idx);
    if (name == "index.html") route_add("/", "GET, HEAD", on_static, idx);
  }
  closedir(d);
  if (srv.routes.find("/") == srv.routes.end()) {
    fprintf(stderr, "sse-server: %s has no index.html\n", dir.c_str());
    exit(1);
  }
}

static void add_app(const char* path, const char* name, int64_t period_ms, std::string (*render)(int64_t), bool repeat,
                    bool is_time = false) {
  App app{path, SseStream{}, render, repeat, is_time};
  app.stream.name = name;
  app.stream.period_ms = period_ms;
  route_add(path, "GET", on_subscribe, int(srv.apps.size()));
  srv.apps.push_back(std::move(app));
}

static void setup_routes() {
  route_add("/healthz", "GET, HEAD", on_healthz, 0);
  route_add("/metrics", "GET, HEAD", on_metrics, 0);
  add_app("/sse", "clock", srv.cfg.clock_interval_ms, render_clock, true, true);  // CLOCK_APP
  add_app("/redpacket/events", "redpacket", 1000, render_redpacket, true);   // REDPACKET_APP
  route_add("/redpacket/grab", "POST", on_grab, 0);
  route_add("/redpacket/rounds", "POST", on_new_round, 0, ADMIN);
  route_add("/redpacket/me", "GET, HEAD", on_redpacket_me, 0);
  add_app("/vote/result-sse", "poll", srv.cfg.vote_interval_ms, render_poll, true);  // POLL_APP
  route_add("/vote", "POST", on_vote, 0);
  route_add("/vote/me", "GET, HEAD", on_vote_me, 0);
  route_add("/vote/polls", "POST", on_new_poll, 0, ADMIN);
  add_app("/events", "cinema", srv.cfg.schedule_interval_ms, render_cinema, false);  // CINEMA_APP
  route_add("/cinema/events", "GET", on_subscribe, CINEMA_APP);
  route_add("/cinema/showtimes", "GET, HEAD", on_showtimes_list, 0);
  route_add("/cinema/showtimes", "POST", on_showtime_add, 0, ADMIN);
  route_add("/cinema/showtimes/", "DELETE", on_showtime_delete, 0, ADMIN);  // a prefix: /cinema/showtimes/{id}
  load_public(srv.cfg.public_dir);
}

// Sizes the connection table from the fd limit, raising the soft limit to
// the hard one (capped at FD_CEILING) first.
static void setup_fd_table() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) die("getrlimit");
  rlim_t want = std::min<rlim_t>(rl.rlim_max, FD_CEILING);
  if (rl.rlim_cur < want) {
    rl.rlim_cur = want;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  int fds = int(std::min<rlim_t>(rl.rlim_cur, FD_CEILING));
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

// Start-up's way out: what went wrong with the database, and exit 1.
[[noreturn]] static void store_failed(const char* doing) {
  fprintf(stderr, "sse-server: cannot %s %s: %s\n", doing, srv.cfg.db_path.c_str(), srv.store.error().c_str());
  exit(1);
}

// A first start's round or poll: what the flags describe, if they make one
// (else a message and exit 2), made and committed.
static void start_first_round() {
  if (auto why = round_refusal(srv.cfg.redpacket_total_cents, srv.cfg.redpacket_count)) {
    fprintf(stderr, "sse-server: --redpacket-total/--redpacket-count: %s\n", why->c_str());
    exit(2);
  }
  if (!start_round(srv.cfg.redpacket_total_cents, srv.cfg.redpacket_count) || !srv.store.commit()) store_failed("write to");
}

static void start_first_poll() {
  std::vector<std::string> options = split_options(srv.cfg.poll_options);
  if (auto why = poll_refusal(srv.cfg.poll_question, options)) {
    fprintf(stderr, "sse-server: --poll-question/--poll-options: %s\n", why->c_str());
    exit(2);
  }
  if (!start_poll(srv.cfg.poll_question, std::move(options)) || !srv.store.commit()) store_failed("write to");
}

// This start's run number, stored before any event id made from it leaves.
static void start_run() {
  int64_t run = 0;
  if (!srv.store.start_run(srv.wall_ms, &run) || !srv.store.commit()) store_failed("write to");
  if (uint64_t(run) > SseIds::MAX_RUN) {
    fprintf(stderr, "sse-server: %s has counted %lld runs, more than event ids can tell apart\n", srv.cfg.db_path.c_str(), (long long)run);
    exit(1);
  }
  srv.event_ids = SseIds(uint64_t(run));
}

// Opens the database and loads the state back; on first start, makes the
// round, the poll and the schedule the flags describe. Any failure is a
// message and exit 1 (or 2 for what the flags cannot describe): never a
// silent fresh start.
static void setup_store() {
  uint64_t key[2], seed;  // the name index's key, before anything is loaded into one
  if (getrandom(key, sizeof key, 0) != sizeof key || getrandom(&seed, sizeof seed, 0) != sizeof seed) die("getrandom");
  NameIndex::set_key(key[0], key[1]);
  srv.rng = Rng{seed};
  srv.wall_ms = clock_ms(CLOCK_REALTIME);
  if (!srv.store.open(srv.cfg.db_path, srv.cfg.fsync, srv.cfg.db_max_mb)) store_failed("use database");
  std::optional<Round> round;
  std::optional<Poll> poll;
  if (!srv.store.load_round(&round) || !srv.store.load_poll(&poll)) store_failed("load");
  if (round) srv.round = std::move(*round);
  else start_first_round();
  if (poll) srv.poll = std::move(*poll);
  else start_first_poll();
  if (srv.store.schedule_is_new() && (!seed_schedule() || !srv.store.commit())) store_failed("write to");
  start_run();
  srv.stored = {srv.round.id, srv.round.grants.size(), srv.poll.id, srv.poll.ballots.size()};
  srv.store.lock_wait_ms(0);  // from here on the loop runs: it never sleeps on another process's lock
  srv.admin_token = srv.cfg.admin_token;
  if (srv.admin_token.empty() && getenv("SSE_ADMIN_TOKEN")) srv.admin_token = getenv("SSE_ADMIN_TOKEN");
}

static void setup_listener() {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(srv.cfg.port));
  if (inet_pton(AF_INET, srv.cfg.bind.c_str(), &addr.sin_addr) != 1) {
    fprintf(stderr, "sse-server: --bind needs an IPv4 address, got '%s'\n", srv.cfg.bind.c_str());
    exit(2);
  }
  srv.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (srv.listen_fd < 0) die("socket");
  int one = 1;
  setsockopt(srv.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart while old sockets linger in TIME_WAIT
  // We always write a whole response at once, so Nagle's algorithm would only
  // delay it; accepted sockets inherit this option from the listener.
  setsockopt(srv.listen_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(srv.listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    fprintf(stderr, "sse-server: cannot listen on %s:%d: %s\n", srv.cfg.bind.c_str(), srv.cfg.port, strerror(errno));
    exit(1);
  }
  if (listen(srv.listen_fd, SOMAXCONN) != 0) die("listen");
  socklen_t len = sizeof addr;
  getsockname(srv.listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);  // --port 0: learn which one
  srv.cfg.port = ntohs(addr.sin_port);
}

// SIGINT and SIGTERM: blocked from the start, then read from a signalfd
// like any other event, so no handler runs in the middle of the loop. They
// must be blocked before the store starts its checkpoint thread, which
// inherits the mask: a thread that left them unblocked would take the
// signal and die of it.
static const sigset_t& stop_signals() {
  static sigset_t mask = [] {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGINT);
    sigaddset(&m, SIGTERM);
    return m;
  }();
  return mask;
}

static void setup_loop() {
  srv.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  srv.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  srv.signal_fd = signalfd(-1, &stop_signals(), SFD_NONBLOCK | SFD_CLOEXEC);
  if (srv.epoll_fd < 0 || srv.timer_fd < 0 || srv.signal_fd < 0) die("epoll, timerfd or signalfd");
  for (int fd : {srv.listen_fd, srv.timer_fd, srv.signal_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(srv.epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  }
  srv.timers[HEADER_TIMER].timeout_ms = srv.cfg.header_timeout_ms;
  srv.timers[IDLE_TIMER].timeout_ms = srv.cfg.idle_timeout_ms;
  srv.now_ms = clock_ms(CLOCK_MONOTONIC);
  for (App& app : srv.apps) app.stream.last_send_ms = srv.now_ms;
  refresh_date();
}

// ---- Flags -------------------------------------------------------------------------------

enum class FlagKind { Int, Int64, Size, Seconds, Millis, Text, Switch };

struct Flag {
  const char* name;
  FlagKind kind;
  void* target;
  double min, max;
  const char* help;
};

static const Flag FLAGS[] = {
    {"--port", FlagKind::Int, &srv.cfg.port, 0, 65535, "TCP port; 0 picks a free one and prints it"},
    {"--bind", FlagKind::Text, &srv.cfg.bind, 0, 0, "IPv4 address to listen on"},
    {"--public", FlagKind::Text, &srv.cfg.public_dir, 0, 0, "directory of pages, read once at start"},
    {"--max-conns", FlagKind::Int, &srv.cfg.max_conns, 0, FD_CEILING, "connections served before 503 (0: the fd limit - 64)"},
    {"--header-timeout", FlagKind::Seconds, &srv.cfg.header_timeout_ms, 0.001, 86400, "seconds for a request to arrive whole"},
    {"--idle-timeout", FlagKind::Seconds, &srv.cfg.idle_timeout_ms, 0.001, 86400, "seconds a keep-alive connection may idle"},
    {"--max-header-bytes", FlagKind::Size, &srv.cfg.limits.max_head_bytes, 256, 1 << 20, "request line + headers limit (431)"},
    {"--max-url-bytes", FlagKind::Size, &srv.cfg.limits.max_url_bytes, 16, 1 << 20, "URL limit (414)"},
    {"--max-body-bytes", FlagKind::Size, &srv.cfg.limits.max_body_bytes, 0, 64 << 20, "request body limit (413)"},
    {"--sse-max-pending", FlagKind::Size, &srv.cfg.sse_max_pending, 64, 1 << 30, "bytes queued for one subscriber before it is dropped"},
    {"--clock-interval", FlagKind::Seconds, &srv.cfg.clock_interval_ms, 0.001, 86400, "seconds between clock events on /sse"},
    {"--push-gap-ms", FlagKind::Millis, &srv.cfg.push_gap_ms, 0, 60000, "least ms between two change pushes of a stream"},
    {"--cors-origin", FlagKind::Text, &srv.cfg.cors_origin, 0, 0, "Access-Control-Allow-Origin for streams (empty: none)"},
    {"--quiet", FlagKind::Switch, &srv.cfg.quiet, 0, 0, "no log lines on stderr"},
    {"--db", FlagKind::Text, &srv.cfg.db_path, 0, 0, "SQLite file (':memory:' keeps nothing)"},
    {"--db-max-mb", FlagKind::Int64, &srv.cfg.db_max_mb, 0, 1e7, "cap on the database file in MiB; past it writes get 503 (0: none)"},
    {"--fsync", FlagKind::Switch, &srv.cfg.fsync, 0, 0, "fsync every commit (synchronous=FULL): survives power loss"},
    {"--admin-token", FlagKind::Text, &srv.cfg.admin_token, 0, 0, "token for admin routes (else $SSE_ADMIN_TOKEN, else random)"},
    {"--redpacket-total", FlagKind::Int64, &srv.cfg.redpacket_total_cents, 1, 1e11, "cents in the round made on first start"},
    {"--redpacket-count", FlagKind::Int64, &srv.cfg.redpacket_count, 1, 1e6, "packets in the round made on first start"},
    {"--vote-interval", FlagKind::Seconds, &srv.cfg.vote_interval_ms, 0.001, 86400, "seconds between tally pushes on /vote/result-sse"},
    {"--max-voters", FlagKind::Size, &srv.cfg.max_voters, 1, 1e9, "voters one poll counts; past it a new voter gets 503"},
    {"--poll-question", FlagKind::Text, &srv.cfg.poll_question, 0, 0, "question of the poll made on first start"},
    {"--poll-options", FlagKind::Text, &srv.cfg.poll_options, 0, 0, "its options, comma-separated"},
    {"--schedule-interval", FlagKind::Seconds, &srv.cfg.schedule_interval_ms, 0.001, 86400, "seconds between re-reads of the cinema schedule"},
};

static std::string flag_value(const Flag& f) {
  char buf[64];
  switch (f.kind) {
    case FlagKind::Int: return std::to_string(*static_cast<int*>(f.target));
    case FlagKind::Size: return std::to_string(*static_cast<size_t*>(f.target));
    case FlagKind::Int64:
    case FlagKind::Millis: return std::to_string(*static_cast<int64_t*>(f.target));
    case FlagKind::Seconds: snprintf(buf, sizeof buf, "%g", double(*static_cast<int64_t*>(f.target)) / 1000); return buf;
    case FlagKind::Text: return "'" + *static_cast<std::string*>(f.target) + "'";
    case FlagKind::Switch: return *static_cast<bool*>(f.target) ? "on" : "off";
  }
  return "";
}

static void usage(FILE* to) {
  fprintf(to, "usage: sse-server [flags]\n\nflags (default in brackets):\n");
  for (const Flag& f : FLAGS) fprintf(to, "  %-20s %s [%s]\n", f.name, f.help, flag_value(f).c_str());
  fprintf(to, "  %-20s %s\n", "--help", "show this and exit");
}

[[noreturn]] static void bad_flag(const char* fmt, const char* a, const char* b = "") {
  fprintf(stderr, "sse-server: ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\nrun 'sse-server --help' for the list of flags\n");
  exit(2);
}

// Stores `text` into the flag's target; exits 2 with a message when it does not fit.
static void flag_set(const Flag& f, const char* text) {
  if (f.kind == FlagKind::Text) {
    *static_cast<std::string*>(f.target) = text;
    return;
  }
  char* end = nullptr;
  errno = 0;
  double v = strtod(text, &end);
  bool whole = f.kind != FlagKind::Seconds && v != std::floor(v);
  if (*text == '\0' || *end != '\0' || errno != 0 || whole || !(v >= f.min && v <= f.max)) {
    char range[96];
    snprintf(range, sizeof range, "%s from %g to %g", f.kind == FlagKind::Seconds ? "seconds" : "a whole number", f.min, f.max);
    fprintf(stderr, "sse-server: %s needs %s, got '%s'\n", f.name, range, text);
    fprintf(stderr, "run 'sse-server --help' for the list of flags\n");
    exit(2);
  }
  switch (f.kind) {
    case FlagKind::Int: *static_cast<int*>(f.target) = int(v); break;
    case FlagKind::Size: *static_cast<size_t*>(f.target) = size_t(v); break;
    case FlagKind::Int64:
    case FlagKind::Millis: *static_cast<int64_t*>(f.target) = int64_t(v); break;
    case FlagKind::Seconds: *static_cast<int64_t*>(f.target) = std::max<int64_t>(1, std::llround(v * 1000)); break;
    default: break;
  }
}

// Accepts "--name value" and "--name=value".
static void parse_flags(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage(stdout);
      exit(0);
    }
    size_t eq = arg.find('=');
    std::string name = arg.substr(0, eq);
    const Flag* flag = nullptr;
    for (const Flag& f : FLAGS)
      if (name == f.name) flag = &f;
    if (!flag) bad_flag("unknown flag '%s'", argv[i]);
    if (flag->kind == FlagKind::Switch) {
      if (eq != arg.npos) bad_flag("%s takes no value", flag->name);
      *static_cast<bool*>(flag->target) = true;
      continue;
    }
    if (eq != arg.npos) {
      flag_set(*flag, argv[i] + eq + 1);
    } else {
      if (i + 1 >= argc) bad_flag("%s needs a value", flag->name);
      flag_set(*flag, argv[++i]);
    }
  }
}

#ifndef SSE_FUZZ  // test/fuzz/fuzz_request.cpp includes this file and brings its own entry point
int main(int argc, char** argv) {
  std::set_new_handler([] {
    fputs("sse-server: out of memory\n", stderr);  // nothing sensible to limp on with
    abort();
  });
  parse_flags(argc, argv);
  // A write to a socket the peer has closed raises SIGPIPE, which kills the
  // process by default. We ignore it and read EPIPE from write() instead.
  signal(SIGPIPE, SIG_IGN);
  sigprocmask(SIG_BLOCK, &stop_signals(), nullptr);
  setup_fd_table();
  setup_routes();
  setup_store();
  setup_listener();
  setup_loop();
  printf("sse-server listening on http://%s:%d\n", srv.cfg.bind.c_str(), srv.cfg.port);
  if (srv.admin_token.empty()) {
    srv.admin_token = random_hex(16);  // printed here only, never logged
    printf("admin token (set --admin-token or SSE_ADMIN_TOKEN to choose one): %s\n", srv.admin_token.c_str());
  }
  fflush(stdout);
  run();
  log_line("stopped");
  return 0;
}
#endif
