// The cinema board with --redis: the same board with its state in a
// redis-server of the test's own (RedisProcess), most often with two
// processes in front of it.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "../../apps/cinema/cinema.hpp"
#include "cinema_client.hpp"

TEST_SUITE("cinema") {

TEST_CASE("Redis: the scripts read a start time as the server does (parse_iso8601 in Lua)") {
  RedisProcess redis;
  redisContext* c = redisConnectUnix(redis.socket.c_str());
  REQUIRE((c && !c->err));
  std::string lua = std::string(CINEMA_TIME_LUA) + "local v = starts_ms(ARGV[1]) if v then return {1, v} end return {0}";
  for (const char* text : {"2026-11-23T19:30:00+08:00", "2026-11-23T11:30Z", "2026-11-23T11:30:00.5Z", "2026-11-23T11:30:07.123456Z",
                           "2028-02-29T00:00:00Z", "2027-02-29T00:00:00Z", "2026-11-31T10:00:00Z", "2026-13-01T10:00:00Z",
                           "2026-11-23T24:00:00Z", "2026-11-23T23:60Z", "2026-11-23T10:00:60Z", "2026-11-23 10:00:00Z",
                           "2026-11-23T10:00:00", "2026-11-23T10:00:00+0800", "2026-11-23T10:00:00+24:00", "2026-11-23T10:00:00.Z",
                           "1969-12-31T23:59:59.999Z", "2000-02-29T12:00-05:30", "9999-12-31T23:59:59Z", "tomorrow", ""}) {
    CAPTURE(text);
    auto* r = static_cast<redisReply*>(redisCommand(c, "EVAL %s 0 %s", lua.c_str(), text));
    REQUIRE(r);
    REQUIRE(r->type == REDIS_REPLY_ARRAY);
    std::optional<int64_t> want = parse_iso8601(text);
    CHECK(reply_number(r, 0) == (want ? 1 : 0));
    if (want) CHECK(reply_number(r, 1) == *want);
    freeReplyObject(r);
  }
  redisFree(c);
}

TEST_CASE("Redis: two processes, 300 clients booking 1 seat each of a 100-seat showtime through both: exactly 100") {
  RedisProcess redis;
  ServerProcess a(redis_args(redis)), b(redis_args(redis));
  wait_redis_ready(a.port);
  wait_redis_ready(b.port);
  long long id = add_showtime(a.port, "Rush", 100);
  book_300_of_100({b.port, a.port}, id);
  CHECK(redis_cli(redis, {"HGET", "sse:cinema:showtime:" + std::to_string(id), "seats_left"}) == "0");
  CHECK(redis_cli(redis, {"GET", "sse:cinema:booking_ids"}) == "100");
  std::string row = showtime_row(id, "Rush") + ",\"hall\":\"H\",\"starts_at\":\"" + in_days(1) + "\",\"seats_total\":100,\"seats_left\":0}";
  SseEvent on_a, on_b;
  for (auto [port, got] : {std::pair{a.port, &on_a}, {b.port, &on_b}}) {
    CHECK(http_get(port, "/cinema/showtimes").body.find(row) != std::string::npos);
    Client sub(port);
    sub.send(get_request("/events"));
    CHECK(sse_next(sub, [&](const SseEvent& e) { return e.data.find(row) != std::string::npos; }, 3000, got));
  }
  CHECK(on_a.id == on_b.id);  // one state, one event id, whichever process says it
  CHECK(on_a.data == on_b.data);
  CHECK(metric(a.port, "sse_cinema_bookings_total") + metric(b.port, "sse_cinema_bookings_total") == 100);
}

TEST_CASE("Redis: one turn's bookings go as one script call, each decided after the ones before it") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  long long id = add_showtime(srv.port, "Batch", 20);
  std::string path = "/cinema/showtimes/" + std::to_string(id) + "/book";
  // 25 people asking 1 seat each, and one ("twin") asking 4 on 5 connections
  // at once: 45 seats asked of 20, and the twin may hold at most 10.
  std::vector<std::string> users;
  for (int k = 0; k < 30; k++) users.push_back(k < 25 ? "p" + std::to_string(k) : "twin");
  double calls = metric(srv.port, "sse_redis_script_calls_total"), commands = metric(srv.port, "sse_redis_commands_total");
  auto clients = send_in_one_turn(srv, users.size(), [&](size_t k) {
    return post_request(path, "user=" + users[k] + (users[k] == "twin" ? "&seats=4" : ""));
  });
  long long sold = 0, twin_booked = 0;
  std::set<long long> lefts, bookings;
  for (size_t k = 0; k < clients.size(); k++) {
    Response r = clients[k]->response(5000);
    CAPTURE(r.body);
    long long asked = users[k] == "twin" ? 4 : 1;
    if (r.status == 200) {
      CHECK(json_int(r.body, "seats") == asked);  // its own answer, not a neighbour's
      sold += asked;
      twin_booked += users[k] == "twin";
      lefts.insert(json_int(r.body, "seats_left"));
      bookings.insert(json_int(r.body, "booking"));
      continue;
    }
    REQUIRE(r.status == 409);  // past the seats, or past the twin's 10
    if (users[k] == "twin" && r.body.find("\"held\":") != std::string::npos) CHECK(json_int(r.body, "held") == 8);
  }
  CHECK(twin_booked <= 2);
  CHECK(sold <= 20);
  CHECK(lefts.size() == bookings.size());  // each booking saw the seats the one before it left
  CHECK(*lefts.begin() == 20 - sold);
  CHECK(redis_cli(redis, {"HGET", "sse:cinema:showtime:" + std::to_string(id), "seats_left"}) == std::to_string(20 - sold));
  CHECK(metric(srv.port, "sse_redis_script_calls_total") - calls >= 30);
  CHECK(metric(srv.port, "sse_redis_commands_total") - commands < 10);  // one EVALSHA for the thirty, and the board's reads
}

