// relay.cpp — a TCP relay that delays every byte: the distance to Redis in
// the cluster test.
//
//   relay --listen ADDR:PORT --to ADDR:PORT --delay-ms D --jitter-ms J [--control PATH]
//
// Each connection accepted on --listen gets a connection of its own to --to
// (a pair). Each chunk read from one side is written to the other D ± J ms
// later (uniform, never below 0), and a direction never reorders: a chunk's
// send time is max(the previous chunk's send time in that direction, now +
// its delay). So a 1 ms ± 0.3 ms relay adds about 2 ms to a round trip, and
// the order of bytes, which TCP promises, is kept.
//
// Changing the delay while it runs (the cluster test's "slowed" fault):
// write "D J" into the --control file and send the relay SIGUSR1; it reads
// the file again and applies it to chunks read from then on. Chunks already
// waiting keep their send time.
//
// What it leaves out on purpose:
//   * Backpressure is coarse: a side is not read while more than
//     MAX_QUEUED_BYTES wait for the other. No other limit.
//   * Closing is whole-pair: once one side has closed (EOF or an error on
//     read) and what it sent has been written, both sockets are closed.
//     Half-close is not relayed: Redis and its clients never use it.
//   * A connection is accepted before --to is reached, so while Redis is
//     down a client sees its connection accepted and then closed, not
//     refused: the server under test logs "redis closed the connection".
//   * The timer scans every pair at each wakeup, O(pairs): the test makes
//     a handful of connections, never thousands.
//
// It prints "relay: listening on ADDR:PORT" once it accepts, so whoever
// starts it knows when it can be used; it stops on SIGTERM or SIGINT.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <random>
#include <string>
#include <vector>

// ---- Limits and state ----------------------------------------------------------------------

constexpr size_t MAX_QUEUED_BYTES = 1 << 20;  // per direction; past it the sending side is not read
constexpr size_t READ_CHUNK_BYTES = 64 * 1024;
constexpr int MAX_FDS = 4096;  // the fd table; the test opens a few dozen

struct Chunk {
  int64_t due_us;  // when it may be written, on CLOCK_MONOTONIC
  std::string bytes;
  size_t sent = 0;
};

// One accepted connection (side 0) and the one it made to --to (side 1).
// Direction d carries bytes read from side d to side 1 - d.
struct Pair {
  int fd[2] = {-1, -1};
  bool connected = false;     // side 1's connect() has completed
  bool eof[2] = {false, false};  // side d will send nothing more
  bool write_blocked[2] = {false, false};  // side s's socket refused bytes that were due: wait for EPOLLOUT
  std::deque<Chunk> queue[2];
  size_t queued_bytes[2] = {0, 0};
  int64_t last_due_us[2] = {0, 0};
  uint32_t mask[2] = {0, 0};  // the epoll mask each fd has now
};

struct Relay {
  int epoll_fd = -1, listen_fd = -1, timer_fd = -1, signal_fd = -1;
  sockaddr_in to{};
  double delay_ms = 0, jitter_ms = 0;
  std::string control_path;
  std::vector<Pair*> pair_of_fd = std::vector<Pair*>(MAX_FDS, nullptr);
  std::vector<Pair*> pairs;
  std::mt19937_64 rng{std::random_device{}()};
  bool stopping = false;
};

static int64_t now_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

[[noreturn]] static void die(const std::string& why) {
  fprintf(stderr, "relay: %s\n", why.c_str());
  exit(2);
}

// "10.0.0.1:6379" into an address, or exit with a message.
static sockaddr_in parse_addr(const std::string& s) {
  sockaddr_in a{};
  size_t colon = s.rfind(':');
  a.sin_family = AF_INET;
  if (colon == std::string::npos || inet_pton(AF_INET, s.substr(0, colon).c_str(), &a.sin_addr) != 1)
    die("not ADDR:PORT: " + s);
  a.sin_port = htons(uint16_t(atoi(s.c_str() + colon + 1)));
  return a;
}

// ---- One pair: accept, delay, write, close --------------------------------------------------

// Sets fd's epoll mask to what the pair needs now, calling epoll_ctl only
// when it changes. Side s is read while it has not ended and its queue is
// under the cap; it is asked for EPOLLOUT while connecting, or while a
// chunk due for it waits on a full socket.
static void pair_set_interest(Relay& r, Pair& p, int s) {
  uint32_t want = 0;
  bool can_read = s == 0 || p.connected;
  if (can_read && !p.eof[s] && p.queued_bytes[s] < MAX_QUEUED_BYTES) want |= EPOLLIN;
  if ((s == 1 && !p.connected) || p.write_blocked[s]) want |= EPOLLOUT;
  if (want == p.mask[s]) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = p.fd[s];
  epoll_ctl(r.epoll_fd, EPOLL_CTL_MOD, p.fd[s], &ev);
  p.mask[s] = want;
}

