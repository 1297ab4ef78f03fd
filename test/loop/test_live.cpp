// GET /live through the real binary: many streams on one connection, each
// event named for its stream with the bytes its own route sends, resume by
// one id across the set (and across a change of set), refusals, and 2,000
// followers of every stream with a stalled one among them.
#include <doctest/doctest.h>

#include <map>

#include "../harness.hpp"

namespace {

const std::string ALL = "/live?stream=clock&stream=redpacket&stream=poll&stream=cinema";

std::vector<std::string> args() {
  return {"--quiet", "--vote-interval", "60", "--poll-options", "Red,Blue", "--clock-interval", "60"};
}

// Reads events until one of each name in `names` has come; returns the
// last of each, by name. Fails the test if they do not come in time.
std::map<std::string, SseEvent> first_of_each(Client& c, std::vector<std::string> names, int timeout_ms = 3000) {
  std::map<std::string, SseEvent> got;
  bool all = sse_next(c, [&](const SseEvent& e) {
    got[e.event] = e;
    return std::all_of(names.begin(), names.end(), [&](auto& n) { return got.count(n) > 0; });
  }, timeout_ms);
  CHECK_MESSAGE(all, "had " << got.size() << " of " << names.size());
  return got;
}

// The first event of a stream on its own route.
SseEvent own_route_first(int port, std::string_view path) {
  Client c(port);
  open_stream(c, path);
  SseEvent e;
  CHECK(sse_next(c, [](const SseEvent&) { return true; }, 3000, &e));
  return e;
}

// Reads every event that has come; returns the last poll total among them
// (or `total`, the one seen before, if none).
long long poll_total_read(Client& c, long long total) {
  sse_next(c, [&](const SseEvent& e) {
    if (e.event == "poll") total = json_int(e.data, "total");
    return false;
  }, 0);
  return total;
}

}  // namespace

