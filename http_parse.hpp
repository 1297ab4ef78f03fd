// http_parse.hpp — HTTP/1.1 requests in, responses out, on top of llhttp.
//
// llhttp is the state machine Node.js uses: it reads bytes and calls us back
// with spans (the URL, each header name and value, body pieces). It never
// buffers, so a span may arrive in several pieces when a request is split
// across reads. HttpParser collects only what the server needs: the URL, a
// handful of headers it acts on, and the body. Everything else is checked by
// llhttp and dropped.
//
// The contract is after picohttpparser's (complete, partial or error),
// but the parser is an object that keeps its place and its own buffer:
// feed() takes the bytes that arrived and answers Request (one whole
// request is ready), Continue (the client waits for "100 Continue" before
// sending its body), NeedMore (every byte was used), or Error (with the
// HTTP status to send before closing). feed() pauses llhttp after each
// request, so pipelined requests come out one at a time and in order, and
// the caller can stop between two of them.
//
// Limits are checked as bytes arrive, never after buffering: the head (request
// line and headers) is fed to llhttp at most `max_head_bytes` at a time, so a
// head that does not end within the budget is a 431; the URL is counted as it
// comes (414); the body is refused from its Content-Length before a byte of it
// is read (413). llhttp runs strict: Content-Length with Transfer-Encoding,
// two Content-Lengths, bare LF line ends are all errors. We add what strict
// llhttp 8.1 still lets through, as RFC 9112 asks:
//   - the byte rules of the head: a CR without its LF, obs-fold, a field
//     line with no name, two spaces in the request line, raw bytes in the
//     target (HeadScan, in http_strict.hpp, before llhttp sees them);
//   - whitespace before a colon (5.1);
//   - more than one Host, in any version, and none in HTTP/1.1 (3.2);
//   - Transfer-Encoding other than exactly "chunked" (6.1, 6.3): chunked
//     not last is 400, another coding before it 501, any in HTTP/1.0 400;
//   - HTTP/2 and later, and the HTTP/2 preface, get 505; Expect:
//     100-continue counts only from HTTP/1.1 on (RFC 9110 10.1.1).
// The first offending byte wins, so an answer never depends on where the
// reads happened to split the request.
//
// Left out on purpose: trailers (read and dropped), HTTP/2, Upgrade
// (answered, then closed). Not enforced as RFC 9112 words it, because
// llhttp 8.1 is stricter and stricter is safe: HTTP/1.x with x > 1 is
// refused (400) where 2.3 would read it as 1.1; a chunk extension without
// a value after one with a value, or whitespace before its ';', is
// refused where 7.1.1 allows them.
#pragma once
#include <llhttp.h>

#include "http_strict.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

struct HttpLimits {
  size_t max_head_bytes = 8 * 1024;   // request line + headers, else 431
  size_t max_url_bytes = 2 * 1024;    // else 414
  size_t max_body_bytes = 64 * 1024;  // else 413
};

// The request headers the server acts on; any other header is only checked.
enum HttpField : uint8_t {
  IF_NONE_MATCH, LAST_EVENT_ID, COOKIE, AUTHORIZATION, CONTENT_TYPE, EXPECT, TRANSFER_ENCODING, FIELD_COUNT
};

inline constexpr std::string_view HTTP_ROOT = "/";  // the path of "http://host" with none of its own
inline constexpr std::string_view HTTP_ASTERISK = "*";  // the path of "OPTIONS *": the server as a whole

// Everything but the body is filled in when the head is complete (so a
// request can be routed before its body arrives); the body when it is whole.
struct HttpRequest {
  llhttp_method_t method = HTTP_GET;
  bool http10 = false;       // HTTP/1.0: keep-alive only when asked for
  bool keep_alive = true;    // llhttp's verdict from version and Connection
  bool upgrade = false;      // Upgrade or CONNECT: answer, then close
  std::string_view path;     // "/vote", never empty; absolute-form URLs are cut to the path; "*" (OPTIONS), host:port (CONNECT)
  std::string_view query;    // after '?', without the '?'
  std::string_view fields[FIELD_COUNT];  // empty when absent; repeats joined by ", "
  std::string_view body;
};

enum class HttpParse { NeedMore, Request, Continue, Error };

class HttpParser {
 public:
  explicit HttpParser(const HttpLimits* limits = &default_limits) : limits_(limits) { reset(limits); }
  // A fresh parser for a new connection, under `limits` (which must outlive
  // it); keeps the buffer's capacity.
  void reset(const HttpLimits* limits) {
    limits_ = limits;
    llhttp_init(&p_, HTTP_REQUEST, &settings);
    status_ = 0;
    reason_ = nullptr;
    next();
  }

