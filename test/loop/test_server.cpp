// The real binary over real sockets: pages, errors, keep-alive, pipelining,
// timeouts, capacity and shutdown (streams: test_streams.cpp).
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <set>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "../harness.hpp"

TEST_SUITE("server") {

TEST_CASE("pages: every file in public/, the app paths, HEAD, ETag and 304") {
  ServerProcess srv({"--quiet"});
  Response index = http_get(srv.port, "/");
  CHECK(index.status == 200);
  CHECK(index.header("content-type") == "text/html; charset=utf-8");
  CHECK(index.body.find("follow('clock'") != std::string::npos);  // the page follows the clock stream
  CHECK(http_get(srv.port, "/index.html").body == index.body);
  CHECK(http_get(srv.port, "/style.css").header("content-type") == "text/css; charset=utf-8");
  CHECK(http_get(srv.port, "/live.js").header("content-type") == "text/javascript; charset=utf-8");
  for (const char* app : {"/redpacket", "/cinema", "/vote"}) {
    CAPTURE(app);
    Response page = http_get(srv.port, app);
    CHECK(page.status == 200);
    CHECK(page.body.find("<html") != std::string::npos);
  }

  Client head(srv.port);
  head.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
  Response h = head.response(2000, true);
  CHECK(h.status == 200);
  CHECK(h.header("content-length") == std::to_string(index.body.size()));
  CHECK(head.buf.empty());  // no body followed the head

  auto etag = index.header("etag");
  REQUIRE(etag);
  Client cond(srv.port);
  cond.send(get_request("/", "If-None-Match: " + *etag + "\r\n"));
  Response not_modified = cond.response();
  CHECK(not_modified.status == 304);
  CHECK(not_modified.header("etag") == *etag);
  CHECK(not_modified.header("content-length") == std::nullopt);
  cond.send(get_request("/", "If-None-Match: W/" + *etag + ", \"other\"\r\n"));
  CHECK(cond.response().status == 304);
  cond.send(get_request("/", "If-None-Match: \"stale\"\r\n"));
  CHECK(cond.response().body == index.body);
}

TEST_CASE("nothing outside public/ is served") {
  ServerProcess srv({"--quiet"});
  for (const char* path : {"/../server.cpp", "/%2e%2e/server.cpp", "/public/index.html", "//etc/passwd", "/server.cpp"}) {
    CAPTURE(path);
    CHECK(http_get(srv.port, path).status == 404);
  }
}

TEST_CASE("healthz and metrics") {
  ServerProcess srv({"--quiet"});
  Response ok = http_get(srv.port, "/healthz");
  CHECK(ok.status == 200);
  CHECK(ok.body == "ok\n");
  double before = metric(srv.port, "sse_http_requests_total{code=\"404\"}");
  for (int i = 0; i < 3; i++) http_get(srv.port, "/missing");
  CHECK(metric(srv.port, "sse_http_requests_total{code=\"404\"}") == (before < 0 ? 0 : before) + 3);
  Response m = http_get(srv.port, "/metrics");
  CHECK(m.header("content-type")->starts_with("text/plain; version=0.0.4"));
  for (const char* name : {"sse_connections_open ", "sse_subscribers{stream=\"clock\"} ", "sse_bytes_written_total ",
                           "sse_slow_consumers_dropped_total ", "sse_broadcasts_total ", "sse_last_broadcast_seconds "}) {
    CAPTURE(name);
    CHECK(m.body.find(std::string("\n") + name) != std::string::npos);
  }
  CHECK(metric(srv.port, "sse_bytes_written_total") > 0);
}

TEST_CASE("the limit flags are the parser's: --max-body-bytes, --max-url-bytes and --max-header-bytes refuse past them, and only past them") {
  ServerProcess srv({"--quiet", "--max-body-bytes", "100", "--max-url-bytes", "64", "--max-header-bytes", "400"});
  auto one = [&](const std::string& wire) {
    Client c(srv.port);
    c.send(wire);
    return c.response(3000).status;
  };
  std::string body = "user=" + std::string(95, 'u');  // 100 bytes: at the limit
  CHECK(one(post_request("/redpacket/grab", body)) != 413);
  CHECK(one(post_request("/redpacket/grab", body + "u")) == 413);
  std::string chunked = "POST /redpacket/grab HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n" + std::string(101, 'u') +
                        "\r\n0\r\n\r\n";
  CHECK(one(chunked) == 413);  // 0x65 = 101 bytes, learnt only as they come
  CHECK(one(get_request("/healthz?" + std::string(40, 'q'))) == 200);
  CHECK(one(get_request("/healthz?" + std::string(80, 'q'))) == 414);
  CHECK(one(get_request("/healthz", "X-Pad: " + std::string(200, 'p') + "\r\n")) == 200);
  CHECK(one(get_request("/healthz", "X-Pad: " + std::string(500, 'p') + "\r\n")) == 431);
  CHECK(http_get(srv.port, "/healthz").status == 200);  // and it serves on
}

TEST_CASE("errors: each status with a message; the connection closed only when the framing cannot be trusted") {
  ServerProcess srv({"--quiet"});
  struct Case {
    std::string request;
    int status;
    bool closes;
  };
  const Case cases[] = {
      {get_request("/nope"), 404, false},
      {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 405, false},
      {"DELETE /sse HTTP/1.1\r\nHost: t\r\n\r\n", 405, false},
      {"GET /" + std::string(3000, 'a') + " HTTP/1.1\r\nHost: t\r\n\r\n", 414, true},
      {get_request("/", "X-Big: " + std::string(9000, 'b') + "\r\n"), 431, true},
      {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n", 413, true},  // no body sent: decided on the head
      {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, true},
      {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, true},
      {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, true},
      {"GET / HTTP/1.1\r\n\r\n", 400, true},
      {"GARBAGE\r\n\r\n", 400, true},
      {"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, true},
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, true},
  };
  for (const Case& k : cases) {
    CAPTURE(k.request.substr(0, 60));
    Client c(srv.port);
    c.send(k.request);
    Response r = c.response();
    CHECK(r.status == k.status);
    CHECK(r.body.find(std::to_string(k.status)) == 0);  // "405 Method Not Allowed: ..."
    CHECK((r.header("connection") == "close") == k.closes);
    if (k.closes) {
      CHECK(c.closed_within(2000));
    } else {
      c.send(get_request("/healthz"));
      CHECK(c.response().status == 200);
    }
  }
  Client c(srv.port);
  c.send("PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  CHECK(c.response().header("allow") == "GET, HEAD");
  CHECK(http_get(srv.port, "/healthz").status == 200);  // and everyone else is still served
}

TEST_CASE("an error answer to HEAD has no body, whoever finds the error") {
  ServerProcess srv({"--quiet"});
  for (const std::string& wire : {std::string("HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n"),
                                  std::string("HEAD / HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n"),
                                  std::string("HEAD /" + std::string(3000, 'a') + " HTTP/1.1\r\nHost: t\r\n\r\n")}) {
    CAPTURE(wire.substr(0, 40));
    Client c(srv.port);
    c.send(wire + get_request("/healthz"));
    Response r = c.response(2000, true);
    CHECK(r.status >= 400);
    CHECK(std::stoul(*r.header("content-length")) > 0);  // the length it would have had
    if (r.status == 404) {
      CHECK(c.response().body == "ok\n");  // the next answer starts right after the head
    } else {
      CHECK(c.closed_within(2000));
      CHECK(c.buf.empty());
    }
  }
}

TEST_CASE("100 pipelined requests, 200s and 404s mixed, get 100 answers in order on one connection") {
  ServerProcess srv({"--quiet"});
  std::string wire;
  for (int i = 0; i < 100; i++) wire += get_request(i % 3 == 1 ? "/no-" + std::to_string(i) : "/healthz");
  Client c(srv.port);
  c.send(wire);
  for (int i = 0; i < 100; i++) {
    CAPTURE(i);
    Response r = c.response();
    REQUIRE(r.status == (i % 3 == 1 ? 404 : 200));
  }
  CHECK_FALSE(c.closed_within(100));
}

// The rows of the README table under `heading`, each split into its cells.
std::vector<std::vector<std::string>> readme_table(const std::string& heading) {
  std::ifstream f("README.md");
  REQUIRE(f.good());
  std::vector<std::vector<std::string>> rows;
  bool in_section = false, in_table = false;
  for (std::string line; std::getline(f, line);) {
    if (line.starts_with(heading)) in_section = true;
    if (!in_section) continue;
    if (!line.starts_with("|")) {
      if (in_table) break;
      continue;
    }
    in_table = true;
    if (line.starts_with("|---") || line.starts_with("| route |") || line.starts_with("| status |")) continue;
    std::vector<std::string> cells;
    for (size_t at = 1, bar; (bar = line.find(" |", at)) != std::string::npos; at = bar + 2) cells.push_back(line.substr(at + 1, bar - at - 1));
    rows.push_back(cells);
  }
  return rows;
}

TEST_CASE("documented means built: every route of the README's table answers its methods") {
  ServerProcess srv({"--quiet"});
  auto rows = readme_table("## Routes");
  REQUIRE(rows.size() >= 15);
  int checked = 0;
  for (auto& row : rows) {
    // "`/events` (also `/cinema/events`)": each backquoted path; {id} is some id.
    std::vector<std::string> paths;
    for (size_t at = 0; (at = row[0].find("`/", at)) != std::string::npos;) {
      size_t end = row[0].find('`', at + 1);
      paths.push_back(row[0].substr(at + 1, end - at - 1));
      at = end + 1;
    }
    if (row[0].find("every file") != std::string::npos) paths = {"/", "/redpacket", "/style.css"};
    for (std::string path : paths) {
      if (size_t brace = path.find("{id}"); brace != std::string::npos) path.replace(brace, 4, "999");
      for (size_t at = 0; at < row[1].size();) {
        std::string method = row[1].substr(at, row[1].find(',', at) - at);
        at += method.size() + 2;
        CAPTURE(method + " " + path);
        Client c(srv.port);
        std::string body = method == "POST" ? "x=1" : "";
        c.send(method + " " + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
        Response r = c.response(2000, method == "HEAD");
        CHECK(r.status != 0);
        CHECK(r.status != 405);
        CHECK(r.body.find("no such page") == std::string::npos);
        checked++;
      }
    }
  }
  CHECK(checked >= 20);
}

TEST_CASE("documented means built: every row of the README's error table, its status and what happens to the connection") {
  ServerProcess srv({"--quiet", "--admin-token", "tok", "--redpacket-count", "1", "--max-voters", "2", "--header-timeout", "0.3"});
  ServerProcess full({"--quiet", "--max-conns", "1"});
  Client holder(full.port);  // full's one connection
  holder.send(get_request("/healthz"));
  REQUIRE(holder.response().status == 200);
  const std::string form = "Content-Type: application/x-www-form-urlencoded\r\n";
  auto post = [&](const std::string& path, const std::string& body, const std::string& extra = "") {
    return "POST " + path + " HTTP/1.1\r\nHost: t\r\n" + form + extra + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=first").status == 200);  // the only packet
  REQUIRE(http_post(srv.port, "/vote", "voter=v1&option=Auction").status == 200);
  REQUIRE(http_post(srv.port, "/vote", "voter=v2&option=Auction").status == 200);  // the poll is full
  // status, and whether the connection stays open -> the request that gets it
  std::map<std::pair<int, bool>, std::pair<int, std::string>> examples = {
      {{400, false}, {srv.port, "GET / HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n"}},
      {{400, true}, {srv.port, post("/vote", "voter=v9&option=%FF")}},
      {{401, true}, {srv.port, post("/vote/polls", "question=Q&options=A,B")}},
      {{404, true}, {srv.port, get_request("/nope")}},
      {{405, true}, {srv.port, "DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n"}},
      {{408, false}, {srv.port, "GET /healthz HTTP/1.1\r\nHost"}},
      {{409, true}, {srv.port, post("/vote", "voter=v1&option=Auction")}},
      {{410, true}, {srv.port, post("/redpacket/grab", "user=second")}},
      {{413, false}, {srv.port, "POST /vote HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n"}},
      {{414, false}, {srv.port, get_request("/" + std::string(3000, 'a'))}},
      {{415, true}, {srv.port, "POST /vote HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nx=1"}},
      {{431, false}, {srv.port, get_request("/", "X: " + std::string(9000, 'a') + "\r\n")}},
      {{501, false}, {srv.port, "POST /vote HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"}},
      {{503, false}, {full.port, get_request("/healthz")}},
      {{503, true}, {srv.port, post("/vote", "voter=v3&option=Auction")}},
      {{505, false}, {srv.port, "GET / HTTP/2.0\r\nHost: t\r\n\r\n"}},
  };
  auto rows = readme_table("Errors.");
  REQUIRE(rows.size() == examples.size());
  for (auto& row : rows) {
    int status = std::atoi(row[0].c_str() + 1);  // "`404`"
    bool open = row[2] == "open";
    CAPTURE(row[0] + " " + row[2]);
    auto it = examples.find({status, open});
    REQUIRE_MESSAGE(it != examples.end(), "the README lists an error no test makes");
    Client c(it->second.first);
    c.send(it->second.second);
    Response r = c.response(3000);
    CHECK(r.status == status);
    if (open) {
      CHECK_FALSE(r.header("connection") == "close");
      c.send(get_request("/healthz"));
      CHECK(c.response().status == 200);
    } else {
      CHECK(c.closed_within(2000));
    }
  }
}

TEST_CASE("100 pipelined requests in one write get 100 answers in order") {
  ServerProcess srv({"--quiet"});
  const char* paths[] = {"/healthz", "/style.css", "/metrics"};
  std::string wire;
  for (int i = 0; i < 100; i++) wire += get_request(paths[i % 3]);
  Client c(srv.port);
  c.send(wire);
  for (int i = 0; i < 100; i++) {
    CAPTURE(i);
    Response r = c.response();
    REQUIRE(r.status == 200);
    if (i % 3 == 0) CHECK(r.body == "ok\n");
    if (i % 3 == 1) CHECK(r.header("content-type") == "text/css; charset=utf-8");
    if (i % 3 == 2) CHECK(r.body.find("sse_connections_open") != std::string::npos);
  }
  CHECK(c.buf.empty());
}

TEST_CASE("a client pipelining without reading is paused, not buffered without bound") {
  ServerProcess srv({"--quiet"});
  // 20,000 requests for the home page, never reading: several MiB of answers.
  Client c(srv.port, 4096);
  std::string wire;
  for (int i = 0; i < 20000; i++) wire += get_request("/");
  int flags = fcntl(c.fd, F_GETFL);
  fcntl(c.fd, F_SETFL, flags | O_NONBLOCK);
  size_t sent = 0;
  int64_t end = now_ms() + 3000;
  while (sent < wire.size() && now_ms() < end) {
    ssize_t n = ::send(c.fd, wire.data() + sent, wire.size() - sent, MSG_NOSIGNAL);
    if (n > 0) sent += size_t(n);
    else std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Answers not taken would be ~78 MiB; the server holds one high-water
  // mark of output (256 KiB) and one read of input (64 KiB), at most.
  REQUIRE(wait_for([&] { return metric(srv.port, "sse_output_queued_bytes") > 0; }, 3000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(metric(srv.port, "sse_output_queued_bytes") <= 256 * 1024 + 8 * 1024);
  CHECK(metric(srv.port, "sse_input_stashed_bytes") <= 64 * 1024);
  CHECK(http_get(srv.port, "/healthz").status == 200);
  // Reading now gets every answer, in order.
  fcntl(c.fd, F_SETFL, flags);
  size_t answers = 0;
  while (answers < sent / get_request("/").size()) {
    Response r = c.response(3000);
    if (r.status != 200) break;
    answers++;
  }
  CHECK(answers == sent / get_request("/").size());
}

TEST_CASE("one keep-alive connection serves 1,000 requests") {
  ServerProcess srv({"--quiet"});
  double accepted = metric(srv.port, "sse_connections_accepted_total");
  Client c(srv.port);
  int ok = 0;
  for (int i = 0; i < 1000; i++) {
    c.send(get_request("/healthz"));
    ok += c.response().status == 200;
  }
  CHECK(ok == 1000);
  // Two more connections: this one, and the /metrics request below.
  CHECK(metric(srv.port, "sse_connections_accepted_total") == accepted + 2);
}

TEST_CASE("HTTP/1.0: closed after the answer unless keep-alive was asked for") {
  ServerProcess srv({"--quiet"});
  Client a(srv.port);
  a.send("GET /healthz HTTP/1.0\r\n\r\n");
  CHECK(a.response().body == "ok\n");
  CHECK(a.closed_within(2000));
  Client b(srv.port);
  b.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  Response r = b.response();
  CHECK(r.header("connection") == "keep-alive");
  b.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(b.response().status == 200);
}

TEST_CASE("Expect: 100-continue: the invitation only for a request that would be handled; a refusal at once, then a close") {
  ServerProcess srv({"--quiet", "--admin-token", "tok"});
  {
    Client c(srv.port);
    c.send("POST /vote HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 23\r\n\r\n");
    CHECK(c.read_until("HTTP/1.1 100 Continue\r\n\r\n"));
    c.buf.clear();
    c.send("voter=e1&option=Auction");
    CHECK(c.response().status == 200);
  }
  const std::pair<std::string, int> refused[] = {
      {"POST /no/such/page HTTP/1.1\r\n", 404},
      {"POST /healthz HTTP/1.1\r\n", 405},
      {"POST /redpacket/rounds HTTP/1.1\r\n", 401},  // no token in the header
      {"POST /redpacket/rounds HTTP/1.1\r\nAuthorization: Bearer wrong\r\n", 401},
  };
  for (auto& [head, status] : refused) {
    CAPTURE(head);
    Client c(srv.port);
    c.send(head + "Host: t\r\nExpect: 100-continue\r\nContent-Length: 60000\r\n\r\n");
    Response r = c.response();
    CHECK(r.status == status);  // at once: the 60,000 bytes were never sent
    CHECK(c.buf.find("100 Continue") == std::string::npos);
    CHECK(c.closed_within(2000));
  }
  {
    Client c(srv.port);  // HTTP/1.0 has no 100 Continue: the body is simply read
    c.send("POST /vote HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 23\r\n\r\nvoter=e2&option=Auction");
    Response r = c.response();
    CHECK(r.status == 200);
    CHECK(r.head.find("100 Continue") == std::string::npos);
  }
}

TEST_CASE("header timeout closes a slow sender; idle timeout an idle connection") {
  ServerProcess srv({"--quiet", "--header-timeout", "0.4", "--idle-timeout", "0.6"});
  Client slow(srv.port);
  int64_t start = now_ms();
  bool closed = false;
  std::string request = get_request("/healthz");
  for (size_t i = 0; i < request.size() - 1 && !closed; i++) {  // one byte every 50 ms, never the last
    slow.send(request.substr(i, 1));
    closed = slow.closed_within(50);
  }
  closed = closed || slow.closed_within(2000);
  CHECK(closed);
  CHECK(slow.buf.starts_with("HTTP/1.1 408 Request Timeout\r\n"));  // it had begun a request: told why
  CHECK(slow.buf.find("Connection: close\r\n") != std::string::npos);
  CHECK(now_ms() - start < 1500);

  Client silent(srv.port);  // connected, never a byte
  CHECK(silent.closed_within(2000));
  CHECK(silent.buf.empty());  // nothing begun, nothing to answer

  Client idle(srv.port);
  idle.send(get_request("/healthz"));
  CHECK(idle.response().status == 200);
  int64_t answered = now_ms();
  CHECK(idle.closed_within(3000));
  CHECK(now_ms() - answered >= 500);
  CHECK(metric(srv.port, "sse_timeouts_total") >= 3);

  Client stream(srv.port);  // streams are exempt
  open_stream(stream);
  CHECK_FALSE(stream.closed_within(1200));
}

TEST_CASE("a request that waits for the commit is never timed out as if it had not arrived, nor answered on another connection") {
  // The header clock of a connection starts when it is accepted. Here it
  // runs out while the server cannot run (SIGSTOP: a loop busy elsewhere),
  // with a booking and a read of the board behind it that arrived whole;
  // the read waits for the booking's commit. It must be answered 200, not
  // 408 — and the next connection the kernel gives that fd must get its
  // own answers only: a waiting request left on a list would be "answered"
  // there, 404 for a request that connection never sent, and every later
  // answer on it one off.
  ServerProcess srv({"--quiet", "--header-timeout", "0.2"});
  for (int attempt = 0; attempt < 5; attempt++) {
    CAPTURE(attempt);
    Client a(srv.port);
    REQUIRE(wait_for([&] { return metric(srv.port, "sse_connections_open") == 2; }, 2000));  // a, and metric()'s own
    srv.pause();
    a.send(post_request("/cinema/showtimes/1/book", "user=w" + std::to_string(attempt)) + get_request("/cinema/showtimes"));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the time itself is the test: past --header-timeout
    srv.resume();
    Response booked = a.response(), board = a.response();
    CHECK(booked.status == 200);
    CHECK(board.status == 200);
    CHECK(board.body.starts_with("{\"showtimes\":["));
    a.reset();
    REQUIRE(wait_for([&] { return metric(srv.port, "sse_connections_open") == 1; }, 2000));
    Client b(srv.port);  // most likely on a's fd: the kernel hands out the lowest free one
    b.send(get_request("/healthz") + get_request("/redpacket/me", "Cookie: uid=nobody\r\n"));
    Response health = b.response(), me = b.response();
    CHECK(health.status == 200);
    CHECK(health.body == "ok\n");
    CHECK(me.status == 200);
    CHECK(me.body.find("\"grabbed\":false") != std::string::npos);
  }
  CHECK(metric(srv.port, "sse_http_requests_total{code=\"408\"}") == -1);  // never counted: no 408 at all
  CHECK(metric(srv.port, "sse_http_requests_total{code=\"404\"}") == -1);
}

TEST_CASE("past --max-conns: 503 for a request, a plain close for a stream") {
  ServerProcess srv({"--quiet", "--max-conns", "2"});
  Client a(srv.port), b(srv.port);
  a.send(get_request("/healthz"));
  CHECK(a.response().status == 200);
  b.send(get_request("/healthz"));
  CHECK(b.response().status == 200);
  Client over(srv.port);
  over.send(get_request("/healthz"));
  Response r = over.response();
  CHECK(r.status == 503);
  CHECK(r.header("retry-after") == "1");
  CHECK(over.closed_within(2000));
  Client over_stream(srv.port);
  over_stream.send(get_request("/sse"));
  CHECK(over_stream.closed_within(2000));
  CHECK(over_stream.buf.empty());
  // Once a slot frees up, service resumes.
  close(a.fd);
  a.fd = -1;
  CHECK(wait_for([&] { return http_get(srv.port, "/healthz").status == 200; }, 2000));
}

TEST_CASE("connections accepted past --max-conns do not count: idle ones never keep a freed slot from a new client") {
  ServerProcess srv({"--quiet", "--max-conns", "2"});
  auto a = std::make_unique<Client>(srv.port), b = std::make_unique<Client>(srv.port);
  a->send(get_request("/healthz"));
  b->send(get_request("/healthz"));
  REQUIRE(a->response().status == 200);
  REQUIRE(b->response().status == 200);
  Client idle1(srv.port), idle2(srv.port);  // over capacity, and silent
  a.reset();
  b.reset();
  // Two slots are free once the server has seen a and b go, and the two
  // silent ones must not stand in the way: /metrics itself gets one.
  CHECK(wait_for([&] { return metric(srv.port, "sse_connections_open") == 1; }, 2000));
  Client next(srv.port);
  next.send(get_request("/healthz"));
  CHECK(next.response().status == 200);
  idle1.send(get_request("/healthz"));
  CHECK(idle1.response().status == 503);  // still told, when it speaks, and closed
  CHECK(idle1.closed_within(2000));
}

TEST_CASE("out of file descriptors: no busy loop, and service resumes") {
  // 200 fds: 136 connections served, then 503s, then accept() fails EMFILE.
  ServerProcess srv({"--quiet"}, 200);
  std::vector<std::unique_ptr<Client>> flood;
  for (int i = 0; i < 260; i++) flood.push_back(std::make_unique<Client>(srv.port));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  double cpu0 = srv.cpu_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  double busy = srv.cpu_seconds() - cpu0;
  CHECK(busy < 0.2);  // a spinning loop would burn the whole second
  // One accepted past --max-conns (136 here) is answered 503, not left hanging.
  flood[150]->send(get_request("/healthz"));
  Response over = flood[150]->response(2000);
  CHECK(over.status == 503);
  CHECK(over.body.find("connection limit") != std::string::npos);
  flood.clear();
  CHECK(wait_for([&] { return http_get(srv.port, "/healthz").status == 200; }, 3000));
}

TEST_CASE("SIGTERM: streams end, the process exits 0 within a second") {
  ServerProcess srv({"--clock-interval", "0.05"});
  Client stream(srv.port);
  open_stream(stream);
  REQUIRE(stream.read_until("data:", 2000));
  Client idle(srv.port);
  idle.send(get_request("/healthz"));
  REQUIRE(idle.response().status == 200);
  int64_t start = now_ms();
  CHECK(srv.stop(SIGTERM, 2000) == 0);
  CHECK(now_ms() - start < 1000);
  CHECK(stream.closed_within(1000));
  CHECK(idle.closed_within(1000));
  std::string log = srv.log();
  CHECK(log.find("sse: + /sse") != std::string::npos);  // connects and disconnects are logged
  CHECK(log.find("sse: - /sse") != std::string::npos);
}

TEST_CASE("SIGTERM in the same wakeup as a connection waiting to be accepted: a clean exit") {
  ServerProcess srv({"--quiet"});
  // Stopped, the server sees the signal and the connection together, in
  // that order, in one epoll_wait: the listener must not be closed under
  // the rest of that batch.
  REQUIRE(kill(srv.pid, SIGSTOP) == 0);
  auto state = [&] {
    char buf[512] = {};
    FILE* f = fopen(("/proc/" + std::to_string(srv.pid) + "/stat").c_str(), "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    const char* paren = strrchr(buf, ')');
    return n && paren ? paren[2] : '?';
  };
  REQUIRE(wait_for([&] { return state() == 'T'; }, 2000));  // stopped, not just told to stop
  REQUIRE(kill(srv.pid, SIGTERM) == 0);
  Client late(srv.port);  // completes in the backlog
  REQUIRE(kill(srv.pid, SIGCONT) == 0);
  CHECK(late.closed_within(2000));
  CHECK(srv.stop(SIGTERM, 2000) == 0);
}

TEST_CASE("the connection table is sized once: a connection past it is closed unanswered, the table never grows") {
  // --max-conns 2: slots for 2 served connections and 64 more (the
  // server's own fds, then 503s), whatever the fd limit is or becomes.
  ServerProcess srv({"--quiet", "--max-conns", "2"});
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 100; i++) clients.push_back(std::make_unique<Client>(srv.port));
  size_t unanswered = 0;
  int64_t until = now_ms() + 100;  // each is closed within 100 ms, or has a slot: one window for all of them
  for (auto& c : clients) unanswered += c->closed_within(int(std::max<int64_t>(1, until - now_ms()))) && c->buf.empty();
  CHECK(unanswered >= 30);
  CHECK(unanswered <= 100 - 40);  // the others have a slot: they wait for their 503
  clients.clear();
  CHECK(wait_for([&] { return http_get(srv.port, "/healthz").status == 200; }, 3000));
  CHECK(metric(srv.port, "sse_connections_refused_total") >= double(unanswered));
}

TEST_CASE("--quiet costs no work for log lines: no getpeername() for streams coming and going") {
  ServerProcess srv({"--quiet"});
  TempDir dir;
  std::string trace = dir.file("trace"), said = dir.file("said");
  pid_t tracer = fork();
  REQUIRE(tracer >= 0);
  if (tracer == 0) {
    int err = open(said.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(err, STDERR_FILENO);
    execlp("strace", "strace", "-f", "-e", "trace=getpeername", "-o", trace.c_str(), "-p", std::to_string(srv.pid).c_str(), nullptr);
    _exit(127);
  }
  auto file = [](const std::string& path) {
    std::string text;
    if (FILE* f = fopen(path.c_str(), "r")) {
      char buf[4096];
      for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
      fclose(f);
    }
    return text;
  };
  REQUIRE_MESSAGE(wait_for([&] { return file(said).find("attached") != std::string::npos; }, 5000), file(said));
  for (int i = 0; i < 10; i++) {
    Client c(srv.port);
    open_stream(c);
    REQUIRE(c.read_until("data:", 2000));
  }
  CHECK(wait_for([&] { return metric(srv.port, "sse_subscribers{stream=\"clock\"}") == 0; }, 2000));
  kill(tracer, SIGINT);
  int status = 0;
  waitpid(tracer, &status, 0);
  std::string calls = file(trace);
  CHECK_MESSAGE(calls.find("getpeername(") == std::string::npos, calls.substr(0, 400));
}

TEST_CASE("SIGINT stops it too, and --quiet keeps stderr empty") {
  ServerProcess srv({"--quiet"});
  Client stream(srv.port);
  open_stream(stream);
  CHECK(srv.stop(SIGINT, 2000) == 0);
  CHECK(srv.log().empty());
}

TEST_CASE("flags: --help lists every flag; a bad flag is exit 2 with a message") {
  auto run = [](const std::string& args) {
    std::string cmd = std::string(getenv("SSE_SERVER") ? getenv("SSE_SERVER") : "./sse-server") + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = pclose(p);
    return std::make_pair(WEXITSTATUS(status), out);
  };
  auto [code, help] = run("--help");
  CHECK(code == 0);
  for (const char* flag : {"--port", "--bind", "--max-conns", "--header-timeout", "--idle-timeout", "--sse-max-pending",
                           "--clock-interval", "--push-gap-ms", "--quiet", "--public"})
    CHECK(help.find(flag) != std::string::npos);
  CHECK(help.find("[8080]") != std::string::npos);
  auto [c1, m1] = run("--port 99999");
  CHECK(c1 == 2);
  CHECK(m1.find("--port") != std::string::npos);
  auto [c2, m2] = run("--frobnicate");
  CHECK(c2 == 2);
  CHECK(m2.find("unknown flag '--frobnicate'") != std::string::npos);
  auto [c3, m3] = run("--clock-interval");
  CHECK(c3 == 2);
  CHECK(m3.find("needs a value") != std::string::npos);
}

}  // TEST_SUITE
