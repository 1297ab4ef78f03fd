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
  CHECK(redis_cli(redis, {"HGET", "sse:cinema:booking:" + BIG, "seats"}) == "2");
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

}  // TEST_SUITE
