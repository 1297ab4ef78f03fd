// fuzz_request.cpp — libFuzzer: any bytes, as one connection would send them.
//
// The whole server is compiled in (server.cpp is #included with SSE_FUZZ,
// which leaves out its main), set up once as `main` would — routes, pages,
// an in-memory database, the four apps — but without a listening socket.
// Each input is one client: a socketpair stands in for the TCP connection,
// the server end is opened as an accepted connection, and the input is fed
// to it in pieces cut at points the input itself chooses (so the fuzzer
// explores requests split across reads, and pipelined ones), each piece
// followed by the rest of a loop turn: commit, stream pushes, writes,
// closes. The client end is drained after every turn. What this finds is
// what a hostile client could do to the parser, the router, the handlers
// and the store: crashes, sanitizer reports, hangs (libFuzzer's -timeout).
//
//   make fuzz FUZZ_SECONDS=60
#define SSE_FUZZ 1
#include "../../server.cpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char name[] = "sse-server", db[] = "--db=:memory:", quiet[] = "--quiet", token[] = "--admin-token=fuzz-admin-token";
  char* argv[] = {name, db, quiet, token, nullptr};
  setup_apps(4, argv);
  signal(SIGPIPE, SIG_IGN);
  setup_fd_table();
  setup_store();
  setup_routes();
  srv.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  srv.now_ms = clock_ms(CLOCK_MONOTONIC);
  srv.wall_ms = clock_ms(CLOCK_REALTIME);
  refresh_date();
  return 0;
}

static void drain(int fd) {
  char sink[65536];
  while (read(fd, sink, sizeof sink) > 0) {
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) return 0;
  conn_open(pair[0]);
  // The first byte says how many pieces, the next ones where to cut.
  size_t pieces = size > 0 ? data[0] % 8 + 1 : 1, header = std::min(size, pieces);
  const char* body = reinterpret_cast<const char*>(data) + header;
  size_t left = size - header, at = 0;
  for (size_t k = 0; k < pieces; k++) {
    size_t cut = k < header ? data[k] : 0;  // an input shorter than its piece count cuts at 0
    size_t len = k + 1 == pieces ? left - at : std::min(left - at, cut * 7 % (left + 1));
    Conn& c = srv.conns[size_t(pair[0])];
    if (c.state == ConnState::Http && !c.reading_paused && c.waits == Then::Send) {  // as on_readable: a waiting connection reads nothing
      if (!c.stash.empty()) on_resume(pair[0]);
      conn_parse(pair[0], body + at, len);
    }
    at += len;
    srv.now_ms += 100;  // time moves on between reads: timeouts expire, streams come due
    srv.wall_ms += 100;
    turn_finish();
    drain(pair[1]);
    turn_finish();  // a paused connection resumes once its output is read
    drain(pair[1]);
  }
  conn_close_later(pair[0]);
  close_marked();
  close(pair[1]);
  return 0;
}
