// The Redis mode where what the servers say could drift from the truth
// (#27): ids past 10^14, which Lua would write as 1e+14 in a key, and
// a process whose view lags another's when a browser moves to it.
#include <doctest/doctest.h>

#include "../harness.hpp"
#include "cinema_client.hpp"

TEST_SUITE("redis") {

TEST_CASE("Redis: ids from 10^14 up keep their key names: a showtime, a booking and a round work as any other") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  const std::string BIG = "100000000000000";  // 10^14: Lua's tostring makes it "1e+14"
  REQUIRE(redis_cli(redis, {"SET", "sse:cinema:ids", "99999999999999"}) == "OK");
  REQUIRE(redis_cli(redis, {"SET", "sse:cinema:booking_ids", "99999999999999"}) == "OK");
  REQUIRE(redis_cli(redis, {"SET", "sse:redpacket:ids", "99999999999999"}) == "OK");

  long long id = add_showtime(srv.port, "Big", 5);
  CHECK(std::to_string(id) == BIG);
  CHECK(redis_cli(redis, {"HGET", "sse:cinema:showtime:" + BIG, "movie"}) == "Big");
  CHECK(http_get(srv.port, "/cinema/showtimes").body.find("{\"id\":" + BIG + ",\"movie\":\"Big\"") != std::string::npos);
  Response booked = one(srv.port, book_request(id, "seats=2&user=ann"));
  CHECK(booked.status == 200);
  CHECK(json_int(booked.body, "booking") == 100000000000000);
  CHECK(redis_cli(redis, {"HGET", "sse:cinema:held:ann", "b" + BIG}).starts_with(BIG + " 2 "));
  Response mine = http_get(srv.port, "/cinema/bookings/me", "Cookie: uid=ann\r\n");
  CHECK(mine.body.find("\"booking\":" + BIG + ",\"seats\":2") != std::string::npos);

  Response round = http_post(srv.port, "/redpacket/rounds", "total_cents=500&count=5&token=" + TOKEN);
  REQUIRE(round.status == 200);
  CHECK(json_int(round.body, "round") == 100000000000000);
  CHECK(redis_cli(redis, {"HGET", "sse:redpacket:" + BIG, "count"}) == "5");
  Response grab = http_post(srv.port, "/redpacket/grab", "user=ann");
  CHECK(grab.status == 200);
  CHECK(json_int(grab.body, "round") == 100000000000000);
  CHECK(json_int(grab.body, "remaining") == 4);
}

TEST_CASE("Redis: a browser that saw a version on A and reconnects to B, which lags, is never sent an older one") {
  RedisProcess redis;
  ServerProcess a(redis_args(redis)), b(redis_args(redis, {"--push-gap-ms", "3000"}));
  wait_redis_ready(a.port);
  wait_redis_ready(b.port);
  auto any = [](const SseEvent&) { return true; };
  auto total_is = [](long long n) { return [n](const SseEvent& e) { return json_int(e.data, "total") == n; }; };
  Client on_b(b.port), on_a(a.port);  // B has pushed: it sits in its push gap for 3 s
  open_stream(on_b, "/vote/result-sse");
  open_stream(on_a, "/vote/result-sse");
  SseEvent shown_by_b, newer;
  REQUIRE(sse_next(on_b, any, 3000, &shown_by_b));
  REQUIRE(sse_next(on_a, any, 3000));
  REQUIRE(http_post(a.port, "/vote", "voter=ann&option=Auction").status == 200);
  REQUIRE(sse_next(on_a, total_is(1), 3000, &newer));
  REQUIRE(std::stoull(newer.id) > std::stoull(shown_by_b.id));
  // The browser moves to B with the id it holds, while B still shows the older state.
  Client moved(b.port);
  open_stream(moved, "/vote/result-sse", "Last-Event-ID: " + newer.id + "\r\n");
  CHECK(moved.read_until("retry: 3000\n\n"));
  SseEvent e;
  bool sent = sse_next(moved, any, 1000, &e);
  CHECK_MESSAGE(!sent, "B sent " << e.id << " to a browser holding " << newer.id);
  CHECK(metric(b.port, "sse_subscribers{stream=\"poll\"}") == 2);
  // Once B has caught up (it has nothing newer to send), the next vote reaches it.
  REQUIRE(sse_next(on_b, total_is(1), 5000));
  REQUIRE(http_post(a.port, "/vote", "voter=bob&option=Auction").status == 200);
  REQUIRE(sse_next(moved, total_is(2), 5000, &e));
  CHECK(std::stoull(e.id) > std::stoull(newer.id));
}