TEST_CASE("Redis: an edit made with redis-cli reaches a subscriber on each process within the re-read period") {
  RedisProcess redis;
  ServerProcess a(redis_args(redis, {"--schedule-interval", "0.5"})), b(redis_args(redis, {"--schedule-interval", "0.5"}));
  wait_redis_ready(a.port);
  wait_redis_ready(b.port);
  auto on_a = board_subscriber(a.port), on_b = board_subscriber(b.port);
  // Both see the same board (the sample schedule, made once for both) under the same id.
  auto both = [&](const std::function<bool(const std::string&)>& want, int timeout_ms) {
    SseEvent ea, eb;
    bool seen = sse_next(*on_a, [&](const SseEvent& e) { return want(e.data); }, timeout_ms, &ea) &&
                sse_next(*on_b, [&](const SseEvent& e) { return want(e.data); }, timeout_ms, &eb);
    CHECK(ea.id == eb.id);
    return seen;
  };
  int64_t edited = now_ms();
  CHECK(redis_cli(redis, {"HSET", "sse:cinema:showtime:3", "seats_left", "0"}) == "0");  // 0 new fields: one changed
  CHECK(both([](const std::string& d) { return d.find("\"id\":3,") != std::string::npos && d.find("\"seats_left\":0}") != std::string::npos; }, 2000));
  CHECK(now_ms() - edited < 1500);  // one re-read period, and then some
  // A showtime added by hand, as the README says: an id, its hash, the set.
  std::string id = redis_cli(redis, {"INCR", "sse:cinema:ids"});
  REQUIRE(id == "13");
  redis_cli(redis, {"HSET", "sse:cinema:showtime:13", "movie", "By Hand", "hall", "Hall 9", "starts_at", in_days(2),
                    "seats_total", "60", "seats_left", "12"});
  redis_cli(redis, {"SADD", "sse:cinema:showtimes", "13"});
  CHECK(both([](const std::string& d) {
    return d.find("\"id\":13,\"movie\":\"By Hand\",\"hall\":\"Hall 9\"") != std::string::npos &&
           d.find("\"seats_total\":60,\"seats_left\":12}") != std::string::npos;
  }, 2000));
  // A field that makes no showtime: off the board, and counted.
  redis_cli(redis, {"HSET", "sse:cinema:showtime:13", "starts_at", "tomorrow"});
  CHECK(both([](const std::string& d) { return d.find("By Hand") == std::string::npos; }, 2000));
  CHECK(wait_for([&] { return metric(a.port, "sse_showtime_rows_invalid") == 1 && metric(b.port, "sse_showtime_rows_invalid") == 1; }, 3000));
  // Deleted by hand.
  redis_cli(redis, {"DEL", "sse:cinema:showtime:3"});
  redis_cli(redis, {"SREM", "sse:cinema:showtimes", "3"});
  CHECK(both([](const std::string& d) { return d.find("\"id\":3,") == std::string::npos; }, 2000));
  // A showtime added through the API takes the next id, past the one taken by hand.
  CHECK(add_showtime(b.port, "After", 5) == 14);
}

