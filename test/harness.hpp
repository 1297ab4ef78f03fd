// test/harness.hpp — start the real server and talk to it over real sockets.
//
// Integration tests run ./sse-server (or $SSE_SERVER) on --port 0, bound to
// 127.0.0.1, read the port from its first line of output, and stop it by PID.
// Every wait here has a deadline, so a broken server fails a test instead of
// hanging the suite. Responses are read with a small HTTP/1.1 client that
// understands Content-Length bodies and keeps extra bytes for the next
// response, which is what pipelining needs.
#pragma once
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

// Stops process `pid` with SIGSTOP and waits (at most 2 s) until it has
// stopped: kill() returns before the signal is delivered, and a process
// woken from epoll_wait to take it may first return the events that came
// meanwhile, and stop with them in hand.
inline bool stop_process(pid_t pid);

inline int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

// Polls `cond` every few ms until it holds or `timeout_ms` passes.
// Raises this process's soft fd limit to at least `fds` (within the hard
// one), for a test that opens thousands of connections; false if it cannot.
inline bool raise_fd_limit(rlim_t fds) {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
  if (rl.rlim_cur >= fds) return true;
  rl.rlim_cur = std::min(fds, rl.rlim_max);
  return setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= fds;
}

inline bool wait_for(const std::function<bool()>& cond, int timeout_ms) {
  int64_t end = now_ms() + timeout_ms;
  for (;;) {
    if (cond()) return true;
    if (now_ms() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

inline bool stop_process(pid_t pid) {
  kill(pid, SIGSTOP);
  return wait_for([&] {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
    FILE* f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char* p = strrchr(buf, ')');  // the command name may hold spaces
    return p && p[1] == ' ' && p[2] == 'T';
  }, 2000);
}

// A directory under /tmp, removed with everything in it at the end.
struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/sse-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { (void)!system(("rm -rf '" + path + "'").c_str()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string path;
};

// A redis-server of the test's own: a temporary directory, a unix socket
// there and no TCP port, stopped by PID. With `appendonly`, every write is
// in the append-only file, fsynced before Redis answers, so a restart (on
// the same socket) finds it. With `clock_ahead_s`, Redis's clock (its TIME)
// runs that far ahead of ours (test/clock_ahead.c, which make test builds).
// start() waits (at most 5 s) for the socket.
class RedisProcess {
 public:
  explicit RedisProcess(bool appendonly = false, int clock_ahead_s = 0) : appendonly_(appendonly), clock_ahead_s_(clock_ahead_s) {
    if (clock_ahead_s_) {
      char* at = realpath("build/clock_ahead.so", nullptr);
      REQUIRE_MESSAGE(at, "build/clock_ahead.so is missing (make test builds it)");
      preload_ = at;
      free(at);
    }
    start();
  }
  ~RedisProcess() { stop(); }
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  void start() {
    REQUIRE(pid <= 0);
    unlink(socket.c_str());
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, STDOUT_FILENO);
      if (clock_ahead_s_) setenv("CLOCK_AHEAD_S", std::to_string(clock_ahead_s_).c_str(), 1), setenv("LD_PRELOAD", preload_.c_str(), 1);
      execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", socket.c_str(), "--unixsocketperm", "700", "--dir",
             dir.path.c_str(), "--save", "", "--appendonly", appendonly_ ? "yes" : "no", "--appendfsync", "always", (char*)nullptr);
      _exit(127);
    }
    REQUIRE_MESSAGE(wait_for([&] {
      int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      strncpy(a.sun_path, socket.c_str(), sizeof a.sun_path - 1);
      bool up = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      close(fd);
      return up;
    }, 5000), "redis-server did not start (make deps installs it)");
  }
  // Stops it (SIGTERM, then SIGKILL after 2 s).
  void stop(int sig = SIGTERM) {
    if (pid <= 0) return;
    kill(pid, sig);
    int status;
    int64_t end = now_ms() + 2000;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (now_ms() >= end) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    pid = -1;
  }
  void pause() { REQUIRE(stop_process(pid)); }
  void resume() { kill(pid, SIGCONT); }

  TempDir dir;
  std::string socket = dir.file("redis.sock");
  pid_t pid = -1;

 private:
  bool appendonly_;
  int clock_ahead_s_;
  std::string preload_;
};

// A running server. The constructor waits (at most 5 s) for it to listen.
// Unless `args` names a --db, it gets a fresh database of its own. `env`:
// variables set for it alone (an LD_PRELOAD, say).
class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> args = {}, rlim_t fd_limit = 0,
                         const std::vector<std::pair<std::string, std::string>>& env = {}) {
    const char* bin = getenv("SSE_SERVER");
    std::vector<std::string> argv = {bin ? bin : "./sse-server", "--port", "0", "--bind", "127.0.0.1"};
    bool has_db = false;
    for (auto& a : args) has_db = has_db || a == "--db" || a.starts_with("--db=");
    if (!has_db) argv.insert(argv.end(), {"--db", own_dir.file("sse.db")});
    argv.insert(argv.end(), args.begin(), args.end());
    char log_template[] = "/tmp/sse-test-log-XXXXXX";
    int log_fd = mkstemp(log_template);
    log_path = log_template;
    int out[2];
    REQUIRE(pipe(out) == 0);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      dup2(out[1], STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
      close(out[0]);
      if (fd_limit) {
        rlimit rl{fd_limit, fd_limit};
        setrlimit(RLIMIT_NOFILE, &rl);
      }
      for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    close(out[1]);
    close(log_fd);
    stdout_fd = out[0];
    std::string first = read_line(stdout_fd, 5000);
    auto at = first.rfind(':');
    REQUIRE_MESSAGE(at != std::string::npos, "server did not start; said: " << first << log());
    port = std::atoi(first.c_str() + at + 1);
    REQUIRE(port > 0);
    // A generated admin token, if none was given, comes in the same write.
    std::string second = read_line(stdout_fd, 0);
    if (auto t = second.rfind(": "); second.starts_with("admin token") && t != std::string::npos) admin_token = second.substr(t + 2);
  }
  ~ServerProcess() {
    if (pid > 0) CHECK(stop(SIGTERM, 2000) == 0);  // every test ends with a clean shutdown
    std::string l = log();  // and a sanitizer build must have found nothing
    CHECK_MESSAGE(l.find("Sanitizer") == std::string::npos, l);
    CHECK_MESSAGE(l.find("runtime error") == std::string::npos, l);
    if (stdout_fd >= 0) close(stdout_fd);
    unlink(log_path.c_str());
  }

  // Sends `sig` and waits up to timeout_ms. Returns the exit code, 128+signal
  // when killed by a signal, or -1 if it was still running (then killed).
  int stop(int sig = SIGTERM, int timeout_ms = 2000) {
    if (pid <= 0) return exit_status;
    kill(pid, sig);
    int64_t end = now_ms() + timeout_ms;
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (now_ms() >= end) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        pid = -1;
        return exit_status = -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    pid = -1;
    exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_status;
  }

  // The server's stderr so far (its log), for assertions and failure messages.
  std::string log() const {
    std::string s;
    FILE* f = fopen(log_path.c_str(), "r");
    if (!f) return s;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    fclose(f);
    return s;
  }

  // User + system CPU seconds the server has used so far.
  double cpu_seconds() const {
    FILE* f = fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
    if (!f) return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char* p = strrchr(buf, ')');  // the command name may hold spaces
    unsigned long utime = 0, stime = 0;
    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
    return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
  }

  // Resident set size in KiB, from /proc.
  long rss_kib() const {
    FILE* f = fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
  }

  // Stops and continues it (SIGSTOP, SIGCONT): what clients send meanwhile
  // waits in its sockets, and its next turn finds all of it at once.
  void pause() { REQUIRE(stop_process(pid)); }
  void resume() { kill(pid, SIGCONT); }

  pid_t pid = -1;
  int port = 0;
  int exit_status = -1;
  std::string log_path;
  std::string admin_token;  // the one the server printed, if it made one

 private:
  TempDir own_dir;  // members are built before the constructor's body runs
  static std::string read_line(int fd, int timeout_ms) {
    std::string line;
    int64_t end = now_ms() + timeout_ms;
    char ch;
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, int(std::max<int64_t>(0, end - now_ms()))) <= 0) break;
      if (read(fd, &ch, 1) != 1 || ch == '\n') break;
      line += ch;
    }
    return line;
  }
  int stdout_fd = -1;
};

