// sse.hpp: the exact bytes of each event shape, ids from untrusted input,
// subscriber bookkeeping, and when a stream is due.
#include <doctest/doctest.h>

#include <string>

#include "../../sse.hpp"

namespace {
std::string event(std::string_view id, std::string_view name, std::string_view data) {
  std::string out;
  sse_event(out, id, name, data);
  return out;
}
}  // namespace

TEST_CASE("event framing: exact bytes") {
  CHECK(event("", "", "") == "data: \n\n");
  CHECK(event("", "", "hello") == "data: hello\n\n");
  CHECK(event("7", "", "{\"a\":1}") == "id: 7\ndata: {\"a\":1}\n\n");
  CHECK(event("7", "tally", "x") == "id: 7\nevent: tally\ndata: x\n\n");
  CHECK(event("", "", "a\nb") == "data: a\ndata: b\n\n");
  CHECK(event("", "", "a\r\nb") == "data: a\ndata: b\n\n");
  CHECK(event("", "", "a\rb") == "data: a\ndata: b\n\n");
  CHECK(event("", "", "a\n\nb") == "data: a\ndata: \ndata: b\n\n");
  CHECK(event("", "", "a\r\rb") == "data: a\ndata: \ndata: b\n\n");
  CHECK(event("", "", "a\n") == "data: a\ndata: \n\n");  // the browser gets "a\n" back
  CHECK(event("", "", "\r\n") == "data: \ndata: \n\n");
}

TEST_CASE("comments, retry and the heartbeat") {
  std::string out;
  sse_comment(out, "hi");
  CHECK(out == ": hi\n\n");
  out.clear();
  sse_comment(out, "two\nlines");
  CHECK(out == ": two\n: lines\n\n");
  out.clear();
  sse_retry(out, 3000);
  CHECK(out == "retry: 3000\n\n");
  CHECK(SSE_HEARTBEAT == ": ping\n\n");
}

TEST_CASE("Last-Event-ID is parsed strictly") {
  CHECK(sse_parse_id("0") == uint64_t(0));
  CHECK(sse_parse_id("1795314705617") == uint64_t(1795314705617));
  CHECK(sse_parse_id("9999999999999999999") == uint64_t(9999999999999999999u));
  CHECK_FALSE(sse_parse_id(""));
  CHECK_FALSE(sse_parse_id("-1"));
  CHECK_FALSE(sse_parse_id("+1"));
  CHECK_FALSE(sse_parse_id(" 1"));
  CHECK_FALSE(sse_parse_id("1a"));
  CHECK_FALSE(sse_parse_id("12345678901234567890"));  // 20 digits: could overflow
}

TEST_CASE("snapshots: framed once, under the id given") {
  SseStream s;
  sse_set_snapshot(s, "{\"n\":1}", 5000);
  CHECK(s.version == 5000);
  CHECK(s.frame == "id: 5000\ndata: {\"n\":1}\n\n");
  sse_set_snapshot(s, "{\"n\":2}", 5001);
  CHECK(s.frame == "id: 5001\ndata: {\"n\":2}\n\n");
}

TEST_CASE("ids: the run in the high bits, a count in the low ones; a later run's ids are all larger") {
  SseIds first(1), second(2);
  CHECK(first.take() == (uint64_t(1) << 43) + 1);
  CHECK(first.take() == (uint64_t(1) << 43) + 2);
  CHECK(second.take() > first.last + 1'000'000);
  SseIds last(SseIds::MAX_RUN);
  for (int i = 0; i < 3; i++) last.take();
  CHECK(sse_parse_id(std::to_string(last.last)) == last.last);  // the largest ids still parse back
}

TEST_CASE("a new subscriber gets retry and the snapshot, unless it has it") {
  SseStream s;
  std::string out;
  sse_open(out, s, std::nullopt, 3000);
  CHECK(out == "retry: 3000\n\n");  // nothing published yet
  sse_set_snapshot(s, "x", 100);
  out.clear();
  sse_open(out, s, std::nullopt, 3000);
  CHECK(out == "retry: 3000\n\nid: 100\ndata: x\n\n");
  out.clear();
  sse_open(out, s, uint64_t(100), 3000);
  CHECK(out == "retry: 3000\n\n");
  out.clear();
  sse_open(out, s, uint64_t(99), 3000);
  CHECK(out == "retry: 3000\n\nid: 100\ndata: x\n\n");
}