  // Runs llhttp over data[0..len). *used is set to the bytes consumed. After
  // Request, read request(), then call next() and feed the rest; after
  // Continue, send "100 Continue" and feed the rest; after Error, send
  // error_status() and close: the parser is dead.
  HttpParse feed(const char* data, size_t len, size_t* used) {
    p_.data = this;  // how callbacks find us; set here so a parser may be moved
    size_t off = 0;
    for (;;) {
      size_t slice = len - off;
      bool in_head = reading_head();  // the head, or the trailers after a chunked body: lines HeadScan checks
      if (in_head) slice = std::min(slice, limits_->max_head_bytes - r_.head_bytes);
      // llhttp runs only over the bytes HeadScan let pass; if it finds
      // nothing wrong before the byte HeadScan refused, that byte's error stands.
      size_t passed = in_head ? r_.scan.run(data + off, slice) : slice;
      const char* chunk = data + off;
      llhttp_errno_t err = llhttp_execute(&p_, chunk, passed);
      size_t n = err == HPE_OK ? passed : size_t(llhttp_get_error_pos(&p_) - chunk);
      off += n;
      if (in_head) r_.head_bytes += n;
      *used = off;
      if (err == HPE_PAUSED) {  // we paused it: after the head, before trailers, or after a whole request
        llhttp_resume(&p_);
        if (r_.message_done) return HttpParse::Request;
        if (std::exchange(r_.expect_continue, false)) return HttpParse::Continue;
        continue;
      }
      if (err == HPE_PAUSED_UPGRADE) { *used = len; return HttpParse::NeedMore; }  // caller closes
      if (err == HPE_PAUSED_H2_UPGRADE) return fail(505, "HTTP/2 is not served; speak HTTP/1.1");
      if (err == HPE_INVALID_VERSION && p_.http_major >= 2) return fail(505, "only HTTP/1.0 and HTTP/1.1 are served");
      if (err != HPE_OK) return fail(status_ ? status_ : 400, reason_ ? reason_ : llhttp_get_error_reason(&p_));
      if (passed < slice) return fail(400, r_.scan.reason);
      if (reading_head() && r_.head_bytes >= limits_->max_head_bytes) return fail(431, "request header block too large");
      if (off == len) return HttpParse::NeedMore;
    }
  }

  const HttpRequest& request() const { return r_.req; }
  int error_status() const { return status_; }
  const char* error_reason() const { return reason_; }
  bool mid_request() const { return r_.started; }  // part of a request has arrived
  bool is_head() const { return r_.head; }  // the request read so far is a HEAD: its answer, even an error, has no body

  // Forgets the request just handled, keeping the buffer's capacity.
  void next() {
    buf_.clear();
    std::construct_at(&r_);  // a fresh one in place: no temporary to build and copy (Reading is trivially destructible)
  }

  // Frees the buffer: the connection will send no more requests (an SSE
  // stream), or is closed.
  void release() { std::string().swap(buf_); }
  size_t capacity() const { return buf_.capacity(); }  // bytes the buffer holds, for /metrics

  static inline const HttpLimits default_limits{};

 private:
  HttpParse fail(int status, const char* reason) {
    status_ = status;
    reason_ = reason;
    return HttpParse::Error;
  }
  static HttpParser& self(llhttp_t* p) { return *static_cast<HttpParser*>(p->data); }
  int refuse(int status, const char* reason) {
    status_ = status;
    reason_ = reason;
    return -1;  // llhttp turns this into an error and stops
  }

  static int on_begin(llhttp_t* p);
  static int on_method_done(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, size_t n);
  static int on_field(llhttp_t* p, const char* at, size_t n);
  static int on_field_done(llhttp_t* p);
  static int on_value(llhttp_t* p, const char* at, size_t n);
  static int on_value_done(llhttp_t* p);
  static int on_headers_done(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t n);
  static int on_chunk_header(llhttp_t* p);
  static int on_message_done(llhttp_t* p);
  bool reading_head() const { return !r_.headers_done || (r_.in_trailers && !r_.message_done); }
  // The request's views into buf_, from the offsets kept; again after buf_ grew.
  void point_views() {
    std::string_view all(buf_);
    r_.viewed = buf_.data();
    r_.req.path = r_.path.second ? all.substr(r_.path.first, r_.path.second) : HTTP_ROOT;  // a path is never empty
    r_.req.query = r_.query.second ? all.substr(r_.query.first, r_.query.second) : std::string_view();
    for (int i = 0; i < FIELD_COUNT; i++) r_.req.fields[i] = all.substr(r_.off[i], r_.len[i]);
  }

