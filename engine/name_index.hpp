// engine/name_index.hpp — who holds what: a set of names, each mapped to a row.
//
// A round remembers who holds which packet, a poll who voted: both ask "is
// this name in the set, and at which row?" on every grab and vote, for up
// to a million names. NameIndex answers with one probe into a flat table of
// 64-bit slots, the name stored once (in the row it points to). Names come
// from clients, so they are hashed with SipHash under a key drawn at
// start: nobody can pick names that pile into one run of slots.
//
// Left out: shrinking. An index only grows, until its round or poll is replaced.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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
