// test/parse_feed.hpp — feeding HttpParser the way reads would: whole, one
// byte at a time, and split in two at every index, checking that all agree.
// Shared by the parser's unit tests and the conformance suite.
#pragma once
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "../http_parse.hpp"

namespace parse_feed {

struct Outcome {
  std::vector<std::string> requests;  // "METHOD path?query|body" per request, in order
  int error = 0;                      // status of the error, 0 if none
  int continues = 0;
};

inline std::string describe(const HttpRequest& r) {
  std::string s = llhttp_method_name(r.method);
  s += " " + std::string(r.path);
  if (!r.query.empty()) s += "?" + std::string(r.query);
  if (!r.body.empty()) s += "|" + std::string(r.body);
  return s;
}

// Feeds `wire` in pieces cut at `cuts` (sorted offsets), like reads would.
inline Outcome feed_pieces(HttpParser& p, const std::string& wire, const std::vector<size_t>& cuts) {
  Outcome o;
  size_t start = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(wire.size());
  for (size_t end : ends) {
    size_t off = start;
    while (o.error == 0) {
      size_t used = 0;
      HttpParse r = p.feed(wire.data() + off, end - off, &used);
      off += used;
      if (r == HttpParse::NeedMore) break;
      if (r == HttpParse::Error) o.error = p.error_status();
      if (r == HttpParse::Continue) o.continues++;
      if (r == HttpParse::Request) {
        o.requests.push_back(describe(p.request()));
        p.next();
      }
    }
    if (o.error) break;
    start = end;
  }
  return o;
}

inline Outcome feed(const std::string& wire, std::vector<size_t> cuts = {}, const HttpLimits* limits = &HttpParser::default_limits) {
  HttpParser p(limits);
  return feed_pieces(p, wire, cuts);
}

// Whole, byte by byte, and split in two at every index: all must agree.
inline Outcome feed_every_way(const std::string& wire, const HttpLimits* limits = &HttpParser::default_limits) {
  Outcome whole = feed(wire, {}, limits);
  std::vector<size_t> bytes;
  for (size_t i = 1; i < wire.size(); i++) bytes.push_back(i);
  Outcome one_by_one = feed(wire, bytes, limits);
  CHECK(one_by_one.requests == whole.requests);
  CHECK(one_by_one.error == whole.error);
  for (size_t split = 1; split < wire.size(); split++) {
    CAPTURE(split);
    Outcome o = feed(wire, {split}, limits);
    CHECK(o.requests == whole.requests);
    CHECK(o.error == whole.error);
  }
  return whole;
}

}  // namespace parse_feed

using namespace parse_feed;