TEST_SUITE("server") {

TEST_CASE("/live: every stream of the set on one connection, each event named, its data as its own route's") {
  ServerProcess srv(args());
  Client live(srv.port);
  Response head = open_stream(live, ALL);
  CHECK(head.status == 200);
  CHECK(head.header("content-type") == "text/event-stream");
  CHECK(live.buf.starts_with("retry: 3000\n\n"));
  auto first = first_of_each(live, {"clock", "redpacket", "poll", "cinema"});
  CHECK(first["clock"].id.empty());  // the time now, for this connection alone
  CHECK(first["clock"].data.find("\"epoch_ms\":") != std::string::npos);
  CHECK(first["redpacket"].data == own_route_first(srv.port, "/redpacket/events").data);
  CHECK(first["poll"].data == own_route_first(srv.port, "/vote/result-sse").data);
  CHECK(first["cinema"].data == own_route_first(srv.port, "/cinema/events").data);
  // The last event's id names every stream with a state of its own.
  CHECK(first["cinema"].id.find("redpacket=") == 0);
  CHECK(first["cinema"].id.find(",poll=") != std::string::npos);
  CHECK(first["cinema"].id.find(",cinema=") != std::string::npos);
  CHECK(metric(srv.port, "sse_live_subscribers") == 1);
  CHECK(metric(srv.port, "sse_subscribers{stream=\"poll\"}") == 1);

  // Changes reach it in order, with the same bytes as on the stream's own route.
  Client own(srv.port);
  open_stream(own, "/vote/result-sse");
  for (int v = 1; v <= 3; v++) {
    CAPTURE(v);
    REQUIRE(http_post(srv.port, "/vote", "voter=v" + std::to_string(v) + "&option=Red").status == 200);
    SseEvent on_live, on_own;
    REQUIRE(sse_next(live, [&](const SseEvent& e) { return e.event == "poll" && json_int(e.data, "total") == v; }, 3000, &on_live));
    REQUIRE(sse_next(own, [&](const SseEvent& e) { return json_int(e.data, "total") == v; }, 3000, &on_own));
    CHECK(on_live.data == on_own.data);
    CHECK(on_live.id.find("poll=" + on_own.id) != std::string::npos);  // the poll's place in the id is its own route's id
  }
}

TEST_CASE("/live resume: a reconnect with the id it kept gets exactly the streams that changed, even for another set") {
  // (The red packets' stream repeats itself every second, so it is left out
  // where the test waits to see that nothing comes.)
  ServerProcess srv(args());
  const std::string BOTH = "/live?stream=poll&stream=cinema";
  std::string last;
  {
    Client live(srv.port);
    open_stream(live, BOTH);
    last = first_of_each(live, {"poll", "cinema"})["cinema"].id;
  }
  // Nothing changed: nothing is sent, by header or by query.
  for (bool by_header : {true, false}) {
    CAPTURE(by_header);
    Client again(srv.port);
    open_stream(again, by_header ? BOTH : BOTH + "&lastEventId=" + last, by_header ? "Last-Event-ID: " + last + "\r\n" : "");
    CHECK(again.read_until("retry: 3000\n\n"));
    CHECK_FALSE(again.read_until("data:", 300));
  }
  // The poll changes: exactly it is sent, once.
  REQUIRE(http_post(srv.port, "/vote", "voter=ann&option=Blue").status == 200);
  Client again(srv.port);
  open_stream(again, BOTH, "Last-Event-ID: " + last + "\r\n");
  SseEvent e;
  REQUIRE(sse_next(again, [](const SseEvent&) { return true; }, 3000, &e));
  CHECK(e.event == "poll");
  CHECK(json_int(e.data, "total") == 1);
  CHECK_FALSE(again.read_until("data:", 300));
  // The id it now holds, for a set without the cinema: nothing to send.
  Client fewer(srv.port);
  open_stream(fewer, "/live?stream=poll", "Last-Event-ID: " + e.id + "\r\n");
  CHECK_FALSE(fewer.read_until("data:", 300));
  // For a set with a stream the id does not name: that one only (the clock's time now).
  Client more(srv.port);
  open_stream(more, "/live?stream=poll&stream=cinema&stream=clock", "Last-Event-ID: " + e.id + "\r\n");
  SseEvent clock;
  REQUIRE(sse_next(more, [](const SseEvent&) { return true; }, 3000, &clock));
  CHECK(clock.event == "clock");
  CHECK_FALSE(more.read_until("data:", 300));
  // An id that is not one gets every stream.
  Client garbled(srv.port);
  open_stream(garbled, BOTH, "Last-Event-ID: poll=1;cinema=2\r\n");
  first_of_each(garbled, {"poll", "cinema"});
}

TEST_CASE("/live sends a snapshot when it changes, not the repeats its own route makes of an unchanged one") {
  ServerProcess srv(args());
  Client own(srv.port), live(srv.port);
  open_stream(own, "/redpacket/events");
  open_stream(live, "/live?stream=redpacket");
  SseEvent first, again;
  REQUIRE(sse_next(own, [](const SseEvent&) { return true; }, 3000, &first));
  REQUIRE(sse_next(live, [](const SseEvent&) { return true; }, 3000));
  REQUIRE(sse_next(own, [](const SseEvent&) { return true; }, 3000, &again));  // its period: once a second
  CHECK(again.id == first.id);
  CHECK_FALSE(live.read_until("data:", 300));
  REQUIRE(http_post(srv.port, "/redpacket/grab", "user=ann").status == 200);
  SseEvent changed;
  REQUIRE(sse_next(live, [](const SseEvent&) { return true; }, 3000, &changed));
  CHECK(changed.data.find("\"remaining\":99") != std::string::npos);
}

TEST_CASE("/live with and without --redis: the same events, and the same resume") {
  auto ready = [](int port) {
    REQUIRE(wait_for([&] { return http_get(port, "/vote/me", "Cookie: uid=ready-check\r\n").status == 200; }, 5000));
  };
  same_in_both_modes({"--vote-interval", "60", "--poll-options", "Red,Blue", "--clock-interval", "60"}, ready, [](int port) {
    std::vector<std::string> lines;
    const std::string SET = "/live?stream=redpacket&stream=poll&stream=cinema";
    Client live(port);
    open_stream(live, SET);
    auto first = first_of_each(live, {"redpacket", "poll", "cinema"});
    lines.push_back("redpacket " + first["redpacket"].data);
    lines.push_back("poll " + first["poll"].data);
    lines.push_back(std::string("cinema ") + (first["cinema"].data.starts_with("{\"showtimes\":[") ? "a board" : first["cinema"].data));
    REQUIRE(http_post(port, "/vote", "voter=ann&option=Red").status == 200);
    SseEvent voted;
    CHECK(sse_next(live, [](const SseEvent& e) { return e.event == "poll" && json_int(e.data, "total") == 1; }, 3000, &voted));
    lines.push_back("poll " + voted.data);
    Client again(port);  // with the id it holds: nothing to send
    open_stream(again, "/live?stream=poll&stream=cinema", "Last-Event-ID: " + voted.id + "\r\n");
    lines.push_back(again.read_until("data:", 300) ? "resent" : "nothing resent");
    return lines;
  });
}

TEST_CASE("/live refuses a set it cannot follow with 400 and says why; the server goes on") {
  ServerProcess srv(args());
  struct Bad {
    std::string query, says;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"", "name the streams to follow"},
           {"?lastEventId=1", "name the streams to follow"},
           {"?stream=", "no stream is named ''"},
           {"?stream=nope", "no stream is named 'nope' (there are clock, redpacket, poll, cinema)"},
           {"?stream=poll&stream=clock&stream=poll", "the stream 'poll' is named twice"},
           {"?stream=clock&stream=redpacket&stream=poll&stream=cinema&stream=clock", "more streams named than there are"},
           {"?stream=po%zzll", "broken %-escape"},
       }) {
    CAPTURE(bad.query);
    Response r = http_get(srv.port, "/live" + bad.query);
    CHECK(r.status == 400);
    CHECK(r.body.find(bad.says) != std::string::npos);
  }
  CHECK(http_post(srv.port, "/live?stream=poll", "").status == 405);
  CHECK(http_get(srv.port, "/healthz").status == 200);
  CHECK(metric(srv.port, "sse_live_subscribers") == 0);
}