TEST_CASE("subscribe and unsubscribe keep positions right") {
  SseStream s;
  CHECK(sse_subscribe(s.subscribers, 10) == 0);
  CHECK(sse_subscribe(s.subscribers, 11) == 1);
  CHECK(sse_subscribe(s.subscribers, 12) == 2);
  CHECK(sse_unsubscribe(s.subscribers, 0) == 12);  // 12 moved into position 0
  CHECK(s.subscribers == std::vector<int>{12, 11});
  CHECK(sse_unsubscribe(s.subscribers, 1) == -1);  // the last one: nothing moved
  CHECK(s.subscribers == std::vector<int>{12});
  CHECK(sse_unsubscribe(s.subscribers, 0) == -1);
  CHECK(s.subscribers.empty());
}

TEST_CASE("broadcast hands the same bytes to every subscriber") {
  SseStream s;
  for (int fd : {3, 4, 5}) sse_subscribe(s.subscribers, fd);
  std::vector<std::pair<int, const char*>> sent;
  std::string bytes = "data: x\n\n";
  sse_broadcast(s.subscribers, bytes, [&](int fd, std::string_view b) { sent.push_back({fd, b.data()}); });
  REQUIRE(sent.size() == 3);
  for (auto& [fd, ptr] : sent) CHECK(ptr == bytes.data());  // not a copy
}

TEST_CASE("due: leading edge, trailing edge, period, heartbeat") {
  const int64_t gap = 100, beat = 15000;
  SseStream s;
  s.last_send_ms = 0;
  CHECK(sse_due(s, 10, gap, beat) == SseDue::Nothing);
  s.dirty = true;  // an isolated change goes out at once
  CHECK(sse_due(s, 10, gap, beat) == SseDue::Snapshot);
  sse_sent(s, 10, true);
  CHECK_FALSE(s.dirty);
  s.dirty = true;  // a second change within the gap waits for its end
  CHECK(sse_due(s, 50, gap, beat) == SseDue::Nothing);
  CHECK(sse_next_due_ms(s, gap, beat) == 110);
  CHECK(sse_due(s, 110, gap, beat) == SseDue::Snapshot);
  sse_sent(s, 110, true);
  CHECK(sse_next_due_ms(s, gap, beat) == 110 + beat);
  CHECK(sse_due(s, 110 + beat, gap, beat) == SseDue::Heartbeat);
  sse_sent(s, 110 + beat, false);
  CHECK(sse_next_due_ms(s, gap, beat) == 110 + 2 * beat);

  SseStream clock;
  clock.period_ms = 3000;
  clock.last_send_ms = 0;
  CHECK(sse_due(clock, 0, gap, beat) == SseDue::Snapshot);  // the first one at start
  sse_sent(clock, 0, true);
  CHECK(sse_next_due_ms(clock, gap, beat) == 3000);
  CHECK(sse_due(clock, 2999, gap, beat) == SseDue::Nothing);
  CHECK(sse_due(clock, 3000, gap, beat) == SseDue::Snapshot);
}

TEST_CASE("a skipped snapshot restarts the period and sends nothing") {
  SseStream s;
  s.period_ms = 5000;
  s.last_send_ms = 0;
  sse_sent(s, 0, true);
  CHECK(sse_due(s, 5000, 100, 15000) == SseDue::Snapshot);
  sse_skipped(s, 5000);
  CHECK(sse_due(s, 5000, 100, 15000) == SseDue::Nothing);
  CHECK(sse_next_due_ms(s, 100, 15000) == 10000);
  CHECK(s.last_send_ms == 0);  // still quiet since 0: the heartbeat stays due at 15 s
  CHECK(sse_due(s, 15000, 100, 15000) == SseDue::Snapshot);  // the period comes first...
  sse_skipped(s, 15000);
  CHECK(sse_due(s, 15000, 100, 15000) == SseDue::Heartbeat);  // ...then the quiet stream's heartbeat
}

