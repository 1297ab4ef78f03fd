// test/apps/cinema_client.hpp — what the cinema tests share: the admin
// token, requests for the API, the sqlite3 and redis-cli tools, a board
// subscriber, and the 300-clients-for-100-seats check.
#pragma once
#include <doctest/doctest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../harness.hpp"

inline const std::string TOKEN = "cinema-admin-token";
inline const std::string AUTH = "Authorization: Bearer " + TOKEN + "\r\n";


// Runs the sqlite3 command-line tool on `db`; returns its exit status.
inline int sqlite3_tool(const std::string& db, const std::string& sql) {
  std::string cmd = "sqlite3 -cmd '.timeout 2000' '" + db + "' \"" + sql + "\" 2>&1";
  return WEXITSTATUS(system(cmd.c_str()));
}

// Runs a query with the sqlite3 tool; its output, trimmed.
inline std::string sqlite3_query(const std::string& db, const std::string& sql) {
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
inline std::string in_days(int days) {
  time_t t = time(nullptr) + days * 86400;
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:00Z", gmtime(&t));
  return buf;
}

// A new showtime through the API; its id.
inline long long add_showtime(int port, const std::string& movie, int seats, int days = 1) {
  Response r = http_post(port, "/cinema/showtimes", "movie=" + movie + "&hall=H&starts_at=" + in_days(days) + "&seats=" +
                                                       std::to_string(seats), AUTH);
  REQUIRE(r.status == 201);
  return json_int(r.body, "id");
}

inline std::string book_request(long long showtime, const std::string& form) {
  return post_request("/cinema/showtimes/" + std::to_string(showtime) + "/book", form);
}

inline std::string patch_request(long long showtime, const std::string& form, const std::string& extra = AUTH) {
  return "PATCH /cinema/showtimes/" + std::to_string(showtime) + " HTTP/1.1\r\nHost: t\r\n" + extra +
         "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " + std::to_string(form.size()) + "\r\n\r\n" + form;
}

inline Response one(int port, const std::string& wire) {
  Client c(port);
  c.send(wire);
  return c.response(5000);
}

// With --redis: the arguments, and Redis as redis-cli sees it.

inline std::vector<std::string> redis_args(const RedisProcess& redis, std::vector<std::string> more = {}) {
  std::vector<std::string> args = {"--quiet", "--redis", redis.socket, "--admin-token", TOKEN};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// Waits until the server is connected to Redis and has loaded its scripts.
inline void wait_redis_ready(int port) {
  REQUIRE(wait_for([&] { return http_get(port, "/cinema/showtimes").status == 200; }, 5000));
}

// Runs redis-cli on `redis` with `args` (each passed as one word); its output, trimmed.
inline std::string redis_cli(const RedisProcess& redis, const std::vector<std::string>& args) {
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
inline std::unique_ptr<Client> board_subscriber(int port) {
  auto sub = std::make_unique<Client>(port);
  sub->send(get_request("/cinema/events"));
  REQUIRE(sse_next(*sub, [](const std::string& d) { return d.starts_with("{\"showtimes\":[{"); }, 3000));
  return sub;
}

inline std::string showtime_row(long long id, const std::string& movie) {
  return "\"id\":" + std::to_string(id) + ",\"movie\":\"" + movie + "\"";
}

// 300 clients, each on its own connection to one of `ports` in turn, book
// one seat each of 100-seat showtime `id` at once; checks what every
// answer must be (200 with a distinct booking and seats_left, or the exact
// sold-out 409) and that exactly 100 got a seat.
inline void book_300_of_100(const std::vector<int>& ports, long long id) {
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
