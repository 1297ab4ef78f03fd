// app.hpp — the domain: red-packet rounds, the live poll and the cinema
// schedule, as plain C++ with no sockets and no SQL.
//
// Everything here is a value the server owns and mutates from its one
// thread, so there are no locks: "never over-granted, whatever the
// concurrency" holds because grabs are applied one at a time, in the order
// the loop reads them. The store (store.hpp) makes each change durable; the
// server (server.cpp) decodes requests, calls in here and encodes answers.
//
// Money is integer cents throughout; "1.23" strings are made only for display.
// JSON is written by hand with proper escaping, since the shapes are small
// and fixed; input strings are checked to be UTF-8 at the boundary
// (valid_user), so every JSON we write is valid.
#pragma once
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// ---- Small shared pieces ---------------------------------------------------------

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

// Appends `s` as a JSON string literal, quotes included.
inline void json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(char(c));
    } else if (c < 0x20) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\u%04x", c);
      out.append(esc);
    } else {
      out.push_back(char(c));
    }
  }
  out.push_back('"');
}

// Appends a whole number in decimal.
inline void json_number(std::string& out, int64_t v) {
  char buf[24];
  out.append(buf, size_t(std::to_chars(buf, buf + sizeof buf, v).ptr - buf));
}

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

// Epoch milliseconds → "2026-11-22T02:31:45.617Z".
inline std::string iso_time(int64_t epoch_ms) {
  time_t secs = time_t(epoch_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%03dZ", int(epoch_ms % 1000));
  return buf;
}

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates),
// and, unless `controls` allows them, holds no control characters.
inline bool valid_utf8(std::string_view s, bool controls = true) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size() || (!controls && (c < 0x20 || c == 0x7f))) return false;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;  // overlong, surrogate
    i += len;
  }
  return true;
}

// True when `s` is well-formed UTF-8 with no control characters: text a
// page shows (names, questions, options, movies).
inline bool valid_text(std::string_view s) { return valid_utf8(s, false); }

constexpr size_t MAX_USER_BYTES = 64;

// An identity, from a form field or the uid cookie: 1 to 64 bytes of text.
inline bool valid_user(std::string_view user) {
  return !user.empty() && user.size() <= MAX_USER_BYTES && valid_text(user);
}

// SipHash-2-4 (Aumasson and Bernstein, 2012) of `data` under a 128-bit
// key: a hash an attacker cannot aim at without the key. std::hash is
// unkeyed, so with it anyone could compute offline a million names that
// share a bucket, and make every grab walk all of them.
inline uint64_t siphash24(std::string_view data, uint64_t k0, uint64_t k1) {
  uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
  auto rotl = [](uint64_t x, int b) { return (x << b) | (x >> (64 - b)); };
  auto round = [&] {
    v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);
    v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;
    v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;
    v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);
  };
  auto absorb = [&](uint64_t m) {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  };
  size_t whole = data.size() / 8 * 8;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = 0;
    for (int b = 7; b >= 0; b--) m = m << 8 | uint8_t(data[i + size_t(b)]);  // little-endian words
    absorb(m);
  }
  uint64_t last = uint64_t(data.size()) << 56;  // the length's low byte, then the tail
  for (size_t i = whole; i < data.size(); i++) last |= uint64_t(uint8_t(data[i])) << (8 * (i - whole));
  absorb(last);
  v2 ^= 0xff;
  for (int i = 0; i < 4; i++) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

