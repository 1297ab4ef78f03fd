// Red packets through the real binary: concurrent grabs, the live stream,
// durability across kill -9, bad input, admin, identity cookies (with
// --redis: test_redpacket_redis.cpp).
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <fstream>
#include <map>
#include <set>

#include "../../apps/redpacket/redpacket.hpp"
#include "../harness.hpp"

namespace {

const std::string TOKEN = "test-admin-token";

// Runs the server, which should refuse to start; its output and *code, its
// exit status (124 if it was still running 3 s later: then it did start).
std::string run_server_expecting_exit(const std::vector<std::string>& args, int* code) {
  std::string cmd = "timeout 3 " + std::string(getenv("SSE_SERVER") ? getenv("SSE_SERVER") : "./sse-server") + " --bind 127.0.0.1 --port 0";
  for (auto& a : args) cmd += " '" + a + "'";
  FILE* p = popen((cmd + " 2>&1 </dev/null").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  *code = WEXITSTATUS(status);
  return out;
}

}  // namespace

TEST_SUITE("redpacket") {

TEST_CASE("500 concurrent grabs on a 100-packet round: exactly 100 winners, 400 told it is empty") {
  ServerProcess srv({"--quiet", "--redpacket-total", "10000", "--redpacket-count", "100"});
  std::vector<std::unique_ptr<Client>> clients;
  for (int u = 0; u < 500; u++) clients.push_back(std::make_unique<Client>(srv.port));
  for (int u = 0; u < 500; u++) clients[size_t(u)]->send(post_request("/redpacket/grab", "user=u" + std::to_string(u)));
  int ok = 0, gone = 0, other = 0;
  long long paid = 0;
  std::set<long long> remaining_seen;
  for (auto& c : clients) {
    Response r = c->response(5000);
    if (r.status == 200) {
      ok++;
      paid += json_int(r.body, "amount_cents");
      remaining_seen.insert(json_int(r.body, "remaining"));
      CHECK(r.body.find("\"already\"") == std::string::npos);
    } else if (r.status == 410) {
      gone++;
      CHECK(r.body == "{\"ok\":false,\"message\":\"all red packets have been taken\"}");
    } else {
      other++;
    }
  }
  CHECK(ok == 100);
  CHECK(gone == 400);
  CHECK(other == 0);
  CHECK(paid == 10000);
  CHECK(remaining_seen.size() == 100);  // each winner saw a different count left: 99 down to 0
  CHECK(*remaining_seen.begin() == 0);
}

TEST_CASE("a crowd on an emptied round: every refusal answered once, none handled turn after turn") {
  // 200 grabs of a 1-packet round in one loop turn: the first is granted,
  // and "all taken" after it reads that grant before it is stored, so
  // those wait for the commit once, all answered right after it.
  ServerProcess srv({"--quiet", "--redpacket-count", "1", "--redpacket-total", "100"});
  auto clients = send_in_one_turn(srv, 200, [](size_t k) { return post_request("/redpacket/grab", "user=c" + std::to_string(k)); });
  int ok = 0, empty = 0;
  for (auto& c : clients) {
    Response r = c->response(5000);
    ok += r.status == 200;
    empty += r.status == 410;
  }
  CHECK(ok == 1);
  CHECK(empty == 199);
  CHECK(metric(srv.port, "sse_requests_parked_total") <= 199);  // each waited at most once
}

TEST_CASE("a subscriber sees the round and watches remaining fall") {
  ServerProcess srv({"--quiet", "--redpacket-total", "1000", "--redpacket-count", "10"});
  Client sub(srv.port);
  sub.send(get_request("/redpacket/events"));
  REQUIRE(sub.read_until("\r\n\r\n"));
  CHECK(sub.buf.find("Content-Type: text/event-stream") != std::string::npos);
  CHECK(sse_next(sub, [](const std::string& d) {
    return json_int(d, "remaining") == 10 && json_int(d, "count") == 10 && json_int(d, "total_cents") == 1000;
  }, 2000));
  for (int u = 0; u < 3; u++) REQUIRE(http_post(srv.port, "/redpacket/grab", "user=w" + std::to_string(u)).status == 200);
  std::string last;
  CHECK(sse_next(sub, [&](const std::string& d) { last = d; return json_int(d, "remaining") == 7; }, 2000));
  CHECK(last.find("\"winners\":[{\"packet\":2,\"user\":\"w2\"") != std::string::npos);  // newest first
  CHECK(last.find("\"user\":\"w0\"") != std::string::npos);
}

TEST_CASE("durability: every acknowledged grant survives kill -9") {
  TempDir dir;
  std::vector<std::string> args = {"--quiet", "--db", dir.file("rp.db"), "--redpacket-total", "100000", "--redpacket-count", "1000"};
  std::map<std::string, long long> acked;
  {
    ServerProcess srv(args);
    // Grabs on 20 connections, pipelined in bursts, so many land in one turn.
    std::vector<std::unique_ptr<Client>> clients;
    for (int k = 0; k < 20; k++) clients.push_back(std::make_unique<Client>(srv.port));
    for (int burst = 0; burst < 10; burst++) {
      for (int k = 0; k < 20; k++) {
        std::string wire;
        for (int j = 0; j < 3; j++) wire += post_request("/redpacket/grab", "user=d" + std::to_string(burst * 100 + k * 3 + j));
        clients[size_t(k)]->send(wire);
      }
      for (int k = 0; k < 20; k++)
        for (int j = 0; j < 3; j++) {
          Response r = clients[size_t(k)]->response(3000);
          REQUIRE(r.status == 200);
          acked["d" + std::to_string(burst * 100 + k * 3 + j)] = json_int(r.body, "amount_cents");
        }
    }
    CHECK(srv.stop(SIGKILL) == 128 + SIGKILL);
  }
  REQUIRE(acked.size() == 600);
  ServerProcess again(args);
  long long total = 0;
  for (auto& [user, cents] : acked) {
    Response r = http_post(again.port, "/redpacket/grab", "user=" + user);
    CHECK(r.status == 200);
    CHECK(r.body.find("\"already\":true") != std::string::npos);
    CHECK(json_int(r.body, "amount_cents") == cents);
    CHECK(json_int(r.body, "remaining") == 400);
    total += cents;
  }
  CHECK(total < 100000);
  // A new user gets the next packet, not one that was already handed out.
  Response fresh = http_post(again.port, "/redpacket/grab", "user=newcomer");
  CHECK(fresh.status == 200);
  CHECK(json_int(fresh.body, "remaining") == 399);
}

TEST_CASE("the WAL is checkpointed off the loop and stays bounded") {
  TempDir dir;
  ServerProcess srv({"--quiet", "--db", dir.file("ck.db"), "--redpacket-total", "1000000", "--redpacket-count", "5000"});
  Client c(srv.port);
  for (int u = 0; u < 1500; u++) {  // one commit each: 2+ WAL pages each, past the 1000-page mark
    c.send(post_request("/redpacket/grab", "user=c" + std::to_string(u)));
    REQUIRE(c.response().status == 200);
  }
  CHECK(wait_for([&] { return metric(srv.port, "sse_store_checkpoints_total") >= 1; }, 5000));
  struct stat db, wal;
  REQUIRE(stat(dir.file("ck.db").c_str(), &db) == 0);
  REQUIRE(stat(dir.file("ck.db-wal").c_str(), &wal) == 0);
  CHECK(db.st_size > 64 * 1024);  // the grants reached the database file itself
  CHECK(wal.st_size < 16 * 1024 * 1024);
}

TEST_CASE("bad grab requests get 400 (or 413/415) with a message, and the server keeps serving") {
  ServerProcess srv({"--quiet"});
  struct Case {
    std::string wire;
    int status;
    std::string says;
  };
  const Case cases[] = {
      {post_request("/redpacket/grab", ""), 400, "who are you"},
      {post_request("/redpacket/grab", "other=1"), 400, "who are you"},
      {post_request("/redpacket/grab", "user="), 400, "who are you"},
      {post_request("/redpacket/grab", "user=" + std::string(65, 'a')), 400, "1 to 64 bytes"},
      {post_request("/redpacket/grab", "user=%zz"), 400, "broken %-escape"},
      {post_request("/redpacket/grab", "user=%FF%FE"), 400, "UTF-8"},
      {post_request("/redpacket/grab", "user=a%0Ab"), 400, "control characters"},
      {"POST /redpacket/grab HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"user\":\"bob\"}",
       415, "x-www-form-urlencoded"},
      {"POST /redpacket/grab HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n", 413, "too large"},
      {get_request("/redpacket/grab"), 405, "not allowed"},
  };
  for (const Case& k : cases) {
    CAPTURE(k.wire.substr(0, 120));
    Client c(srv.port);
    c.send(k.wire);
    Response r = c.response();
    CHECK(r.status == k.status);
    CHECK(r.body.find(k.says) != std::string::npos);
  }
  CHECK(http_post(srv.port, "/redpacket/grab", "user=fine").status == 200);
}

TEST_CASE("admin: new rounds need the token, are validated, and replace the current one") {
  ServerProcess srv({"--quiet", "--admin-token", TOKEN});
  CHECK(http_post(srv.port, "/redpacket/grab", "user=alice").status == 200);
  Response none = http_post(srv.port, "/redpacket/rounds", "total_cents=500&count=5");
  CHECK(none.status == 401);
  CHECK(none.header("www-authenticate") == "Bearer");
  CHECK(http_post(srv.port, "/redpacket/rounds", "total_cents=500&count=5&token=wrong").status == 401);
  CHECK(http_post(srv.port, "/redpacket/rounds", "total_cents=500&count=5", "Authorization: Bearer " + TOKEN + "x\r\n").status == 401);
  CHECK(http_post(srv.port, "/redpacket/rounds", "total_cents=500&count=5&token=" + TOKEN.substr(0, 5)).status == 401);

  const std::pair<std::string, std::string> bad[] = {
      {"total_cents=4&count=5", "at least count"},   {"total_cents=500&count=0", "count"},
      {"total_cents=5000000&count=1000001", "count"}, {"total_cents=100000000001&count=5", "total_cents"},
      {"total_cents=abc&count=5", "total_cents"},     {"total_cents=500", "count"},
      {"total_cents=-5&count=1", "total_cents"},      {"total_cents=5.5&count=1", "total_cents"},
  };
  for (auto& [form, says] : bad) {
    CAPTURE(form);
    Response r = http_post(srv.port, "/redpacket/rounds", form + "&token=" + TOKEN);
    CHECK(r.status == 400);
    CHECK(r.body.find(says) != std::string::npos);
  }

  Client sub(srv.port);
  sub.send(get_request("/redpacket/events"));
  Response made = http_post(srv.port, "/redpacket/rounds", "total_cents=500&count=5", "Authorization: Bearer " + TOKEN + "\r\n");
  CHECK(made.status == 200);
  long long round = json_int(made.body, "round");
  CHECK(round == 2);
  CHECK(sse_next(sub, [&](const std::string& d) { return json_int(d, "round") == round && json_int(d, "remaining") == 5; }, 2000));
  Response again = http_post(srv.port, "/redpacket/grab", "user=alice");  // a new round: alice may grab again
  CHECK(again.status == 200);
  CHECK(again.body.find("already") == std::string::npos);
  CHECK(json_int(again.body, "round") == round);
  CHECK(http_post(srv.port, "/redpacket/rounds", "total_cents=7&count=7&token=" + TOKEN).status == 200);  // form token
}

TEST_CASE("a generated admin token is printed at start, works, and is never logged") {
  ServerProcess srv;
  REQUIRE(srv.admin_token.size() == 32);
  CHECK(http_post(srv.port, "/redpacket/rounds", "total_cents=10&count=2&token=" + srv.admin_token).status == 200);
  CHECK(http_post(srv.port, "/redpacket/rounds", "total_cents=10&count=2").status == 401);
  CHECK(srv.stop() == 0);
  CHECK(srv.log().find(srv.admin_token) == std::string::npos);
}

TEST_CASE("SSE_ADMIN_TOKEN sets the token when the flag is absent") {
  setenv("SSE_ADMIN_TOKEN", "from-env", 1);
  ServerProcess srv({"--quiet"});
  unsetenv("SSE_ADMIN_TOKEN");
  CHECK(srv.admin_token.empty());  // nothing generated, nothing printed
  CHECK(http_post(srv.port, "/redpacket/rounds", "total_cents=10&count=2&token=from-env").status == 200);
}

TEST_CASE("a new subscriber gets the snapshot everyone has at once, and a waiting change with everyone else") {
  ServerProcess srv({"--quiet", "--push-gap-ms", "5000"});
  Client early(srv.port);
  early.send(get_request("/redpacket/events"));
  REQUIRE(sse_next(early, [](const SseEvent& e) { return json_int(e.data, "remaining") == 100; }, 2000));
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=a").status == 200);
  SseEvent had;
  REQUIRE(sse_next(early, [](const SseEvent& e) { return json_int(e.data, "remaining") == 99; }, 2000, &had));
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=b").status == 200);  // inside the gap: waits
  Client late(srv.port);
  late.send(get_request("/redpacket/events"));
  SseEvent first;
  REQUIRE(sse_next(late, [](const SseEvent&) { return true; }, 1000, &first));
  CHECK(first.id == had.id);
  CHECK(json_int(first.data, "remaining") == 99);
  // The round's once-a-second push carries the change to both (the 5 s gap holds back only change pushes).
  SseEvent e1, e2;
  CHECK(sse_next(early, [](const SseEvent& e) { return json_int(e.data, "remaining") == 98; }, 2000, &e1));
  CHECK(sse_next(late, [](const SseEvent& e) { return json_int(e.data, "remaining") == 98; }, 2000, &e2));
  CHECK(e1.id == e2.id);
}

TEST_CASE("/redpacket/me tells a page what it holds") {
  ServerProcess srv({"--quiet"});
  std::string uid = http_get(srv.port, "/redpacket").header("set-cookie")->substr(4, 32);
  std::string cookie = "Cookie: uid=" + uid + "\r\n";
  Response before = http_get(srv.port, "/redpacket/me", cookie);
  CHECK(before.status == 200);
  CHECK(before.body == "{\"ok\":true,\"round\":1,\"user\":\"guest-" + uid.substr(0, 6) + "\",\"grabbed\":false}");
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=x").status == 200);
  Response grab = http_post(srv.port, "/redpacket/grab", "", cookie);
  Response after = http_get(srv.port, "/redpacket/me", cookie);
  CHECK(after.body.find("\"grabbed\":true,\"packet\":1,") != std::string::npos);
  CHECK(json_int(after.body, "amount_cents") == json_int(grab.body, "amount_cents"));
  CHECK(json_int(grab.body, "packet") == 1);
  CHECK(http_get(srv.port, "/redpacket/me", "Cookie: uid=x\r\n").body.find("\"packet\":0,") != std::string::npos);
  CHECK(http_get(srv.port, "/redpacket/me?user=x").status == 400);  // only the cookie says who you are
  CHECK(http_get(srv.port, "/redpacket/me").status == 400);
}

TEST_CASE("identity: a page load sets the uid cookie once; grabs use it") {
  ServerProcess srv({"--quiet"});
  Response page = http_get(srv.port, "/redpacket");
  auto cookie = page.header("set-cookie");
  REQUIRE(cookie);
  CHECK(cookie->find("HttpOnly") != std::string::npos);
  CHECK(cookie->find("SameSite=Lax") != std::string::npos);
  std::string uid = cookie->substr(4, 32);  // "uid=<32 hex>; ..."
  CHECK(uid.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK_FALSE(http_get(srv.port, "/redpacket", "Cookie: uid=" + uid + "\r\n").header("set-cookie"));
  CHECK(http_get(srv.port, "/healthz").header("set-cookie") == std::nullopt);  // only pages
  Response first = http_post(srv.port, "/redpacket/grab", "", "Cookie: theme=dark; uid=" + uid + "\r\n");
  CHECK(first.status == 200);
  CHECK(first.body.find("\"user\":\"guest-" + uid.substr(0, 6) + "\"") != std::string::npos);
  Response second = http_post(srv.port, "/redpacket/grab", "", "Cookie: uid=" + uid + "\r\n");
  CHECK(second.body.find("\"already\":true") != std::string::npos);
  CHECK(json_int(second.body, "amount_cents") == json_int(first.body, "amount_cents"));
  // Another browser is another person.
  std::string other = http_get(srv.port, "/").header("set-cookie")->substr(4, 32);
  CHECK(other != uid);
  CHECK(http_post(srv.port, "/redpacket/grab", "", "Cookie: uid=" + other + "\r\n").body.find("already") == std::string::npos);
}

TEST_CASE("first start makes the round the flags describe; refuses one they cannot") {
  ServerProcess srv({"--quiet", "--redpacket-total", "777", "--redpacket-count", "7"});
  Client sub(srv.port);
  sub.send(get_request("/redpacket/events"));
  CHECK(sse_next(sub, [](const std::string& d) { return json_int(d, "total_cents") == 777 && json_int(d, "count") == 7; }, 2000));
  TempDir dir;
  int code = 0;
  std::string out = run_server_expecting_exit({"--db", dir.file("x.db"), "--redpacket-total", "3", "--redpacket-count", "5"}, &code);
  CHECK(code == 2);
  CHECK(out.find("at least count") != std::string::npos);
}

TEST_CASE("a damaged or unreachable database: a message and exit 1, the file untouched") {
  TempDir dir;
  std::string junk = dir.file("junk.db");
  std::ofstream(junk) << std::string(10000, 'z');
  int code = 0;
  std::string out = run_server_expecting_exit({"--db", junk}, &code);
  CHECK(code == 1);
  CHECK(out.find("junk.db") != std::string::npos);
  CHECK(out.find("not a database") != std::string::npos);
  std::ifstream in(junk);
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == std::string(10000, 'z'));
  out = run_server_expecting_exit({"--db", "/nonexistent-dir/x.db"}, &code);
  CHECK(code == 1);
  CHECK(out.find("cannot use database") != std::string::npos);
}

TEST_CASE("the handlers alone: a fabricated request, a :memory: store, no socket") {
  Store store;
  REQUIRE(store.open(":memory:", false));
  RedpacketApp app;
  app.first_total_cents = 300;
  app.first_count = 3;
  std::string why;
  REQUIRE(app.open(store, 1000, &why) == 0);
  HttpRequest http;
  http.method = HTTP_POST;
  http.body = "user=alice";
  Request req{http, 2000};
  Answer first = app.grab(req);
  CHECK(first.status == 200);
  CHECK(first.then == Then::SendChange);
  CHECK(json_int(first.body, "packet") == 0);
  CHECK(app.grab(req).then == Then::AfterCommit);  // "already", but of a grant not stored yet: ask again after the commit
  REQUIRE(store.commit());
  app.committed();
  CHECK(app.grab(req).body.find("\"already\":true") != std::string::npos);
  http.body = "user=bob";
  Answer bob = app.grab(req);
  REQUIRE(bob.undo);
  bob.undo();  // what a failed commit does
  CHECK(dynamic_cast<RedpacketInSqlite&>(*app.mode).round.remaining() == 2);
  HttpRequest me;
  me.fields[COOKIE] = "theme=dark; uid=alice";
  CHECK(app.me(Request{me, 2000}).body.find("\"grabbed\":true,\"packet\":0,") != std::string::npos);
  http.body = "total_cents=5&count=9";
  CHECK(app.new_round(req).status == 400);  // fewer cents than packets
  http.body = "user=%FF";
  CHECK(app.grab(req).status == 400);
}

}  // TEST_SUITE