TEST_CASE("Redis: the same on /live: a set's id naming a version B has not reached yet gets nothing older") {
  RedisProcess redis;
  ServerProcess a(redis_args(redis)), b(redis_args(redis, {"--push-gap-ms", "3000"}));
  wait_redis_ready(a.port);
  wait_redis_ready(b.port);
  const std::string SET = "/live?stream=poll&stream=cinema";
  auto poll_total_is = [](long long n) { return [n](const SseEvent& e) { return e.event == "poll" && json_int(e.data, "total") == n; }; };
  Client on_b(b.port), on_a(a.port);
  open_stream(on_b, SET);
  open_stream(on_a, SET);
  REQUIRE(sse_next(on_b, [](const SseEvent& e) { return e.event == "cinema"; }, 3000));
  REQUIRE(sse_next(on_a, [](const SseEvent& e) { return e.event == "cinema"; }, 3000));
  REQUIRE(http_post(a.port, "/vote", "voter=ann&option=Auction").status == 200);
  SseEvent newer;
  REQUIRE(sse_next(on_a, poll_total_is(1), 3000, &newer));
  Client moved(b.port);
  open_stream(moved, SET, "Last-Event-ID: " + newer.id + "\r\n");
  CHECK(moved.read_until("retry: 3000\n\n"));
  SseEvent e;
  bool sent = sse_next(moved, [](const SseEvent&) { return true; }, 1000, &e);
  CHECK_MESSAGE(!sent, "B sent " << e.event << " " << e.id << " to a browser holding " << newer.id);
  REQUIRE(sse_next(on_b, poll_total_is(1), 5000));
  REQUIRE(http_post(a.port, "/vote", "voter=bob&option=Auction").status == 200);
  CHECK(sse_next(moved, poll_total_is(2), 5000));
}

TEST_CASE("Redis: a Last-Event-ID newer than Redis itself has (its data was lost, or the id is made up) gets Redis's state after one read") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  Client c(srv.port);
  open_stream(c, "/vote/result-sse", "Last-Event-ID: 9999999999999999999\r\n");
  SseEvent e;
  REQUIRE(sse_next(c, [](const SseEvent&) { return true; }, 3000, &e));
  CHECK(json_int(e.data, "total") == 0);
  CHECK(std::stoull(e.id) < 9999999999999999999ull);
}

TEST_CASE("Redis: /healthz says degraded while redis-server hangs (SIGSTOP), and ok once it is back") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  REQUIRE(http_get(srv.port, "/healthz").body == "ok\n");
  kill(redis.pid, SIGSTOP);
  // A hung Redis is noticed from the subscription's ping a second, or any
  // command, once it has waited half of --redis-timeout (1 s here).
  REQUIRE(wait_for([&] { return http_get(srv.port, "/healthz").body == "degraded\n"; }, 3000));
  int ok = 0, connected = 0;
  for (int i = 0; i < 40; i++) {  // 4 s: past several timeouts and reconnects to the stopped server
    ok += http_get(srv.port, "/healthz").body == "ok\n";
    connected += metric(srv.port, "sse_redis_connected") == 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(ok == 0);
  CHECK(connected <= 10);  // the first connection, until its oldest command times out; none after
  CHECK(http_post(srv.port, "/redpacket/grab", "user=ann").status == 503);
  kill(redis.pid, SIGCONT);
  CHECK(wait_for([&] { return http_get(srv.port, "/healthz").body == "ok\n"; }, 5000));
  CHECK(http_post(srv.port, "/redpacket/grab", "user=ann").status == 200);
}

