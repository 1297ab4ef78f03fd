// out_queue.hpp — a connection's output: bytes the kernel has not taken yet.
//
// The server writes at once and keeps only what write() refused (server.cpp,
// conn_flush and subscriber writes); this is where those bytes wait. It is a
// string and a read offset, compacted lazily (muduo's Buffer, without the
// prepend area), plus one rule of its own for SSE: a queued snapshot that
// has not begun to leave is replaced by a newer one. It makes no system
// call; test/test_out_queue.cpp drives it alone.
#pragma once
#include <algorithm>
#include <cassert>
#include <cstddef>
#include <string>
#include <string_view>

// Answers and events are appended to `bytes`;
// write() takes from `sent` on; the front that has left is cut off lazily,
// once it is both large and larger than what is still pending:
//
//   bytes:  [ sent ...........| pending ..................................... ]
//           0               sent                   snapshots_at        size()
//                                                  [ snapshots, none begun  ]
//
// From `snapshots_at` on, the queue holds SSE snapshots of which not a byte
// has left. A snapshot is the whole state, so a newer one replaces them
// instead of queueing behind: a slow subscriber gets the latest state, not
// a backlog of old ones. Once a byte of them is written they are ordinary
// pending bytes (npos: no replaceable snapshots). On /live, where one
// connection follows several streams, the snapshots replaced are those of
// every stream they hold, so the queue also says which (`snapshot_streams`,
// bit i: the server's stream i; the caller rebuilds them, see sse_set_latest).
struct OutQueue {
  std::string bytes;
  size_t sent = 0;
  size_t snapshots_at = std::string::npos;
  uint32_t snapshot_streams = 0;

  size_t pending() const { return bytes.size() - sent; }
  size_t pending_before_snapshots() const { return std::min(snapshots_at, bytes.size()) - sent; }
  std::string_view unsent(size_t at_most) const { return std::string_view(bytes).substr(sent, at_most); }
  void add(std::string_view b, bool snapshot) {
    if (snapshot && snapshots_at == std::string::npos) snapshots_at = bytes.size();
    bytes.append(b);
  }
  void replace_snapshots(std::string_view snapshot) {
    assert(snapshots_at == std::string::npos || (sent <= snapshots_at && snapshots_at <= bytes.size()));
    if (snapshots_at != std::string::npos) bytes.resize(snapshots_at);
    add(snapshot, true);
  }
  void written(size_t n) {
    assert(n <= pending());
    sent += n;
    if (sent > snapshots_at) {  // a snapshot began to leave
      snapshots_at = std::string::npos;
      snapshot_streams = 0;
    }
  }
  // After writing: cut the sent front, or empty the queue when all has left
  // (freeing a buffer larger than `keep`, or any buffer when `free_all`).
  void settle(size_t keep, bool free_all) {
    if (pending() == 0) return clear(bytes.capacity() > keep || free_all);
    if (sent < keep || sent <= pending()) return;
    bytes.erase(0, sent);
    if (snapshots_at != std::string::npos) snapshots_at -= sent;
    sent = 0;
  }
  void clear(bool free_memory) {
    free_memory ? std::string().swap(bytes) : bytes.clear();
    sent = 0;
    snapshots_at = std::string::npos;
    snapshot_streams = 0;
  }
};
