// floor.c — the kernel's floor for SSE fan-out: the least any server can do.
//
// A server that does nothing but the writes. It listens on 127.0.0.1 (--port
// 0 picks a free port, printed as "listening on N"), answers every GET with
// SSE headers and keeps the connection as a subscriber, and turns every POST's
// body into one event, "id: K\ndata: BODY\n\n", written to every subscriber
// with one write() each in a plain loop — then answers the POST 204. Nothing
// else: no parsing past the request line and Content-Length, no queue (an
// event a full socket will not take is counted as lost and reported), no
// timers. bench/ssefan measures it exactly as it measures sse-server, so
// sse-server's latency ÷ this one's is what our loop costs above the kernel's
// own cost per write.
//
// On SIGTERM or SIGINT it prints, per broadcast, the subscribers, the
// microseconds its write loop took and the events lost, then a summary line
// (subscribers: the most any broadcast reached):
//   FLOOR broadcasts=K subscribers=N loop_us_p50=... loop_us_max=... lost=...
//
//   bench/floor --port 0
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_BROADCASTS = 4096, IN_MAX = 16384 };

struct conn {
  int open, subscriber;
  size_t got;  // bytes of the request in `in`
  char* in;
};

static struct conn* conns;  // by fd
static int max_fd;
static int* subscribers;    // fds, in the order they subscribed
static int subscriber_count;
static long loop_us[MAX_BROADCASTS], lost_by_broadcast[MAX_BROADCASTS], subscribers_by_broadcast[MAX_BROADCASTS];
static int broadcasts;
static volatile sig_atomic_t stopping;

static long now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

static void drop(int ep, int fd) {
  if (conns[fd].subscriber)
    for (int i = 0; i < subscriber_count; i++)
      if (subscribers[i] == fd) { subscribers[i] = subscribers[--subscriber_count]; break; }
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(conns[fd].in);
  memset(&conns[fd], 0, sizeof conns[fd]);
}

static void put(int fd, const char* s, size_t n) {  // a short answer on a fresh socket: the kernel takes it whole
  if (write(fd, s, n) != (ssize_t)n) perror("floor: write");
}

// The measured part: one event, one write() per subscriber, nothing between.
static void broadcast(const char* body, size_t body_len) {
  char event[IN_MAX + 64];
  int head = snprintf(event, 64, "id: %d\ndata: ", broadcasts + 1);
  memcpy(event + head, body, body_len);
  memcpy(event + head + body_len, "\n\n", 2);
  size_t n = (size_t)head + body_len + 2;
  long lost = 0, t0 = now_us();
  for (int i = 0; i < subscriber_count; i++)
    if (write(subscribers[i], event, n) != (ssize_t)n) lost++;
  if (broadcasts < MAX_BROADCASTS) {
    loop_us[broadcasts] = now_us() - t0;
    lost_by_broadcast[broadcasts] = lost;
    subscribers_by_broadcast[broadcasts] = subscriber_count;
  }
  broadcasts++;
}

// A request is whole when its head has ended and, for a POST, its body is in.
static void on_readable(int ep, int fd) {
  struct conn* c = &conns[fd];
  ssize_t n = read(fd, c->in + c->got, IN_MAX - c->got);
  if (n <= 0) {
    if (n < 0 && errno == EAGAIN) return;
    drop(ep, fd);
    return;
  }
  c->got += (size_t)n;
  for (;;) {
    char* end = memmem(c->in, c->got, "\r\n\r\n", 4);
    if (!end) break;
    size_t head = (size_t)(end - c->in) + 4, body = 0;
    char* cl = memmem(c->in, head, "Content-Length:", 15);
    if (cl) body = strtoul(cl + 15, NULL, 10);
    if (head + body > IN_MAX) { drop(ep, fd); return; }
    if (c->got < head + body) break;
    if (strncmp(c->in, "GET ", 4) == 0) {
      static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
      put(fd, ok, sizeof ok - 1);
      if (!c->subscriber) subscribers[subscriber_count++] = fd;
      c->subscriber = 1;
    } else {
      broadcast(c->in + head, body);
      static const char done[] = "HTTP/1.1 204 No Content\r\n\r\n";
      put(fd, done, sizeof done - 1);
    }
    memmove(c->in, c->in + head + body, c->got - head - body);
    c->got -= head + body;
  }
}

static int by_value(const void* a, const void* b) {
  long x = *(const long*)a, y = *(const long*)b;
  return (x > y) - (x < y);
}

static void report(void) {
  int k = broadcasts < MAX_BROADCASTS ? broadcasts : MAX_BROADCASTS;
  long total_lost = 0, most = 0;
  for (int i = 0; i < k; i++) {
    fprintf(stderr, "broadcast %d: %ld subscribers, write loop %ld us, lost %ld\n", i + 1, subscribers_by_broadcast[i],
            loop_us[i], lost_by_broadcast[i]);
    total_lost += lost_by_broadcast[i];
    if (subscribers_by_broadcast[i] > most) most = subscribers_by_broadcast[i];
  }
  qsort(loop_us, (size_t)k, sizeof loop_us[0], by_value);
  printf("FLOOR broadcasts=%d subscribers=%ld loop_us_p50=%ld loop_us_max=%ld lost=%ld\n", broadcasts, most,
         k ? loop_us[k / 2] : 0, k ? loop_us[k - 1] : 0, total_lost);
}

static void on_signal(int sig) { (void)sig; stopping = 1; }

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2)
    if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
    else { fprintf(stderr, "usage: floor --port P\n"); return 2; }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  max_fd = (int)rl.rlim_cur;
  conns = calloc((size_t)max_fd, sizeof *conns);
  subscribers = calloc((size_t)max_fd, sizeof *subscribers);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(lfd, (struct sockaddr*)&a, sizeof a) || listen(lfd, 4096) || getsockname(lfd, (struct sockaddr*)&a, &len)) {
    perror("floor: listen");
    return 1;
  }
  printf("listening on %d\n", ntohs(a.sin_port));
  fflush(stdout);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  static struct epoll_event events[1024];
  while (!stopping) {
    int n = epoll_wait(ep, events, 1024, -1);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd != lfd) { on_readable(ep, fd); continue; }
      int cfd;
      while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        if (cfd >= max_fd) { close(cfd); continue; }
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[cfd].open = 1;
        conns[cfd].in = malloc(IN_MAX);
        struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
        epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
      }
    }
  }
  report();
  return 0;
}