inline int tcp_connect(int port, int rcvbuf = 0) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

inline void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    REQUIRE(n > 0);
    data.remove_prefix(size_t(n));
  }
}

struct Response {
  int status = 0;
  std::string head;  // status line and headers, without the blank line
  std::string body;
  std::optional<std::string> header(std::string name) const {
    for (auto& c : name) c = char(tolower(c));
    size_t pos = 0;
    while ((pos = head.find("\r\n", pos)) != std::string::npos) {
      pos += 2;
      size_t colon = head.find(':', pos), end = head.find("\r\n", pos);
      if (colon == std::string::npos || colon > end) continue;
      std::string field = head.substr(pos, colon - pos);
      for (auto& c : field) c = char(tolower(c));
      if (field == name) {
        size_t v = head.find_first_not_of(' ', colon + 1);
        return head.substr(v, (end == std::string::npos ? head.size() : end) - v);
      }
    }
    return std::nullopt;
  }
};

// One connection. Reads are bounded by a deadline.
class Client {
 public:
  explicit Client(int port, int rcvbuf = 0) : fd(tcp_connect(port, rcvbuf)) {}
  ~Client() {
    if (fd >= 0) close(fd);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void send(std::string_view data) { send_all(fd, data); }

  // Closes with a reset (SO_LINGER 0), as a client that crashes or gives
  // up does: the server sees EPOLLHUP and EPOLLERR at once.
  void reset() {
    linger now{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
    close(fd);
    fd = -1;
  }

  // Reads more into buf; false on EOF, error or timeout.
  bool fill(int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char tmp[65536];
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) {
      eof = true;
      return false;
    }
    buf.append(tmp, size_t(n));
    return true;
  }

  // Reads until buf contains `needle`; returns whether it did in time.
  bool read_until(std::string_view needle, int timeout_ms = 2000) {
    int64_t end = now_ms() + timeout_ms;
    while (buf.find(needle) == std::string::npos) {
      int64_t left = end - now_ms();
      if (left <= 0 || !fill(int(left))) return buf.find(needle) != std::string::npos;
    }
    return true;
  }

  // Reads one whole response (status 0 if none came in time).
  Response response(int timeout_ms = 2000, bool head_request = false) {
    Response r;
    if (!read_until("\r\n\r\n", timeout_ms)) return r;
    size_t head_end = buf.find("\r\n\r\n");
    r.head = buf.substr(0, head_end);
    r.status = std::atoi(r.head.c_str() + 9);
    size_t length = 0;
    if (auto cl = r.header("content-length"); cl && !head_request && r.status != 304) length = std::stoul(*cl);
    int64_t end = now_ms() + timeout_ms;
    while (buf.size() < head_end + 4 + length && now_ms() < end) fill(int(end - now_ms()));
    r.body = buf.substr(head_end + 4, length);
    buf.erase(0, std::min(buf.size(), head_end + 4 + length));
    return r;
  }

  // True when the server closes the connection within timeout_ms (bytes
  // that arrive before the close are kept in buf).
  bool closed_within(int timeout_ms) {
    int64_t end = now_ms() + timeout_ms;
    while (!eof && now_ms() < end) fill(int(end - now_ms()));
    return eof;
  }

  int fd;
  std::string buf;
  bool eof = false;
};

inline std::string get_request(std::string_view path, std::string_view extra = "") {
  return std::string("GET ") + std::string(path) + " HTTP/1.1\r\nHost: t\r\n" + std::string(extra) + "\r\n";
}

// One GET on a fresh connection.
inline Response http_get(int port, std::string_view path, std::string_view extra = "") {
  Client c(port);
  c.send(get_request(path, extra));
  return c.response();
}

// The value of one sample line in /metrics ("name{labels} value"), or -1.
inline double metric(int port, std::string_view sample) {
  Response r = http_get(port, "/metrics");
  std::string key = std::string("\n") + std::string(sample) + " ";
  size_t at = r.body.find(key);
  return at == std::string::npos ? -1 : std::atof(r.body.c_str() + at + key.size());
}

inline std::string post_request(std::string_view path, std::string_view form, std::string_view extra = "") {
  return std::string("POST ") + std::string(path) + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
         std::string(extra) + "Content-Length: " + std::to_string(form.size()) + "\r\n\r\n" + std::string(form);
}

// One form POST on a fresh connection.
inline Response http_post(int port, std::string_view path, std::string_view form, std::string_view extra = "") {
  Client c(port);
  c.send(post_request(path, form, extra));
  return c.response();
}

// The integer after "\"key\":" in a JSON text, or -1.
inline long long json_int(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\":");
  return at == std::string::npos ? -1 : std::atoll(json.c_str() + at + key.size() + 3);
}

