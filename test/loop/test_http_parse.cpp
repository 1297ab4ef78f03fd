// HttpParser: every request is fed whole, one byte at a time and split at
// every index, and must give the same answer each way.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "../parse_feed.hpp"

TEST_CASE("a simple GET, whole and split at every byte") {
  Outcome o = feed_every_way("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(o.error == 0);
  CHECK(o.requests == std::vector<std::string>{"GET /healthz"});
}

TEST_CASE("path, query and the headers we act on") {
  HttpParser p;
  std::string wire =
      "GET /sse?lastEventId=42&x=1#frag HTTP/1.1\r\nHost: x\r\nlast-EVENT-id:  7  \r\n"
      "If-None-Match: \"a\"\r\nCookie: uid=1\r\nX-Other: y\r\nIf-None-Match: W/\"b\"\r\nCookie: k=2\r\n\r\n";
  size_t used = 0;
  REQUIRE(p.feed(wire.data(), wire.size(), &used) == HttpParse::Request);
  CHECK(used == wire.size());
  const HttpRequest& r = p.request();
  CHECK(r.path == "/sse");
  CHECK(r.query == "lastEventId=42&x=1");
  CHECK(r.fields[LAST_EVENT_ID] == "7");  // leading and trailing whitespace dropped
  CHECK(r.fields[IF_NONE_MATCH] == "\"a\", W/\"b\"");  // repeats are one list
  CHECK(r.fields[COOKIE] == "uid=1; k=2");
  CHECK(r.fields[AUTHORIZATION].empty());
  CHECK(r.keep_alive);
  CHECK_FALSE(r.http10);
}

TEST_CASE("absolute-form targets are cut to their path") {
  CHECK(feed_every_way("GET http://example.com/vote?a=1 HTTP/1.1\r\nHost: example.com\r\n\r\n").requests ==
        std::vector<std::string>{"GET /vote?a=1"});
  CHECK(feed("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n").requests == std::vector<std::string>{"GET /"});
  CHECK(feed("GET HTTP://example.com/vote HTTP/1.1\r\nHost: example.com\r\n\r\n").requests == std::vector<std::string>{"GET /vote"});
}

TEST_CASE("the other forms: \"*\" for OPTIONS, host:port for CONNECT, each for its method only") {
  CHECK(feed_every_way("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").requests == std::vector<std::string>{"OPTIONS *"});
  CHECK(feed("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").requests ==
        std::vector<std::string>{"CONNECT example.com:443"});
  CHECK(feed("CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n").requests == std::vector<std::string>{"CONNECT [::1]:443"});
  CHECK(feed("GET * HTTP/1.1\r\nHost: x\r\n\r\n").error == 400);
  CHECK(feed("CONNECT example.com HTTP/1.1\r\nHost: x\r\n\r\n").error == 400);
  CHECK(feed("CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n").error == 400);
}

TEST_CASE("pipelined requests come out one by one, in order") {
  std::string wire;
  std::vector<std::string> want;
  for (int i = 0; i < 5; i++) {
    wire += "GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
    want.push_back("GET /r" + std::to_string(i));
  }
  wire += "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
  want.push_back("POST /b|hello");
  CHECK(feed_every_way(wire).requests == want);
}

TEST_CASE("a chunked body is reassembled") {
  Outcome o = feed_every_way(
      "POST /vote HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "6\r\noption\r\n4\r\n=a%2\r\n1\r\n0\r\n0\r\n\r\n");
  CHECK(o.error == 0);
  CHECK(o.requests == std::vector<std::string>{"POST /vote|option=a%20"});
}

TEST_CASE("HTTP/1.0 closes unless asked to keep alive") {
  auto parse = [](const std::string& wire) {
    HttpParser p;
    size_t used;
    REQUIRE(p.feed(wire.data(), wire.size(), &used) == HttpParse::Request);
    return p.request();
  };
  HttpRequest a = parse("GET / HTTP/1.0\r\n\r\n");
  CHECK(a.http10);
  CHECK_FALSE(a.keep_alive);
  CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
  CHECK_FALSE(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
}

TEST_CASE("Expect: 100-continue is reported before the body") {
  Outcome o = feed_every_way("POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
  CHECK(o.requests == std::vector<std::string>{"POST /x|hi"});
  CHECK(o.continues == 1);
  CHECK(feed("POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n").continues == 0);
}

TEST_CASE("each limit, at the limit and one past it") {
  HttpLimits small;
  small.max_head_bytes = 256;
  small.max_url_bytes = 64;
  small.max_body_bytes = 10;
  auto with_head = [](size_t total) {  // a request whose head is exactly `total` bytes
    std::string start = "GET / HTTP/1.1\r\nHost: x\r\nX: ", end = "\r\n\r\n";
    return start + std::string(total - start.size() - end.size(), 'a') + end;
  };
  CHECK(feed_every_way(with_head(256), &small).error == 0);
  CHECK(feed_every_way(with_head(257), &small).error == 431);
  std::string url64 = "/" + std::string(63, 'u');
  CHECK(feed_every_way("GET " + url64 + " HTTP/1.1\r\nHost: x\r\n\r\n", &small).error == 0);
  CHECK(feed_every_way("GET " + url64 + "u HTTP/1.1\r\nHost: x\r\n\r\n", &small).error == 414);
  CHECK(feed_every_way("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789", &small).error == 0);
  // Refused from the header alone: not a byte of the body has been sent.
  CHECK(feed_every_way("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", &small).error == 413);
  CHECK(feed_every_way("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n67890\r\n0\r\n\r\n",
                       &small).error == 413);
}

TEST_CASE("the default limits: 8 KiB head, 2 KiB URL, 64 KiB body") {
  CHECK(feed("GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(9000, 'a') + "\r\n\r\n").error == 431);
  CHECK(feed("GET /" + std::string(2100, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n").error == 414);
  CHECK(feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n").error == 413);
  // A head that never ends is refused once the budget is spent, not buffered.
  CHECK(feed("GET / HTTP/1.1\r\nHost: x\r\n" + std::string(100000, 'a')).error == 431);
}

TEST_CASE("request smuggling and malformed heads are 400") {
  using namespace std::string_literals;  // "..."s keeps the NUL inside one of them
  const std::string bad[] = {
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"s,
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"s,
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"s,
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc"s,
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"s,
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"s,
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc"s,
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"s,
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n"s,  // whitespace before the colon
      "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"s,             // obs-fold
      "GET / HTTP/1.1\r\n\r\n"s,                                      // no Host
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"s,                // two Hosts
      "GET / HTTP/1.1\nHost: x\n\n"s,                                 // bare LF
      "GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"s,
      "FOO / HTTP/1.1\r\nHost: x\r\n\r\n"s,
      "GET / HTTP/1.7\r\nHost: x\r\n\r\n"s,
      "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"s,
  };
  for (const std::string& wire : bad) {
    CAPTURE(wire);
    CHECK(feed_every_way(wire).error == 400);
  }
}

TEST_CASE("a request after an error is never parsed") {
  Outcome o = feed("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(o.requests == std::vector<std::string>{"GET /"});
  CHECK(o.error == 400);
}

TEST_CASE("HTTP/2 and later get 505") {
  CHECK(feed("GET / HTTP/2.0\r\nHost: x\r\n\r\n").error == 505);
}

TEST_CASE("Upgrade and CONNECT requests are flagged, to be answered and closed") {
  HttpParser p;
  size_t used;
  std::string a = "GET /sse HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
  REQUIRE(p.feed(a.data(), a.size(), &used) == HttpParse::Request);
  CHECK(p.request().upgrade);
}

TEST_CASE("a parser is reusable across connections after reset(), under the limits it is given") {
  HttpParser p;
  Outcome bad = feed_pieces(p, "BAD\r\n\r\n", {});
  CHECK(bad.error == 400);
  p.reset(&HttpParser::default_limits);
  CHECK(feed_pieces(p, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", {}).requests == std::vector<std::string>{"GET /ok"});
  HttpLimits small;
  small.max_url_bytes = 16;
  p.reset(&small);
  CHECK(feed_pieces(p, "GET /" + std::string(40, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", {}).error == 414);
}

TEST_CASE("mid_request tells a started request from an idle connection") {
  HttpParser p;
  size_t used;
  CHECK_FALSE(p.mid_request());
  std::string part = "GET / HT";
  CHECK(p.feed(part.data(), part.size(), &used) == HttpParse::NeedMore);
  CHECK(p.mid_request());
  std::string rest = "TP/1.1\r\nHost: x\r\n\r\n";
  CHECK(p.feed(rest.data(), rest.size(), &used) == HttpParse::Request);
  p.next();
  CHECK_FALSE(p.mid_request());
}

TEST_CASE("form values: found, decoded, or refused") {
  std::string v;
  CHECK(http_form_value("a=1&user=J%C3%BCrgen+K&b=", "user", &v) == FormLookup::Found);
  CHECK(v == "J\xC3\xBCrgen K");
  CHECK(http_form_value("a=1&b=", "b", &v) == FormLookup::Found);
  CHECK(v.empty());
  CHECK(http_form_value("flag", "flag", &v) == FormLookup::Found);
  CHECK(http_form_value("a=1", "user", &v) == FormLookup::Absent);
  CHECK(http_form_value("", "user", &v) == FormLookup::Absent);
  CHECK(http_form_value("user=%zz", "user", &v) == FormLookup::Malformed);
  CHECK(http_form_value("user=%4", "user", &v) == FormLookup::Malformed);
  CHECK(http_form_value("users=1&user=2", "user", &v) == FormLookup::Found);
  CHECK(v == "2");
}

TEST_CASE("responses: status line, Connection header, HEAD without body") {
  std::string out;
  http_respond(out, 200, "Date: X\r\n", true, false, "text/plain", "ok\n");
  CHECK(out == "HTTP/1.1 200 OK\r\nDate: X\r\nX-Content-Type-Options: nosniff\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n");
  out.clear();
  http_respond(out, 404, "Date: X\r\n", false, false, "text/plain", "no\n", "Allow: GET\r\n", true);
  CHECK(out == "HTTP/1.1 404 Not Found\r\nDate: X\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Type: text/plain\r\n"
               "Content-Length: 3\r\nAllow: GET\r\n\r\n");
  out.clear();
  http_begin(out, 200, "", true, true);
  CHECK(out == "HTTP/1.1 200 OK\r\nX-Content-Type-Options: nosniff\r\nConnection: keep-alive\r\n");
  char date[40];
  CHECK(std::string(date, http_format_date(0, date)) == "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
}
