// sse.hpp — Server-Sent Events: the wire format, and a stream of snapshots.
//
// An SSE response is an HTTP response that never ends. The body is text:
// events separated by a blank line, each made of "field: value" lines —
// `id:`, `event:`, `data:` (one line per line of payload) and `retry:`. A line
// starting with ':' is a comment the browser ignores, which makes it the
// cheapest keep-alive there is. When the connection drops, the browser's
// EventSource waits `retry` ms, reconnects, and sends the last id it saw as a
// Last-Event-ID header.
//
// Every stream here carries whole state, not deltas: each event is the full
// current snapshot (the remaining red packets, the tallies, the schedule). So
// a subscriber never needs history: a new one gets the current snapshot at
// once, a reconnecting one whose Last-Event-ID is the current version gets
// nothing to catch up on, and a slow one may skip straight to the newest.
//
// An SseStream holds that snapshot framed once, its version and the fds of
// its subscribers. Broadcasting hands the same bytes to every subscriber
// through a send function the server provides; this file makes no system
// call. It also decides when a stream is due (sse_due), so the rules for
// coalescing pushes can be tested without a socket.
//
// A snapshot's version is its event id, and no two snapshots ever share
// one, across restarts too (SseIds): so "your Last-Event-ID is the current
// version" always means "you have this very snapshot". Only a broadcast
// makes a new version; a new subscriber is sent the one everyone has.
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

inline constexpr std::string_view SSE_HEARTBEAT = ": ping\n\n";

// Appends `name: value` lines, one per line of `value` (split at CRLF, CR or
// LF, the line ends a browser recognises).
inline void sse_field(std::string& out, std::string_view name, std::string_view value) {
  for (;;) {
    size_t end = value.find_first_of("\r\n");
    out.append(name).append(": ").append(value.substr(0, end)).push_back('\n');
    if (end == value.npos) return;
    end += value.compare(end, 2, "\r\n") == 0 ? 2 : 1;
    value.remove_prefix(end);
  }
}

// Appends one event. `id` and `event` are written only when non-empty and
// must be single-line; `data` may hold any text. An empty `data` still makes
// a (empty) "data:" line, since an event without data is not dispatched.
inline void sse_event(std::string& out, std::string_view id, std::string_view event, std::string_view data) {
  if (!id.empty()) sse_field(out, "id", id);
  if (!event.empty()) sse_field(out, "event", event);
  sse_field(out, "data", data);
  out.push_back('\n');
}

inline void sse_comment(std::string& out, std::string_view text) {
  sse_field(out, "", text);  // ": text" — a field with no name is a comment
  out.push_back('\n');
}

inline void sse_retry(std::string& out, unsigned retry_ms) {
  out.append("retry: ").append(std::to_string(retry_ms)).append("\n\n");
}

// A client's Last-Event-ID, which is untrusted: only 1 to 19 decimal digits
// are a version; anything else (empty, signs, spaces, huge) is no id at all.
inline std::optional<uint64_t> sse_parse_id(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + uint64_t(c - '0');
  }
  return v;
}

struct SseStream {
  std::string name;              // label in /metrics, e.g. "clock"
  std::string json;              // the current snapshot
  std::string frame;             // the same, framed: "id: <version>\ndata: <json>\n\n"
  uint64_t version = 0;          // 0: nothing published yet
  std::vector<int> subscribers;  // fds; order means nothing
  // Scheduling, all in ms on the monotonic clock.
  int64_t period_ms = 0;         // a push every period_ms even without change; 0: none
  int64_t next_period_ms = 0;
  int64_t last_snapshot_ms = -(int64_t(1) << 40);  // when a snapshot last went out
  int64_t last_send_ms = 0;      // when anything last went out, heartbeats included
  bool dirty = false;            // changed since the last snapshot went out
};

// Event ids for every stream of one server: the run number (which the
// database hands out once per start and never again) in the high bits, a
// count of the snapshots made in this run in the low 43. Unique for the
// life of the database and growing, whatever the wall clock does. The
// limits: 2^20 runs, and 2^43 snapshots per run (one a microsecond for
// a hundred days).
//
// With no file (--db :memory:) every start would be run 1, and a browser
// reconnecting after a restart would name a snapshot of the old run that
// the new one also makes: so the first id is the start time instead, in
// ms, times 2^20. A later start begins above every id an earlier one
// made, as long as a run makes fewer than 2^20 snapshots a millisecond
// (by far) and the wall clock is not set back between the two.
struct SseIds {
  static constexpr int RUN_SHIFT = 43, CLOCK_SHIFT = 20;
  static constexpr uint64_t MAX_RUN = (uint64_t(1) << 20) - 1;
  uint64_t last = 0;
  explicit SseIds(uint64_t run = 0) : last(run << RUN_SHIFT) {}
  static SseIds from_clock(int64_t wall_ms) {
    SseIds ids;
    ids.last = uint64_t(wall_ms) << CLOCK_SHIFT;
    return ids;
  }
  uint64_t take() { return ++last; }
};