// One SSE event as a client reads it: its id and its name (each empty when
// it had none) and its data.
struct SseEvent {
  std::string id, event, data;
};

// Reads events from `c` (a stream whose response head was read already, or
// that is only read for events) until one satisfies `want`, or the
// deadline. Events read are consumed from c.buf; the one that matched is
// left in *got. Comment lines (heartbeats) are skipped.
inline bool sse_next(Client& c, const std::function<bool(const SseEvent&)>& want, int timeout_ms, SseEvent* got = nullptr) {
  int64_t end = now_ms() + timeout_ms;
  for (;;) {
    size_t at;
    while ((at = c.buf.find("\n\n")) != std::string::npos) {
      std::string block = c.buf.substr(0, at + 1);
      c.buf.erase(0, at + 2);
      SseEvent e;
      bool has_data = false;
      for (size_t line = 0, eol; (eol = block.find('\n', line)) != std::string::npos; line = eol + 1) {
        std::string_view l(block.data() + line, eol - line);
        if (l.starts_with("id: ")) e.id = l.substr(4);
        if (l.starts_with("event: ")) e.event = l.substr(7);
        if (l.starts_with("data: ")) e.data += std::string(l.substr(6)), has_data = true;
      }
      if (!has_data) continue;  // retry, a heartbeat, the response head
      if (want(e)) {
        if (got) *got = e;
        return true;
      }
    }
    if (now_ms() >= end || !c.fill(int(end - now_ms()))) return false;
  }
}