TEST_CASE("Redis: a booking through A reaches a subscriber on B within --push-gap-ms") {
  RedisProcess redis;
  ServerProcess a(redis_args(redis, {"--push-gap-ms", "100", "--schedule-interval", "60"})),
      b(redis_args(redis, {"--push-gap-ms", "100", "--schedule-interval", "60"}));
  wait_redis_ready(a.port);
  wait_redis_ready(b.port);
  long long id = add_showtime(a.port, "Live", 50);
  auto on_b = board_subscriber(b.port);
  std::string row = showtime_row(id, "Live");
  REQUIRE(sse_next(*on_b, [&](const std::string& d) { return d.find(row) != std::string::npos; }, 3000));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // past the push gap: the booking is a leading edge
  int64_t sent = now_ms();
  REQUIRE(http_post(a.port, "/cinema/showtimes/" + std::to_string(id) + "/book", "user=fast&seats=3").status == 200);
  CHECK(sse_next(*on_b, [](const std::string& d) { return d.find("\"seats_total\":50,\"seats_left\":47}") != std::string::npos; }, 2000));
  int64_t took = now_ms() - sent;
  CAPTURE(took);
  CHECK(took <= 100 + 100);
}

TEST_CASE("Redis: kill -9 of one process during a burst of bookings loses no acknowledged booking; the other books on") {
  RedisProcess redis;
  ServerProcess a(redis_args(redis)), b(redis_args(redis));
  wait_redis_ready(a.port);
  wait_redis_ready(b.port);
  long long id = add_showtime(a.port, "Durable", 5000);
  std::map<std::string, std::pair<long long, long long>> acked;  // user → booking, seats
  auto user = [](int burst, bool on_a, size_t n) { return "u" + std::to_string(burst) + (on_a ? "a" : "b") + std::to_string(n); };
  int b_refused = bursts_with_a_killed(a, b.port, 3, [&](int burst, bool on_a, size_t n) {
    return book_request(id, "user=" + user(burst, on_a, n) + "&seats=" + std::to_string(1 + n % 3));
  }, [&](int burst, bool on_a, size_t n, const Response& r) {
    if (r.status == 200) acked[user(burst, on_a, n)] = {json_int(r.body, "booking"), json_int(r.body, "seats")};
  });
  CHECK(b_refused == 0);  // B never noticed
  REQUIRE(acked.size() >= 270);  // B's 6 bursts and A's first 3
  long long acked_seats = 0;
  for (auto& [who, booking] : acked) {
    Response r = http_get(b.port, "/cinema/bookings/me", "Cookie: uid=" + who + "\r\n");
    CHECK(r.body.find("{\"booking\":" + std::to_string(booking.first) + ",\"seats\":" + std::to_string(booking.second) + ",") !=
          std::string::npos);
    acked_seats += booking.second;
  }
  // Every acknowledged seat is sold; a booking A stored but could not answer may be sold too, never more.
  long long left = std::atoll(redis_cli(redis, {"HGET", "sse:cinema:showtime:" + std::to_string(id), "seats_left"}).c_str());
  CAPTURE(acked_seats);
  CHECK(left <= 5000 - acked_seats);
  CHECK(left >= 5000 - acked_seats - 10 * 6);  // at most A's unanswered burst: 10 clients x (1 + 2 + 3) seats
}