// Who holds what: a set of names, each mapped to its row in a vector the
// caller owns (a round's grants, a poll's ballots), so a name is stored
// once, in its row. Open addressing with linear probing over one array of
// 64-bit slots: the name's 32-bit hash in the high half, row + 1 in the low
// half, 0 for empty. A probe compares hashes within a cache line and reads
// a name only when its hash matches; the table doubles at half full, and
// erase shifts the rest of the run back instead of leaving tombstones.
// std::unordered_map<std::string, size_t> did the same job with a node and
// a copy of the name per entry (about 100 bytes more per grab) and a cache
// miss per lookup: 6% of the server's time on a grab, in perf. Names are
// hashed with SipHash under a key the server draws at start (set_key), so
// clients cannot choose names that pile into one run of slots.
class NameIndex {
 public:
  // Call once, before any index holds a name: a stored hash is never redone.
  static void set_key(uint64_t k0, uint64_t k1) { key_[0] = k0, key_[1] = k1; }
  // The row whose key is `name`, or -1. rows[i].*key is row i's name.
  template <class Row>
  int64_t find(std::string_view name, const std::vector<Row>& rows, std::string Row::*key) const {
    if (slots_.empty()) return -1;
    int64_t row;
    probe(hash(name), name, rows, key, &row);
    return row;
  }
  // The row of `name` if it is in the index; if not, records it at `row`
  // (< 2^32 - 1) and returns -1. One hash for both, where find then insert
  // would take two.
  template <class Row>
  int64_t find_or_insert(std::string_view name, const std::vector<Row>& rows, std::string Row::*key, size_t row) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    uint64_t tag = hash(name);
    int64_t held;
    size_t i = probe(tag, name, rows, key, &held);
    if (held >= 0) return held;
    slots_[i] = tag << 32 | (row + 1);
    size_++;
    return -1;
  }
  // Removes `name`, which must be in the index at `row`.
  void erase(std::string_view name, size_t row) {
    size_t i = hash(name) & mask();
    while (uint32_t(slots_[i]) != row + 1) i = (i + 1) & mask();
    // Walk the run after the hole: an entry may move into it unless its
    // home slot lies between the hole and where it sits (cyclically).
    for (size_t j = (i + 1) & mask(); slots_[j]; j = (j + 1) & mask()) {
      size_t home = (slots_[j] >> 32) & mask();
      if (((j - home) & mask()) >= ((j - i) & mask())) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = 0;
    size_--;
  }
  size_t size() const { return size_; }

 private:
  static uint64_t hash(std::string_view name) { return siphash24(name, key_[0], key_[1]) >> 32; }
  size_t mask() const { return slots_.size() - 1; }
  // Walks the run of slots from the name's home: stops at the name (its
  // row in *row) or at the empty slot that ends the run (*row = -1), and
  // returns where it stopped. The table must not be empty.
  template <class Row>
  size_t probe(uint64_t tag, std::string_view name, const std::vector<Row>& rows, std::string Row::*key, int64_t* row) const {
    size_t i = tag & mask();
    for (; slots_[i]; i = (i + 1) & mask()) {
      size_t held = size_t(uint32_t(slots_[i])) - 1;
      if (slots_[i] >> 32 == tag && rows[held].*key == name) {
        *row = int64_t(held);
        return i;
      }
    }
    *row = -1;
    return i;
  }
  void place(uint64_t slot) {
    size_t i = (slot >> 32) & mask();
    while (slots_[i]) i = (i + 1) & mask();
    slots_[i] = slot;
  }
  void grow() {  // rehashing needs only the stored hashes, never the names
    std::vector<uint64_t> old(std::max<size_t>(16, 2 * slots_.size()), 0);
    old.swap(slots_);
    for (uint64_t slot : old)
      if (slot) place(slot);
  }
  std::vector<uint64_t> slots_;  // size 0 or a power of two
  size_t size_ = 0;
  static inline uint64_t key_[2] = {0, 0};
};

// ---- Red packets ------------------------------------------------------------------

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

