// ssefan.cpp — how long a change takes to reach every SSE subscriber.
//
// Protocol. Opens --subscribers connections to http://HOST:PORT/PATH, in
// batches of --batch (nonblocking connects, one epoll), and waits until each
// has answered 200 with Content-Type text/event-stream. Then, --changes
// times: sends the trigger request (--trigger-path, --trigger-body, a form
// POST on a connection of its own, e.g. a vote), notes the time, and reads
// every subscriber until each has received an event whose data contains
// --match; then the trigger's answer, which must be a 2xx. Both the body
// and the match may contain {k}, the change's number (1, 2, ...), so a
// change is recognised by what it says (e.g. the poll's "total":{k}}),
// never by arrival order. A subscriber's latency for a change
// is the time from just before the trigger was written until the event
// arrived here. Changes are spaced --gap-ms apart (wider than the server's
// push gap, so each is a change of its own), and each waits at most
// --timeout-ms for its deliveries.
//
// Printed: connect time, delivered % (deliveries / (subscribers x changes)),
// p50/p99/max latency over all deliveries, and, given --pid, the server's
// RSS before the first connection and once all are subscribed and idle, and
// the growth per subscriber. --pid may list several processes, comma
// separated (N processes sharing one port): their RSS is summed. The last line is key=value pairs for scripts.
//
// One thread, one epoll, level-triggered, like the server it measures; the
// latency histogram is preallocated (no allocation per sample). The fd soft
// limit is raised to the hard one; subscribers beyond it are refused with a
// message, not left to fail halfway.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

// ---- Options ------------------------------------------------------------------

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string path = "/vote/result-sse";
  int subscribers = 1000;
  int batch = 500;
  int changes = 20;
  std::string trigger_path = "/vote";
  std::string trigger_body = "voter=fan{k}&option=Auction";
  std::string match = "\"total\":{k}}";
  int gap_ms = 300;
  int timeout_ms = 10000;
  std::vector<int> pids;
};

static void usage() {
  fprintf(stderr,
          "usage: ssefan --port P [--host H] [--path /vote/result-sse] [--subscribers N] [--batch B]\n"
          "              [--changes K] [--trigger-path /vote] [--trigger-body 'voter=fan{k}&option=Auction']\n"
          "              [--match '\"total\":{k}}'] [--gap-ms 300] [--timeout-ms 10000] [--pid PID[,PID...]]\n");
  exit(2);
}

static Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage();
    std::string v = argv[++i];
    if (a == "--host") o.host = v;
    else if (a == "--port") o.port = atoi(v.c_str());
    else if (a == "--path") o.path = v;
    else if (a == "--subscribers") o.subscribers = atoi(v.c_str());
    else if (a == "--batch") o.batch = atoi(v.c_str());
    else if (a == "--changes") o.changes = atoi(v.c_str());
    else if (a == "--trigger-path") o.trigger_path = v;
    else if (a == "--trigger-body") o.trigger_body = v;
    else if (a == "--match") o.match = v;
    else if (a == "--gap-ms") o.gap_ms = atoi(v.c_str());
    else if (a == "--timeout-ms") o.timeout_ms = atoi(v.c_str());
    else if (a == "--pid")
      for (size_t at = 0; at < v.size(); at = v.find(',', at) == std::string::npos ? v.size() : v.find(',', at) + 1)
        o.pids.push_back(atoi(v.c_str() + at));
    else usage();
  }
  if (o.port <= 0 || o.subscribers <= 0 || o.batch <= 0 || o.changes <= 0) usage();
  return o;
}

// ---- Small helpers -------------------------------------------------------------

static int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] static void fail(const char* what) {
  fprintf(stderr, "ssefan: %s\n", what);
  exit(1);
}

static std::string with_k(std::string s, int k) {
  for (size_t at; (at = s.find("{k}")) != std::string::npos;) s.replace(at, 3, std::to_string(k));
  return s;
}

