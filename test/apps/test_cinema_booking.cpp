// Booking seats through the real binary: exact under bursts, durable under
// kill -9, refusals answered once, and the handlers alone.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "../../apps/cinema/cinema.hpp"
#include "cinema_client.hpp"

TEST_SUITE("cinema") {

TEST_CASE("300 clients book 1 seat each of a 100-seat showtime at once: exactly 100 succeed") {
  TempDir dir;
  std::string db = dir.file("book.db");
  ServerProcess srv({"--quiet", "--db", db, "--admin-token", TOKEN});
  long long id = add_showtime(srv.port, "Rush", 100);
  book_300_of_100({srv.port}, id);
  CHECK(http_get(srv.port, "/cinema/showtimes").body.find("\"id\":" + std::to_string(id) + ",\"movie\":\"Rush\",\"hall\":\"H\"") != std::string::npos);
  CHECK(sqlite3_query(db, "SELECT seats_left FROM showtimes WHERE id = " + std::to_string(id)) == "0");
  CHECK(sqlite3_query(db, "SELECT count(*), sum(seats), count(DISTINCT user) FROM bookings WHERE showtime = " + std::to_string(id)) == "100|100|100");
  CHECK(metric(srv.port, "sse_cinema_bookings_total") == 100);
  CHECK(metric(srv.port, "sse_cinema_bookings_refused_total{reason=\"seats\"}") == 200);
}

TEST_CASE("a sqlite3 edit of seats_left during a burst: never more sold than the row allowed") {
  TempDir dir;
  std::string db = dir.file("edit.db");
  ServerProcess srv({"--quiet", "--db", db, "--admin-token", TOKEN});
  long long id = add_showtime(srv.port, "Edge", 1000);
  std::string sid = std::to_string(id);
  // The tool marks, in its own transaction, the last booking before its edit.
  REQUIRE(sqlite3_tool(db, "CREATE TABLE mark (last_booking INTEGER)") == 0);
  std::atomic<int> waves_done{0};
  std::atomic<bool> edited{false};
  std::thread tool([&] {
    while (waves_done < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    sqlite3_tool(db, "BEGIN IMMEDIATE; INSERT INTO mark SELECT coalesce(max(id), 0) FROM bookings; "
                     "UPDATE showtimes SET seats_left = 50 WHERE id = " + sid + "; COMMIT;");
    edited = true;
  });
  int ok = 0, refused = 0, unavailable = 0, waves = 0;
  // Waves go on until three have begun after the tool's edit (a wave takes
  // less time than starting the tool: a fixed count could end before it).
  for (int after_edit = 0; after_edit < 3 && waves < 500; waves++, after_edit += edited) {
    std::vector<std::unique_ptr<Client>> clients;
    for (int k = 0; k < 60; k++) clients.push_back(std::make_unique<Client>(srv.port));
    for (int k = 0; k < 60; k++) clients[size_t(k)]->send(book_request(id, "user=e" + std::to_string(waves * 100 + k)));
    for (auto& c : clients) {
      int status = c->response(5000).status;
      ok += status == 200, refused += status == 409, unavailable += status == 503;  // 503: the tool held the lock that turn
    }
    waves_done++;
  }
  tool.join();
  CHECK(ok + refused + unavailable == 60 * waves);
  long long mark = std::stoll(sqlite3_query(db, "SELECT last_booking FROM mark"));
  long long before = std::stoll(sqlite3_query(db, "SELECT coalesce(sum(seats), 0) FROM bookings WHERE id <= " + std::to_string(mark)));
  long long after = std::stoll(sqlite3_query(db, "SELECT coalesce(sum(seats), 0) FROM bookings WHERE id > " + std::to_string(mark)));
  long long left = std::stoll(sqlite3_query(db, "SELECT seats_left FROM showtimes WHERE id = " + sid));
  CHECK(before >= 180);  // three waves were in before the edit...
  CHECK(after > 0);      // ...and bookings went on after it
  CHECK(after <= 50);    // what the row allowed after the edit
  CHECK(left == 50 - after);
  CHECK(ok == before + after);  // every 200 is a row, and every row was answered 200
}

TEST_CASE("kill -9 during a burst of bookings loses no acknowledged booking") {
  TempDir dir;
  std::vector<std::string> args = {"--quiet", "--db", dir.file("k.db"), "--admin-token", TOKEN};
  std::map<long long, std::pair<std::string, long long>> acked;  // booking → user, seats
  long long id = 0;
  {
    ServerProcess srv(args);
    id = add_showtime(srv.port, "Durable", 5000);
    std::vector<std::unique_ptr<Client>> clients;
    for (int k = 0; k < 20; k++) clients.push_back(std::make_unique<Client>(srv.port));
    for (int burst = 0; burst < 10; burst++) {
      for (int k = 0; k < 20; k++) {
        std::string wire;
        for (int j = 0; j < 3; j++)
          wire += book_request(id, "user=k" + std::to_string(burst * 100 + k * 3 + j) + "&seats=" + std::to_string(1 + j));
        clients[size_t(k)]->send(wire);
      }
      for (int k = 0; k < 20; k++)
        for (int j = 0; j < 3; j++) {
          Response r = clients[size_t(k)]->response(3000);
          REQUIRE(r.status == 200);
          acked[json_int(r.body, "booking")] = {"k" + std::to_string(burst * 100 + k * 3 + j), json_int(r.body, "seats")};
        }
    }
    CHECK(srv.stop(SIGKILL) == 128 + SIGKILL);
  }
  REQUIRE(acked.size() == 600);
  ServerProcess again(args);
  long long sold = 0;
  for (auto& [booking, who] : acked) {
    Response r = http_get(again.port, "/cinema/bookings/me", "Cookie: uid=" + who.first + "\r\n");
    CHECK(r.body.find("{\"booking\":" + std::to_string(booking) + ",\"seats\":" + std::to_string(who.second) + ",") != std::string::npos);
    sold += who.second;
  }
  CHECK(sold == 1200);
  std::string board = http_get(again.port, "/cinema/showtimes").body;
  CHECK(board.find("\"seats_total\":5000,\"seats_left\":" + std::to_string(5000 - sold) + "}") != std::string::npos);
}

TEST_CASE("bookings reach every board live; a sell-out burst is at most one push per gap") {
  ServerProcess srv({"--quiet", "--admin-token", TOKEN, "--push-gap-ms", "300", "--schedule-interval", "60"});
  long long id = add_showtime(srv.port, "Burst", 1000);
  std::string row = "\"id\":" + std::to_string(id) + ",\"movie\":\"Burst\",\"hall\":\"H\"";
  Client sub(srv.port);
  sub.send(get_request("/cinema/events"));
  REQUIRE(sse_next(sub, [&](const std::string& d) { return d.find(row) != std::string::npos; }, 2000));
  int64_t sent = now_ms();
  REQUIRE(http_post(srv.port, "/cinema/showtimes/" + std::to_string(id) + "/book", "user=first&seats=4").status == 200);
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("\"seats_total\":1000,\"seats_left\":996}") != std::string::npos; }, 1000));
  CHECK(now_ms() - sent < 300 + 200);
  double pushes = metric(srv.port, "sse_stream_snapshots_total{stream=\"cinema\"}");
  int64_t start = now_ms();
  std::vector<std::unique_ptr<Client>> clients;
  for (int k = 0; k < 1000; k++) clients.push_back(std::make_unique<Client>(srv.port));
  for (int k = 0; k < 1000; k++) clients[size_t(k)]->send(book_request(id, "user=s" + std::to_string(k)));
  int ok = 0;
  for (auto& c : clients) ok += c->response(10000).status == 200;
  CHECK(ok == 996);
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("\"seats_total\":1000,\"seats_left\":0}") != std::string::npos; }, 2000));
  int64_t took = now_ms() - start;
  double burst_pushes = metric(srv.port, "sse_stream_snapshots_total{stream=\"cinema\"}") - pushes;
  CAPTURE(took);
  CHECK(burst_pushes >= 1);
  CHECK(burst_pushes <= double(took / 300 + 2));  // a leading edge, then at most one per gap
}