TEST_CASE("Redis: an error reply is named for what it is — a lost script was not run; a failing script is Redis's refusal") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=ann").status == 200);
  // SCRIPT FLUSH: the next call finds no script. Nothing ran, and it is said so; the one after works.
  REQUIRE(redis_cli(redis, {"SCRIPT", "FLUSH"}) == "OK");
  Response lost = http_post(srv.port, "/redpacket/grab", "user=bob");
  CHECK(lost.status == 503);
  CHECK(lost.body.find("nothing was changed") != std::string::npos);
  CHECK(redis_cli(redis, {"HEXISTS", "sse:redpacket:1:users", "bob"}) == "0");
  CHECK(wait_for([&] { return http_post(srv.port, "/redpacket/grab", "user=bob").status == 200; }, 2000));
  // A round whose count is not a number: the script fails, and the answer says what Redis said.
  REQUIRE(redis_cli(redis, {"HSET", "sse:redpacket:1", "count", "many"}) == "0");
  Response failed = http_post(srv.port, "/redpacket/grab", "user=carol");
  CHECK(failed.status == 503);
  CHECK(failed.body.find("redis refused: ") != std::string::npos);
  CHECK(failed.body.find("did not answer in time") == std::string::npos);
  CHECK(failed.header("retry-after") == "1");
}

TEST_CASE("Redis: a count that is not a number refuses the turn's votes whole — no voter recorded for a vote in no tally") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  REQUIRE(wait_for([&] { return http_get(srv.port, "/vote/me", "Cookie: uid=x\r\n").status == 200; }, 5000));
  REQUIRE(redis_cli(redis, {"HSET", "sse:poll:1:counts", "1", "x"}) == "1");  // "Chat room", set by hand
  auto vote = [](size_t k) { return "voter=v" + std::to_string(k) + "&option=" + (k == 2 ? "Chat+room" : "Auction"); };
  auto clients = send_in_one_turn(srv, 6, [&](size_t k) { return post_request("/vote", vote(k)); });
  for (size_t k = 0; k < clients.size(); k++) {  // one script call for the six: refused whole
    CAPTURE(k);
    Response r = clients[k]->response(3000);
    CHECK(r.status == 503);
    CHECK(r.body.find("sse:poll:1:counts field 1 is \\\"x\\\", not a count") != std::string::npos);
  }
  CHECK(redis_cli(redis, {"HLEN", "sse:poll:1:voters"}) == "0");
  CHECK(redis_cli(redis, {"HGET", "sse:poll:1:counts", "3"}) == "");
  // Mended by hand, the same six votes are counted, none of them "already voted".
  REQUIRE(redis_cli(redis, {"HSET", "sse:poll:1:counts", "1", "0"}) == "0");
  for (size_t k = 0; k < 6; k++) CHECK(http_post(srv.port, "/vote", vote(k)).status == 200);
  CHECK(redis_cli(redis, {"HGET", "sse:poll:1:counts", "3"}) == "5");
}

TEST_CASE("Redis: seats held set by hand to text refuse the turn's bookings whole — none made for a caller told 503") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  long long id = add_showtime(srv.port, "Held", 100);
  std::string key = "sse:cinema:showtime:" + std::to_string(id);
  REQUIRE(redis_cli(redis, {"HSET", "sse:cinema:held:u3", std::to_string(id), "two"}) == "1");
  auto clients = send_in_one_turn(srv, 6, [&](size_t k) { return book_request(id, "seats=1&user=u" + std::to_string(k)); });
  for (size_t k = 0; k < clients.size(); k++) {  // one script call for the six: refused whole
    CAPTURE(k);
    Response r = clients[k]->response(3000);
    CHECK(r.status == 503);
    CHECK(r.body.find("sse:cinema:held:u3 field " + std::to_string(id) + " is \\\"two\\\", not a count") != std::string::npos);
  }
  CHECK(redis_cli(redis, {"HGET", key, "seats_left"}) == "100");
  CHECK(redis_cli(redis, {"EXISTS", "sse:cinema:held:u0"}) == "0");
  // Mended by hand, the same six are booked.
  REQUIRE(redis_cli(redis, {"HSET", "sse:cinema:held:u3", std::to_string(id), "2"}) == "0");
  for (size_t k = 0; k < 6; k++) CHECK(one(srv.port, book_request(id, "seats=1&user=u" + std::to_string(k))).status == 200);
  CHECK(redis_cli(redis, {"HGET", key, "seats_left"}) == "94");
}

