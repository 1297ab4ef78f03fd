// The cinema board through the real binary: the database is the source of
// truth, changed through the API or from outside with the sqlite3 tool.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "../../apps/cinema/cinema.hpp"
#include "cinema_client.hpp"

TEST_SUITE("cinema") {

TEST_CASE("first start: a sample schedule, upcoming only, sorted; never again") {
  TempDir dir;
  std::vector<std::string> args = {"--quiet", "--db", dir.file("c.db"), "--admin-token", TOKEN};
  {
    ServerProcess srv(args);
    Response list = http_get(srv.port, "/cinema/showtimes");
    CHECK(list.status == 200);
    CHECK(list.header("content-type") == "application/json");
    size_t n = 0;
    std::string last;
    for (size_t at = list.body.find("\"starts_at\":\""); at != std::string::npos; at = list.body.find("\"starts_at\":\"", at + 1)) {
      std::string t = list.body.substr(at + 13, 20);
      CHECK(t > last);  // sorted (ISO UTC text sorts as time)
      last = t;
      n++;
    }
    CHECK(n == 12);
    for (int id = 1; id <= 12; id++) {  // the admin empties it...
      Client c(srv.port);
      c.send("DELETE /cinema/showtimes/" + std::to_string(id) + " HTTP/1.1\r\nHost: t\r\n" + AUTH + "\r\n");
      REQUIRE(c.response().status == 200);
    }
  }
  ServerProcess again(args);  // ...and a restart does not refill it
  CHECK(http_get(again.port, "/cinema/showtimes").body == "{\"showtimes\":[]}");
}

TEST_CASE("a showtime added through the API reaches a subscriber; a deleted one disappears") {
  ServerProcess srv({"--quiet", "--admin-token", TOKEN});
  Client sub(srv.port);
  sub.send(get_request("/events"));
  REQUIRE(sub.read_until("\r\n\r\n"));
  CHECK(sub.buf.find("Content-Type: text/event-stream") != std::string::npos);
  REQUIRE(sse_next(sub, [](const std::string& d) { return d.starts_with("{\"showtimes\":[{"); }, 2000));
  int64_t sent = now_ms();
  Response made = http_post(srv.port, "/cinema/showtimes",
                            "movie=+Jurassic+Fork++&hall=Hall+7&starts_at=" + in_days(1) + "&seats=40", AUTH);  // edge spaces dropped
  CHECK(made.status == 201);
  long long id = json_int(made.body, "id");
  CHECK(made.header("location") == "/cinema/showtimes/" + std::to_string(id));
  CHECK(made.body.find("\"seats_total\":40,\"seats_left\":40") != std::string::npos);
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("\"movie\":\"Jurassic Fork\"") != std::string::npos; }, 1000));
  CHECK(now_ms() - sent < 1000);
  Client del(srv.port);
  del.send("DELETE /cinema/showtimes/" + std::to_string(id) + " HTTP/1.1\r\nHost: t\r\n" + AUTH + "\r\n");
  CHECK(del.response().body == "{\"ok\":true,\"deleted\":" + std::to_string(id) + "}");
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("Jurassic Fork") == std::string::npos; }, 1000));
  // The alias path streams the same board.
  Client alias(srv.port);
  alias.send(get_request("/cinema/events"));
  CHECK(sse_next(alias, [](const std::string& d) { return d.starts_with("{\"showtimes\":["); }, 2000));
}

