// Streams through the real binary: the response head, retry and ids,
// resume without a resend, ids that never repeat across restarts, and
// subscribers that stop reading.
#include <doctest/doctest.h>

#include <set>

#include "../harness.hpp"

TEST_SUITE("server") {

TEST_CASE("/sse: headers, retry, then events with increasing ids") {
  ServerProcess srv({"--quiet", "--clock-interval", "0.1"});
  Client c(srv.port);
  Response head = open_stream(c);
  CHECK(head.status == 200);
  CHECK(head.header("content-type") == "text/event-stream");
  CHECK(head.header("cache-control") == "no-cache");
  CHECK(head.header("x-accel-buffering") == "no");
  CHECK(head.header("connection") == "keep-alive");
  CHECK(head.header("content-length") == std::nullopt);
  CHECK(head.header("content-encoding") == std::nullopt);
  CHECK(wait_for([&] { c.fill(50); return event_ids(c.buf).size() >= 3; }, 3000));
  CHECK(c.buf.starts_with("retry: 3000\n\n"));
  auto ids = event_ids(c.buf);
  for (size_t i = 1; i < ids.size(); i++) CHECK(ids[i] > ids[i - 1]);
  // Each event's data is the server time as JSON.
  size_t data = c.buf.find("data: {\"time\":\"");
  REQUIRE(data != std::string::npos);
  CHECK(c.buf.substr(data + 15, 2) == "20");
  CHECK(c.buf[data + 38] == 'Z');
  CHECK(c.buf.find("\"epoch_ms\":", data) != std::string::npos);
  CHECK(metric(srv.port, "sse_subscribers{stream=\"clock\"}") == 1);
}

TEST_CASE("/sse over HTTP/1.0 or with Connection: close still streams") {
  ServerProcess srv({"--quiet", "--clock-interval", "0.05"});
  for (const char* request : {"GET /sse HTTP/1.0\r\n\r\n", "GET /sse HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"}) {
    CAPTURE(request);
    Client c(srv.port);
    c.send(request);
    CHECK(wait_for([&] { c.fill(50); return event_ids(c.buf).size() >= 3; }, 3000));
    CHECK(c.buf.find("Connection: keep-alive") == std::string::npos);
    CHECK_FALSE(c.eof);
  }
}

TEST_CASE("a client that has the current snapshot is not sent it again") {
  ServerProcess srv({"--quiet", "--vote-interval", "60"});
  Client first(srv.port);
  open_stream(first, "/vote/result-sse");
  SseEvent e;
  REQUIRE(sse_next(first, [](const SseEvent& ev) { return !ev.id.empty(); }, 2000, &e));
  const std::string& id = e.id;

  Client again(srv.port);
  open_stream(again, "/vote/result-sse", "Last-Event-ID: " + id + "\r\n");
  CHECK(again.read_until("retry: 3000\n\n"));
  CHECK_FALSE(again.read_until("data:", 300));

  Client by_query(srv.port);
  open_stream(by_query, "/vote/result-sse?lastEventId=" + id);
  CHECK_FALSE(by_query.read_until("data:", 300));

  // A browser sends its cookie too: the query ends where the target does,
  // not at the end of the header values kept after it.
  Client with_cookie(srv.port);
  open_stream(with_cookie, "/vote/result-sse?lastEventId=" + id, "Cookie: uid=abc\r\n");
  CHECK(with_cookie.read_until("retry: 3000\n\n"));
  CHECK_FALSE(with_cookie.read_until("data:", 300));

  for (const std::string& bad : std::vector<std::string>{"x" + id, id + "0", "-1", std::string(40, '9'), "1"}) {
    CAPTURE(bad);
    Client other(srv.port);
    open_stream(other, "/vote/result-sse", "Last-Event-ID: " + bad + "\r\n");
    CHECK(other.read_until("id: " + id + "\n"));  // an unknown id gets the snapshot
  }
}

TEST_CASE("/sse: a new subscriber gets the current time at once, not the last tick") {
  ServerProcess srv({"--quiet", "--clock-interval", "60"});
  Client early(srv.port);
  open_stream(early);
  SseEvent tick;
  REQUIRE(sse_next(early, [](const SseEvent&) { return true; }, 2000, &tick));
  long long tick_ms = json_int(tick.data, "epoch_ms");
  auto wall_ms = [] { return (long long)std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count(); };
  REQUIRE(wait_for([&] { return wall_ms() > tick_ms + 1500; }, 3000));  // the last tick is 1.5 s old now
  Client late(srv.port);
  long long asked = wall_ms();
  open_stream(late);
  SseEvent now;
  REQUIRE(sse_next(late, [](const SseEvent&) { return true; }, 1000, &now));
  CHECK(json_int(now.data, "epoch_ms") >= asked - 5);
  CHECK(json_int(now.data, "epoch_ms") <= wall_ms() + 5);
  CHECK(now.id.empty());  // made for this subscriber alone: no id of the stream's
}

TEST_CASE("event ids are never reused across restarts, even when snapshots outpace the clock") {
  TempDir dir;
  std::vector<std::string> args = {"--quiet", "--db", dir.file("ids.db"), "--push-gap-ms", "0", "--redpacket-count", "5000",
                                   "--redpacket-total", "500000"};
  std::set<uint64_t> seen;
  {
    ServerProcess srv(args);
    Client sub(srv.port);
    open_stream(sub, "/redpacket/events");
    Client grabber(srv.port);
    // With no push gap every grab is its own broadcast: many snapshots a millisecond.
    for (int i = 0; i < 3000; i++) {
      grabber.send(post_request("/redpacket/grab", "user=u" + std::to_string(i)));
      REQUIRE(grabber.response().status == 200);
      while (sub.fill(0)) {
      }
    }
    REQUIRE(sub.read_until("\"remaining\":2000,", 2000));
    for (uint64_t id : event_ids(sub.buf)) seen.insert(id);
    CHECK(srv.stop(SIGKILL) == 128 + SIGKILL);
  }
  REQUIRE(!seen.empty());
  ServerProcess again(args);
  Client sub(again.port);
  open_stream(sub, "/redpacket/events", "Last-Event-ID: " + std::to_string(*seen.rbegin()) + "\r\n");
  SseEvent e;
  REQUIRE(sse_next(sub, [](const SseEvent&) { return true; }, 2000, &e));  // an id from the last run is not this snapshot's
  CHECK(std::stoull(e.id) > *seen.rbegin());
  MESSAGE("run 1 ended at id " << *seen.rbegin() << "; run 2 began at " << e.id);
}

TEST_CASE("--db :memory: never repeats an event id: a browser back after a restart gets the new state") {
  // Nothing is kept, so no run number can be: every start would count its
  // snapshots from the same id, and a browser's Last-Event-ID from before
  // the restart would name a snapshot of the new run, skipping it.
  std::vector<std::string> args = {"--quiet", "--db", ":memory:"};
  std::string last;
  {
    ServerProcess srv(args);
    Client sub(srv.port);
    open_stream(sub, "/redpacket/events");
    SseEvent e;
    REQUIRE(sse_next(sub, [](const SseEvent&) { return true; }, 2000, &e));
    last = e.id;
  }
  ServerProcess again(args);
  Client sub(again.port);
  open_stream(sub, "/redpacket/events", "Last-Event-ID: " + last + "\r\n");
  SseEvent e;
  REQUIRE(sse_next(sub, [](const SseEvent&) { return true; }, 2000, &e));  // sent at once: the old id is not the new snapshot's
  CHECK(std::stoull(e.id) > std::stoull(last));
  MESSAGE("run 1 sent id " << last << "; run 2 began at " << e.id);
}

TEST_CASE("a subscriber that never reads is dropped at the cap; the others keep receiving") {
  ServerProcess srv({"--quiet", "--clock-interval", "0.002", "--sse-max-pending", "64"});
  Client reader(srv.port);
  open_stream(reader);
  Client stuck(srv.port, 2048);  // a small receive window: the kernel fills up fast
  open_stream(stuck);
  CHECK(wait_for([&] {
    while (reader.fill(0)) {}
    reader.buf.clear();  // keep reading, keep nothing
    return metric(srv.port, "sse_slow_consumers_dropped_total") >= 1;
  }, 20000));
  reader.buf.clear();
  REQUIRE(reader.read_until("id: ", 2000));
  REQUIRE(reader.read_until("}\n\n", 2000));
  uint64_t id1 = event_ids("\n" + reader.buf.substr(reader.buf.find("id: "))).front();
  reader.buf.clear();
  REQUIRE(reader.read_until("}\n\n", 2000));
  REQUIRE(reader.read_until("id: ", 2000));
  CHECK(event_ids("\n" + reader.buf.substr(reader.buf.find("id: "))).front() > id1);
  CHECK(stuck.closed_within(5000));  // all it had, then the end
  CHECK(metric(srv.port, "sse_subscribers{stream=\"clock\"}") == 1);
}

TEST_CASE("a stalled subscriber below the cap holds at most the newest snapshot") {
  ServerProcess srv({"--quiet", "--clock-interval", "0.002", "--sse-max-pending", "4096"});
  Client stuck(srv.port, 2048);
  open_stream(stuck);
  REQUIRE(wait_for([&] { return metric(srv.port, "sse_output_queued_bytes") > 0; }, 20000));
  // Hundreds of events a second keep coming; the queue stays one partial
  // event plus the newest snapshot, never a backlog.
  double most = 0;
  for (int i = 0; i < 20; i++) {
    most = std::max(most, metric(srv.port, "sse_output_queued_bytes"));
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  CHECK(most > 0);
  CHECK(most <= 2 * 100);  // a clock event is about 90 bytes
  CHECK(metric(srv.port, "sse_slow_consumers_dropped_total") == 0);
}

}  // TEST_SUITE
