// Red packets with --redis, through the real binaries: two processes in
// front of one redis-server of the test's own (RedisProcess), exact grants
// through both, the same bytes as without it, and Redis's faults.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "../../apps/redpacket/redpacket.hpp"
#include "../harness.hpp"

namespace {

const std::string TOKEN = "test-admin-token";

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