TEST_CASE("a row inserted with the sqlite3 tool reaches a subscriber within the re-read period") {
  TempDir dir;
  std::string db = dir.file("ext.db");
  ServerProcess srv({"--quiet", "--db", db, "--schedule-interval", "0.5"});
  Client sub(srv.port);
  sub.send(get_request("/events"));
  REQUIRE(sse_next(sub, [](const std::string& d) { return d.starts_with("{\"showtimes\":[{"); }, 2000));
  int64_t inserted = now_ms();
  REQUIRE(sqlite3_tool(db, "INSERT INTO showtimes (movie, hall, starts_at, seats_total, seats_left) VALUES "
                           "('From Outside', 'Hall X', '" + in_days(2) + "', 60, 12)") == 0);
  CHECK(sse_next(sub, [](const std::string& d) {
    return d.find("\"movie\":\"From Outside\",\"hall\":\"Hall X\"") != std::string::npos &&
           d.find("\"seats_total\":60,\"seats_left\":12") != std::string::npos;
  }, 2000));
  CHECK(now_ms() - inserted < 1500);  // one re-read period, and then some
  // An edit and a delete from outside show up the same way.
  REQUIRE(sqlite3_tool(db, "UPDATE showtimes SET seats_left = 0 WHERE movie = 'From Outside'") == 0);
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("\"seats_total\":60,\"seats_left\":0") != std::string::npos; }, 2000));
  REQUIRE(sqlite3_tool(db, "DELETE FROM showtimes WHERE movie = 'From Outside'") == 0);
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("From Outside") == std::string::npos; }, 2000));
  // A row that is not a showtime (no time zone) stays off the board, and is counted.
  REQUIRE(sqlite3_tool(db, "INSERT INTO showtimes (movie, hall, starts_at, seats_total, seats_left) VALUES "
                           "('Zoneless', 'H', '2030-01-01 10:00', 5, 5)") == 0);
  CHECK(wait_for([&] { return metric(srv.port, "sse_showtime_rows_invalid") == 1; }, 3000));
  CHECK(http_get(srv.port, "/cinema/showtimes").body.find("Zoneless") == std::string::npos);
}

TEST_CASE("a re-read of an unchanged table sends nothing new, only heartbeats") {
  ServerProcess srv({"--quiet", "--schedule-interval", "0.2"});
  Client sub(srv.port);
  sub.send(get_request("/events"));
  std::vector<std::string> boards;
  REQUIRE(sse_next(sub, [](const std::string&) { return true; }, 2000, &boards));
  CHECK_FALSE(sse_next(sub, [](const std::string&) { return true; }, 1500, &boards));  // 7 re-reads, no event
  CHECK(boards.size() == 1);
  CHECK(metric(srv.port, "sse_broadcasts_total") >= 1);
}

TEST_CASE("a subscriber joining inside a push gap gets the board everyone has; the change then reaches all of them") {
  ServerProcess srv({"--quiet", "--admin-token", TOKEN, "--push-gap-ms", "1500", "--schedule-interval", "60"});
  Client a(srv.port);
  a.send(get_request("/events"));
  REQUIRE(sse_next(a, [](const SseEvent& e) { return e.data.starts_with("{\"showtimes\":["); }, 2000));
  auto add = [&](const std::string& movie) {
    return http_post(srv.port, "/cinema/showtimes", "movie=" + movie + "&hall=H&starts_at=" + in_days(1) + "&seats=9", AUTH).status;
  };
  REQUIRE(add("First") == 201);
  SseEvent seen_by_a;
  REQUIRE(sse_next(a, [](const SseEvent& e) { return e.data.find("First") != std::string::npos; }, 3000, &seen_by_a));
  REQUIRE(add("Second") == 201);  // right after a push, so inside the gap: it waits for the gap's end
  Client b(srv.port);
  b.send(get_request("/events"));
  SseEvent first_of_b;
  REQUIRE(sse_next(b, [](const SseEvent&) { return true; }, 1000, &first_of_b));
  CHECK(first_of_b.id == seen_by_a.id);  // the same snapshot, the same id: a subscribe makes no version
  CHECK(first_of_b.data == seen_by_a.data);
  SseEvent a2, b2;
  CHECK(sse_next(a, [](const SseEvent& e) { return e.data.find("Second") != std::string::npos; }, 3000, &a2));
  CHECK(sse_next(b, [](const SseEvent& e) { return e.data.find("Second") != std::string::npos; }, 3000, &b2));
  CHECK(a2.id == b2.id);
}