// The same, for a test that looks only at each event's data; every data
// read is appended to *seen.
inline bool sse_next(Client& c, const std::function<bool(const std::string&)>& want, int timeout_ms,
                     std::vector<std::string>* seen = nullptr) {
  return sse_next(c, [&](const SseEvent& e) {
    if (seen) seen->push_back(e.data);
    return want(e.data);
  }, timeout_ms);
}

// Two processes on one Redis, one of them killed under load: 10 clients on
// each send 6 bursts of `per_client` pipelined writes; A is killed with
// SIGKILL while its 4th burst is on its way (some of it answered, some not)
// and sends nothing after. request(burst, on_a, n) is the n-th write of a
// side's burst (n = client × per_client + j); answered(burst, on_a, n, r)
// sees every answer that came. Every one of B's writes must be answered 200:
// B never noticed. Returns how many of B's answers were not.
inline int bursts_with_a_killed(ServerProcess& a, int b_port, size_t per_client,
                                const std::function<std::string(int burst, bool on_a, size_t n)>& request,
                                const std::function<void(int burst, bool on_a, size_t n, const Response& r)>& answered) {
  std::vector<std::unique_ptr<Client>> on_a, on_b;
  for (int k = 0; k < 10; k++) on_a.push_back(std::make_unique<Client>(a.port)), on_b.push_back(std::make_unique<Client>(b_port));
  int b_refused = 0;
  for (int burst = 0; burst < 6; burst++) {
    bool a_gone = burst > 3;
    for (auto* side : {&on_a, &on_b})
      for (size_t k = 0; k < side->size() && !(side == &on_a && a_gone); k++) {
        std::string wire;
        for (size_t j = 0; j < per_client; j++) wire += request(burst, side == &on_a, k * per_client + j);
        (*side)[k]->send(wire);
      }
    if (burst == 3) a.stop(SIGKILL);
    for (auto* side : {&on_a, &on_b})
      for (size_t k = 0; k < side->size() && !(side == &on_a && a_gone); k++)
        for (size_t j = 0; j < per_client; j++) {
          Response r = (*side)[k]->response(side == &on_a && burst == 3 ? 300 : 5000);
          answered(burst, side == &on_a, k * per_client + j, r);
          if (side == &on_b && r.status != 200) b_refused++;
        }
  }
  return b_refused;
}

