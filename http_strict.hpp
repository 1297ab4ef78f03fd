// http_strict.hpp — the byte rules of RFC 9112 that llhttp 8.1 lets
// through, checked on the request head before llhttp sees it.
//
// llhttp runs strict: Content-Length with Transfer-Encoding, two
// Content-Lengths and bare LF line ends are all errors. What strict llhttp
// 8.1 still lets through, and HeadScan refuses, byte by byte:
//   - a CR not followed by LF anywhere in the head (2.2): llhttp 8.1 takes
//     "\r" plus any byte for a line end, so "X:\rTransfer-Encoding: chunked"
//     hides a header and "\r\n\rZGET /evil" a second request;
//   - a line starting with SP or HTAB, after an empty value too (obs-fold,
//     5.2), and a field line with no name (5.1);
//   - two spaces in the request line, and a target with raw bytes >= 0x80,
//     controls or TAB (3.2: UTF-8 must come percent-encoded).
// The rules that need a whole field — the target's form and the
// transfer coding, at the end of this file; whitespace before a colon and
// Host — are checked from HttpParser's callbacks (http_parse.hpp). HeadScan keeps its place across reads, so
// the first offending byte wins and an answer never depends on where the
// reads happened to split the request. The parser runs it over the head
// and over the trailers after a chunked body, the same lines.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

// Field names, schemes and codings are case-insensitive.
inline bool http_iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);  // ASCII letters only; token characters elsewhere match exactly
         });
}

// run() goes over bytes as they arrive and returns how many pass; a byte
// it refuses is at that index, and `reason` says why.
struct HeadScan {
  enum Part : uint8_t { REQUEST_LINE, FIELD_LINES, BODY } part = REQUEST_LINE;
  bool line_start = true;  // the next byte begins a line
  bool blank = false;      // this line is only a CR so far
  bool after_cr = false;   // the last byte was CR: this one must be LF
  bool after_sp = false;   // the last byte was SP (request line)
  int spaces = 0;          // SPs seen in the request line
  const char* reason = nullptr;

  size_t run(const char* data, size_t n) {
    for (size_t i = 0; i < n;) {
      if (part == BODY) return n;  // the head has ended: the rest is not ours to check
      const char* why = nullptr;
      if (!after_cr && part == FIELD_LINES && !line_start) {
        // Inside a field line only CR and LF matter: jump to the first.
        const void* cr = memchr(data + i, '\r', n - i);
        size_t end = cr ? size_t(static_cast<const char*>(cr) - data) : n;
        if (const void* lf = memchr(data + i, '\n', end - i)) end = size_t(static_cast<const char*>(lf) - data);
        i = end;
      } else if (!after_cr && part == REQUEST_LINE) {
        i = request_line(data, i, n, &why);  // up to its CR (or a refused byte)
      }
      if (i == n) return n;
      if (why || (why = step(static_cast<unsigned char>(data[i])))) {
        reason = why;
        return i;
      }
      i++;
    }
    return n;
  }
  // The request line's bytes from data[i] up to a CR or LF (not taken):
  // SPs never two together, and after the first a target of printable
  // ASCII. Returns where it stopped; *why is set if at a refused byte.
  size_t request_line(const char* data, size_t i, size_t n, const char** why) {
    int sp = spaces;
    bool prev_sp = after_sp;
    size_t from = i;
    for (; i < n; i++) {
      unsigned char c = static_cast<unsigned char>(data[i]);
      if (unsigned(c - 0x21) < 0x5e) {  // printable ASCII but SP: fine anywhere in the line
        prev_sp = false;
        continue;
      }
      if (c == ' ') {
        if (prev_sp) {
          *why = "two spaces in the request line";
          break;
        }
        sp++;
        prev_sp = true;
        continue;
      }
      if (c == '\r' || c == '\n') break;
      if (sp == 1) {
        *why = "the request target holds a control, TAB or raw non-ASCII byte (send UTF-8 percent-encoded)";
        break;
      }
      prev_sp = false;  // elsewhere in the line, llhttp judges it
    }
    spaces = sp;
    after_sp = prev_sp;
    if (i > from) line_start = false;
    return i;
  }
  // One byte that is not plain text: nullptr, or why it is refused.
  const char* step(unsigned char c) {
    if (after_cr) {
      after_cr = false;
      if (c != '\n') return "a CR not followed by LF";
      end_line();
      return nullptr;
    }
    if (c == '\n') return "a line must end with CRLF, not a bare LF";
    if (c == '\r') {
      after_cr = true;
      blank = line_start;
    } else if (part == REQUEST_LINE) {
      if (c == ' ' && after_sp) return "two spaces in the request line";
      if (c != ' ' && spaces == 1 && (c >= 0x80 || c < 0x21 || c == 0x7f))
        return "the request target holds a control, TAB or raw non-ASCII byte (send UTF-8 percent-encoded)";
      spaces += c == ' ';
      after_sp = c == ' ';
    } else if (line_start && (c == ' ' || c == '\t')) {
      return "a header line starting with whitespace (obs-fold)";
    } else if (line_start && c == ':') {
      return "a header line with no name";
    }
    line_start = false;
    return nullptr;
  }
  // A CRLF ended a line (`blank`: an empty one).
  void end_line() {
    if (part == REQUEST_LINE && !blank) part = FIELD_LINES;  // empty lines before a request are allowed (2.2)
    else if (part == FIELD_LINES && blank) part = BODY;
    line_start = true;
  }
};