// The stream's snapshot: the round, what is left, and the last winners, newest first.
inline std::string round_json(const Round& r) {
  std::string j = "{\"round\":" + std::to_string(r.id) + ",\"total_cents\":" + std::to_string(r.total_cents) +
                  ",\"total\":\"" + cents_text(r.total_cents) + "\",\"count\":" + std::to_string(r.count()) +
                  ",\"remaining\":" + std::to_string(r.remaining()) + ",\"winners\":[";
  size_t shown = std::min(r.grants.size(), RECENT_WINNERS);
  for (size_t k = 0; k < shown; k++) {
    const Grant& g = r.grants[r.grants.size() - 1 - k];
    if (k) j += ',';
    j += "{\"packet\":" + std::to_string(r.grants.size() - 1 - k) + ",\"user\":";
    json_string(j, display_name(g.user));
    j += ",\"amount_cents\":" + std::to_string(g.amount_cents) + ",\"amount\":\"" + cents_text(g.amount_cents) +
         "\",\"at\":\"" + iso_time(g.at_ms) + "\"}";
  }
  return j + "]}";
}

// ---- The live poll ----------------------------------------------------------------

constexpr size_t MIN_OPTIONS = 2, MAX_OPTIONS = 20;
constexpr size_t MAX_QUESTION_BYTES = 200, MAX_OPTION_BYTES = 100;

struct Ballot {
  std::string voter;
  size_t option;
};

struct Poll {
  int64_t id = 0;
  std::string question;
  std::vector<std::string> options;
  std::vector<int64_t> counts;                          // counts[i]: votes for options[i]
  std::vector<Ballot> ballots;                          // in the order they were cast
  NameIndex by_voter;                                   // voter -> their row in ballots
  int64_t total() const { return int64_t(ballots.size()); }
  // The row of `voter`'s ballot, or -1.
  int64_t ballot_of(std::string_view voter) const { return by_voter.find(voter, ballots, &Ballot::voter); }
  // The option `voter` voted for, or -1.
  int64_t vote_of(std::string_view voter) const {
    int64_t row = ballot_of(voter);
    return row < 0 ? -1 : int64_t(ballots[size_t(row)].option);
  }
};

// "Red, Green ,Blue" → {"Red", "Green", "Blue"}: split at commas, trimmed.
inline std::vector<std::string> split_options(std::string_view csv) {
  std::vector<std::string> out;
  for (;;) {
    size_t comma = csv.find(',');
    std::string_view one = csv.substr(0, comma);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    out.emplace_back(one);
    if (comma == csv.npos) return out;
    csv.remove_prefix(comma + 1);
  }
}

// Why this question and these options cannot make a poll, or nothing.
inline std::optional<std::string> poll_refusal(std::string_view question, const std::vector<std::string>& options) {
  if (question.empty() || question.size() > MAX_QUESTION_BYTES || !valid_text(question))
    return "question must be 1 to 200 bytes of UTF-8 text";
  if (options.size() < MIN_OPTIONS || options.size() > MAX_OPTIONS) return "a poll needs 2 to 20 options, separated by commas";
  for (size_t i = 0; i < options.size(); i++) {
    if (options[i].empty() || options[i].size() > MAX_OPTION_BYTES || !valid_text(options[i]))
      return "each option must be 1 to 100 bytes of UTF-8 text";
    for (size_t k = 0; k < i; k++)
      if (options[k] == options[i]) return "option '" + options[i] + "' is listed twice";
  }
  return std::nullopt;
}

// Precondition: poll_refusal(question, options) is empty.
inline Poll poll_new(int64_t id, std::string question, std::vector<std::string> options) {
  Poll p;
  p.id = id;
  p.question = std::move(question);
  p.counts.assign(options.size(), 0);
  p.options = std::move(options);
  return p;
}

// The option named `name`, or -1.
inline int poll_option(const Poll& p, std::string_view name) {
  for (size_t i = 0; i < p.options.size(); i++)
    if (p.options[i] == name) return int(i);
  return -1;
}

enum class VoteOutcome { Counted, Already, Full };

struct VoteResult {
  VoteOutcome outcome;
  size_t option = 0;  // the option counted now, or the one voted for before
  size_t row = 0;     // the voter's ballot (Counted or Already)
};