TEST_CASE("subscribers arriving while a change waits cost no render each (a reconnect storm is not a SELECT storm)") {
  ServerProcess srv({"--quiet", "--admin-token", TOKEN, "--push-gap-ms", "2000", "--schedule-interval", "60"});
  Client first(srv.port);
  first.send(get_request("/events"));
  REQUIRE(sse_next(first, [](const SseEvent&) { return true; }, 2000));
  REQUIRE(http_post(srv.port, "/cinema/showtimes", "movie=One&hall=H&starts_at=" + in_days(1) + "&seats=9", AUTH).status == 201);
  REQUIRE(sse_next(first, [](const SseEvent& e) { return e.data.find("One") != std::string::npos; }, 3000));
  REQUIRE(http_post(srv.port, "/cinema/showtimes", "movie=Two&hall=H&starts_at=" + in_days(1) + "&seats=9", AUTH).status == 201);
  double renders = metric(srv.port, "sse_stream_renders_total{stream=\"cinema\"}");
  std::vector<std::unique_ptr<Client>> storm;
  for (int i = 0; i < 200; i++) {
    storm.push_back(std::make_unique<Client>(srv.port));
    storm.back()->send(get_request("/events"));
  }
  for (auto& c : storm) REQUIRE(sse_next(*c, [](const SseEvent& e) { return e.data.find("One") != std::string::npos; }, 2000));
  CHECK(metric(srv.port, "sse_stream_renders_total{stream=\"cinema\"}") - renders <= 1);  // the trailing edge's, at most
  for (auto& c : storm) CHECK(sse_next(*c, [](const SseEvent& e) { return e.data.find("Two") != std::string::npos; }, 4000));
}

TEST_CASE("JSON stays valid: an id is answered as a number, rows that are not text are left off and counted") {
  TempDir dir;
  std::string db = dir.file("text.db");
  ServerProcess srv({"--quiet", "--db", db, "--admin-token", TOKEN, "--schedule-interval", "0.2"});
  Client del(srv.port);
  del.send("DELETE /cinema/showtimes/0000001 HTTP/1.1\r\nHost: t\r\n" + AUTH + "\r\n");
  Response r = del.response();
  CHECK(r.status == 200);
  CHECK(r.body == "{\"ok\":true,\"deleted\":1}");
  // Edited by hand: a NUL inside a name, bytes that are not UTF-8.
  REQUIRE(sqlite3_tool(db, "INSERT INTO showtimes (movie, hall, starts_at, seats_total, seats_left) VALUES "
                           "('Cut' || char(0) || 'Short', 'H', '" + in_days(1) + "', 5, 5), "
                           "(CAST(X'4E6FFF' AS TEXT), 'H', '" + in_days(1) + "', 5, 5)") == 0);
  CHECK(wait_for([&] { return metric(srv.port, "sse_showtime_rows_invalid") == 2; }, 3000));
  std::string board = http_get(srv.port, "/cinema/showtimes").body;
  CHECK(board.find("\"movie\":\"Cut\"") == std::string::npos);  // never shown truncated
  CHECK(board.find("\"No") == std::string::npos);
  CHECK(valid_utf8(board));
}

TEST_CASE("a schedule that cannot be read: GET is 503 with Retry-After, as every read refusal is") {
  TempDir dir;
  std::string db = dir.file("gone.db");
  ServerProcess srv({"--quiet", "--db", db, "--admin-token", TOKEN});
  REQUIRE(http_get(srv.port, "/cinema/showtimes").status == 200);
  REQUIRE(sqlite3_tool(db, "DROP TABLE showtimes") == 0);  // by hand, under the running server
  Response r = http_get(srv.port, "/cinema/showtimes");
  CHECK(r.status == 503);
  CHECK(r.body.find("cannot be read") != std::string::npos);
  CHECK(r.header("retry-after") == "1");
  CHECK(http_get(srv.port, "/healthz").status == 200);  // the server goes on
}

TEST_CASE("past showtimes drop off the board on their own") {
  TempDir dir;
  std::string db = dir.file("past.db");
  ServerProcess srv({"--quiet", "--db", db, "--schedule-interval", "0.3"});
  time_t soon = time(nullptr) + 2;
  char at[32];
  strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", gmtime(&soon));
  REQUIRE(sqlite3_tool(db, "INSERT INTO showtimes (movie, hall, starts_at, seats_total, seats_left) VALUES ('Starting Now', 'H', '" +
                               std::string(at) + "', 5, 5)") == 0);
  Client sub(srv.port);
  sub.send(get_request("/events"));
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("Starting Now") != std::string::npos; }, 2000));
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("Starting Now") == std::string::npos; }, 4000));
}