  static inline const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = on_begin;
    s.on_method_complete = on_method_done;
    s.on_url = on_url;
    s.on_header_field = on_field;
    s.on_header_field_complete = on_field_done;
    s.on_header_value = on_value;
    s.on_header_value_complete = on_value_done;
    s.on_headers_complete = on_headers_done;
    s.on_body = on_body;
    s.on_message_complete = on_message_done;
    s.on_chunk_header = on_chunk_header;
    return s;
  }();

  // What is known of the request being read; next() starts it over.
  struct Reading {
    HttpRequest req;
    uint32_t off[FIELD_COUNT] = {}, len[FIELD_COUNT] = {};  // each captured field's value in buf_
    size_t url_len = 0, head_bytes = 0, body_off = 0;
    std::pair<size_t, size_t> path{}, query{};              // offset and length in buf_
    const char* viewed = nullptr;                           // buf_.data() when req's views were made
    HeadScan scan;                                          // the byte rules (http_strict.hpp)
    char name[24] = {};                                     // the current header name; longer names are never ours
    uint8_t name_len = 0;
    int8_t field = -1;                                      // the HttpField the current value goes to, or -1
    bool started = false, headers_done = false, message_done = false, expect_continue = false;
    bool host_seen = false, te_seen = false, in_trailers = false, head = false;
  };
  static_assert(std::is_trivially_destructible_v<Reading>, "next() builds a new Reading over the old one");

  llhttp_t p_;
  const HttpLimits* limits_;
  std::string buf_;  // the URL, then the captured header values, then the body
  Reading r_;
  int status_ = 0;   // the error, once there is one: the parser is then dead
  const char* reason_ = nullptr;
};

// ---- The callbacks, in the order llhttp calls them ----------------------------

inline int HttpParser::on_begin(llhttp_t* p) {
  self(p).r_.started = true;
  return 0;
}

inline int HttpParser::on_method_done(llhttp_t* p) {
  self(p).r_.head = p->method == HTTP_HEAD;
  return 0;
}

inline int HttpParser::on_url(llhttp_t* p, const char* at, size_t n) {
  HttpParser& h = self(p);
  h.r_.url_len += n;
  if (h.r_.url_len > h.limits_->max_url_bytes) return h.refuse(414, "request URL too long");
  h.buf_.append(at, n);
  return 0;
}

inline int HttpParser::on_field(llhttp_t* p, const char* at, size_t n) {
  HttpParser& h = self(p);
  for (size_t i = 0; i < n; i++)
    if (at[i] == ' ' || at[i] == '\t') return h.refuse(400, "whitespace before a header's colon");
  size_t keep = std::min(n, sizeof h.r_.name - h.r_.name_len);
  std::memcpy(h.r_.name + h.r_.name_len, at, keep);
  h.r_.name_len += keep;
  return 0;
}

inline int HttpParser::on_field_done(llhttp_t* p) {
  static constexpr std::string_view names[FIELD_COUNT] = {"if-none-match", "last-event-id", "cookie",           "authorization",
                                                          "content-type",  "expect",        "transfer-encoding"};
  HttpParser& h = self(p);
  std::string_view name(h.r_.name, h.r_.name_len);
  h.r_.name_len = 0;
  h.r_.field = -1;
  if (http_iequals(name, "host")) {
    if (h.r_.host_seen) return h.refuse(400, "more than one Host header");
    h.r_.host_seen = true;
  }
  h.r_.te_seen = h.r_.te_seen || http_iequals(name, "transfer-encoding");  // llhttp flags no empty one
  for (int i = 0; i < FIELD_COUNT; i++) {
    if (!http_iequals(name, names[i])) continue;
    h.r_.field = int8_t(i);
    if (h.r_.len[i] > 0) {  // a repeat: move the earlier value to the end, then ", "
      std::string_view sep = i == COOKIE ? "; " : ", ";
      size_t start = h.buf_.size();
      h.buf_.append(h.buf_, h.r_.off[i], h.r_.len[i]).append(sep);
      h.r_.off[i] = uint32_t(start);
      h.r_.len[i] += uint32_t(sep.size());
    } else {
      h.r_.off[i] = uint32_t(h.buf_.size());
    }
  }
  return 0;
}

inline int HttpParser::on_value(llhttp_t* p, const char* at, size_t n) {
  HttpParser& h = self(p);
  if (h.r_.field < 0) return 0;
  if (h.buf_.size() + n > h.limits_->max_head_bytes + h.limits_->max_url_bytes)
    return h.refuse(431, "request header block too large");
  h.buf_.append(at, n);
  h.r_.len[h.r_.field] += uint32_t(n);
  return 0;
}