TEST_CASE("2,000 followers of all four streams, one of them stalled: bounded, and the others see every change") {
  ServerProcess srv({"--quiet", "--vote-interval", "60", "--poll-options", "Red,Blue", "--clock-interval", "0.05",
                     "--sse-max-pending", "4096", "--max-voters", "100000"});
  REQUIRE(raise_fd_limit(2100));
  Client stuck(srv.port, 2048);  // a small receive window, never read
  open_stream(stuck, ALL);
  std::vector<std::unique_ptr<Client>> followers;
  for (int k = 0; k < 2000; k++) {
    followers.push_back(std::make_unique<Client>(srv.port));
    followers.back()->send(get_request(ALL));
  }
  REQUIRE(wait_for([&] { return metric(srv.port, "sse_live_subscribers") == 2001; }, 10000));
  // The newest event of each stream, as a follower reads them: what the
  // stalled one may hold, with at most one event partly sent.
  std::map<std::string, size_t> newest;
  std::vector<long long> totals(followers.size(), 0);
  // Votes and grabs while the clock ticks 20 times a second, until the
  // stalled one holds bytes the kernel would not take; then 200 more.
  int64_t end = now_ms() + 15000;
  int votes = 0, after_stall = 0;
  double most_queued = 0;
  while (now_ms() < end && votes < 30000 && after_stall < 200) {
    REQUIRE(http_post(srv.port, "/vote", "voter=f" + std::to_string(++votes) + "&option=Blue").status == 200);
    http_post(srv.port, "/redpacket/grab", "user=f" + std::to_string(votes));
    if (most_queued > 0 || votes % 5 == 0) most_queued = std::max(most_queued, metric(srv.port, "sse_output_queued_bytes"));
    after_stall += most_queued > 0;
    for (size_t k = size_t(votes % 10); k < followers.size(); k += 10) totals[k] = poll_total_read(*followers[k], totals[k]);
  }
  Client late(srv.port);  // one event of each stream, as it is now
  open_stream(late, ALL);
  for (auto& [name, e] : first_of_each(late, {"clock", "redpacket", "poll", "cinema"}))
    newest[name] = e.data.size() + e.id.size() + e.event.size() + 24;  // the data, id and event lines
  size_t one_of_each = 0;
  for (auto& [name, bytes] : newest) one_of_each += bytes;
  MESSAGE("votes: " << votes << "; the most queued: " << most_queued << " bytes; one event of each stream: " << one_of_each << " bytes");
  CHECK(most_queued > 0);  // it did stall
  CHECK(most_queued <= 2 * double(one_of_each));  // the newest of each stream, not a backlog
  CHECK(metric(srv.port, "sse_slow_consumers_dropped_total") == 0);
  // Every follower reaches the last vote's tally.
  for (size_t k = 0; k < followers.size(); k += 97) {
    CAPTURE(k);
    CHECK((totals[k] == votes || sse_next(*followers[k], [&](const SseEvent& e) { return e.event == "poll" && json_int(e.data, "total") == votes; }, 5000)));
  }
  // Once it reads, the stalled one is sent the newest tally: nothing lost, only skipped.
  CHECK(sse_next(stuck, [&](const SseEvent& e) { return e.event == "poll" && json_int(e.data, "total") == votes; }, 5000));
  CHECK(http_get(srv.port, "/healthz").status == 200);
}

}  // TEST_SUITE
