// net.hpp — the few system calls the loop makes in more than one place, and
// the ones it makes once at start-up: the listening socket, the fd limit,
// the stop signals, the timer. Each is a thin wrapper that says which
// options it sets and why; server.cpp reads as the loop, not as setsockopt.
// A reader of the loop may skip this file: every name says what it does.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <string>

// Milliseconds on clock `id`: CLOCK_MONOTONIC for deadlines, CLOCK_REALTIME
// for what people read.
inline int64_t clock_ms(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// Registers `fd` with epoll (EPOLL_CTL_ADD), changes its mask (MOD), or
// takes it out (DEL); the event's data is the fd itself.
inline void epoll_set(int epoll_fd, int op, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epoll_fd, op, fd, op == EPOLL_CTL_DEL ? nullptr : &ev);
}

// Sets a timerfd to fire once at `at_ms` on the monotonic clock.
inline void timer_fire_at(int timer_fd, int64_t at_ms) {
  itimerspec its{};
  its.it_value.tv_sec = at_ms / 1000;
  its.it_value.tv_nsec = (at_ms % 1000) * 1'000'000;
  timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, nullptr);
}

// "127.0.0.1:50312": a getpeername() and a string, so callers ask for it
// only when a log line will really be written (not under --quiet).
inline std::string peer_name(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  char host[INET_ADDRSTRLEN] = "?";
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0 && a.sin_family == AF_INET)
    inet_ntop(AF_INET, &a.sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(ntohs(a.sin_port));
}

// A nonblocking listening socket on bind:*port (an IPv4 address; port 0
// picks a free one, written back to *port). -1 with *why, and *bad_address
// when `bind` is not an IPv4 address.
inline int listen_tcp(const std::string& bind_to, int* port, bool reuse_port, std::string* why, bool* bad_address) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(*port));
  *bad_address = inet_pton(AF_INET, bind_to.c_str(), &addr.sin_addr) != 1;
  if (*bad_address) return *why = "--bind needs an IPv4 address, got '" + bind_to + "'", -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return *why = std::string("socket: ") + strerror(errno), -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart while old sockets linger in TIME_WAIT
  // --reuse-port: several processes bind the same port, and the kernel
  // spreads new connections over them (by a hash of the client's address).
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  // We always write a whole response at once, so Nagle's algorithm would only
  // delay it; accepted sockets inherit this option from the listener.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, SOMAXCONN) != 0) {
    *why = "cannot listen on " + bind_to + ":" + std::to_string(*port) + ": " + strerror(errno);
    close(fd);
    return -1;
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);  // --port 0: learn which one
  *port = ntohs(addr.sin_port);
  return fd;
}

// The fd limit, after raising the soft limit to the hard one (at most
// `ceiling`): how many fds this process may hold.
inline int fd_limit_raised(int ceiling) {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  rlim_t want = std::min<rlim_t>(rl.rlim_max, rlim_t(ceiling));
  if (rl.rlim_cur < want) {
    rl.rlim_cur = want;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return int(std::min<rlim_t>(rl.rlim_cur, rlim_t(ceiling)));
}

// SIGINT and SIGTERM: blocked from the start, then read from a signalfd
// like any other event, so no handler runs in the middle of the loop. They
// must be blocked before the store starts its checkpoint thread, which
// inherits the mask: a thread that left them unblocked would take the
// signal and die of it.
inline const sigset_t& stop_signals() {
  static sigset_t mask = [] {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGINT);
    sigaddset(&m, SIGTERM);
    return m;
  }();
  return mask;
}