static void pair_close(Relay& r, Pair* p) {
  for (int fd : p->fd) {
    if (fd < 0) continue;
    r.pair_of_fd[fd] = nullptr;
    close(fd);  // also takes it out of epoll
  }
  std::erase(r.pairs, p);
  delete p;
}

static void add_fd(Relay& r, Pair* p, int fd) {
  epoll_event ev{};
  ev.data.fd = fd;
  epoll_ctl(r.epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  r.pair_of_fd[fd] = p;
}

// A new client: accept it and start the connect to --to. Either failing
// closes what was opened; the client then sees its connection closed.
static void on_accept(Relay& r) {
  int c = accept4(r.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (c < 0) return;  // EAGAIN (another wakeup took it) or a client that left: nothing to do
  int u = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (u < 0 || c >= MAX_FDS || u >= MAX_FDS) {
    close(c);
    if (u >= 0) close(u);
    return;
  }
  // Nagle would hold a small chunk back until the last one is acknowledged:
  // that is a delay of its own, and the point is that ours is the only one.
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  Pair* p = new Pair;
  p->fd[0] = c;
  p->fd[1] = u;
  r.pairs.push_back(p);
  add_fd(r, p, c);
  add_fd(r, p, u);
  // Nonblocking connect: EINPROGRESS now, and EPOLLOUT once it is decided.
  if (connect(u, reinterpret_cast<const sockaddr*>(&r.to), sizeof r.to) < 0 && errno != EINPROGRESS) return pair_close(r, p);
  pair_set_interest(r, *p, 0);
  pair_set_interest(r, *p, 1);
}

// One read from side s: the chunk is queued for the other side with its
// send time. EOF or an error ends the side (the pair closes once its
// queue is written). Returns false when the pair was closed.
static bool on_readable(Relay& r, Pair& p, int s) {
  char buf[READ_CHUNK_BYTES];
  ssize_t n = read(p.fd[s], buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  if (n <= 0) {
    p.eof[s] = true;
    if (p.queue[s].empty()) return pair_close(r, &p), false;
    return pair_set_interest(r, p, s), true;
  }
  std::uniform_real_distribution<double> spread(-r.jitter_ms, r.jitter_ms);
  double delay_ms = std::max(0.0, r.delay_ms + spread(r.rng));
  int64_t due = std::max(p.last_due_us[s], now_us() + int64_t(delay_ms * 1000));
  p.last_due_us[s] = due;
  p.queue[s].push_back(Chunk{due, std::string(buf, size_t(n))});
  p.queued_bytes[s] += size_t(n);
  pair_set_interest(r, p, s);
  return true;
}

// Writes every chunk of direction d that is due to side 1 - d, until the
// kernel takes no more (EAGAIN: wait for EPOLLOUT). A write error closes
// the pair, and so does a drained queue whose sender has ended. Returns
// false when the pair was closed.
static bool flush_direction(Relay& r, Pair& p, int d) {
  int out = 1 - d;
  if (out == 1 && !p.connected) return true;
  int64_t now = now_us();
  p.write_blocked[out] = false;
  while (!p.queue[d].empty() && p.queue[d].front().due_us <= now) {
    Chunk& c = p.queue[d].front();
    // MSG_NOSIGNAL: a peer that closed gives EPIPE here, not a SIGPIPE that kills the relay.
    ssize_t n = send(p.fd[out], c.bytes.data() + c.sent, c.bytes.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      p.write_blocked[out] = true;
      break;
    }
    if (n < 0) return pair_close(r, &p), false;
    c.sent += size_t(n);
    p.queued_bytes[d] -= size_t(n);
    if (c.sent == c.bytes.size()) p.queue[d].pop_front();
  }
  if (p.eof[d] && p.queue[d].empty()) return pair_close(r, &p), false;
  pair_set_interest(r, p, d);  // its queue may have fallen under the cap
  pair_set_interest(r, p, out);
  return true;
}

// Side 1's connect() is decided: SO_ERROR says how. A refused or failed
// connect closes the pair, so the client sees what it would without us.
static bool on_connected(Relay& r, Pair& p) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(p.fd[1], SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return pair_close(r, &p), false;
  p.connected = true;
  pair_set_interest(r, p, 0);
  pair_set_interest(r, p, 1);
  return true;
}

// An event on one of a pair's sockets. EPOLLERR and EPOLLHUP are treated as
// readable and writable: the read or write that follows finds the error.
static void on_pair_event(Relay& r, int fd, uint32_t events) {
  Pair* p = r.pair_of_fd[fd];
  if (!p) return;  // closed earlier in this batch
  int s = fd == p->fd[0] ? 0 : 1;
  if (events & (EPOLLERR | EPOLLHUP)) events |= EPOLLIN | EPOLLOUT;
  if (s == 1 && !p->connected) {
    if (events & EPOLLOUT) on_connected(r, *p);
    return;
  }
  if ((events & EPOLLOUT) && !flush_direction(r, *p, 1 - s)) return;
  if ((events & EPOLLIN) && (p->mask[s] & EPOLLIN)) on_readable(r, *p, s);
}

// ---- The loop: timer, signals, main ----------------------------------------------------------

// Writes what is due on every pair, then arms the timer at the earliest
// chunk still waiting (or disarms it).
static void on_timer(Relay& r) {
  uint64_t expirations;
  if (read(r.timer_fd, &expirations, sizeof expirations) < 0) {}  // EAGAIN when woken by something else
  for (Pair* p : std::vector<Pair*>(r.pairs))  // a copy: flushing may close pairs
    if (flush_direction(r, *p, 0)) flush_direction(r, *p, 1);
  int64_t next = 0;
  for (Pair* p : r.pairs)
    for (auto& q : p->queue)
      if (!q.empty() && (next == 0 || q.front().due_us < next)) next = q.front().due_us;
  itimerspec its{};  // all zero disarms it
  if (next) {
    its.it_value.tv_sec = next / 1'000'000;
    its.it_value.tv_nsec = (next % 1'000'000) * 1000;
  }
  timerfd_settime(r.timer_fd, TFD_TIMER_ABSTIME, &its, nullptr);
}

// "D J" from the control file; a file that cannot be read keeps the delay
// as it was and says so.
static void read_control(Relay& r) {
  std::ifstream f(r.control_path);
  double d, j;
  if (!(f >> d >> j) || d < 0 || j < 0) {
    fprintf(stderr, "relay: %s does not hold \"DELAY_MS JITTER_MS\"; delay kept\n", r.control_path.c_str());
    return;
  }
  r.delay_ms = d;
  r.jitter_ms = j;
}

static void on_signal(Relay& r) {
  signalfd_siginfo si;
  if (read(r.signal_fd, &si, sizeof si) != sizeof si) return;
  if (si.ssi_signo == SIGUSR1 && !r.control_path.empty()) read_control(r);
  if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) r.stopping = true;
}

static void parse_flags(Relay& r, int argc, char** argv, sockaddr_in* listen_addr) {
  bool have_listen = false, have_to = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--listen") *listen_addr = parse_addr(v), have_listen = true;
    else if (k == "--to") r.to = parse_addr(v), have_to = true;
    else if (k == "--delay-ms") r.delay_ms = atof(v.c_str());
    else if (k == "--jitter-ms") r.jitter_ms = atof(v.c_str());
    else if (k == "--control") r.control_path = v;
    else die("unknown flag " + k);
  }
  if (argc % 2 == 0 || !have_listen || !have_to)
    die("usage: relay --listen ADDR:PORT --to ADDR:PORT --delay-ms D --jitter-ms J [--control PATH]");
}

static void open_fds(Relay& r, const sockaddr_in& listen_addr) {
  r.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  r.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(r.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(r.listen_fd, reinterpret_cast<const sockaddr*>(&listen_addr), sizeof listen_addr) < 0 || listen(r.listen_fd, 128) < 0)
    die(std::string("cannot listen: ") + strerror(errno));
  r.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  // The signals come through a signalfd, so they are one more event of the
  // loop and never interrupt it halfway through a pair.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGUSR1, SIGTERM, SIGINT}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  r.signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  for (int fd : {r.listen_fd, r.timer_fd, r.signal_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(r.epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  }
}

int main(int argc, char** argv) {
  Relay r;
  sockaddr_in listen_addr{};
  parse_flags(r, argc, argv, &listen_addr);
  open_fds(r, listen_addr);
  printf("relay: listening on %s\n", argv[2]);
  fflush(stdout);
  epoll_event events[64];
  while (!r.stopping) {
    int n = epoll_wait(r.epoll_fd, events, 64, -1);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == r.listen_fd) on_accept(r);
      else if (fd == r.signal_fd) on_signal(r);
      else if (fd != r.timer_fd) on_pair_event(r, fd, events[i].events);
    }
    on_timer(r);  // after every batch: a new chunk may be due before the timer's deadline
  }
  for (Pair* p : std::vector<Pair*>(r.pairs)) pair_close(r, p);
  return 0;
}