TEST_CASE("Redis: a showtime whose seat counts were set by hand to text is not edited, as in the SQLite mode") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  long long id = add_showtime(srv.port, "Typed", 120);
  std::string key = "sse:cinema:showtime:" + std::to_string(id);
  REQUIRE(redis_cli(redis, {"HSET", key, "seats_left", "sold out"}) == "0");
  const std::string says = "showtime " + std::to_string(id) + " has seat counts in the database that are not whole numbers";
  for (const char* form : {"movie=Renamed", "seats=50"}) {
    CAPTURE(form);
    Response r = one(srv.port, patch_request(id, form));
    CHECK(r.status == 409);
    CHECK(r.body.find(says) != std::string::npos);
  }
  CHECK(redis_cli(redis, {"HGET", key, "movie"}) == "Typed");
  CHECK(redis_cli(redis, {"HGET", key, "seats_total"}) == "120");
}

TEST_CASE("Redis: after FLUSHALL nothing stays stuck: the answers say what is true, and the first round and poll are made again") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  REQUIRE(wait_for([&] { return http_get(srv.port, "/vote/me", "Cookie: uid=x\r\n").status == 200; }, 5000));
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=ann").status == 200);
  REQUIRE(http_post(srv.port, "/vote", "voter=ann&option=Auction").status == 200);
  Client packets(srv.port), votes(srv.port);
  open_stream(packets, "/redpacket/events");
  open_stream(votes, "/vote/result-sse");
  REQUIRE(sse_next(packets, [](const SseEvent& e) { return json_int(e.data, "remaining") == 99; }, 3000));
  REQUIRE(sse_next(votes, [](const SseEvent& e) { return json_int(e.data, "total") == 1; }, 3000));

  REQUIRE(redis_cli(redis, {"FLUSHALL"}) == "OK");
  Response grab = http_post(srv.port, "/redpacket/grab", "user=bob");
  CHECK(grab.status == 503);
  CHECK(grab.body.find("redis has no red packet round right now") != std::string::npos);
  Response vote = http_post(srv.port, "/vote", "voter=bob&option=Auction");
  CHECK(vote.status == 503);
  CHECK(vote.body.find("redis has no poll right now") != std::string::npos);
  CHECK(http_get(srv.port, "/healthz").body == "ok\n");  // Redis is reachable: that is true
  // Made again from the flags: grabs and votes go on, and the streams show the new round and poll.
  // The new round 1 with one grab, bob's, is not the lost round 1 with
  // ann's: it has a version of its own, so the stream sends it.
  CHECK(wait_for([&] { return http_post(srv.port, "/redpacket/grab", "user=bob").status == 200; }, 3000));
  CHECK(wait_for([&] { return http_post(srv.port, "/vote", "voter=bob&option=Auction").status == 200; }, 3000));
  CHECK(json_int(http_get(srv.port, "/vote/me", "Cookie: uid=ann\r\n").body, "poll") == 1);
  CHECK(sse_next(packets, [](const SseEvent& e) { return e.data.find("\"bob\"") != std::string::npos; }, 3000));
  CHECK(sse_next(votes, [](const SseEvent& e) { return json_int(e.data, "total") == 1; }, 3000));
}

