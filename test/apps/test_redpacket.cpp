// Red packets through the real binary: concurrent grabs, the live stream,
// durability across kill -9, bad input, admin, identity cookies; and with
// --redis, two processes in front of one redis-server of the test's own
// (RedisProcess): exact grants through both, the same bytes as without it.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <fstream>
#include <map>
#include <set>

#include "../../apps/redpacket/redpacket.hpp"
#include "../harness.hpp"

namespace {

const std::string TOKEN = "test-admin-token";


std::string run_server_expecting_exit(const std::vector<std::string>& args, int* code) {
  std::string cmd = std::string(getenv("SSE_SERVER") ? getenv("SSE_SERVER") : "./sse-server") + " --port 0";
  for (auto& a : args) cmd += " '" + a + "'";
  FILE* p = popen((cmd + " 2>&1 </dev/null & pid=$!; sleep 3; kill $pid 2>/dev/null; wait $pid").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  *code = WEXITSTATUS(status);
  return out;
}

std::vector<std::string> with_redis(const RedisProcess& redis, std::vector<std::string> more = {}) {
  std::vector<std::string> args = {"--quiet", "--redis", redis.socket, "--admin-token", TOKEN};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// Waits until the server is connected to Redis, has loaded its scripts and
// Redis has a round (a look-up that grabs nothing is answered 200, not 503).
void wait_ready(int port) {
  REQUIRE(wait_for([&] { return http_get(port, "/redpacket/me", "Cookie: uid=ready-check\r\n").status == 200; }, 5000));
}

// A stream's data with each winner's time blanked: grants made at different
// moments are otherwise the same bytes.
std::string without_times(std::string json) {
  for (size_t at = 0; (at = json.find("\"at\":\"", at)) != std::string::npos;) {
    at += 6;
    json.erase(at, json.find('"', at) - at);
  }
  return json;
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
  CHECK(first.changed);
  CHECK(json_int(first.body, "packet") == 0);
  CHECK(app.grab(req).wait == Wait::Commit);  // "already", but of a grant not stored yet: ask again after the commit
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

TEST_CASE("two processes, one Redis: 300 clients grab 100 packets through both at once, exactly 100 granted") {
  RedisProcess redis;
  std::vector<std::string> round = {"--redpacket-total", "10000", "--redpacket-count", "100"};
  ServerProcess a(with_redis(redis, round)), b(with_redis(redis, round));
  wait_ready(a.port);
  wait_ready(b.port);
  std::vector<std::unique_ptr<Client>> clients;
  for (int u = 0; u < 300; u++) clients.push_back(std::make_unique<Client>(u % 2 ? a.port : b.port));
  for (int u = 0; u < 300; u++) clients[size_t(u)]->send(post_request("/redpacket/grab", "user=u" + std::to_string(u)));
  std::map<std::string, Response> won;  // user -> their grant
  std::set<long long> packets, remaining_seen;
  int gone = 0, other = 0;
  long long paid = 0;
  for (int u = 0; u < 300; u++) {
    Response r = clients[size_t(u)]->response(5000);
    if (r.status == 200) {
      CHECK(r.body.find("\"already\"") == std::string::npos);
      paid += json_int(r.body, "amount_cents");
      packets.insert(json_int(r.body, "packet"));
      remaining_seen.insert(json_int(r.body, "remaining"));
      won["u" + std::to_string(u)] = r;
    } else if (r.status == 410) {
      gone++;
      CHECK(r.body == "{\"ok\":false,\"message\":\"all red packets have been taken\"}");
    } else {
      other++;
    }
  }
  CHECK(won.size() == 100);
  CHECK(gone == 200);
  CHECK(other == 0);
  CHECK(paid == 10000);
  CHECK(packets.size() == 100);  // each packet once: 0 to 99
  CHECK(*packets.begin() == 0);
  CHECK(*packets.rbegin() == 99);
  CHECK(remaining_seen.size() == 100);
  // Grabbing again through the other process: the same packet, already.
  for (auto& [user, first] : won) {
    int other_port = std::stoi(user.substr(1)) % 2 ? b.port : a.port;
    Response again = http_post(other_port, "/redpacket/grab", "user=" + user);
    CHECK(again.status == 200);
    CHECK(again.body.find("\"already\":true") != std::string::npos);
    CHECK(json_int(again.body, "amount_cents") == json_int(first.body, "amount_cents"));
    CHECK(json_int(again.body, "packet") == json_int(first.body, "packet"));
    CHECK(json_int(again.body, "remaining") == 0);
  }
  // One state, one event id, whichever process says it.
  SseEvent on_a, on_b;
  Client sub_a(a.port), sub_b(b.port);
  sub_a.send(get_request("/redpacket/events"));
  sub_b.send(get_request("/redpacket/events"));
  REQUIRE(sse_next(sub_a, [](const SseEvent& e) { return json_int(e.data, "remaining") == 0; }, 3000, &on_a));
  REQUIRE(sse_next(sub_b, [](const SseEvent& e) { return json_int(e.data, "remaining") == 0; }, 3000, &on_b));
  CHECK(on_a.id == on_b.id);
  CHECK(on_a.data == on_b.data);
  CHECK(on_a.data.find("\"winners\":[{\"packet\":99,") != std::string::npos);  // newest first
}

TEST_CASE("with --redis: one turn's grabs go as one script call, each answered as if it had come alone") {
  RedisProcess redis;
  ServerProcess srv(with_redis(redis, {"--redpacket-total", "100000", "--redpacket-count", "1000"}));
  wait_ready(srv.port);
  // 40 users once each, and one user ("twin") on 20 connections at once.
  std::vector<std::string> users;
  for (int k = 0; k < 60; k++) users.push_back(k < 40 ? "u" + std::to_string(k) : "twin");
  double calls = metric(srv.port, "sse_redis_script_calls_total"), commands = metric(srv.port, "sse_redis_commands_total");
  auto clients = send_in_one_turn(srv, users.size(), [&](size_t k) { return post_request("/redpacket/grab", "user=" + users[k]); });
  std::set<long long> packets;
  long long twin_packet = -1;
  int twin_first = 0;
  for (size_t k = 0; k < clients.size(); k++) {
    Response r = clients[k]->response(5000);
    CAPTURE(r.body);
    REQUIRE(r.status == 200);
    CHECK(r.body.find("\"user\":\"" + users[k] + "\"") != std::string::npos);  // its own answer, not a neighbour's
    long long packet = json_int(r.body, "packet");
    if (users[k] != "twin") {
      CHECK(r.body.find("already") == std::string::npos);
      packets.insert(packet);
      continue;
    }
    twin_first += r.body.find("\"already\":true") == std::string::npos;
    if (twin_packet < 0) twin_packet = packet, packets.insert(packet);
    CHECK(packet == twin_packet);
  }
  CHECK(twin_first == 1);  // the first of the twenty is granted, the others hold that packet already
  CHECK(packets.size() == 41);
  CHECK(*packets.rbegin() == 40);  // packets 0 to 40, none skipped
  CHECK(metric(srv.port, "sse_redis_script_calls_total") - calls >= 60);  // and the stream's reads
  CHECK(metric(srv.port, "sse_redis_commands_total") - commands < 10);    // one EVALSHA for the sixty, and those reads
}

TEST_CASE("with and without --redis, the same situations answer the same bytes") {
  // count = total: every packet is 1 cent, so both splits are the same.
  std::vector<std::string> round = {"--admin-token", TOKEN, "--redpacket-total", "3", "--redpacket-count", "3"};
  std::vector<std::string> with = same_in_both_modes(round, wait_ready, [](int port) {
    std::vector<std::string> said;
    auto note = [&](const Response& r) { said.push_back(std::to_string(r.status) + " " + r.body); };
    note(http_get(port, "/redpacket/me", "Cookie: uid=bob\r\n"));
    for (const char* user : {"alice", "alice", "bob", "carol", "dave"})
      note(http_post(port, "/redpacket/grab", std::string("user=") + user));
    note(http_post(port, "/redpacket/grab", "", "Cookie: uid=fc9f10ada2eec2888f0691025b01bb8a\r\n"));
    note(http_get(port, "/redpacket/me", "Cookie: uid=bob\r\n"));
    note(http_get(port, "/redpacket/me", "Cookie: uid=dave\r\n"));
    Client sub(port);
    sub.send(get_request("/redpacket/events"));
    SseEvent full;
    CHECK(sse_next(sub, [](const SseEvent& e) { return json_int(e.data, "remaining") == 0; }, 3000, &full));
    said.push_back(without_times(full.data));
    note(http_post(port, "/redpacket/rounds", "total_cents=2&count=2&token=" + TOKEN));
    note(http_post(port, "/redpacket/grab", "", "Cookie: uid=fc9f10ada2eec2888f0691025b01bb8a\r\n"));
    note(http_get(port, "/redpacket/me", "Cookie: uid=fc9f10ada2eec2888f0691025b01bb8a\r\n"));
    SseEvent next;
    auto round_2 = [](const SseEvent& e) { return json_int(e.data, "round") == 2 && json_int(e.data, "remaining") == 1; };
    CHECK(sse_next(sub, round_2, 3000, &next));
    said.push_back(without_times(next.data));
    return said;
  });
  CHECK(with[5] == "410 {\"ok\":false,\"message\":\"all red packets have been taken\"}");
  CHECK(with[6] == "410 {\"ok\":false,\"message\":\"all red packets have been taken\"}");  // a uid, after the round emptied
}

TEST_CASE("with --redis: kill -9 of one process under grabs loses no acknowledged grant, the other serves on") {
  RedisProcess redis(true);  // appendonly, appendfsync always: what Redis acknowledged is on disk
  std::vector<std::string> round = {"--redpacket-total", "100000", "--redpacket-count", "1000"};
  ServerProcess a(with_redis(redis, round)), b(with_redis(redis, round));
  wait_ready(a.port);
  wait_ready(b.port);
  std::map<std::string, std::pair<long long, long long>> acked;  // user -> amount, packet
  auto user_of = [](int burst, bool on_a, size_t n) { return "k" + std::to_string(burst) + "-" + std::to_string(on_a) + "-" + std::to_string(n); };
  int b_refused = bursts_with_a_killed(a, b.port, 4, [&](int burst, bool on_a, size_t n) {
    return post_request("/redpacket/grab", "user=" + user_of(burst, on_a, n));
  }, [&](int burst, bool on_a, size_t n, const Response& r) {
    if (r.status == 200) acked[user_of(burst, on_a, n)] = {json_int(r.body, "amount_cents"), json_int(r.body, "packet")};
  });
  CHECK(b_refused == 0);  // B never noticed
  REQUIRE(acked.size() >= 360);  // B's 6 bursts and A's first 3
  std::set<long long> packets;
  long long remaining = -1;
  for (auto& [user, grant] : acked) {
    Response again = http_post(b.port, "/redpacket/grab", "user=" + user);
    CHECK(again.status == 200);
    CHECK(again.body.find("\"already\":true") != std::string::npos);
    CHECK(json_int(again.body, "amount_cents") == grant.first);
    CHECK(json_int(again.body, "packet") == grant.second);
    packets.insert(grant.second);
    remaining = json_int(again.body, "remaining");
  }
  CHECK(packets.size() == acked.size());
  CHECK(remaining <= 1000 - (long long)acked.size());  // granted but not acknowledged (A died first) is allowed, lost is not
}

TEST_CASE("with --redis: Redis stopped, a grab is 503 with Retry-After and grants nothing; back, grabs go on") {
  RedisProcess redis(true);  // appendonly: the restart finds the grants
  ServerProcess srv(with_redis(redis, {"--redis-timeout", "0.5"}));
  wait_ready(srv.port);
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=before").status == 200);
  redis.stop();
  Response down = http_post(srv.port, "/redpacket/grab", "user=during");
  CHECK(down.status == 503);
  CHECK(down.header("retry-after") == "1");
  CHECK(down.body.find("redis") != std::string::npos);
  CHECK(http_get(srv.port, "/redpacket/me", "Cookie: uid=before\r\n").status == 503);
  redis.start();
  CHECK(wait_for([&] { return http_post(srv.port, "/redpacket/grab", "user=after").status == 200; }, 5000));
  Response before = http_post(srv.port, "/redpacket/grab", "user=before");
  CHECK(before.body.find("\"already\":true") != std::string::npos);
  CHECK(json_int(before.body, "packet") == 0);
  Response during = http_post(srv.port, "/redpacket/grab", "user=during");
  CHECK(during.body.find("\"already\"") == std::string::npos);  // never granted while Redis was down
  CHECK(json_int(during.body, "packet") == 2);
}

TEST_CASE("with --redis: Redis restarted in the middle of a burst of grabs: every acknowledged grant survives, the stream stays open") {
  RedisProcess redis(true);  // appendonly, fsync always: what Redis answered is on disk
  ServerProcess srv(with_redis(redis, {"--redis-timeout", "0.5", "--redpacket-count", "1000", "--redpacket-total", "100000"}));
  wait_ready(srv.port);
  Client sub(srv.port);
  sub.send(get_request("/redpacket/events"));
  REQUIRE(sse_next(sub, [](const std::string& d) { return d.find("\"remaining\"") != std::string::npos; }, 3000));
  std::map<std::string, long long> acked;  // user → packet
  std::vector<std::unique_ptr<Client>> clients;
  for (int k = 0; k < 10; k++) clients.push_back(std::make_unique<Client>(srv.port));
  int refused = 0;
  for (int burst = 0; burst < 4; burst++) {
    for (size_t k = 0; k < clients.size(); k++) {
      std::string wire;
      for (int j = 0; j < 5; j++) wire += post_request("/redpacket/grab", "user=r" + std::to_string(burst) + "-" + std::to_string(k * 5 + size_t(j)));
      clients[k]->send(wire);
    }
    if (burst == 1) redis.stop();  // this burst's grabs on their way: some answered, the rest must be refused
    if (burst == 2) redis.start();
    if (burst == 2) REQUIRE(wait_for([&] { return http_get(srv.port, "/healthz").body == "ok\n"; }, 5000));
    for (size_t k = 0; k < clients.size(); k++)
      for (int j = 0; j < 5; j++) {
        Response r = clients[k]->response(5000);
        REQUIRE((r.status == 200 || r.status == 503));  // answered, never left hanging or closed
        if (r.status == 503) refused++;
        else acked["r" + std::to_string(burst) + "-" + std::to_string(k * 5 + size_t(j))] = json_int(r.body, "packet");
      }
  }
  CAPTURE(refused);
  CHECK(refused > 0);             // Redis was down for part of it
  REQUIRE(acked.size() >= 100);   // bursts 0 and 3 at least
  std::set<long long> packets;
  for (auto& [user, packet] : acked) {
    Response again = http_post(srv.port, "/redpacket/grab", "user=" + user);
    CHECK(again.body.find("\"already\":true") != std::string::npos);
    CHECK(json_int(again.body, "packet") == packet);
    packets.insert(packet);
  }
  CHECK(packets.size() == acked.size());  // no packet granted twice
  // The subscriber's stream outlived the restart: it carries the state after it.
  Client fresh(srv.port);
  fresh.send(get_request("/redpacket/events"));
  long long remaining = -1, most = 1000 - (long long)acked.size();  // a grab Redis stored but never answered may count too
  CHECK(sse_next(fresh, [&](const std::string& d) { return (remaining = json_int(d, "remaining")) >= 0 && remaining <= most; }, 3000));
  CAPTURE(remaining);
  CHECK(sse_next(sub, [&](const std::string& d) { return json_int(d, "remaining") == remaining; }, 3000));
}

TEST_CASE("with --redis: a new round through A is the round on B; a million packets in one script call") {
  RedisProcess redis;
  ServerProcess a(with_redis(redis)), b(with_redis(redis));
  wait_ready(a.port);
  wait_ready(b.port);
  REQUIRE(http_post(b.port, "/redpacket/grab", "user=alice").status == 200);
  CHECK(http_post(a.port, "/redpacket/rounds", "total_cents=5&count=9&token=" + TOKEN).status == 400);
  CHECK(http_post(a.port, "/redpacket/rounds", "total_cents=500&count=5").status == 401);
  Client sub(b.port);
  sub.send(get_request("/redpacket/events"));
  Response made = http_post(a.port, "/redpacket/rounds", "total_cents=100000000&count=1000000&token=" + TOKEN);
  REQUIRE(made.status == 200);
  CHECK(made.body == "{\"ok\":true,\"round\":2,\"total_cents\":100000000,\"count\":1000000}");
  CHECK(sse_next(sub, [](const std::string& d) {
    return json_int(d, "round") == 2 && json_int(d, "count") == 1000000 && json_int(d, "remaining") == 1000000;
  }, 3000));
  Response again = http_post(b.port, "/redpacket/grab", "user=alice");  // a new round: alice may grab again
  CHECK(again.status == 200);
  CHECK(again.body.find("already") == std::string::npos);
  CHECK(json_int(again.body, "round") == 2);
  CHECK(json_int(again.body, "remaining") == 999999);
  CHECK(json_int(again.body, "amount_cents") >= 1);
  // Restarting a process does not make the flags' round again: Redis has one.
  b.stop();
  ServerProcess c(with_redis(redis));
  wait_ready(c.port);
  CHECK(json_int(http_get(c.port, "/redpacket/me", "Cookie: uid=alice\r\n").body, "round") == 2);
}

}  // TEST_SUITE