inline int HttpParser::on_value_done(llhttp_t* p) {
  HttpParser& h = self(p);
  if (h.r_.field < 0) return 0;
  while (h.r_.len[h.r_.field] > 0 && (h.buf_.back() == ' ' || h.buf_.back() == '\t')) {
    h.buf_.pop_back();  // llhttp skips leading whitespace but keeps trailing
    h.r_.len[h.r_.field]--;
  }
  return 0;
}

// The head is whole: check what needs all of it, and fill in the request
// but its body, so the server can route it before the body arrives.
inline int HttpParser::on_headers_done(llhttp_t* p) {
  HttpParser& h = self(p);
  HttpRequest& r = h.r_.req;
  h.r_.headers_done = true;
  if (p->http_major != 1) return h.refuse(505, "only HTTP/1.0 and HTTP/1.1 are served");
  if (p->http_minor == 1 && !h.r_.host_seen) return h.refuse(400, "HTTP/1.1 needs a Host header");
  bool has_te = (p->flags & F_TRANSFER_ENCODING) || h.r_.te_seen;
  std::string_view te(h.buf_.data() + h.r_.off[TRANSFER_ENCODING], h.r_.len[TRANSFER_ENCODING]);
  if (int status = has_te ? transfer_coding_refusal(te, p->flags & F_CONTENT_LENGTH, p->http_minor == 0, &h.reason_) : 0)
    return h.refuse(status, h.reason_);
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > h.limits_->max_body_bytes)
    return h.refuse(413, "request body too large");
  std::string_view url(h.buf_.data(), h.r_.url_len);  // on_url put it at the start of buf_
  if (const char* why = target_refusal(url, p->method == HTTP_CONNECT, p->method == HTTP_OPTIONS, &h.r_.path, &h.r_.query))
    return h.refuse(400, why);
  h.point_views();
  r.method = llhttp_method_t(p->method);
  r.http10 = p->http_minor == 0;
  r.keep_alive = llhttp_should_keep_alive(p);
  r.upgrade = p->upgrade;
  h.r_.body_off = h.buf_.size();
  bool has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  h.r_.expect_continue = has_body && !r.http10 && http_iequals(r.fields[EXPECT], "100-continue");
  return HPE_PAUSED;  // lets feed() count the head's bytes exactly
}

inline int HttpParser::on_body(llhttp_t* p, const char* at, size_t n) {
  HttpParser& h = self(p);
  if (h.buf_.size() - h.r_.body_off + n > h.limits_->max_body_bytes)
    return h.refuse(413, "request body too large");
  h.buf_.append(at, n);
  return 0;
}

// The last chunk (size 0): what follows up to the blank line are trailer
// fields, which HeadScan checks like the head's, within the same budget.
inline int HttpParser::on_chunk_header(llhttp_t* p) {
  if (p->content_length != 0) return 0;
  HttpParser& h = self(p);
  h.r_.in_trailers = true;
  h.r_.scan = HeadScan{HeadScan::FIELD_LINES};
  return HPE_PAUSED;
}

inline int HttpParser::on_message_done(llhttp_t* p) {
  HttpParser& h = self(p);
  if (h.buf_.data() != h.r_.viewed) h.point_views();  // the body's bytes moved the buffer
  h.r_.req.body = std::string_view(h.buf_).substr(h.r_.body_off);
  h.r_.message_done = true;
  h.r_.expect_continue = false;
  return HPE_PAUSED;  // one request at a time
}

// ---- Responses ------------------------------------------------------------

// The status line of each status we send, written out whole so that
// answering costs a copy, not a printf.
inline std::string_view http_status_line(int status) {
  switch (status) {
    case 100: return "HTTP/1.1 100 Continue\r\n";
    case 200: return "HTTP/1.1 200 OK\r\n";
    case 201: return "HTTP/1.1 201 Created\r\n";
    case 304: return "HTTP/1.1 304 Not Modified\r\n";
    case 400: return "HTTP/1.1 400 Bad Request\r\n";
    case 401: return "HTTP/1.1 401 Unauthorized\r\n";
    case 404: return "HTTP/1.1 404 Not Found\r\n";
    case 405: return "HTTP/1.1 405 Method Not Allowed\r\n";
    case 408: return "HTTP/1.1 408 Request Timeout\r\n";
    case 409: return "HTTP/1.1 409 Conflict\r\n";
    case 410: return "HTTP/1.1 410 Gone\r\n";
    case 413: return "HTTP/1.1 413 Content Too Large\r\n";
    case 414: return "HTTP/1.1 414 URI Too Long\r\n";
    case 415: return "HTTP/1.1 415 Unsupported Media Type\r\n";
    case 431: return "HTTP/1.1 431 Request Header Fields Too Large\r\n";
    case 501: return "HTTP/1.1 501 Not Implemented\r\n";
    case 503: return "HTTP/1.1 503 Service Unavailable\r\n";
    case 505: return "HTTP/1.1 505 HTTP Version Not Supported\r\n";
    default: return "HTTP/1.1 500 Internal Server Error\r\n";  // a status we never meant to send
  }
}