TEST_CASE("booking refusals: 400 for bad seats or no identity, 404, 410 started, 409 past 10 per person") {
  TempDir dir;
  std::string db = dir.file("r.db");
  ServerProcess srv({"--quiet", "--db", db, "--admin-token", TOKEN});
  long long id = add_showtime(srv.port, "Rules", 30);
  for (const char* form : {"user=x&seats=0", "user=x&seats=11", "user=x&seats=two", "user=x&seats=", "seats=1"}) {
    CAPTURE(form);
    Response r = one(srv.port, book_request(id, form));
    CHECK(r.status == 400);
    CHECK((r.body.find("seats") != std::string::npos || r.body.find("who are you") != std::string::npos));
  }
  CHECK(one(srv.port, book_request(999, "user=x")).status == 404);
  Response nowhere = one(srv.port, post_request("/cinema/showtimes/" + std::to_string(id) + "/books", "user=x"));
  CHECK(nowhere.status == 404);
  CHECK(one(srv.port, post_request("/cinema/showtimes/" + std::to_string(id), "user=x")).status == 404);
  REQUIRE(sqlite3_tool(db, "INSERT INTO showtimes (movie, hall, starts_at, seats_total, seats_left) VALUES ('Gone', 'H', '2001-01-01T10:00:00Z', 9, 9)") == 0);
  long long started = std::stoll(sqlite3_query(db, "SELECT id FROM showtimes WHERE movie = 'Gone'"));
  Response late = one(srv.port, book_request(started, "user=x"));
  CHECK(late.status == 410);
  CHECK(late.body == "{\"ok\":false,\"message\":\"showtime " + std::to_string(started) + " has started\"}");
  // Ten seats per person per showtime, over several bookings; the cookie is the person.
  Client a(srv.port);
  a.send(post_request("/cinema/showtimes/" + std::to_string(id) + "/book", "seats=6", "Cookie: uid=pat\r\n"));
  CHECK(json_int(a.response().body, "seats_left") == 24);
  a.send(post_request("/cinema/showtimes/" + std::to_string(id) + "/book", "seats=5", "Cookie: uid=pat\r\n"));
  Response over = a.response();
  CHECK(over.status == 409);
  CHECK(json_int(over.body, "held") == 6);
  a.send(post_request("/cinema/showtimes/" + std::to_string(id) + "/book", "seats=4", "Cookie: uid=pat\r\n"));
  CHECK(a.response().status == 200);
  CHECK(one(srv.port, book_request(id, "user=pat")).status == 409);  // the field names the same person
  CHECK(one(srv.port, book_request(id, "user=sam&seats=10")).status == 200);
  Response few = one(srv.port, book_request(id, "user=kim&seats=10"));  // 10 left? 30 - 6 - 4 - 10 = 10: taken
  CHECK(few.status == 200);
  Response none = one(srv.port, book_request(id, "user=lee&seats=1"));
  CHECK(none.status == 409);
  CHECK(json_int(none.body, "seats_left") == 0);
  CHECK(metric(srv.port, "sse_cinema_bookings_refused_total{reason=\"no_showtime\"}") == 1);
  CHECK(metric(srv.port, "sse_cinema_bookings_refused_total{reason=\"started\"}") == 1);
  CHECK(metric(srv.port, "sse_cinema_bookings_refused_total{reason=\"per_person_limit\"}") == 2);
  CHECK(metric(srv.port, "sse_cinema_bookings_refused_total{reason=\"seats\"}") == 1);
}

