// out_queue.hpp alone: what waits, what is cut off, and which snapshot a
// slow subscriber is left with.
#include <doctest/doctest.h>

#include "../../out_queue.hpp"

TEST_SUITE("out_queue") {

TEST_CASE("what the kernel took leaves; the sent front is cut off only once it is large and larger than what waits") {
  OutQueue q;
  q.add("HTTP/1.1 200 OK\r\n\r\nhello", false);  // 24 bytes
  q.written(9);
  CHECK(q.pending() == 15);
  CHECK(q.unsent(5) == "200 O");
  q.settle(4, false);  // 9 sent, 15 pending: sent <= pending, kept as is
  CHECK(q.sent == 9);
  q.written(10);        // 19 sent, 5 pending, past keep: cut
  q.settle(4, false);
  CHECK(q.sent == 0);
  CHECK(q.bytes == "hello");
  q.written(5);
  q.settle(1 << 20, false);  // all gone: emptied, its (small) buffer kept
  CHECK(q.pending() == 0);
  CHECK(q.bytes.capacity() > 0);
  q.add(std::string(100, 'x'), false);
  q.written(100);
  q.settle(1 << 20, true);  // free_all: a subscriber keeps no buffer while it keeps up
  CHECK(q.bytes.capacity() < 100);
}

TEST_CASE("a newer snapshot replaces queued ones none of which has begun to leave, never an answer or a partly sent one") {
  OutQueue q;
  q.add("answer;", false);
  q.add("snap1;", true);
  q.replace_snapshots("snap2;");
  CHECK(q.bytes == "answer;snap2;");
  CHECK(q.pending_before_snapshots() == 7);
  q.written(8);  // one byte of snap2 has left: it is ordinary pending bytes now
  CHECK(q.snapshots_at == std::string::npos);
  q.replace_snapshots("snap3;");
  CHECK(q.bytes == "answer;snap2;snap3;");
  q.replace_snapshots("snap4;");  // snap3 had not begun: replaced
  CHECK(q.bytes == "answer;snap2;snap4;");
  q.settle(0, false);  // 8 sent, 11 pending: kept; the snapshot mark moves with a cut
  q.written(5);         // up to snap4, not a byte of it
  q.settle(0, false);
  CHECK(q.bytes == "snap4;");
  CHECK(q.snapshots_at == 0);
  q.clear(true);
  CHECK(q.pending() == 0);
  CHECK(q.snapshots_at == std::string::npos);
}

}  // TEST_SUITE