static long rss_kib(int pid) {
  FILE* f = fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  if (!f) fail("--pid: no such process");
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

static long rss_kib(const std::vector<int>& pids) {  // summed; -1 with none given
  long sum = pids.empty() ? -1 : 0;
  for (int pid : pids) sum += rss_kib(pid);
  return sum;
}

// Latencies in microseconds: 64 powers of two, 16 linear steps in each, so
// every value is kept to within about 6%. Preallocated: no allocation per sample.
struct Histogram {
  uint64_t counts[64][16] = {};
  uint64_t total = 0;
  int64_t max = 0;
  void add(int64_t us) {
    us = std::max<int64_t>(us, 1);
    int p = 63 - __builtin_clzll(uint64_t(us));
    int step = p < 4 ? int(us) & 15 : int((us >> (p - 4)) & 15);
    counts[p][step]++;
    total++;
    max = std::max(max, us);
  }
  // The value below which `q` of the samples fall (its bucket's upper bound, at most the max seen).
  int64_t quantile(double q) const {
    uint64_t want = uint64_t(q * double(total) + 0.5), seen = 0;
    for (int p = 0; p < 64; p++)
      for (int s = 0; s < 16; s++) {
        seen += counts[p][s];
        if (seen >= std::max<uint64_t>(want, 1)) return std::min(max, p < 4 ? int64_t(s) : int64_t(16 + s + 1) << (p - 4));
      }
    return max;
  }
};

// ---- Subscribers ---------------------------------------------------------------

struct Sub {
  int fd = -1;
  bool connected = false;  // headers read and checked
  std::string buf;         // bytes not yet cut into events
  int got = 0;             // the last change this subscriber has seen
};

static int open_socket(const Options& o, bool blocking) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK), 0);
  if (fd < 0) fail("socket: out of file descriptors?");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(o.port));
  if (inet_pton(AF_INET, o.host.c_str(), &a.sin_addr) != 1) fail("--host needs an IPv4 address");
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) fail("connect refused");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Cuts what arrived into events; records the current change's delivery.
// Returns false when the stream is not an SSE 200 or closed.
static bool on_bytes(Sub& s, const char* data, size_t n, int change, const std::string& match, int64_t sent_us, Histogram& h) {
  s.buf.append(data, n);
  if (!s.connected) {
    size_t end = s.buf.find("\r\n\r\n");
    if (end == std::string::npos) return s.buf.size() < 16384;
    std::string head = s.buf.substr(0, end);
    for (auto& c : head) c = char(tolower(c));
    if (head.compare(0, 12, "http/1.1 200") != 0 || head.find("content-type: text/event-stream") == std::string::npos) {
      fprintf(stderr, "ssefan: not an event stream:\n%s\n", s.buf.substr(0, end).c_str());
      return false;
    }
    s.connected = true;
    s.buf.erase(0, end + 4);
  }
  size_t end;
  while ((end = s.buf.find("\n\n")) != std::string::npos) {
    if (change > s.got && std::string_view(s.buf).substr(0, end).find(match) != std::string_view::npos) {
      s.got = change;
      h.add(now_us() - sent_us);
    }
    s.buf.erase(0, end + 2);
  }
  return true;
}

// Reads every ready subscriber once; counts in *closed those the server closed.
static void pump(int ep, std::vector<Sub>& subs, int timeout_ms, int change, const std::string& match, int64_t sent_us,
                 Histogram& h, int* closed) {
  static epoll_event events[1024];
  static char chunk[65536];
  int n = epoll_wait(ep, events, 1024, timeout_ms);
  for (int i = 0; i < n; i++) {
    Sub& s = subs[events[i].data.u32];
    ssize_t got = read(s.fd, chunk, sizeof chunk);
    if (got > 0 && on_bytes(s, chunk, size_t(got), change, match, sent_us, h)) continue;
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    epoll_ctl(ep, EPOLL_CTL_DEL, s.fd, nullptr);
    close(s.fd);
    s.fd = -1;
    ++*closed;
  }
}

// ---- Trigger -------------------------------------------------------------------

// Sends one form POST on the trigger connection. Its answer is read only
// after the deliveries (trigger_answer): waiting for it first would stop
// this client reading subscribers while a server that answers after its
// broadcast is still writing, and the latency would add the two.
static void trigger_send(const Options& o, int fd, int k) {
  std::string body = with_k(o.trigger_body, k);
  std::string req = "POST " + o.trigger_path + " HTTP/1.1\r\nHost: " + o.host +
                    "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n\r\n" + body;
  if (write(fd, req.data(), req.size()) != ssize_t(req.size())) fail("trigger: write failed");
}

// Reads the trigger's whole answer (blocking) and fails unless it is a 2xx.
static void trigger_answer(int fd) {
  std::string answer;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) fail("trigger: the server closed the connection");
    answer.append(buf, size_t(n));
    size_t head = answer.find("\r\n\r\n");
    if (head == std::string::npos) continue;
    size_t cl = answer.find("Content-Length: ");
    if (cl == std::string::npos) cl = answer.find("content-length: ");
    size_t length = cl == std::string::npos ? 0 : size_t(atol(answer.c_str() + cl + 16));
    if (answer.size() >= head + 4 + length) break;
  }
  if (answer.compare(9, 1, "2") != 0) fail(("trigger refused: " + answer.substr(0, answer.find("\r\n"))).c_str());
}