TEST_CASE("a crowd on a sold-out showtime: every refusal answered once, none handled turn after turn") {
  // 200 bookings of a 1-seat showtime in one loop turn: the first takes
  // the seat, and the refusals after it read its booking before it is
  // stored, so they wait for the commit — once, all answered right after
  // it. (Handled again on every later turn, each behind a new transaction
  // the first of them opened, they were answered about one a turn.)
  ServerProcess srv({"--quiet", "--admin-token", TOKEN});
  long long id = add_showtime(srv.port, "Crowd", 1);
  auto clients = send_in_one_turn(srv, 200, [&](size_t k) { return book_request(id, "user=c" + std::to_string(k)); });
  int ok = 0, sold_out = 0;
  for (auto& c : clients) {
    Response r = c->response(5000);
    ok += r.status == 200;
    sold_out += r.status == 409 && r.body.find("is sold out") != std::string::npos;
  }
  CHECK(ok == 1);
  CHECK(sold_out == 199);
  CHECK(metric(srv.port, "sse_requests_parked_total") <= 199);  // each waited at most once
  // And once sold out and stored, a refusal waits for nothing at all.
  double parked = metric(srv.port, "sse_requests_parked_total");
  auto more = send_in_one_turn(srv, 100, [&](size_t k) { return book_request(id, "user=d" + std::to_string(k)); });
  for (auto& c : more) CHECK(c->response(5000).status == 409);
  CHECK(metric(srv.port, "sse_requests_parked_total") == parked);
}