TEST_CASE("Redis: whether a showtime has started is Redis's clock's to say, the board's, not the server's") {
  // Redis 10 minutes ahead of the server, as on two machines whose clocks
  // disagree: a showtime 5 minutes away by the server's clock has started
  // by Redis's, so the board no longer shows it, and it must not be sold.
  RedisProcess redis(false, 600);
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  auto in_seconds = [](int s) {
    time_t t = time(nullptr) + s;
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    return std::string(buf);
  };
  auto add = [&](const std::string& movie, int in_s) {
    Response r = http_post(srv.port, "/cinema/showtimes", "movie=" + movie + "&hall=H&starts_at=" + in_seconds(in_s) + "&seats=10", AUTH);
    REQUIRE(r.status == 201);  // in the future by the server's clock
    return json_int(r.body, "id");
  };
  long long soon = add("Soon", 300), later = add("Later", 1200);
  std::string board = http_get(srv.port, "/cinema/showtimes").body;
  CHECK(board.find("\"Soon\"") == std::string::npos);  // started, by Redis's clock
  CHECK(board.find("\"Later\"") != std::string::npos);
  std::string cookie = "Cookie: uid=early\r\n";
  Response r = one(srv.port, book_request(soon, "user=early&seats=1"));
  CHECK(r.status == 410);
  CHECK(r.body.find("has started") != std::string::npos);
  CHECK(one(srv.port, book_request(later, "user=early&seats=2")).status == 200);
  CHECK(http_get(srv.port, "/cinema/bookings/me", cookie).body.find("\"Later\"") != std::string::npos);
  // Moved to 5 minutes from now by the server's clock: started by Redis's, so no longer among my bookings.
  REQUIRE(one(srv.port, patch_request(later, "starts_at=" + in_seconds(300))).status == 200);
  CHECK(http_get(srv.port, "/cinema/bookings/me", cookie).body == "{\"ok\":true,\"bookings\":[]}");
  CHECK(redis_cli(redis, {"HGET", "sse:cinema:showtime:" + std::to_string(soon), "seats_left"}) == "10");
}

TEST_CASE("Redis: every route answers as in the SQLite mode, byte for byte") {
  RedisProcess redis;
  TempDir dir;
  std::string db = dir.file("parity.db");
  ServerProcess lite({"--quiet", "--db", db, "--admin-token", TOKEN}), red(redis_args(redis));
  wait_redis_ready(red.port);
  // Showtime 12 (the sample schedule's last) made to have started, outside the server.
  auto start_12 = [&](bool in_redis) {
    if (in_redis) redis_cli(redis, {"HSET", "sse:cinema:showtime:12", "starts_at", "2001-01-01T10:00:00Z"});
    else REQUIRE(sqlite3_tool(db, "UPDATE showtimes SET starts_at = '2001-01-01T10:00:00Z' WHERE id = 12") == 0);
  };
  std::string when = in_days(2), del13 = "DELETE /cinema/showtimes/13 HTTP/1.1\r\nHost: t\r\n" + AUTH + "\r\n";
  std::string a = "Cookie: uid=a\r\n";
  const std::vector<std::string> wires = {
      get_request("/cinema/showtimes"),
      post_request("/cinema/showtimes", "movie=Parity&hall=H&starts_at=" + when + "&seats=30", AUTH),
      post_request("/cinema/showtimes", "movie=&hall=H&starts_at=" + when + "&seats=30", AUTH),
      post_request("/cinema/showtimes/13/book", "seats=6", a), post_request("/cinema/showtimes/13/book", "seats=5", a),
      post_request("/cinema/showtimes/13/book", "seats=4", a), post_request("/cinema/showtimes/13/book", "user=a"),
      post_request("/cinema/showtimes/12/book", "seats=2", a),
      book_request(13, "user=b&seats=10"), book_request(13, "user=c&seats=10"), book_request(13, "user=d"),
      book_request(999, "user=d"), book_request(13, "user=d&seats=0"), book_request(13, "seats=1"),
      patch_request(13, "seats=20"), patch_request(13, "movie=Renamed&seats=35"), patch_request(999, "seats=5"),
      patch_request(13, "starts_at=" + when.substr(0, 16) + "%2B08:00&hall=IMAX"),
      book_request(13, "user=d&seats=3"), book_request(13, "user=e&seats=3"),
      get_request("/cinema/bookings/me", a), get_request("/cinema/showtimes"),
      "START 12",
      book_request(12, "user=e"), get_request("/cinema/bookings/me", a), get_request("/cinema/showtimes"),
      del13, del13, get_request("/cinema/bookings/me", a), get_request("/cinema/bookings/me")};
  for (const std::string& wire : wires) {
    if (wire == "START 12") {
      start_12(false), start_12(true);
      continue;
    }
    CAPTURE(wire);
    Response l = one(lite.port, wire), r = one(red.port, wire);
    CHECK(l.status == r.status);
    CHECK(l.body == r.body);
    CHECK(l.header("location") == r.header("location"));
    CHECK(l.status != 503);
  }
  for (const char* reason : {"no_showtime", "started", "per_person_limit", "seats"}) {
    std::string sample = std::string("sse_cinema_bookings_refused_total{reason=\"") + reason + "\"}";
    CAPTURE(sample);
    CHECK(metric(lite.port, sample) == metric(red.port, sample));
    CHECK(metric(red.port, sample) >= 1);
  }
  CHECK(metric(lite.port, "sse_cinema_bookings_total") == metric(red.port, "sse_cinema_bookings_total"));
}

