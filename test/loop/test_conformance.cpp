// HTTP/1.1 conformance: one row per rule of RFC 9112 (and RFC 9110) the
// server enforces, each a request on the wire. Every row is checked twice:
//
//   - by HttpParser alone, fed whole, one byte at a time and split at every
//     index (parse_feed.hpp): the same verdict each way;
//   - by the real binary over a socket, with a second request right behind
//     it: the first answer must have the row's status, and the connection
//     must stay open (the second request answered 200) or be closed with
//     the second request never answered — so a request hidden in a bad one
//     is never served.
//
// `parse` is what the parser says (0: a request, else the error status);
// `answer` the status the server sends. The routes used answer the same
// every time: GET/HEAD /healthz 200, POST /healthz 405 (after its body is
// read), an unknown path 404.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "../harness.hpp"
#include "../parse_feed.hpp"

namespace {

using namespace std::string_literals;  // "..."s keeps a NUL inside

struct Row {
  const char* rule;
  std::string wire;
  int parse;    // 0: parsed as a request; else the error status
  int answer;   // the server's first status line
  bool open;    // the connection stays open after it
};

const std::string H = "Host: t\r\n";
const std::string END = "\r\n";
std::string get(const std::string& target, const std::string& fields = "") { return "GET " + target + " HTTP/1.1\r\n" + H + fields + END; }
std::string post(const std::string& fields, const std::string& body) { return "POST /healthz HTTP/1.1\r\n" + H + fields + END + body; }
std::string chunked(const std::string& body) { return post("Transfer-Encoding: chunked\r\n", body); }

const std::vector<Row> ROWS = {
    // ---- The request line (RFC 9112 3) ----
    {"3: method SP target SP version CRLF", get("/healthz"), 0, 200, true},
    {"2.2: empty lines before a request are ignored", "\r\n" + get("/healthz"), 0, 200, true},
    {"9.3: HTTP/1.0 closes by default", "GET /healthz HTTP/1.0\r\n\r\n", 0, 200, false},
    {"9.3: HTTP/1.0 may ask for keep-alive", "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, 200, true},
    {"9.6: Connection: close closes after the answer", get("/healthz", "Connection: close\r\n"), 0, 200, false},
    {"3.1: methods are case-sensitive", "get /healthz HTTP/1.1\r\n" + H + END, 400, 400, false},
    {"3.1: an unknown method", "FETCH /healthz HTTP/1.1\r\n" + H + END, 400, 400, false},
    {"3: one SP after the method", "GET  /healthz HTTP/1.1\r\n" + H + END, 400, 400, false},
    {"3: one SP before the version", "GET /healthz  HTTP/1.1\r\n" + H + END, 400, 400, false},
    {"3: nothing after the version", "GET /healthz HTTP/1.1 \r\n" + H + END, 400, 400, false},
    {"3: HTAB is not SP", "GET\t/healthz HTTP/1.1\r\n" + H + END, 400, 400, false},
    {"2.3: HTTP-name is case-sensitive", "GET /healthz http/1.1\r\n" + H + END, 400, 400, false},
    {"2.3: one digit each side of the dot", "GET /healthz HTTP/1.01\r\n" + H + END, 400, 400, false},
    {"2.3: no version is HTTP/0.9, not served", "GET /healthz\r\n" + H + END, 505, 505, false},
    {"9110 15.6.6: HTTP/2.0 in HTTP/1 syntax", "GET /healthz HTTP/2.0\r\n" + H + END, 505, 505, false},
    {"9110 15.6.6: a later major version", "GET /healthz HTTP/3.0\r\n" + H + END, 505, 505, false},
    {"9113 3.4: the HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, 505, false},
    {"2.2: a bare CR in the request line", "GET /healthz\r HTTP/1.1\r\n" + H + END, 400, 400, false},
    {"2.2: CR CR LF", "GET /healthz HTTP/1.1\r\r\n" + H + END, 400, 400, false},
    {"2.2: a bare LF ends no line", "GET /healthz HTTP/1.1\n" + H + END, 400, 400, false},
    {"3: a line starting with SP is no request", " GET /healthz HTTP/1.1\r\n" + H + END, 400, 400, false},

    // ---- The request target (RFC 9112 3.2, RFC 3986) ----
    {"3.2: raw UTF-8 in the path", get("/h\xc3\xa9"), 400, 400, false},
    {"3.2: a raw byte >= 0x80 in the query", get("/healthz?\xff"), 400, 400, false},
    {"3.2: HTAB in the target", get("/health\tz"), 400, 400, false},
    {"3.2: a control byte in the target", get("/health\x01z"), 400, 400, false},
    {"3.2: DEL in the target", get("/healthz\x7f"), 400, 400, false},
    {"3.2: what browsers send unencoded passes", get("/healthz?q=a|b^c[0]{x}\"<>`\\"), 0, 200, true},
    {"3.2: UTF-8 percent-encoded passes", get("/healthz?name=%E7%BA%A2%E5%8C%85"), 0, 200, true},
    {"3.2.2: absolute-form", get("http://t/healthz"), 0, 200, true},
    {"3.2.2: absolute-form with no path is /", get("http://t"), 0, 200, true},
    {"3.2.2: the scheme is case-insensitive", get("HTTP://t/healthz"), 0, 200, true},
    {"3.2.3: authority-form is for CONNECT only", get("t:80"), 400, 400, false},
    {"3.2.3: CONNECT takes authority-form only", "CONNECT /healthz HTTP/1.1\r\n" + H + END, 400, 400, false},
    {"9110 9.3.6: CONNECT host:port is well-formed, but this is no proxy (what follows is a tunnel)",
     "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n", 0, 501, false},
    {"3.2.4: OPTIONS * asks of the server as a whole", "OPTIONS * HTTP/1.1\r\n" + H + END, 0, 200, true},
    {"3.2.4: asterisk-form is for OPTIONS only", get("*"), 400, 400, false},
    {"3.2: a fragment is not part of the path", get("/healthz#top"), 0, 200, true},
    {"3: a target over --max-url-bytes", get("/" + std::string(3000, 'a')), 414, 414, false},
    {"9110 15.5.5: an unknown path is 404, the connection stays", get("/no/such/page"), 0, 404, true},

    // ---- Header fields (RFC 9112 5, 3.2) ----
    {"3.2: HTTP/1.1 needs Host", "GET /healthz HTTP/1.1\r\n\r\n", 400, 400, false},
    {"3.2: HTTP/1.0 may omit Host", "GET /healthz HTTP/1.0\r\n\r\n", 0, 200, false},
    {"3.2: two Hosts", get("/healthz", H), 400, 400, false},
    {"3.2: 257 Hosts (a counter must not wrap)", [] {
       std::string w = "GET /healthz HTTP/1.1\r\n";
       for (int i = 0; i < 257; i++) w += H;
       return w + END;
     }(), 400, 400, false},
    {"3.2: two Hosts, told apart by case only", get("/healthz", "hOST: t\r\n"), 400, 400, false},
    {"3.2: two Hosts in HTTP/1.0 too", "GET /healthz HTTP/1.0\r\n" + H + H + END, 400, 400, false},
    {"3.2: an empty Host is allowed", "GET /healthz HTTP/1.1\r\nHost:\r\n\r\n", 0, 200, true},
    {"5.1: no whitespace before the colon", get("/healthz", "X-A : b\r\n"), 400, 400, false},
    {"5.1: a field line needs a name", get("/healthz", ": b\r\n"), 400, 400, false},
    {"5.1: a name is a token", get("/healthz", "X\xc3\xa9: b\r\n"), 400, 400, false},
    {"5.2: obs-fold after a value", get("/healthz", "X-A: b\r\n c\r\n"), 400, 400, false},
    {"5.2: obs-fold after an empty value", post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"), 400, 400, false},
    {"5.2: obs-fold with HTAB", get("/healthz", "X-A: b\r\n\tc\r\n"), 400, 400, false},
    {"2.2: whitespace between the request line and the first field", "GET /healthz HTTP/1.1\r\n " + H + END, 400, 400, false},
    {"2.2: a bare CR inside a value hides a field", post("X:\rTransfer-Encoding: chunked\r\nContent-Length: 1\r\n", "A"), 400, 400, false},
    {"2.2: a bare CR between field lines", get("/healthz", "\rX-A: b\r\n"), 400, 400, false},
    {"2.2: a bare CR ending the field block hides a request",
     "GET /healthz HTTP/1.1\r\n" + H + "\rZGET /metrics HTTP/1.1\r\n" + H + END, 400, 400, false},
    {"2.2: a bare LF ends no field line", "GET /healthz HTTP/1.1\r\nHost: t\n\r\n", 400, 400, false},
    {"5.5: NUL in a value", get("/healthz", "X-A: a\0b\r\n"s), 400, 400, false},
    {"5.5: a control in a value", get("/healthz", "X-A: a\x01b\r\n"), 400, 400, false},
    {"5.5: obs-text in a value passes", get("/healthz", "X-A: caf\xc3\xa9\r\n"), 0, 200, true},
    {"5.5: whitespace around a value is not part of it", get("/healthz", "X-A:   b   \r\n"), 0, 200, true},
    {"9110 15.5.20: a field block over --max-header-bytes", get("/healthz", "X-A: " + std::string(9000, 'a') + "\r\n"), 431, 431, false},

    // ---- Message bodies (RFC 9112 6, 7) ----
    {"6.2: a Content-Length body is read whole", post("Content-Length: 5\r\n", "hello"), 0, 405, true},
    {"6.3: Content-Length and Transfer-Encoding", post("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400, 400, false},
    {"6.3: Transfer-Encoding and Content-Length", post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "0\r\n\r\n"), 400, 400, false},
    {"6.3: two Content-Lengths", post("Content-Length: 3\r\nContent-Length: 3\r\n", "abc"), 400, 400, false},
    {"6.3: a list of lengths", post("Content-Length: 3, 3\r\n", "abc"), 400, 400, false},
    {"8.6: a length is digits only", post("Content-Length: +3\r\n", "abc"), 400, 400, false},
    {"8.6: a negative length", post("Content-Length: -1\r\n", ""), 400, 400, false},
    {"8.6: a length past 64 bits", post("Content-Length: 99999999999999999999999\r\n", ""), 400, 400, false},
    {"9110 15.5.14: a body over --max-body-bytes, decided on the head", post("Content-Length: 70000\r\n", ""), 413, 413, false},
    {"7.1: a chunked body", chunked("5\r\nhello\r\n0\r\n\r\n"), 0, 405, true},
    {"7.1.1: chunk extensions are read and dropped", chunked("5;a=\"b c\"\r\nhello\r\n0;x\r\n\r\n"), 0, 405, true},
    {"7.1.2: trailer fields are read and dropped", chunked("5\r\nhello\r\n0\r\nX-T: v\r\n\r\n"), 0, 405, true},
    {"6.1: transfer coding names are case-insensitive", post("Transfer-Encoding: Chunked\r\n", "0\r\n\r\n"), 0, 405, true},
    {"6.1: a coding before chunked is not understood", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501, 501, false},
    {"6.3: chunked must be the last coding", post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"), 400, 400, false},
    {"6.3: a coding without chunked", post("Transfer-Encoding: gzip\r\n", "abc"), 400, 400, false},
    {"6.3: an empty Transfer-Encoding", post("Transfer-Encoding:\r\n", ""), 400, 400, false},
    {"6.1: chunked twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400, 400, false},
    {"6.1: Transfer-Encoding in HTTP/1.0", "POST /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 400, false},
    {"7.1: a chunk size line ends with CRLF", chunked("5\nhello\r\n0\r\n\r\n"), 400, 400, false},
    {"7.1: a chunk size is hex", chunked("5z\r\nhello\r\n0\r\n\r\n"), 400, 400, false},
    {"7.1: chunk data ends with CRLF", chunked("5\r\nhelloX0\r\n\r\n"), 400, 400, false},
    {"7.1: a chunk size past 64 bits", chunked("FFFFFFFFFFFFFFFFFF\r\n"), 400, 400, false},
    {"2.2: a bare CR in the trailers hides a request", chunked("0\r\n\rZGET /metrics HTTP/1.1\r\n" + H + END), 400, 400, false},
    {"5.2: obs-fold in the trailers", chunked("0\r\nX-T: a\r\n b\r\n\r\n"), 400, 400, false},

    // ---- Answers (RFC 9110) ----
    {"9110 15.5.6: a wrong method is 405 with Allow, the connection stays", "DELETE /healthz HTTP/1.1\r\n" + H + END, 0, 405, true},
    {"9110 9.3.2: HEAD is answered without a body", "HEAD /healthz HTTP/1.1\r\n" + H + END, 0, 200, true},
    {"9110 9.3.2: an error to HEAD has no body either", "HEAD /no/such/page HTTP/1.1\r\n" + H + END, 0, 404, true},
    {"9110 10.1.1: Expect in HTTP/1.0 is ignored", "POST /healthz HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 0, 405, false},
};

bool is_head(const std::string& wire) { return wire.starts_with("HEAD "); }

}  // namespace

TEST_SUITE("conformance") {

TEST_CASE("every row, by the parser alone: whole, byte by byte, split at every index") {
  CHECK(ROWS.size() >= 60);
  for (const Row& row : ROWS) {
    std::string rule = row.rule;
    CAPTURE(rule);
    Outcome o = feed_every_way(row.wire);
    CHECK(o.error == row.parse);
    if (row.parse == 0) CHECK(o.requests.size() == 1);
    CHECK(o.continues == 0);  // none of these asks for 100 Continue from HTTP/1.1
  }
}

TEST_CASE("every row, by the real binary: the status, and the connection kept or closed (a request behind it answered or never)") {
  ServerProcess srv({"--quiet"});
  const std::string probe = get("/healthz");
  for (const Row& row : ROWS) {
    std::string rule = row.rule;
    CAPTURE(rule);
    Client c(srv.port);
    c.send(row.wire + probe);
    Response r = c.response(2000, is_head(row.wire));
    CHECK(r.status == row.answer);
    if (is_head(row.wire)) CHECK(r.header("content-length").has_value());
    if (row.open) {
      CHECK_FALSE(r.header("connection") == "close");
      Response next = c.response();
      CHECK(next.status == 200);
      CHECK(next.body == "ok\n");
    } else {
      CHECK(c.closed_within(2000));
      CHECK(c.buf.empty());  // the request behind it was never answered
    }
  }
  CHECK(http_get(srv.port, "/healthz").status == 200);
}

}  // TEST_SUITE