// One voter's vote for option `option` (a valid index): counted; refused
// because this voter has voted in this poll already; or refused because the
// poll has `max_voters` ballots and this is a new voter (Full). Every voter
// is kept for the poll's life, so the cap is what bounds its memory.
inline VoteResult poll_vote(Poll& p, const std::string& voter, size_t option, size_t max_voters = SIZE_MAX) {
  size_t next = p.ballots.size();
  int64_t row = next < max_voters ? p.by_voter.find_or_insert(voter, p.ballots, &Ballot::voter, next) : p.ballot_of(voter);
  if (row >= 0) return {VoteOutcome::Already, p.ballots[size_t(row)].option, size_t(row)};
  if (next >= max_voters) return {VoteOutcome::Full};
  p.ballots.push_back({voter, option});
  p.counts[option]++;
  return {VoteOutcome::Counted, option, next};
}

// Takes back the poll's last vote (one its commit failed to store).
inline void poll_undo_last_vote(Poll& p) {
  const Ballot& b = p.ballots.back();
  p.counts[b.option]--;
  p.by_voter.erase(b.voter, p.ballots.size() - 1);
  p.ballots.pop_back();
}

// 3 of 7 → "42.9": one decimal, rounded half up, in tenths of a percent.
inline std::string percent_text(int64_t part, int64_t whole) {
  int64_t tenths = whole == 0 ? 0 : (part * 2000 + whole) / (2 * whole);
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10);
}

// The poll's snapshot: the question, each option with its count and
// percentage, and the total.
inline std::string poll_json(const Poll& p) {
  std::string j = "{\"poll\":";
  json_number(j, p.id);
  j += ",\"question\":";
  json_string(j, p.question);
  j += ",\"options\":[";
  for (size_t i = 0; i < p.options.size(); i++) {
    j += i ? ",{\"name\":" : "{\"name\":";
    json_string(j, p.options[i]);
    j += ",\"count\":";
    json_number(j, p.counts[i]);
    j += ",\"percent\":" + percent_text(p.counts[i], p.total()) + "}";
  }
  j += "],\"total\":";
  json_number(j, p.total());
  return j + "}";
}

// ---- The cinema schedule ------------------------------------------------------------
//
// The database is the source of truth for showtimes: the server re-reads the
// table and renders what it finds, so a row changed with the sqlite3 tool
// shows up like one changed through the API. Rows are checked on the way
// in from either side; a row that does not parse is left off the board.

struct Showtime {
  int64_t id = 0;
  std::string movie, hall;
  int64_t starts_ms = 0;  // epoch ms, from the ISO 8601 text
  int64_t seats_total = 0, seats_left = 0;
};