// Every event streams sent, by stream: whether an id ever came back with
// other data, or a version went back.
struct EventLog {
  std::map<std::string, std::map<std::string, std::string>> data_of;  // stream → id → data
  std::map<std::string, uint64_t> last;
  std::vector<std::string> wrong;
  // Reads `c` (following `stream`) until `want`, logging every event.
  bool until(Client& c, const std::string& stream, const std::function<bool(const SseEvent&)>& want, int timeout_ms = 3000) {
    return sse_next(c, [&](const SseEvent& e) {
      auto [at, fresh] = data_of[stream].emplace(e.id, e.data);
      if (!fresh && at->second != e.data) wrong.push_back(stream + " id " + e.id + " carried " + at->second + " and then " + e.data);
      uint64_t v = std::stoull(e.id);
      if (v < last[stream]) wrong.push_back(stream + " went back from " + std::to_string(last[stream]) + " to " + e.id);
      last[stream] = std::max(last[stream], v);
      return want(e);
    }, timeout_ms);
  }
};

TEST_CASE("Redis: one id, one state after FLUSHALL: no stream sends an id it sent before with other data, nor an older one") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  Client packets(srv.port), votes(srv.port), board(srv.port);
  open_stream(packets, "/redpacket/events");
  open_stream(votes, "/vote/result-sse");
  open_stream(board, "/cinema/events");
  EventLog log;
  auto has = [](const std::string& text) { return [text](const SseEvent& e) { return e.data.find(text) != std::string::npos; }; };
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=ann").status == 200);
  REQUIRE(http_post(srv.port, "/vote", "voter=ann&option=Auction").status == 200);
  add_showtime(srv.port, "Before", 10);
  REQUIRE(log.until(packets, "redpacket", has("\"ann\"")));
  REQUIRE(log.until(votes, "poll", [](const SseEvent& e) { return json_int(e.data, "total") == 1; }));
  REQUIRE(log.until(board, "cinema", has("Before")));
  std::string ann_id;
  for (auto& [id, data] : log.data_of["redpacket"]) if (data.find("\"ann\"") != std::string::npos) ann_id = id;

  REQUIRE(redis_cli(redis, {"FLUSHALL"}) == "OK");
  REQUIRE(wait_for([&] { return http_post(srv.port, "/redpacket/grab", "user=bob").status == 200; }, 3000));
  REQUIRE(wait_for([&] { return http_post(srv.port, "/vote", "voter=bob&option=Chat room").status == 200; }, 3000));  // not ann's: another state
  for (int k = 0; k < 3; k++) add_showtime(srv.port, "After" + std::to_string(k), 10);
  CHECK(log.until(packets, "redpacket", has("\"bob\"")));
  CHECK(log.until(votes, "poll", [](const SseEvent& e) { return json_int(e.data, "total") == 1 && e.data.find("\"Chat room\",\"count\":1") != std::string::npos; }));
  CHECK(log.until(board, "cinema", has("After2")));
  for (const std::string& w : log.wrong) FAIL_CHECK(w);
  // A browser that held ann's round under its id is sent bob's.
  Client back(srv.port);
  open_stream(back, "/redpacket/events", "Last-Event-ID: " + ann_id + "\r\n");
  CHECK(sse_next(back, has("\"bob\""), 1500));
}

TEST_CASE("Redis: one id, one state after Redis comes back on older data (a crash under appendfsync everysec): versions go on forward") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  Client packets(srv.port);
  open_stream(packets, "/redpacket/events");
  EventLog log;
  auto remaining = [](long long n) { return [n](const SseEvent& e) { return json_int(e.data, "remaining") == n; }; };
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=ann").status == 200);
  REQUIRE(log.until(packets, "redpacket", remaining(99)));
  REQUIRE(redis_cli(redis, {"SAVE"}) == "OK");  // what Redis will come back with
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=bob").status == 200);
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=carol").status == 200);
  REQUIRE(log.until(packets, "redpacket", remaining(97)));
  std::string lost_id;
  for (auto& [id, data] : log.data_of["redpacket"]) if (json_int(data, "remaining") == 97) lost_id = id;
  REQUIRE(!lost_id.empty());

  redis.stop(SIGKILL);  // bob's and carol's grabs are lost
  redis.start();
  CHECK(log.until(packets, "redpacket", remaining(99), 5000));  // the truth went back, under a new id
  REQUIRE(wait_for([&] { return http_post(srv.port, "/redpacket/grab", "user=dave").status == 200; }, 3000));
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=erin").status == 200);
  CHECK(log.until(packets, "redpacket", [](const SseEvent& e) { return e.data.find("\"erin\"") != std::string::npos; }));
  for (const std::string& w : log.wrong) FAIL_CHECK(w);
  // A browser that held bob's and carol's lost grabs is sent the truth.
  Client back(srv.port);
  open_stream(back, "/redpacket/events", "Last-Event-ID: " + lost_id + "\r\n");
  CHECK(sse_next(back, [](const SseEvent& e) { return e.data.find("\"erin\"") != std::string::npos; }, 1500));
}