// Sends request(k) on each of `n` new connections so that one loop turn of
// `srv` reads them all: it connects them, waits until the server has
// accepted every one, stops the server (SIGSTOP) while the requests go out,
// and continues it. Returns the connections, in order, for their answers.
inline std::vector<std::unique_ptr<Client>> send_in_one_turn(ServerProcess& srv, size_t n, const std::function<std::string(size_t k)>& request) {
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t k = 0; k < n; k++) clients.push_back(std::make_unique<Client>(srv.port));
  REQUIRE(wait_for([&] { return metric(srv.port, "sse_connections_open") >= double(n + 1); }, 2000));  // + metric()'s own
  srv.pause();
  for (size_t k = 0; k < n; k++) clients[k]->send(request(k));
  srv.resume();
  return clients;
}

// ---- Both storage modes ---------------------------------------------------------------

// The same situations in both modes: starts one server on SQLite and one on
// a Redis of its own, both with `args` (plus --quiet), waits with `ready`
// until the Redis one can answer, runs `steps` (what clients do, one line
// per thing they were told) against each, and checks that every line is
// the same bytes. Returns the lines, for checks of what they say.
inline std::vector<std::string> same_in_both_modes(std::vector<std::string> args, const std::function<void(int port)>& ready,
                                                   const std::function<std::vector<std::string>(int port)>& steps) {
  args.push_back("--quiet");
  RedisProcess redis;
  std::vector<std::string> in_redis = args;
  in_redis.insert(in_redis.end(), {"--redis", redis.socket});
  ServerProcess sqlite(args), shared(in_redis);
  ready(shared.port);
  std::vector<std::string> without = steps(sqlite.port), with = steps(shared.port);
  REQUIRE(without.size() == with.size());
  for (size_t i = 0; i < with.size(); i++) {
    CAPTURE(i);
    CHECK(with[i] == without[i]);
  }
  return with;
}

// ---- Streams ---------------------------------------------------------------------------

// The ids of the events in an SSE body, in order.
inline std::vector<uint64_t> event_ids(const std::string& stream) {
  std::vector<uint64_t> ids;
  for (size_t at = stream.find("\nid: "); at != std::string::npos; at = stream.find("\nid: ", at + 1))
    ids.push_back(std::stoull(stream.substr(at + 5)));
  return ids;
}

// Opens /sse and reads its response head; the body so far stays in c.buf.
inline Response open_stream(Client& c, std::string_view path = "/sse", std::string_view extra = "") {
  c.send(get_request(path, extra));
  REQUIRE(c.read_until("\r\n\r\n"));
  size_t end = c.buf.find("\r\n\r\n");
  Response r;
  r.head = c.buf.substr(0, end);
  r.status = std::atoi(r.head.c_str() + 9);
  c.buf.erase(0, end + 4);
  return r;
}
