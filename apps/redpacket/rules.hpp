// apps/redpacket/rules.hpp — the rules of red packets, and the answers both
// modes give: what a round is, how it is split, what a grab does, and the
// JSON every answer and snapshot is made of. Pure: no storage, no Redis.
//
// Both modes (in_sqlite.hpp, in_redis.hpp) decide a grab into a GrabReply
// and answer it with grab_answer, and so with the others: "the same bytes
// in both modes" is the structure, not a promise. The end of the file is
// what each mode must do (RedpacketMode).
#pragma once
#include <algorithm>

#include "../../engine/app.hpp"
#include "../../engine/name_index.hpp"

// splitmix64: tiny, fast, and seedable, so tests can replay a split exactly.
// Not for secrets: identities and tokens come from getrandom() in the server.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi]; rejection sampling, so no value is favoured.
  int64_t uniform(int64_t lo, int64_t hi) {
    uint64_t span = uint64_t(hi - lo) + 1;
    uint64_t limit = UINT64_MAX - UINT64_MAX % span;
    uint64_t r;
    do r = next();
    while (r >= limit);
    return lo + int64_t(r % span);
  }
};

// 123 cents → "1.23". (Digits by hand: it is on every grab's answer, and
// snprintf costs more than the rest of that answer.)
inline std::string cents_text(int64_t cents) {
  uint64_t v = cents < 0 ? 0 - uint64_t(cents) : uint64_t(cents);
  char buf[32];
  char* p = buf + sizeof buf;
  for (int digits = 0; digits < 3 || v > 0; digits++) {
    if (digits == 2) *--p = '.';
    *--p = char('0' + v % 10);
    v /= 10;
  }
  if (cents < 0) *--p = '-';
  return std::string(p, size_t(buf + sizeof buf - p));
}

constexpr int64_t MAX_PACKETS = 1'000'000;
constexpr int64_t MAX_TOTAL_CENTS = 100'000'000'000;  // 10^11 cents: a billion in money

// Why a round of `total_cents` split into `count` packets cannot be made, or
// nothing when it can.
inline std::optional<std::string> round_refusal(int64_t total_cents, int64_t count) {
  if (count < 1) return "count must be at least 1";
  if (count > MAX_PACKETS) return "count must be at most 1000000";
  if (total_cents > MAX_TOTAL_CENTS) return "total_cents must be at most 100000000000";
  if (total_cents < count) return "total_cents must be at least count: every packet holds at least 1 cent";
  return std::nullopt;
}

// The double-mean split: with R cents and n packets left, the next packet is
// uniform in [1, 2R/n - 1], so its expected size is the mean R/n and the
// leftover always keeps at least 1 cent per packet; the last takes the rest.
// Precondition: round_refusal(total_cents, count) is empty.
inline std::vector<int64_t> split_double_mean(int64_t total_cents, int64_t count, Rng& rng) {
  std::vector<int64_t> amounts;
  amounts.reserve(size_t(count));
  int64_t left = total_cents;
  for (int64_t n = count; n > 1; n--) {
    int64_t amount = rng.uniform(1, 2 * left / n - 1);
    amounts.push_back(amount);
    left -= amount;
  }
  amounts.push_back(left);
  return amounts;
}

struct Grant {
  std::string user;
  int64_t amount_cents;
  int64_t at_ms;  // epoch milliseconds
};

// Packets are handed out in split order: packet i goes to the i-th grabber,
// so the granted packets are always a prefix of `amounts`.
struct Round {
  int64_t id = 0;
  int64_t total_cents = 0;
  std::vector<int64_t> amounts;               // the split, fixed at creation
  std::vector<Grant> grants;                  // grants[i] holds packet i
  NameIndex by_user;                          // user -> their row in grants
  // The packet `user` holds, or -1.
  int64_t packet_of(std::string_view user) const { return by_user.find(user, grants, &Grant::user); }
  int64_t count() const { return int64_t(amounts.size()); }
  int64_t remaining() const { return count() - int64_t(grants.size()); }
};

inline Round round_new(int64_t id, int64_t total_cents, std::vector<int64_t> amounts) {
  Round r;
  r.id = id;
  r.total_cents = total_cents;
  r.amounts = std::move(amounts);
  return r;
}

enum class GrabOutcome { Granted, Already, Empty };

struct GrabResult {
  GrabOutcome outcome;
  size_t packet = 0;  // which packet the user holds (Granted or Already)
  int64_t amount_cents = 0;
};

// One user's grab: the next packet, the packet they already hold, or Empty.
inline GrabResult round_grab(Round& r, const std::string& user, int64_t now_ms) {
  size_t packet = r.grants.size();  // the next packet, if there is one
  // An empty round only looks the user up; otherwise the lookup also
  // records them as the holder of `packet`, in one pass over the index.
  int64_t held = r.remaining() == 0 ? r.packet_of(user) : r.by_user.find_or_insert(user, r.grants, &Grant::user, packet);
  if (held >= 0) return {GrabOutcome::Already, size_t(held), r.amounts[size_t(held)]};
  if (r.remaining() == 0) return {GrabOutcome::Empty};
  r.grants.push_back({user, r.amounts[packet], now_ms});
  return {GrabOutcome::Granted, packet, r.amounts[packet]};
}

// Takes back the round's last grant (one its commit failed to store).
inline void round_undo_last_grant(Round& r) {
  r.by_user.erase(r.grants.back().user, r.grants.size() - 1);
  r.grants.pop_back();
}