// Makes `json` the stream's current snapshot, under the new id `version`,
// and frames it once.
inline void sse_set_snapshot(SseStream& s, std::string_view json, uint64_t version) {
  s.version = version;
  s.json.assign(json);
  s.frame.clear();
  sse_event(s.frame, std::to_string(s.version), {}, s.json);
}

// What a new subscriber reads after the response headers: the reconnect delay,
// then the current snapshot — unless its Last-Event-ID says it has it already.
inline void sse_open(std::string& out, const SseStream& s, std::optional<uint64_t> last_id, unsigned retry_ms) {
  sse_retry(out, retry_ms);
  if (s.version != 0 && last_id != s.version) out.append(s.frame);
}

// Adds fd to a stream's (or a set's) subscribers; returns its position,
// which the caller keeps for sse_unsubscribe.
inline size_t sse_subscribe(std::vector<int>& subscribers, int fd) {
  subscribers.push_back(fd);
  return subscribers.size() - 1;
}

// Removes the subscriber at `pos` in O(1) by moving the last one into its
// place. Returns the fd that moved (its owner must update its position), or -1.
inline int sse_unsubscribe(std::vector<int>& subscribers, size_t pos) {
  int moved = subscribers.back();
  subscribers[pos] = moved;
  subscribers.pop_back();
  return pos < subscribers.size() ? moved : -1;
}

// Hands the same bytes to every subscriber. `send(fd, bytes)` must not
// unsubscribe anyone during the loop: it marks a connection to be closed later.
template <class Send>
void sse_broadcast(const std::vector<int>& subscribers, std::string_view bytes, Send&& send) {
  for (int fd : subscribers) send(fd, bytes);
}

// ---- Many streams on one connection ------------------------------------------
//
// A browser keeps at most six HTTP/1.1 connections per host: six pages of
// one stream each hold them all, and a seventh page never loads. So one
// response may carry several streams (GET /live?stream=poll&stream=cinema):
// each event names its stream (`event:`) and carries that stream's snapshot
// exactly as the stream's own route does.
//
// The `id:` must name a position in every stream of the set at once, so it
// lists each stream's version, as `name=version` pairs joined by ',' in the
// server's order: `id: redpacket=41,poll=8802`. A stream whose state is the
// time takes no place in it (a reconnect gets the time now), and neither
// does one that has published nothing yet. On a reconnect, every stream
// whose current version the id does not name is sent; the rest are not.
// A snapshot goes to a set when it changes: the periodic repeats of an
// unchanged one that some streams' own routes send are left out.
//
// Everyone following the same set shares one SseSet, and its frames are
// made once per push, as a single stream's are. What keeps each id true is
// order: a connection is sent a set's frames in the order they were framed,
// each frame's id lists the versions at that moment, and a newcomer's first
// events are framed for it alone from the id it brought. So when the
// browser has dispatched an event, the id names the current version of a
// stream exactly when the browser holds it: nothing is lost or sent twice.
struct SseSetMember {
  const SseStream* stream;
  int bit;               // the stream's place in the server's list: bit `bit` of SseSet::streams
  bool in_id;            // false for a stream of the time
  uint64_t version = 0;  // its version as last framed here (0: not yet)
  std::string frame = {};  // its latest frame
  uint64_t order = 0;    // when that frame was made (a count): frames leave in this order
};

struct SseSet {
  uint32_t streams = 0;                // which (bit i: the server's stream i)
  std::vector<SseSetMember> members;   // in the server's order
  std::vector<int> subscribers;        // fds, as SseStream::subscribers
  uint64_t frames_made = 0;
  int64_t last_send_ms = 0;            // when anything last went out: the heartbeat is per set
};

// The id after `versions` (one per member, 0: none).
inline std::string sse_set_id(const SseSet& set, const std::vector<uint64_t>& versions) {
  std::string id;
  for (size_t m = 0; m < set.members.size(); m++) {
    if (!set.members[m].in_id || versions[m] == 0) continue;
    id.append(id.empty() ? "" : ",").append(set.members[m].stream->name).append("=").append(std::to_string(versions[m]));
  }
  return id;
}