TEST_CASE("a deleted showtime's id is never given again; an old table is rebuilt without losing a row") {
  TempDir dir;
  std::string db = dir.file("ids.db");
  std::vector<std::string> args = {"--quiet", "--db", db, "--admin-token", TOKEN};
  auto book_mine = [&](int port, long long id, int seats) {
    return one(port, post_request("/cinema/showtimes/" + std::to_string(id) + "/book", "seats=" + std::to_string(seats), "Cookie: uid=me\r\n"));
  };
  auto mine = [&](int port) { return http_get(port, "/cinema/bookings/me", "Cookie: uid=me\r\n").body; };
  {
    ServerProcess srv(args);
    long long gone = add_showtime(srv.port, "Gone", 20, 2);  // the newest: the id a reused one would be
    REQUIRE(book_mine(srv.port, gone, 10).status == 200);
    REQUIRE(one(srv.port, "DELETE /cinema/showtimes/" + std::to_string(gone) + " HTTP/1.1\r\nHost: t\r\n" + AUTH + "\r\n").status == 200);
    long long fresh = add_showtime(srv.port, "Fresh", 20, 2);
    CHECK(fresh > gone);
    CHECK(mine(srv.port) == "{\"ok\":true,\"bookings\":[]}");  // not 10 seats of a movie never booked
    CHECK(book_mine(srv.port, fresh, 10).status == 200);         // not "you hold 10 seats"
    // Deleted by hand: still never given again.
    REQUIRE(sqlite3_tool(db, "DELETE FROM showtimes WHERE id = " + std::to_string(fresh)) == 0);
    CHECK(add_showtime(srv.port, "After", 20, 2) > fresh);
  }
  // A database from before: ids without AUTOINCREMENT, showtime 5 deleted
  // with its bookings left. Rebuilt at start-up, every row kept; the next
  // id is past every id a booking names.
  std::string old_db = dir.file("old.db");
  std::string later = in_days(3);
  REQUIRE(sqlite3_tool(old_db, "CREATE TABLE showtimes (id INTEGER PRIMARY KEY, movie TEXT NOT NULL, hall TEXT NOT NULL, "
                               "starts_at TEXT NOT NULL, seats_total INTEGER NOT NULL, seats_left INTEGER NOT NULL); "
                               "CREATE TABLE bookings (id INTEGER PRIMARY KEY, showtime INTEGER NOT NULL, user TEXT NOT NULL, "
                               "seats INTEGER NOT NULL, made_at INTEGER NOT NULL); "
                               "INSERT INTO showtimes VALUES (1, 'One', 'H', '" + later + "', 10, 10), (2, 'Two', 'H', '" + later +
                               "', 10, 7), (3, 'Three', 'H', '" + later + "', 10, 'typed by hand'); "
                               "INSERT INTO bookings VALUES (1, 2, 'me', 3, 0), (2, 5, 'me', 10, 0);") == 0);
  ServerProcess srv({"--quiet", "--db", old_db, "--admin-token", TOKEN});
  CHECK(sqlite3_query(old_db, "SELECT sql LIKE '%AUTOINCREMENT%' FROM sqlite_master WHERE name = 'showtimes'") == "1");
  CHECK(sqlite3_query(old_db, "SELECT group_concat(id || ' ' || movie || ' ' || seats_left, ', ') FROM showtimes") ==
        "1 One 10, 2 Two 7, 3 Three typed by hand");
  CHECK(add_showtime(srv.port, "New", 10, 3) == 6);
  CHECK(mine(srv.port).find("\"showtime\":2,") != std::string::npos);  // the booking of a showtime that is still there
  CHECK(mine(srv.port).find("New") == std::string::npos);
}

TEST_CASE("a turn whose commit fails: a second DELETE of one showtime is not answered from the first one's undone delete") {
  // One connection deletes showtime `id` twice; in the same turn another
  // asks for a round the database cannot take, so the turn's commit fails
  // and the first delete is undone (503). The second must not have been
  // told "no showtime" from that delete: it waits for the commit, then
  // deletes the showtime that is still there.
  ServerProcess srv({"--quiet", "--db-max-mb", "1", "--admin-token", TOKEN});
  long long id = add_showtime(srv.port, "Twice", 10);
  std::string del = "DELETE /cinema/showtimes/" + std::to_string(id) + " HTTP/1.1\r\nHost: t\r\n" + AUTH + "\r\n";
  auto clients = send_in_one_turn(srv, 2, [&](size_t k) {
    return k == 0 ? del + del : post_request("/redpacket/rounds", "total_cents=200000&count=200000", AUTH);
  });
  Response first = clients[0]->response(5000), second = clients[0]->response(5000);
  CHECK(clients[1]->response(5000).status == 503);
  CHECK(first.status == 503);
  CHECK(second.status == 200);
  CHECK(second.body == "{\"ok\":true,\"deleted\":" + std::to_string(id) + "}");
  CHECK(http_get(srv.port, "/cinema/showtimes").body.find("\"Twice\"") == std::string::npos);  // what the answers said
}