TEST_CASE("Redis: one sample schedule for every process; Redis down: 503 with Retry-After, the stream stays open") {
  RedisProcess redis;
  ServerProcess a(redis_args(redis, {"--redis-timeout", "0.5"})), b(redis_args(redis, {"--redis-timeout", "0.5"}));
  wait_redis_ready(a.port);
  wait_redis_ready(b.port);
  std::string board = http_get(b.port, "/cinema/showtimes").body;
  size_t n = 0;
  for (size_t at = board.find("\"id\":"); at != std::string::npos; at = board.find("\"id\":", at + 1)) n++;
  CHECK(n == 12);  // not 24: whichever process came first made it
  CHECK(redis_cli(redis, {"SCARD", "sse:cinema:showtimes"}) == "12");
  auto sub = board_subscriber(a.port);
  redis.stop();
  for (const std::string& wire : {book_request(1, "user=x"), get_request("/cinema/showtimes"), get_request("/cinema/bookings/me", "Cookie: uid=x\r\n"),
                                  post_request("/cinema/showtimes", "movie=M&hall=H&starts_at=" + in_days(1) + "&seats=5", AUTH)}) {
    CAPTURE(wire);
    Response r = one(a.port, wire);
    CHECK(r.status == 503);
    CHECK(r.header("retry-after") == "1");
    // "cannot be reached", or if the request beat the server to Redis's goodbye, "did not answer".
    CHECK((r.body.find("redis cannot be reached") != std::string::npos || r.body.find("redis did not answer") != std::string::npos));
  }
  CHECK_FALSE(sub->closed_within(300));
  redis.start();  // empty (no appendonly): the first to reconnect makes the sample schedule again
  CHECK(wait_for([&] { return one(a.port, book_request(1, "user=x")).status == 200; }, 5000));
}

TEST_CASE("Redis: a person's bookings made by an older build (a list of booking hashes) are still theirs: shown, and counted against the limit") {
  RedisProcess redis;
  ServerProcess srv(redis_args(redis));
  wait_redis_ready(srv.port);
  long long id = add_showtime(srv.port, "Kept", 50);
  std::string sid = std::to_string(id);
  // As the older build wrote them: booking 7, 4 seats, in user:<user> and booking:<id>, the seats in held:<user>.
  REQUIRE(redis_cli(redis, {"SET", "sse:cinema:booking_ids", "7"}) == "OK");
  REQUIRE(redis_cli(redis, {"HSET", "sse:cinema:booking:7", "showtime", sid, "user", "old", "seats", "4", "made_at", "0"}) == "4");
  REQUIRE(redis_cli(redis, {"RPUSH", "sse:cinema:user:old", "7"}) == "1");
  REQUIRE(redis_cli(redis, {"HSET", "sse:cinema:held:old", sid, "4"}) == "1");
  Response refused = one(srv.port, book_request(id, "seats=7&user=old"));  // 4 + 7 > 10 a person
  CHECK(refused.status == 409);
  Response booked = one(srv.port, book_request(id, "seats=6&user=old"));
  REQUIRE(booked.status == 200);
  CHECK(json_int(booked.body, "booking") == 8);
  std::string mine = http_get(srv.port, "/cinema/bookings/me", "Cookie: uid=old\r\n").body;
  size_t older = mine.find("\"booking\":7,\"seats\":4"), newer = mine.find("\"booking\":8,\"seats\":6");
  CHECK(older != std::string::npos);
  CHECK(newer != std::string::npos);
  CHECK(older < newer);  // oldest first
  CHECK(redis_cli(redis, {"HGET", "sse:cinema:held:old", sid}) == "10");
}

}  // TEST_SUITE
