// The cinema board through the real binary: the database is the source of
// truth, changed through the API or from outside with the sqlite3 tool.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "../apps/cinema/cinema.hpp"
#include "harness.hpp"

namespace {

const std::string TOKEN = "cinema-admin-token";
const std::string AUTH = "Authorization: Bearer " + TOKEN + "\r\n";


// Runs the sqlite3 command-line tool on `db`; returns its exit status.
int sqlite3_tool(const std::string& db, const std::string& sql) {
  std::string cmd = "sqlite3 -cmd '.timeout 2000' '" + db + "' \"" + sql + "\" 2>&1";
  return WEXITSTATUS(system(cmd.c_str()));
}

// Runs a query with the sqlite3 tool; its output, trimmed.
std::string sqlite3_query(const std::string& db, const std::string& sql) {
  FILE* p = popen(("sqlite3 -cmd '.timeout 5000' '" + db + "' \"" + sql + "\" 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// An ISO 8601 UTC time `days` from now.
std::string in_days(int days) {
  time_t t = time(nullptr) + days * 86400;
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:00Z", gmtime(&t));
  return buf;
}

// A new showtime through the API; its id.
long long add_showtime(int port, const std::string& movie, int seats, int days = 1) {
  Response r = http_post(port, "/cinema/showtimes", "movie=" + movie + "&hall=H&starts_at=" + in_days(days) + "&seats=" +
                                                       std::to_string(seats), AUTH);
  REQUIRE(r.status == 201);
  return json_int(r.body, "id");
}

std::string book_request(long long showtime, const std::string& form) {
  return post_request("/cinema/showtimes/" + std::to_string(showtime) + "/book", form);
}

std::string patch_request(long long showtime, const std::string& form, const std::string& extra = AUTH) {
  return "PATCH /cinema/showtimes/" + std::to_string(showtime) + " HTTP/1.1\r\nHost: t\r\n" + extra +
         "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " + std::to_string(form.size()) + "\r\n\r\n" + form;
}

Response one(int port, const std::string& wire) {
  Client c(port);
  c.send(wire);
  return c.response(5000);
}

// With --redis: the arguments, and Redis as redis-cli sees it.

std::vector<std::string> redis_args(const RedisProcess& redis, std::vector<std::string> more = {}) {
  std::vector<std::string> args = {"--quiet", "--redis", redis.socket, "--admin-token", TOKEN};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// Waits until the server is connected to Redis and has loaded its scripts.
void wait_redis_ready(int port) {
  REQUIRE(wait_for([&] { return http_get(port, "/cinema/showtimes").status == 200; }, 5000));
}

// Runs redis-cli on `redis` with `args` (each passed as one word); its output, trimmed.
std::string redis_cli(const RedisProcess& redis, const std::vector<std::string>& args) {
  std::string cmd = "redis-cli -s '" + redis.socket + "'";
  for (const std::string& a : args) cmd += " '" + a + "'";
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// A subscriber to the board on `port`, its first event read.
std::unique_ptr<Client> board_subscriber(int port) {
  auto sub = std::make_unique<Client>(port);
  sub->send(get_request("/cinema/events"));
  REQUIRE(sse_next(*sub, [](const std::string& d) { return d.starts_with("{\"showtimes\":[{"); }, 3000));
  return sub;
}

std::string showtime_row(long long id, const std::string& movie) {
  return "\"id\":" + std::to_string(id) + ",\"movie\":\"" + movie + "\"";
}

// 300 clients, each on its own connection to one of `ports` in turn, book
// one seat each of 100-seat showtime `id` at once; checks what every
// answer must be (200 with a distinct booking and seats_left, or the exact
// sold-out 409) and that exactly 100 got a seat.
void book_300_of_100(const std::vector<int>& ports, long long id) {
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t u = 0; u < 300; u++) clients.push_back(std::make_unique<Client>(ports[u % ports.size()]));
  for (size_t u = 0; u < 300; u++) clients[u]->send(book_request(id, "user=b" + std::to_string(u)));
  int ok = 0, full = 0, other = 0;
  std::set<long long> left_seen, bookings;
  for (auto& c : clients) {
    Response r = c->response(5000);
    if (r.status == 200) {
      ok++;
      CHECK(json_int(r.body, "showtime") == id);
      CHECK(json_int(r.body, "seats") == 1);
      left_seen.insert(json_int(r.body, "seats_left"));
      bookings.insert(json_int(r.body, "booking"));
    } else if (r.status == 409) {
      full++;
      CHECK(r.body == "{\"ok\":false,\"message\":\"showtime " + std::to_string(id) + " is sold out\",\"seats_left\":0}");
    } else {
      other++;
    }
  }
  CHECK(ok == 100);
  CHECK(full == 200);
  CHECK(other == 0);
  CHECK(left_seen.size() == 100);  // each success saw a different count left: 99 down to 0
  CHECK(bookings.size() == 100);
}

}  // namespace

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
  CHECK(made.changed);
  CHECK(app.mode->list(req).wait == Wait::Commit);  // a read now would see the uncommitted row
  REQUIRE(store.commit());
  long long id = json_int(made.body, "id");
  CHECK(app.mode->list(req).body.find("\"movie\":\"M\"") != std::string::npos);
  std::string path = "/cinema/showtimes/000" + std::to_string(id);
  http.path = path;
  CHECK(app.erase(req).body == "{\"ok\":true,\"deleted\":" + std::to_string(id) + "}");
  REQUIRE(store.commit());
  CHECK(app.erase(req).status == 404);
}

// ---- Booking -------------------------------------------------------------------------

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
  CHECK(first.changed);
  form = "user=u2&seats=2";
  http.body = form;
  CHECK(app.book(req).wait == Wait::Commit);  // "1 left" read this turn's uncommitted booking: it waits
  REQUIRE(store.commit());
  Answer second = app.book(req);
  CHECK(second.status == 409);
  CHECK(json_int(second.body, "seats_left") == 1);
  CHECK(app.counts.booked == 1);
  first.undo();
  CHECK(app.counts.booked == 0);
}


// ---- In Redis (--redis) -----------------------------------------------------------------
//
// The same board with its state in a redis-server of the test's own
// (RedisProcess), most often with two processes in front of it.

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

}  // TEST_SUITE