namespace {
// A set of three streams, as /live?stream=clock&stream=poll&stream=cinema
// makes it: the clock (the time) takes no place in the id.
struct ThreeStreams {
  SseStream clock, poll, cinema;
  SseSet set;
  ThreeStreams() {
    clock.name = "clock", poll.name = "poll", cinema.name = "cinema";
    set.streams = 0b1101;
    set.members = {{&clock, 0, false}, {&poll, 2, true}, {&cinema, 3, true}};
  }
};
}  // namespace

TEST_CASE("a set's id names each stream's version, in the server's order, the time left out") {
  ThreeStreams t;
  sse_set_snapshot(t.clock, "{\"time\":1}", 7);
  sse_set_snapshot(t.poll, "{\"total\":3}", 41);
  sse_set_frame(t.set, 1);
  CHECK(t.set.members[1].frame == "id: poll=41\nevent: poll\ndata: {\"total\":3}\n\n");  // cinema: nothing yet
  sse_set_snapshot(t.cinema, "[]", 8802);
  sse_set_frame(t.set, 2);
  CHECK(t.set.members[2].frame == "id: poll=41,cinema=8802\nevent: cinema\ndata: []\n\n");
  sse_set_frame(t.set, 0);
  CHECK(t.set.members[0].frame == "id: poll=41,cinema=8802\nevent: clock\ndata: {\"time\":1}\n\n");
  CHECK(t.set.members[0].order == 3);
}

TEST_CASE("a set's id from a client: strict pieces, names outside the set ignored") {
  ThreeStreams t;
  auto parsed = [&](std::string_view id) { return sse_set_parse_id(t.set, id); };
  CHECK(parsed("poll=41,cinema=8802") == std::vector<uint64_t>{0, 41, 8802});
  CHECK(parsed("cinema=5") == std::vector<uint64_t>{0, 0, 5});
  CHECK(parsed("redpacket=9,poll=4") == std::vector<uint64_t>{0, 4, 0});
  CHECK(parsed("clock=4") == std::vector<uint64_t>{0, 0, 0});  // the time has no version
  for (std::string_view bad : {"poll=41,", "poll", "poll=", "poll=-1", "poll=4 ", "41", "poll=41;cinema=2"}) {
    CAPTURE(bad);
    CHECK(parsed(bad) == std::vector<uint64_t>{0, 0, 0});  // no id at all: everything is sent
  }
}

TEST_CASE("a newcomer is sent what its id lacks, each event's id true of what it then holds") {
  ThreeStreams t;
  sse_set_snapshot(t.poll, "P", 41);
  sse_set_snapshot(t.cinema, "C", 8802);
  std::string out;
  sse_set_catch_up(out, t.set, "");
  CHECK(out == "id: poll=41\nevent: poll\ndata: P\n\nid: poll=41,cinema=8802\nevent: cinema\ndata: C\n\n");
  out.clear();
  sse_set_catch_up(out, t.set, "poll=41,cinema=8802");
  CHECK(out.empty());
  sse_set_catch_up(out, t.set, "poll=40,cinema=8802");
  CHECK(out == "id: poll=41,cinema=8802\nevent: poll\ndata: P\n\n");
  out.clear();
  sse_set_catch_up(out, t.set, "poll=41,redpacket=3");  // from a set that had no cinema
  CHECK(out == "id: poll=41,cinema=8802\nevent: cinema\ndata: C\n\n");
}

TEST_CASE("a slow subscriber's queue holds the newest frame of each stream, in the order they were framed") {
  ThreeStreams t;
  sse_set_snapshot(t.poll, "P1", 41);
  sse_set_frame(t.set, 1);
  sse_set_snapshot(t.cinema, "C1", 50);
  sse_set_frame(t.set, 2);
  sse_set_snapshot(t.poll, "P2", 42);
  sse_set_frame(t.set, 1);
  std::string out;
  sse_set_latest(out, t.set, 0b1100);
  CHECK(out == "id: poll=41,cinema=50\nevent: cinema\ndata: C1\n\nid: poll=42,cinema=50\nevent: poll\ndata: P2\n\n");
  out.clear();
  sse_set_latest(out, t.set, 0b0001);  // the clock was never framed here
  CHECK(out.empty());
}