TEST_CASE("bad input: 400 naming the field, 404 for an unknown id, 401 without the token") {
  ServerProcess srv({"--quiet", "--admin-token", TOKEN});
  std::string good_time = in_days(1);
  const std::pair<std::string, std::string> bad[] = {
      {"hall=H&starts_at=" + good_time + "&seats=5", "movie"},
      {"movie=M&starts_at=" + good_time + "&seats=5", "hall"},
      {"movie=M&hall=H&seats=5", "starts_at"},
      {"movie=M&hall=H&starts_at=tomorrow&seats=5", "starts_at"},
      {"movie=M&hall=H&starts_at=2026-11-31T10:00:00Z&seats=5", "starts_at"},
      {"movie=M&hall=H&starts_at=2001-01-01T10:00:00Z&seats=5", "starts_at is in the past"},
      {"movie=M&hall=H&starts_at=" + good_time, "seats"},
      {"movie=M&hall=H&starts_at=" + good_time + "&seats=0", "seats"},
      {"movie=M&hall=H&starts_at=" + good_time + "&seats=many", "seats"},
      {"movie=" + std::string(101, 'm') + "&hall=H&starts_at=" + good_time + "&seats=5", "movie"},
  };
  for (auto& [form, says] : bad) {
    CAPTURE(form);
    Response r = http_post(srv.port, "/cinema/showtimes", form, AUTH);
    CHECK(r.status == 400);
    CHECK(r.body.find(says) != std::string::npos);
  }
  CHECK(http_post(srv.port, "/cinema/showtimes", "movie=M&hall=H&starts_at=" + good_time + "&seats=5").status == 401);
  for (const char* path : {"/cinema/showtimes/999", "/cinema/showtimes/abc", "/cinema/showtimes/", "/cinema/showtimes/-1"}) {
    CAPTURE(path);
    Client c(srv.port);
    c.send(std::string("DELETE ") + path + " HTTP/1.1\r\nHost: t\r\n" + AUTH + "\r\n");
    Response r = c.response();
    CHECK(r.status == 404);
    CHECK(r.body.find("no showtime") != std::string::npos);
  }
  Client noauth(srv.port);
  noauth.send("DELETE /cinema/showtimes/1 HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(noauth.response().status == 401);
  CHECK(http_get(srv.port, "/cinema/showtimes/1").status == 405);
  CHECK(http_get(srv.port, "/cinema/nothing/here").status == 404);
  CHECK(http_get(srv.port, "/cinema/showtimes").body.find("\"id\":1,") != std::string::npos);  // nothing was deleted
}

TEST_CASE("the handlers alone: a fabricated request, a :memory: store, no socket") {
  Store store;
  REQUIRE(store.open(":memory:", false));
  CinemaApp app;
  std::string why;
  REQUIRE(app.open(store, 1000, &why) == 0);
  REQUIRE(store.commit());
  HttpRequest http;
  http.method = HTTP_POST;
  std::string form = "movie=M&hall=H&starts_at=" + in_days(1) + "&seats=5";
  http.body = form;
  Request req{http, 2000};
  Answer made = app.add(req);
  CHECK(made.status == 201);
  CHECK(made.then == Then::SendChange);
  CHECK(app.mode->list(req).then == Then::AfterCommit);  // a read now would see the uncommitted row
  REQUIRE(store.commit());
  long long id = json_int(made.body, "id");
  CHECK(app.mode->list(req).body.find("\"movie\":\"M\"") != std::string::npos);
  std::string path = "/cinema/showtimes/000" + std::to_string(id);
  http.path = path;
  CHECK(app.erase(req).body == "{\"ok\":true,\"deleted\":" + std::to_string(id) + "}");
  REQUIRE(store.commit());
  CHECK(app.erase(req).status == 404);
}

}  // TEST_SUITE
