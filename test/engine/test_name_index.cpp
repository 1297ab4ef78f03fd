// engine/name_index.hpp alone: SipHash against its reference vectors, and
// the index through growth, finds and erases.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "../../apps/redpacket/rules.hpp"  // its Rng, to draw names
#include "../../engine/name_index.hpp"

struct Named {
  std::string name;
};

TEST_CASE("SipHash-2-4: the reference vectors (key 00..0f, message 00, 01, .. of each length)") {
  uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
  std::string msg;
  for (int i = 0; i < 15; i++) msg.push_back(char(i));
  CHECK(siphash24("", k0, k1) == 0x726fdb47dd0e0e31ull);
  CHECK(siphash24(msg, k0, k1) == 0xa129ca6149be45e5ull);  // the paper's worked example
  CHECK(siphash24(msg.substr(0, 8), k0, k1) == 0x93f5f5799a932462ull);  // one whole word, then the length block
  CHECK(siphash24("abc", k0, k1) != siphash24("abc", k0, k1 + 1));
}

TEST_CASE("name index: finds what was inserted, forgets what was erased, through growth") {
  NameIndex index;
  std::vector<Named> rows;
  std::map<std::string, size_t> want;  // the reference: name -> row
  Rng rng{7};
  CHECK(index.find("nobody", rows, &Named::name) == -1);  // an empty index has no table yet
  for (int step = 0; step < 20000; step++) {
    std::string name = "u" + std::to_string(rng.uniform(0, 3000));
    auto it = want.find(name);
    if (it == want.end()) {
      REQUIRE(index.find_or_insert(name, rows, &Named::name, rows.size()) == -1);
      want.emplace(name, rows.size());
      rows.push_back({name});
    } else if (rng.uniform(0, 2) > 0) {
      REQUIRE(index.find_or_insert(name, rows, &Named::name, 999999) == int64_t(it->second));  // found, nothing added
    } else {  // erase from anywhere, so runs of probes get holes in the middle
      index.erase(name, it->second);
      rows[it->second].name = "erased";
      want.erase(it);
    }
    if (step % 1000 == 999) {  // every name in the reference is found at its row; every other name is absent
      REQUIRE(index.size() == want.size());
      for (const auto& [n, row] : want) REQUIRE(index.find(n, rows, &Named::name) == int64_t(row));
      for (int k = 0; k <= 3000; k++) {
        std::string n = "u" + std::to_string(k);
        if (!want.count(n)) REQUIRE(index.find(n, rows, &Named::name) == -1);
      }
    }
  }
  CHECK(want.size() > 500);  // the table grew well past its first 16 slots
}