TEST_CASE("seat counts typed as text are no numbers: off the board, counted, never booked or edited until fixed") {
  TempDir dir;
  std::string db = dir.file("typed.db");
  ServerProcess srv({"--quiet", "--db", db, "--admin-token", TOKEN, "--schedule-interval", "0.1"});
  long long id = add_showtime(srv.port, "Typed", 20);
  std::string where = " WHERE id = " + std::to_string(id);
  REQUIRE(sqlite3_tool(db, "UPDATE showtimes SET seats_left = 'sold out'" + where) == 0);
  CHECK(http_get(srv.port, "/cinema/showtimes").body.find("\"Typed\"") == std::string::npos);
  CHECK(wait_for([&] { return metric(srv.port, "sse_showtime_rows_invalid") == 1; }, 2000));
  Response booked = one(srv.port, book_request(id, "user=x&seats=10"));
  CHECK(booked.status == 404);  // as for any showtime the board does not show
  Response edited = one(srv.port, patch_request(id, "seats=30"));
  CHECK(edited.status == 409);
  CHECK(edited.body.find("not whole numbers") != std::string::npos);
  CHECK(sqlite3_query(db, "SELECT seats_total || ' ' || seats_left FROM showtimes" + where) == "20 sold out");
  CHECK(sqlite3_query(db, "SELECT count(*) FROM bookings WHERE showtime = " + std::to_string(id)) == "0");
  REQUIRE(sqlite3_tool(db, "UPDATE showtimes SET seats_left = 5" + where) == 0);  // fixed
  Response after = one(srv.port, book_request(id, "user=x&seats=2"));
  CHECK(after.status == 200);
  CHECK(json_int(after.body, "seats_left") == 3);
}

TEST_CASE("my bookings: this browser's, of showtimes not yet started, soonest first") {
  TempDir dir;
  std::string db = dir.file("me.db");
  ServerProcess srv({"--quiet", "--db", db, "--admin-token", TOKEN});
  long long later = add_showtime(srv.port, "Later", 10, 3), sooner = add_showtime(srv.port, "Sooner", 10, 1);
  std::string cookie = "Cookie: uid=viewer\r\n";
  CHECK(http_get(srv.port, "/cinema/bookings/me", cookie).body == "{\"ok\":true,\"bookings\":[]}");
  CHECK(http_get(srv.port, "/cinema/bookings/me").status == 400);
  for (auto [showtime, seats] : {std::pair{later, 2}, {sooner, 3}, {later, 1}})
    REQUIRE(http_post(srv.port, "/cinema/showtimes/" + std::to_string(showtime) + "/book", "seats=" + std::to_string(seats), cookie).status == 200);
  REQUIRE(http_post(srv.port, "/cinema/showtimes/" + std::to_string(sooner) + "/book", "user=someone-else").status == 200);
  std::string mine = http_get(srv.port, "/cinema/bookings/me", cookie).body;
  size_t s = mine.find("\"movie\":\"Sooner\""), l1 = mine.find("\"seats\":2,\"showtime\":" + std::to_string(later)),
         l2 = mine.find("\"seats\":1,\"showtime\":" + std::to_string(later));
  CHECK(s != std::string::npos);
  CHECK(mine.find("\"seats\":3,\"showtime\":" + std::to_string(sooner)) != std::string::npos);
  CHECK(l1 != std::string::npos);
  CHECK(l2 != std::string::npos);
  CHECK((s < l1 && l1 < l2));
  CHECK(mine.find("someone-else") == std::string::npos);
  CHECK(mine.find("\"seats\":1,\"showtime\":" + std::to_string(sooner)) == std::string::npos);
  // A showtime that has started drops off the list.
  REQUIRE(sqlite3_tool(db, "UPDATE showtimes SET starts_at = '2001-01-01T00:00:00Z' WHERE id = " + std::to_string(sooner)) == 0);
  CHECK(http_get(srv.port, "/cinema/bookings/me", cookie).body.find("Sooner") == std::string::npos);
}