// "Not Found" for 404: the status line without "HTTP/1.1 404 " and CRLF.
inline std::string_view http_status_text(int status) {
  std::string_view line = http_status_line(status);
  return line.substr(13, line.size() - 15);
}

// "Date: Sun, 22 Nov 2026 02:22:19 GMT\r\n" into out[40]; the server formats
// it once a second, not once per response.
inline size_t http_format_date(time_t t, char out[40]) {
  struct tm tm;
  gmtime_r(&t, &tm);
  return strftime(out, 40, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

// Appends the status line, the Date line, nosniff (a browser must take
// every answer as the type it says — JSON that quotes a user's input is
// never run as HTML) and, when needed, a Connection line. The caller
// appends its own headers, the blank line and the body.
inline void http_begin(std::string& out, int status, std::string_view date_line, bool keep_alive, bool http10) {
  out.append(http_status_line(status)).append(date_line).append("X-Content-Type-Options: nosniff\r\n");
  if (!keep_alive) out += "Connection: close\r\n";
  else if (http10) out += "Connection: keep-alive\r\n";  // 1.0 closes unless told otherwise
}

// A whole response with a body. `extra` is zero or more "Name: value\r\n" lines.
inline void http_respond(std::string& out, int status, std::string_view date_line, bool keep_alive, bool http10,
                         std::string_view content_type, std::string_view body, std::string_view extra = {},
                         bool head_only = false) {
  http_begin(out, status, date_line, keep_alive, http10);
  char length[24];
  size_t digits = size_t(std::to_chars(length, length + sizeof length, body.size()).ptr - length);
  out.append("Content-Type: ").append(content_type).append("\r\nContent-Length: ");
  out.append(length, digits).append("\r\n").append(extra).append("\r\n");
  if (!head_only) out.append(body);
}

// A response made once, at start-up, to be sent as it is after the status
// line, Date and Connection lines: its header lines, a blank line and the
// body. HEAD sends it up to `head_len`, the end of the blank line.
struct PrebuiltResponse {
  std::string bytes;
  size_t head_len = 0;
};
inline PrebuiltResponse http_prebuilt(std::string_view content_type, std::string_view body, std::string_view extra = {}) {
  PrebuiltResponse r;
  r.bytes.append("Content-Type: ").append(content_type).append("\r\nContent-Length: ").append(std::to_string(body.size()));
  r.bytes.append("\r\n").append(extra).append("\r\n");
  r.head_len = r.bytes.size();
  r.bytes.append(body);
  return r;
}

// ---- Form values ------------------------------------------------------------------

enum class FormLookup { Absent, Found, Malformed };

// Finds `key` in a query string or an application/x-www-form-urlencoded body
// and decodes its value ('+' is a space, %XX a byte) into *value. A value
// with a broken %-escape is Malformed, which the caller answers with 400.
inline FormLookup http_form_value(std::string_view form, std::string_view key, std::string* value) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = char(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  while (!form.empty()) {
    size_t amp = form.find('&');
    std::string_view pair = form.substr(0, amp);
    form.remove_prefix(amp == form.npos ? form.size() : amp + 1);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) != key) continue;  // keys are compared undecoded: ours are plain ASCII
    std::string_view raw = eq == pair.npos ? std::string_view() : pair.substr(eq + 1);
    value->clear();
    for (size_t i = 0; i < raw.size(); i++) {
      if (raw[i] == '+') {
        value->push_back(' ');
      } else if (raw[i] != '%') {
        value->push_back(raw[i]);
      } else if (i + 2 < raw.size() && hex(raw[i + 1]) >= 0 && hex(raw[i + 2]) >= 0) {
        value->push_back(char(hex(raw[i + 1]) * 16 + hex(raw[i + 2])));
        i += 2;
      } else {
        return FormLookup::Malformed;
      }
    }
    return FormLookup::Found;
  }
  return FormLookup::Absent;
}