// A client's id for this set, one version per member (0: not named). The
// id is untrusted: any piece that is not `name=version` makes it no id at
// all; names outside the set are ignored (the set may have changed).
inline std::vector<uint64_t> sse_set_parse_id(const SseSet& set, std::string_view id) {
  std::vector<uint64_t> versions(set.members.size(), 0), none = versions;
  for (size_t at = 0; !id.empty() && at <= id.size();) {
    std::string_view piece = id.substr(at, id.find(',', at) - at);
    at += piece.size() + 1;
    size_t eq = piece.find('=');
    std::optional<uint64_t> v = eq == piece.npos ? std::nullopt : sse_parse_id(piece.substr(eq + 1));
    if (!v) return none;
    for (size_t m = 0; m < set.members.size(); m++)
      if (set.members[m].in_id && set.members[m].stream->name == piece.substr(0, eq)) versions[m] = *v;
  }
  return versions;
}

// Frames member `m`'s current snapshot for the set's subscribers.
inline void sse_set_frame(SseSet& set, size_t m) {
  SseSetMember& member = set.members[m];
  member.version = member.stream->version;
  std::vector<uint64_t> versions;
  for (const SseSetMember& each : set.members) versions.push_back(each.version);
  member.frame.clear();
  sse_event(member.frame, sse_set_id(set, versions), member.stream->name, member.stream->json);
  member.order = ++set.frames_made;
}

// What a newcomer is sent after retry (and the time, which the server
// makes fresh): each stream its id does not name at its current version,
// framed for it alone, so every id it is sent is true of what it holds.
inline void sse_set_catch_up(std::string& out, const SseSet& set, std::string_view last_id) {
  std::vector<uint64_t> held = sse_set_parse_id(set, last_id);
  for (size_t m = 0; m < set.members.size(); m++) {
    const SseSetMember& member = set.members[m];
    uint64_t version = member.stream->version;
    if (!member.in_id || version == 0 || held[m] == version) continue;
    held[m] = version;
    sse_event(out, sse_set_id(set, held), member.stream->name, member.stream->json);
  }
}

// The latest frames of the streams in `streams`, in the order they were
// made: what a slow subscriber's queue holds instead of older ones.
inline void sse_set_latest(std::string& out, const SseSet& set, uint32_t streams) {
  std::vector<const SseSetMember*> queued;
  for (const SseSetMember& member : set.members)
    if (streams & (uint32_t(1) << member.bit) && member.order != 0) queued.push_back(&member);
  std::sort(queued.begin(), queued.end(), [](auto* a, auto* b) { return a->order < b->order; });
  for (const SseSetMember* member : queued) out.append(member->frame);
}

// ---- When a stream is due ----------------------------------------------------
//
// A change marks the stream dirty. If no snapshot went out within the last
// gap_ms, it goes out now (leading edge: one isolated change is pushed at
// once); otherwise it waits until the gap has passed (trailing edge), and
// every change in between rides along in that one push. A periodic push and
// a heartbeat come on their own clocks.

enum class SseDue { Nothing, Snapshot, Heartbeat };

inline SseDue sse_due(const SseStream& s, int64_t now_ms, int64_t gap_ms, int64_t heartbeat_ms) {
  if (s.dirty && now_ms >= s.last_snapshot_ms + gap_ms) return SseDue::Snapshot;
  if (s.period_ms > 0 && now_ms >= s.next_period_ms) return SseDue::Snapshot;
  if (now_ms >= s.last_send_ms + heartbeat_ms) return SseDue::Heartbeat;
  return SseDue::Nothing;
}

// The earliest moment sse_due can answer something other than Nothing.
inline int64_t sse_next_due_ms(const SseStream& s, int64_t gap_ms, int64_t heartbeat_ms) {
  int64_t t = s.last_send_ms + heartbeat_ms;
  if (s.dirty) t = std::min(t, s.last_snapshot_ms + gap_ms);
  if (s.period_ms > 0) t = std::min(t, s.next_period_ms);
  return t;
}

// Records that a snapshot (or, with snapshot=false, a heartbeat) went out.
inline void sse_sent(SseStream& s, int64_t now_ms, bool snapshot) {
  s.last_send_ms = now_ms;
  if (!snapshot) return;
  s.last_snapshot_ms = now_ms;
  s.dirty = false;
  if (s.period_ms > 0) s.next_period_ms = now_ms + s.period_ms;
}

// A snapshot came due but nothing had changed, on a stream that does not
// repeat itself: nothing is sent, and its period starts over.
inline void sse_skipped(SseStream& s, int64_t now_ms) {
  s.dirty = false;
  if (s.period_ms > 0) s.next_period_ms = now_ms + s.period_ms;
}