// ---- Main ----------------------------------------------------------------------

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rlim_t(o.subscribers) + 16 > rl.rlim_cur) fail("more subscribers than this process may open files (ulimit -n)");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Sub> subs(size_t(o.subscribers));
  Histogram hist;
  long rss_before = rss_kib(o.pids);
  std::string request = "GET " + o.path + " HTTP/1.1\r\nHost: " + o.host + "\r\nAccept: text/event-stream\r\n\r\n";

  // Connect in batches; a batch is done when every member has its headers.
  int64_t t0 = now_us();
  int closed = 0;
  for (int first = 0; first < o.subscribers; first += o.batch) {
    int last = std::min(o.subscribers, first + o.batch);
    for (int i = first; i < last; i++) {
      Sub& s = subs[size_t(i)];
      s.fd = open_socket(o, false);
      epoll_event ev{};
      ev.events = EPOLLOUT;
      ev.data.u32 = uint32_t(i);
      epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev);
    }
    // Writable means connected: send the request, then wait for reading.
    for (int sent = 0; sent < last - first;) {
      static epoll_event events[1024];
      int n = epoll_wait(ep, events, 1024, o.timeout_ms);
      if (n <= 0) fail("connecting timed out");
      for (int k = 0; k < n; k++) {
        Sub& s = subs[events[k].data.u32];
        if (!(events[k].events & EPOLLOUT)) continue;
        if (write(s.fd, request.data(), request.size()) != ssize_t(request.size())) fail("a subscriber's connect failed");
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = events[k].data.u32;
        epoll_ctl(ep, EPOLL_CTL_MOD, s.fd, &ev);
        sent++;
      }
    }
    int64_t deadline = now_us() + int64_t(o.timeout_ms) * 1000;
    auto ready = [&] { return std::all_of(subs.begin() + first, subs.begin() + last, [](const Sub& s) { return s.connected || s.fd < 0; }); };
    while (!ready() && now_us() < deadline) pump(ep, subs, 100, 0, o.match, 0, hist, &closed);
    if (!ready() || closed) fail("subscribers did not all get an event-stream answer");
  }
  int64_t connect_us = now_us() - t0;
  // Let the snapshots every new subscriber gets drain, then measure memory.
  for (int64_t until = now_us() + 500000; now_us() < until;) pump(ep, subs, 50, 0, o.match, 0, hist, &closed);
  long rss_after = rss_kib(o.pids);

  int trigger_fd = open_socket(o, true);
  int64_t delivered = 0;
  for (int k = 1; k <= o.changes; k++) {
    int64_t sent = now_us();
    trigger_send(o, trigger_fd, k);
    std::string match = with_k(o.match, k);
    int64_t deadline = sent + int64_t(o.timeout_ms) * 1000;
    auto count = [&] { return std::count_if(subs.begin(), subs.end(), [&](const Sub& s) { return s.got >= k; }); };
    while (count() < o.subscribers - closed && now_us() < deadline) pump(ep, subs, 20, k, match, sent, hist, &closed);
    delivered += count();
    trigger_answer(trigger_fd);
    int64_t next = sent + int64_t(o.gap_ms) * 1000;
    while (now_us() < next) pump(ep, subs, int(std::max<int64_t>(1, (next - now_us()) / 1000)), k, match, sent, hist, &closed);
  }

  double pct = 100.0 * double(delivered) / (double(o.subscribers) * o.changes);
  auto ms = [](int64_t us) { return double(us) / 1000.0; };
  printf("subscribers %d connected in %.0f ms; %d changes; delivered %.2f%%; closed by server %d\n", o.subscribers,
         ms(connect_us), o.changes, pct, closed);
  printf("latency from trigger to each subscriber: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", ms(hist.quantile(0.5)),
         ms(hist.quantile(0.99)), ms(hist.max));
  if (!o.pids.empty())
    printf("server rss: %ld KiB before, %ld KiB with all subscribed (%.0f bytes per subscriber)\n", rss_before, rss_after,
           double(rss_after - rss_before) * 1024.0 / o.subscribers);
  printf("RESULT subscribers=%d connect_ms=%.0f changes=%d delivered_pct=%.2f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f "
         "rss_before_kib=%ld rss_after_kib=%ld rss_per_sub_bytes=%.0f\n",
         o.subscribers, ms(connect_us), o.changes, pct, ms(hist.quantile(0.5)), ms(hist.quantile(0.99)), ms(hist.max),
         rss_before, rss_after, !o.pids.empty() ? double(rss_after - rss_before) * 1024.0 / o.subscribers : -1.0);
  return pct == 100.0 ? 0 : 3;
}