TEST_CASE("Redis: memory comes back after million-packet rounds") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  REQUIRE(http_post(srv.port, "/redpacket/rounds", "total_cents=100000000&count=1000000&token=" + TOKEN).status == 200);
  long after_one = srv.rss_kib();
  for (int k = 0; k < 3; k++) REQUIRE(http_post(srv.port, "/redpacket/rounds", "total_cents=100000000&count=1000000&token=" + TOKEN).status == 200);
  long after_four = srv.rss_kib();
  MESSAGE("RSS after one round " << after_one << " KiB, after three more " << after_four << " KiB");
#ifndef __SANITIZE_ADDRESS__  // ASan's allocator keeps what is freed (its quarantine): RSS says nothing there
  CHECK(after_four - after_one < 8 * 1024);  // a round's split is 12 MB of text; none of it stays
  CHECK(after_one < 30 * 1024);
#endif
}

TEST_CASE("Redis: a maxmemory-policy that may evict the apps' keys is warned of at connect, even with --quiet") {
  RedisProcess redis;
  REQUIRE(redis_cli(redis, {"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}) == "OK");
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  CHECK(wait_for([&] { return srv.log().find("redis's maxmemory-policy is allkeys-lru") != std::string::npos; }, 2000));
  REQUIRE(redis_cli(redis, {"CONFIG", "SET", "maxmemory-policy", "noeviction"}) == "OK");
  ServerProcess fine(redis_args(redis));
  wait_redis_ready(fine.port);
  CHECK(fine.log().find("maxmemory-policy") == std::string::npos);
}

TEST_CASE("Redis keeps the current and the previous round and poll, not every one ever made") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  auto used = [&] { std::string info = redis_cli(redis, {"INFO", "memory"}); return std::atoll(info.c_str() + info.find("used_memory:") + 12); };
  auto round = [&] { REQUIRE(http_post(srv.port, "/redpacket/rounds", "total_cents=10000000&count=100000&token=" + TOKEN).status == 200); };
  round();  // round 2: 100,000 packets, 1.2 MB of amounts
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=ann").status == 200);
  long long after_one = used();
  for (int k = 0; k < 10; k++) {
    round();
    REQUIRE(http_post(srv.port, "/redpacket/grab", "user=ann").status == 200);
  }
  long long after_eleven = used();
  MESSAGE("Redis used_memory after one 100,000-packet round " << after_one << " B, after ten more " << after_eleven << " B");
  CHECK(after_eleven <= 2 * after_one);
  CHECK(redis_cli(redis, {"EXISTS", "sse:redpacket:2", "sse:redpacket:2:users", "sse:redpacket:2:amounts", "sse:redpacket:10"}) == "0");
  CHECK(redis_cli(redis, {"EXISTS", "sse:redpacket:11", "sse:redpacket:12:users", "sse:redpacket:12:amounts"}) == "3");
  for (int k = 0; k < 3; k++) REQUIRE(http_post(srv.port, "/vote/polls", "question=Q&options=A,B&token=" + TOKEN).status == 200);
  CHECK(redis_cli(redis, {"EXISTS", "sse:poll:1", "sse:poll:2"}) == "0");
  CHECK(redis_cli(redis, {"EXISTS", "sse:poll:3", "sse:poll:4"}) == "2");
  CHECK(http_post(srv.port, "/vote", "voter=ann&option=A").status == 200);
}

}  // TEST_SUITE
