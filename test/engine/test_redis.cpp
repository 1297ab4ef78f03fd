// --redis through the real binaries: several processes in front of one
// redis-server of the test's own (RedisProcess: a unix socket in a
// temporary directory, stopped by PID). What one process is told, every
// process knows: exact tallies through both, one version (event id) for
// one state everywhere, and faults (Redis stopped, paused) answered 503
// while streams stay open.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "../harness.hpp"

namespace {

const std::vector<std::string> OPTIONS = {"Stock ticker", "Chat room", "Live scores", "Auction"};

// The count of `option` in a poll snapshot or a vote's answer ("name" then "count").
long long count_of(const std::string& json, const std::string& option) {
  size_t at = json.find("{\"name\":\"" + option + "\",\"count\":");
  return at == std::string::npos ? -1 : std::atoll(json.c_str() + at + option.size() + 19);
}

std::string plus_spaces(std::string s) {
  std::replace(s.begin(), s.end(), ' ', '+');
  return s;
}

std::vector<std::string> with_redis(const RedisProcess& redis, std::vector<std::string> more = {}) {
  std::vector<std::string> args = {"--quiet", "--redis", redis.socket, "--admin-token", "tok"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// Waits until the server is connected to Redis and has loaded its scripts
// (a vote by a throwaway voter is answered 200 or 409, not 503).
void wait_ready(int port) {
  REQUIRE(wait_for([&] {
    int status = http_post(port, "/vote", "voter=ready-check&option=Auction").status;
    return status == 200 || status == 409;
  }, 5000));
}

}  // namespace

TEST_SUITE("redis") {

TEST_CASE("two processes, one Redis: 1,000 voters split across both, exact tallies on both streams") {
  RedisProcess redis;
  ServerProcess a(with_redis(redis)), b(with_redis(redis));
  wait_ready(a.port);
  wait_ready(b.port);
  std::map<std::string, long long> expected = {{"Auction", 1}};  // the ready check's vote
  std::vector<std::unique_ptr<Client>> clients;
  for (int k = 0; k < 20; k++) clients.push_back(std::make_unique<Client>(k % 2 ? a.port : b.port));
  for (int burst = 0; burst < 10; burst++) {
    for (int k = 0; k < 20; k++) {  // 5 pipelined votes per connection per burst
      std::string wire;
      for (int j = 0; j < 5; j++) {
        int voter = burst * 100 + k * 5 + j;
        const std::string& option = OPTIONS[size_t(voter * 7 % 4)];
        expected[option]++;
        wire += post_request("/vote", "voter=v" + std::to_string(voter) + "&option=" + plus_spaces(option));
      }
      clients[size_t(k)]->send(wire);
    }
    for (auto& c : clients)
      for (int j = 0; j < 5; j++) REQUIRE(c->response(5000).status == 200);
  }
  // A second vote through the other process is refused and not counted.
  Response again = http_post(b.port, "/vote", "voter=v1&option=Auction");
  CHECK(again.status == 409);
  for (int port : {a.port, b.port}) {
    Client sub(port);
    sub.send(get_request("/vote/result-sse"));
    std::string last;
    CHECK(sse_next(sub, [&](const std::string& d) { last = d; return json_int(d, "total") == 1001; }, 3000));
    for (auto& [option, n] : expected) CHECK(count_of(last, option) == n);
  }
}

TEST_CASE("a vote through A reaches a subscriber on B within --push-gap-ms + 50 ms; ids are one sequence for both") {
  RedisProcess redis;
  ServerProcess a(with_redis(redis, {"--push-gap-ms", "100"})), b(with_redis(redis, {"--push-gap-ms", "100"}));
  wait_ready(a.port);
  wait_ready(b.port);
  Client on_a(a.port), on_b(b.port);
  on_a.send(get_request("/vote/result-sse"));
  on_b.send(get_request("/vote/result-sse"));
  SseEvent first_a, first_b;
  REQUIRE(sse_next(on_a, [](const SseEvent& e) { return json_int(e.data, "total") == 1; }, 3000, &first_a));
  REQUIRE(sse_next(on_b, [](const SseEvent& e) { return json_int(e.data, "total") == 1; }, 3000, &first_b));
  CHECK(first_a.id == first_b.id);  // one state, one id, whichever process says it
  CHECK(first_a.data == first_b.data);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // past the push gap: the next change is a leading edge
  int64_t sent = now_ms();
  REQUIRE(http_post(a.port, "/vote", "voter=fast&option=Chat+room").status == 200);
  SseEvent next;
  REQUIRE(sse_next(on_b, [](const SseEvent& e) { return json_int(e.data, "total") == 2; }, 2000, &next));
  int64_t took = now_ms() - sent;
  CAPTURE(took);
  CHECK(took <= 100 + 50);
  CHECK(std::stoull(next.id) > std::stoull(first_b.id));

  // A browser moving from A to B with its Last-Event-ID: nothing stale, nothing repeated.
  Client moved(b.port);
  moved.send(get_request("/vote/result-sse", "Last-Event-ID: " + next.id + "\r\n"));
  CHECK_FALSE(sse_next(moved, [](const SseEvent&) { return true; }, 500));  // it has this very snapshot
  REQUIRE(http_post(a.port, "/vote", "voter=later&option=Auction").status == 200);
  SseEvent after;
  REQUIRE(sse_next(moved, [](const SseEvent&) { return true; }, 2000, &after));
  CHECK(json_int(after.data, "total") == 3);
  CHECK(std::stoull(after.id) > std::stoull(next.id));
}

TEST_CASE("one turn's votes go as one script call, each answered as if it had come alone") {
  RedisProcess redis;
  ServerProcess srv(with_redis(redis));
  wait_ready(srv.port);  // one vote (ready-check) already
  const char* options[] = {"Stock+ticker", "Chat+room", "Live+scores", "Auction"};
  std::vector<std::string> voters;
  for (int k = 0; k < 40; k++) voters.push_back(k < 30 ? "v" + std::to_string(k) : "twin");  // "twin" on ten connections at once
  double calls = metric(srv.port, "sse_redis_script_calls_total"), commands = metric(srv.port, "sse_redis_commands_total");
  auto clients = send_in_one_turn(srv, voters.size(), [&](size_t k) {
    return post_request("/vote", "voter=" + voters[k] + "&option=" + options[k % 4]);
  });
  std::set<long long> totals;
  std::set<std::string> twin_choice;
  int twin_counted = 0;
  for (size_t k = 0; k < clients.size(); k++) {
    Response r = clients[k]->response(5000);
    CAPTURE(r.body);
    std::string option = options[k % 4];
    std::replace(option.begin(), option.end(), '+', ' ');
    size_t at = r.body.find("\"voted_for\":\"");
    REQUIRE(at != std::string::npos);
    std::string voted = r.body.substr(at + 13, r.body.find('"', at + 13) - at - 13);
    if (voters[k] != "twin") {
      CHECK(r.status == 200);
      CHECK(voted == option);
    } else {
      CHECK((r.status == 200 || r.status == 409));
      twin_counted += r.status == 200;
      twin_choice.insert(voted);
    }
    if (r.status == 200) totals.insert(json_int(r.body, "total"));
  }
  CHECK(twin_counted == 1);       // its first vote counts, the other nine are told what it was
  CHECK(twin_choice.size() == 1);
  CHECK(totals.size() == 31);     // each counted vote saw the one before it: totals 2 to 32
  CHECK(*totals.begin() == 2);
  CHECK(*totals.rbegin() == 32);
  CHECK(metric(srv.port, "sse_redis_script_calls_total") - calls >= 40);
  CHECK(metric(srv.port, "sse_redis_commands_total") - commands < 10);  // one EVALSHA for the forty, and the stream's reads
}

TEST_CASE("Redis stopped: writes 503 with Retry-After, streams stay open, /healthz degraded; back: writes again, streams resync") {
  RedisProcess redis(true);  // appendonly: the restart finds the votes
  ServerProcess srv(with_redis(redis, {"--redis-timeout", "0.5"}));
  wait_ready(srv.port);
  REQUIRE(http_post(srv.port, "/vote", "voter=before&option=Auction").status == 200);
  Client sub(srv.port);
  sub.send(get_request("/vote/result-sse"));
  REQUIRE(sse_next(sub, [](const std::string& d) { return json_int(d, "total") == 2; }, 3000));
  redis.stop();
  Response down = http_post(srv.port, "/vote", "voter=during&option=Auction");
  CHECK(down.status == 503);
  CHECK(down.header("retry-after") == "1");
  CHECK(down.body.find("redis") != std::string::npos);
  CHECK(wait_for([&] { return http_get(srv.port, "/healthz").body == "degraded\n"; }, 2000));
  redis.start();
  CHECK(wait_for([&] { return http_get(srv.port, "/healthz").body == "ok\n"; }, 5000));
  CHECK(wait_for([&] { return http_post(srv.port, "/vote", "voter=after&option=Chat+room").status == 200; }, 3000));
  CHECK(sse_next(sub, [](const std::string& d) { return json_int(d, "total") == 3 && count_of(d, "Chat room") == 1; }, 3000));
  CHECK(metric(srv.port, "sse_redis_reconnects_total") >= 1);
}

TEST_CASE("Redis paused: a write is answered 503 within --redis-timeout, never left hanging") {
  RedisProcess redis;
  ServerProcess srv(with_redis(redis, {"--redis-timeout", "0.3"}));
  wait_ready(srv.port);
  redis.pause();
  int64_t sent = now_ms();
  Response r = http_post(srv.port, "/vote", "voter=stuck&option=Auction");
  int64_t took = now_ms() - sent;
  redis.resume();
  CHECK(r.status == 503);
  CAPTURE(took);
  CHECK(took < 2000);
  CHECK(metric(srv.port, "sse_redis_timeouts_total") >= 1);
  CHECK(wait_for([&] { return http_post(srv.port, "/vote", "voter=unstuck&option=Auction").status == 200; }, 5000));
}

// How often the process has slept (in epoll_wait, or anywhere): its voluntary context switches.
static long long sleeps_of(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.starts_with("voluntary_ctxt_switches:")) return std::atoll(line.c_str() + 24);
  return -1;
}

TEST_CASE("a stream whose read from Redis hangs waits for the reply, not in 1 ms wake-ups") {
  // With Redis stopped, each stream's periodic read (every 50 ms here) is
  // sent and hangs for --redis-timeout; once the next period is due too,
  // the loop must sleep until the reply or the deadline, not wake each ms.
  RedisProcess redis;
  ServerProcess srv(with_redis(redis, {"--redis-timeout", "5", "--vote-interval", "0.05"}));
  wait_ready(srv.port);
  redis.pause();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a window, not a wait: the reads are out and due again
  long long before = sleeps_of(srv.pid);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  long long woke = sleeps_of(srv.pid) - before;
  redis.resume();
  CAPTURE(woke);
  CHECK(before >= 0);
  CHECK(woke < 100);  // a heartbeat or a PING may wake it; a spin wakes it about 1,000 times
  CHECK(wait_for([&] { return http_post(srv.port, "/vote", "voter=after-hang&option=Auction").status == 200; }, 5000));
}

TEST_CASE("a client that resets its connection while its vote waits for Redis costs no CPU until the answer") {
  // A reset socket reports EPOLLHUP and EPOLLERR to every epoll_wait, asked
  // for or not; a connection waiting for Redis neither reads nor writes, so
  // nothing would notice the error, and the loop would spin until the reply
  // or --redis-timeout.
  RedisProcess redis;
  ServerProcess srv(with_redis(redis, {"--redis-timeout", "5"}));
  wait_ready(srv.port);
  redis.pause();
  {
    Client c(srv.port);
    double sent = metric(srv.port, "sse_redis_commands_total");
    c.send(post_request("/vote", "voter=gone&option=Auction"));
    // metric() asks on a connection of its own, answered by the server alone (Redis is stopped).
    REQUIRE(wait_for([&] { return metric(srv.port, "sse_redis_commands_total") > sent; }, 2000));
    linger reset{1, 0};
    REQUIRE(setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
  }  // closed with linger 0: a reset
  double before = srv.cpu_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // a window, not a wait
  double used = srv.cpu_seconds() - before;
  redis.resume();
  CAPTURE(used);
  CHECK(used < 0.3);  // a spin burns about the whole second
  CHECK(wait_for([&] { return http_post(srv.port, "/vote", "voter=after-reset&option=Auction").status == 200; }, 5000));
  CHECK(http_post(srv.port, "/vote", "voter=gone&option=Chat+room").status == 409);  // its vote was stored all the same
}

TEST_CASE("a connection that resets while its grab waits for Redis: the next one on its fd gets exactly its own answers") {
  RedisProcess redis;
  ServerProcess srv(with_redis(redis, {"--redis-timeout", "5"}));
  wait_ready(srv.port);
  redis.pause();
  double replies = metric(srv.port, "sse_redis_command_seconds_count");
  {
    Client a(srv.port);
    double sent = metric(srv.port, "sse_redis_commands_total");
    a.send(post_request("/redpacket/grab", "user=gone"));
    REQUIRE(wait_for([&] { return metric(srv.port, "sse_redis_commands_total") > sent; }, 2000));
    a.reset();
  }
  REQUIRE(wait_for([&] { return metric(srv.port, "sse_connections_open") == 1; }, 2000));  // metric()'s own
  Client b(srv.port);  // most likely on a's fd
  b.send(get_request("/"));
  CHECK(b.response().status == 200);  // the home page: nothing of Redis's
  redis.resume();
  REQUIRE(wait_for([&] { return metric(srv.port, "sse_redis_command_seconds_count") > replies; }, 5000));  // the grab's reply came
  b.send(get_request("/redpacket/me", "Cookie: uid=gone\r\n"));
  Response me = b.response(5000);
  CHECK(me.status == 200);
  CHECK(me.body.find("\"grabbed\":true") != std::string::npos);  // the grab was made, and its answer went nowhere
  CHECK_FALSE(b.read_until("HTTP/1.1", 300));                    // ...not to b
}

TEST_CASE("--redis that is no address: a message and exit 2") {
  ServerProcess probe({"--quiet"});  // a binary that starts at all
  std::string bin = getenv("SSE_SERVER") ? getenv("SSE_SERVER") : "./sse-server";
  int status = system((bin + " --port 0 --redis 'no such:host' >/dev/null 2>&1").c_str());
  CHECK(WEXITSTATUS(status) == 2);
}

TEST_CASE("kill -9 of one process under load: no acknowledged vote lost, the other serves on") {
  RedisProcess redis;
  ServerProcess a(with_redis(redis)), b(with_redis(redis));
  wait_ready(a.port);
  wait_ready(b.port);
  std::map<std::string, std::string> acked;  // voter -> option
  auto voter = [](int burst, bool on_a, size_t n) { return "k" + std::to_string(burst) + "-" + std::to_string(on_a) + "-" + std::to_string(n); };
  int b_refused = bursts_with_a_killed(a, b.port, 4, [&](int burst, bool on_a, size_t n) {
    return post_request("/vote", "voter=" + voter(burst, on_a, n) + "&option=" + plus_spaces(OPTIONS[n % 4]));
  }, [&](int burst, bool on_a, size_t n, const Response& r) {
    if (r.status == 200) acked[voter(burst, on_a, n)] = OPTIONS[n % 4];
  });
  CHECK(b_refused == 0);  // B never noticed
  REQUIRE(acked.size() >= 360);  // B's 6 bursts and A's first 3
  long long counted = 0;
  for (auto& [voter, option] : acked) {
    Response again = http_post(b.port, "/vote", "voter=" + voter + "&option=Auction");
    CHECK(again.status == 409);
    CHECK(again.body.find("\"voted_for\":\"" + option + "\"") != std::string::npos);
    counted = json_int(again.body, "total");
  }
  CHECK(counted >= (long long)acked.size() + 1);  // + the ready check's vote
}

}  // TEST_SUITE