// What the page shows for an identity: a uid cookie (32 hex digits, which the
// server makes) becomes "guest-" and its first 6 digits; a name stays a name.
inline std::string display_name(std::string_view user) {
  bool uid = user.size() == 32 && user.find_first_not_of("0123456789abcdef") == std::string_view::npos;
  return uid ? "guest-" + std::string(user.substr(0, 6)) : std::string(user);
}

constexpr size_t RECENT_WINNERS = 10;

// One of the last winners, as the stream shows them (views into a Round's
// grants, or into a Redis reply).
struct Winner {
  int64_t packet;
  std::string_view user;
  int64_t amount_cents;
  int64_t at_ms;
};

// The stream's snapshot: the round, what is left, and the last winners, newest first.
inline std::string round_json(int64_t id, int64_t total_cents, int64_t count, int64_t remaining, const std::vector<Winner>& newest_first) {
  std::string j = "{\"round\":" + std::to_string(id) + ",\"total_cents\":" + std::to_string(total_cents) + ",\"total\":\"" +
                  cents_text(total_cents) + "\",\"count\":" + std::to_string(count) + ",\"remaining\":" + std::to_string(remaining) +
                  ",\"winners\":[";
  for (size_t k = 0; k < newest_first.size(); k++) {
    const Winner& w = newest_first[k];
    if (k) j += ',';
    j += "{\"packet\":" + std::to_string(w.packet) + ",\"user\":";
    json_string(j, display_name(w.user));
    j += ",\"amount_cents\":" + std::to_string(w.amount_cents) + ",\"amount\":\"" + cents_text(w.amount_cents) + "\",\"at\":\"" +
         iso_time(w.at_ms) + "\"}";
  }
  return j + "]}";
}

inline std::string round_json(const Round& r) {
  std::vector<Winner> recent;
  for (size_t k = 0; k < std::min(r.grants.size(), RECENT_WINNERS); k++) {
    size_t packet = r.grants.size() - 1 - k;
    const Grant& g = r.grants[packet];
    recent.push_back({int64_t(packet), g.user, g.amount_cents, g.at_ms});
  }
  return round_json(r.id, r.total_cents, r.count(), r.remaining(), recent);
}

// ---- The answers both modes give ------------------------------------------------------

// What a grab found: the packet `user` got now (Granted) or holds already,
// or that every packet is taken (Empty: only round is set).
struct GrabReply {
  GrabOutcome outcome;
  int64_t round, packet = 0, amount_cents = 0, remaining = 0;
};

inline Answer grab_answer(const GrabReply& g, std::string_view user) {
  if (g.outcome == GrabOutcome::Empty) return refusal(410, "all red packets have been taken");
  std::string j;
  j.reserve(192);  // one allocation for the whole answer
  j += g.outcome == GrabOutcome::Already ? "{\"ok\":true,\"already\":true,\"amount_cents\":" : "{\"ok\":true,\"amount_cents\":";
  json_number(j, g.amount_cents);
  j.append(",\"amount\":\"").append(cents_text(g.amount_cents)).append("\",\"remaining\":");
  json_number(j, g.remaining);
  j += ",\"round\":";
  json_number(j, g.round);
  j += ",\"packet\":";
  json_number(j, g.packet);
  j += ",\"user\":";
  json_string(j, display_name(user));
  j += '}';
  return json_answer(200, std::move(j));
}

// /redpacket/me: the packet `user` holds in `round`, or -1 for none.
struct Holding {
  int64_t round, packet, amount_cents;
};

inline Answer holding_answer(const Holding& h, std::string_view user) {
  std::string j = "{\"ok\":true,\"round\":" + std::to_string(h.round) + ",\"user\":";
  json_string(j, display_name(user));
  if (h.packet < 0) return json_answer(200, j + ",\"grabbed\":false}");
  return json_answer(200, j + ",\"grabbed\":true,\"packet\":" + std::to_string(h.packet) + ",\"amount_cents\":" +
                              std::to_string(h.amount_cents) + ",\"amount\":\"" + cents_text(h.amount_cents) + "\"}");
}

// A new round was made: logged, and answered.
inline Answer round_made_answer(int64_t round, int64_t total_cents, int64_t count) {
  log_app("redpacket: round " + std::to_string(round) + " started: " + std::to_string(total_cents) + " cents in " +
          std::to_string(count) + " packets");
  return json_answer(200, "{\"ok\":true,\"round\":" + std::to_string(round) + ",\"total_cents\":" + std::to_string(total_cents) +
                              ",\"count\":" + std::to_string(count) + "}");
}

// ---- What each mode does --------------------------------------------------------------
//
// One of these is made at start-up (RedpacketApp::open or open_redis); the
// routes have read and checked the form, and hand it what they found.
struct RedpacketMode {
  virtual ~RedpacketMode() = default;
  virtual Answer grab(const Request& req, const std::string& user) = 0;
  virtual Answer me(const Request& req, std::string_view user) = 0;
  virtual Answer new_round(const Request& req, int64_t total_cents, int64_t count) = 0;
  virtual void snapshot(StreamSpec* s) = 0;  // how the stream's state is read: s->render, or s->fetch
  virtual void committed() {}                // SQLite: a turn's commit succeeded
  virtual void connected() {}                // Redis: on every (re)connect
};