constexpr size_t MAX_MOVIE_BYTES = 100, MAX_HALL_BYTES = 50;
constexpr int64_t MAX_SEATS = 10000;

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
// days_from_civil: count whole 400-year eras, then years within the era
// starting in March, so the leap day falls at the end of the year).
inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// "2026-11-23T19:30:00+08:00", "2026-11-23T11:30Z", "…:00.5Z" → epoch ms.
// Strict: a 'T', a time zone (Z or ±HH:MM), real dates only. Nothing else
// is a showtime: a time without a zone means different moments to the
// server and to each viewer.
inline std::optional<int64_t> parse_iso8601(std::string_view s) {
  auto num = [&](size_t at, size_t len, int64_t* out) {
    if (at + len > s.size()) return false;
    int64_t v = 0;
    for (size_t i = at; i < at + len; i++) {
      if (s[i] < '0' || s[i] > '9') return false;
      v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
  };
  int64_t y, mo, d, h, mi, sec = 0, ms = 0;
  if (!num(0, 4, &y) || s.size() < 16 || s[4] != '-' || !num(5, 2, &mo) || s[7] != '-' || !num(8, 2, &d) ||
      s[10] != 'T' || !num(11, 2, &h) || s[13] != ':' || !num(14, 2, &mi))
    return std::nullopt;
  size_t at = 16;
  if (at < s.size() && s[at] == ':') {
    if (!num(at + 1, 2, &sec)) return std::nullopt;
    at += 3;
    if (at < s.size() && s[at] == '.') {  // fractions: milliseconds kept, the rest dropped
      size_t digits = 0;
      while (at + 1 + digits < s.size() && s[at + 1 + digits] >= '0' && s[at + 1 + digits] <= '9') {
        if (digits < 3) ms = ms * 10 + (s[at + 1 + digits] - '0');
        digits++;
      }
      if (digits == 0) return std::nullopt;
      for (size_t k = digits; k < 3; k++) ms *= 10;
      at += 1 + digits;
    }
  }
  int64_t offset_min = 0;
  if (at + 1 == s.size() && s[at] == 'Z') {
    at++;
  } else if (at + 6 == s.size() && (s[at] == '+' || s[at] == '-') && s[at + 3] == ':') {
    int64_t oh, om;
    if (!num(at + 1, 2, &oh) || !num(at + 4, 2, &om) || oh > 23 || om > 59) return std::nullopt;
    offset_min = (s[at] == '+' ? 1 : -1) * (oh * 60 + om);
    at += 6;
  } else {
    return std::nullopt;
  }
  static constexpr int64_t month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 || sec > 59)
    return std::nullopt;
  int64_t minutes = (days_from_civil(y, mo, d) * 24 + h) * 60 + mi - offset_min;
  return (minutes * 60 + sec) * 1000 + ms;
}

// Epoch ms → "2026-11-23T11:30:00Z", the one form stored and sent.
inline std::string iso_utc(int64_t epoch_ms) {
  std::string full = iso_time(epoch_ms - (epoch_ms % 1000 + 1000) % 1000);
  return full.substr(0, 19) + "Z";
}

// Which field of a new showtime is wrong, and why; nothing when all are fine.
inline std::optional<std::string> showtime_refusal(std::string_view movie, std::string_view hall, std::string_view starts_at,
                                                   int64_t now_ms) {
  if (movie.empty() || movie.size() > MAX_MOVIE_BYTES || !valid_text(movie)) return "movie must be 1 to 100 bytes of UTF-8 text";
  if (hall.empty() || hall.size() > MAX_HALL_BYTES || !valid_text(hall)) return "hall must be 1 to 50 bytes of UTF-8 text";
  std::optional<int64_t> t = parse_iso8601(starts_at);
  if (!t) return "starts_at must be an ISO 8601 time with a zone, like 2026-11-23T19:30:00+08:00";
  if (*t <= now_ms) return "starts_at is in the past";
  return std::nullopt;
}

// Appends one showtime as a JSON object.
inline void showtime_json(std::string& j, const Showtime& s) {
  j += "{\"id\":";
  json_number(j, s.id);
  j += ",\"movie\":";
  json_string(j, s.movie);
  j += ",\"hall\":";
  json_string(j, s.hall);
  j += ",\"starts_at\":\"" + iso_utc(s.starts_ms) + "\",\"seats_total\":";
  json_number(j, s.seats_total);
  j += ",\"seats_left\":";
  json_number(j, s.seats_left);
  j += '}';
}

// The board: showtimes not yet started, by start time (then id), as JSON.
inline std::string schedule_json(std::vector<Showtime> rows, int64_t now_ms) {
  std::erase_if(rows, [&](const Showtime& s) { return s.starts_ms <= now_ms; });
  std::sort(rows.begin(), rows.end(), [](const Showtime& a, const Showtime& b) {
    return a.starts_ms != b.starts_ms ? a.starts_ms < b.starts_ms : a.id < b.id;
  });
  std::string j = "{\"showtimes\":[";
  for (size_t i = 0; i < rows.size(); i++) {
    if (i) j += ',';
    showtime_json(j, rows[i]);
  }
  return j + "]}";
}