// ---- The request target and the transfer coding ------------------------------

// The request target (RFC 9112 3.2) into where its path and query are in
// `url` (offset, length; no path: it is "/"): origin-form "/vote?x",
// absolute-form "http://host/vote" (the scheme in any case) cut to its
// path, asterisk-form "*" for OPTIONS only (the path is "*"),
// authority-form "host:port" for CONNECT only (the path is that, never
// routed: the server answers CONNECT 501). Returns why anything else is
// refused with 400, or nullptr.
inline const char* target_refusal(std::string_view url, bool connect, bool options, std::pair<size_t, size_t>* path,
                                  std::pair<size_t, size_t>* query) {
  const char* start = url.data();
  if (!url.starts_with('/') || connect) {  // not origin-form: the rare ones first
    if (connect) {
      size_t colon = url.rfind(':');
      bool authority = colon != url.npos && colon > 0 && colon + 1 < url.size() && url.find('/') == url.npos &&
                       url.find_first_not_of("0123456789", colon + 1) == url.npos;
      if (!authority) return "CONNECT's target must be host:port";
      *path = {0, url.size()};
      return nullptr;
    }
    if (url == "*") {
      if (!options) return "the target '*' is for OPTIONS only";
      *path = {0, 1};
      return nullptr;
    }
    auto has_scheme = [&](std::string_view scheme) { return url.size() >= scheme.size() && http_iequals(url.substr(0, scheme.size()), scheme); };
    if (has_scheme("http://") || has_scheme("https://")) {  // absolute-form: keep the path
      size_t slash = url.find('/', url.find("//") + 2);
      if (slash == url.npos) return nullptr;  // "http://host": the path is "/"
      url = url.substr(slash);
    }
    if (!url.starts_with('/')) return "request target must start with '/'";
  }
  size_t q = std::min(url.find('?'), url.find('#'));
  *path = {size_t(url.data() - start), std::min(q, url.size())};
  std::string_view after = q < url.size() ? url.substr(q + 1) : std::string_view();  // the query, then perhaps a fragment
  if (q < url.size() && url[q] == '?') *query = {path->first + q + 1, std::min(after.find('#'), after.size())};
  return nullptr;
}

// RFC 9112 6: the only transfer coding served is chunked, alone, from
// HTTP/1.1 on. `te`: the Transfer-Encoding value. Returns the status to
// refuse with (and *reason), or 0.
inline int transfer_coding_refusal(std::string_view te, bool content_length, bool http10, const char** reason) {
  auto refusal = [reason](int status, const char* why) {
    *reason = why;
    return status;
  };
  if (content_length) return refusal(400, "Content-Length with Transfer-Encoding");
  if (http10) return refusal(400, "Transfer-Encoding in an HTTP/1.0 request");  // 6.1: framing is faulty
  size_t comma = te.rfind(',');
  std::string_view last = comma == te.npos ? te : te.substr(comma + 1);
  while (!last.empty() && (last.front() == ' ' || last.front() == '\t')) last.remove_prefix(1);
  if (!http_iequals(last, "chunked")) return refusal(400, "Transfer-Encoding must end with chunked");  // 6.3
  if (comma != te.npos) return refusal(501, "only the chunked transfer coding is understood");
  return 0;
}