TEST_CASE("PATCH edits any field, checked as on create; seats never below those sold; the board follows") {
  ServerProcess srv({"--quiet", "--admin-token", TOKEN});
  long long id = add_showtime(srv.port, "Draft", 20);
  Client sub(srv.port);
  sub.send(get_request("/cinema/events"));
  REQUIRE(sse_next(sub, [](const std::string& d) { return d.find("Draft") != std::string::npos; }, 2000));
  REQUIRE(http_post(srv.port, "/cinema/showtimes/" + std::to_string(id) + "/book", "user=p&seats=8").status == 200);
  Response r = one(srv.port, patch_request(id, "movie=Final+Cut&seats=30"));
  CHECK(r.status == 200);
  CHECK(r.body.find("\"movie\":\"Final Cut\",\"hall\":\"H\"") != std::string::npos);
  CHECK(r.body.find("\"seats_total\":30,\"seats_left\":22}") != std::string::npos);
  CHECK(sse_next(sub, [](const std::string& d) { return d.find("\"movie\":\"Final Cut\"") != std::string::npos && d.find("\"seats_left\":22}") != std::string::npos; }, 1000));
  std::string when = in_days(5);
  r = one(srv.port, patch_request(id, "starts_at=" + when.substr(0, 16) + "%2B08:00&hall=IMAX"));
  CHECK(r.status == 200);
  CHECK(r.body.find("\"hall\":\"IMAX\"") != std::string::npos);
  CHECK(r.body.find("\"movie\":\"Final Cut\"") != std::string::npos);  // left as it was
  r = one(srv.port, patch_request(id, "seats=7"));
  CHECK(r.status == 409);
  CHECK(r.body.find("8 seats of showtime") != std::string::npos);
  CHECK(one(srv.port, patch_request(id, "seats=8")).body.find("\"seats_total\":8,\"seats_left\":0}") != std::string::npos);
  const std::pair<std::string, std::string> bad[] = {
      {"movie=", "movie"}, {"hall=" + std::string(51, 'h'), "hall"}, {"starts_at=tomorrow", "starts_at"},
      {"starts_at=2001-01-01T10:00:00Z", "starts_at is in the past"}, {"seats=0", "seats"}, {"seats=x", "seats"},
      {"", "nothing to change"}, {"token=abc", "nothing to change"}};
  for (auto& [form, says] : bad) {
    CAPTURE(form);
    Response b = one(srv.port, patch_request(id, form));
    CHECK(b.status == 400);
    CHECK(b.body.find(says) != std::string::npos);
  }
  CHECK(one(srv.port, patch_request(424242, "seats=5")).status == 404);
  CHECK(one(srv.port, patch_request(id, "seats=50", "")).status == 401);
  CHECK(http_get(srv.port, "/cinema/showtimes").body.find("\"seats_total\":8,\"seats_left\":0}") != std::string::npos);
}

TEST_CASE("booking alone: a fabricated request, a :memory: store, no socket") {
  Store store;
  REQUIRE(store.open(":memory:", false));
  CinemaApp app;
  std::string why;
  REQUIRE(app.open(store, 1000, &why) == 0);
  REQUIRE(store.commit());
  HttpRequest http;
  http.method = HTTP_POST;
  std::string form = "movie=M&hall=H&starts_at=" + in_days(1) + "&seats=3";
  http.body = form;
  Request req{http, now_ms()};
  Answer made = app.add(req);
  REQUIRE(store.commit());
  std::string path = "/cinema/showtimes/" + std::to_string(json_int(made.body, "id")) + "/book";
  http.path = path;
  form = "user=u1&seats=2";
  http.body = form;
  Answer first = app.book(req);
  CHECK(first.status == 200);
  CHECK(first.then == Then::SendChange);
  form = "user=u2&seats=2";
  http.body = form;
  CHECK(app.book(req).then == Then::AfterCommit);  // "1 left" read this turn's uncommitted booking: it waits
  REQUIRE(store.commit());
  Answer second = app.book(req);
  CHECK(second.status == 409);
  CHECK(json_int(second.body, "seats_left") == 1);
  CHECK(app.counts.booked == 1);
  first.undo();
  CHECK(app.counts.booked == 0);
}

}  // TEST_SUITE
