// router.hpp — which handler answers a request: a table from path to an
// entry per method, the Allow header each path lists, and the admin token.
//
// A path answers for itself, and a path ending in '/' also for every path
// under it ("/cinema/showtimes/" for "/cinema/showtimes/42/book"): the
// lookup walks up the folders until one has a route. The table is filled
// once at start-up and read on every request: lookups take the request's
// path as a string_view into the parser's buffer, and a transparent hash
// finds it without building a string. The server's admit() (server.cpp)
// turns a miss into 404, a wrong method into 405 with Allow, a missing
// token into 401. No sockets here.
//
// Left out on purpose: patterns and captures (an app reads the rest of
// its path itself), and methods beyond the six the apps use.
#pragma once
#include <llhttp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/app.hpp"
#include "http_parse.hpp"

// What one path answers: an entry per method (a page and the form it
// posts to may share a path). An entry runs an app's handler, or
// subscribes to a stream.
struct Route {
  struct Entry {
    llhttp_method_t method;
    std::function<Answer(const Request&)> handler;  // empty for a stream
    int app = -1;     // whose handler: its streams are due when the answer changed something
    int stream = -1;  // a subscription to this stream
    bool admin = false;
    bool streams_in_query = false;  // GET /live: a subscription to the streams its query names
  };
  std::vector<Entry> entries;
  std::string allow;  // the methods, as the Allow header lists them
};

// Compares in time that depends only on the expected token's length, so
// response timing does not reveal how much of a guess was right.
inline bool token_equal(std::string_view given, std::string_view expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); i++) diff |= uint8_t(expected[i] ^ (i < given.size() ? given[i] : 0));
  return diff == 0;
}

class Router {
 public:
  std::string admin_token;  // what admin routes need, as a bearer token or the form field `token`

  // Routes `methods` ("GET, HEAD") of `path` to `entry`. A method the path
  // already answers keeps its first entry: the apps' routes are added
  // before the pages, so they win over a file of the same name.
  void add(const std::string& path, std::string_view methods, Route::Entry entry) {
    Route& route = routes_[path];
    while (!methods.empty()) {
      std::string_view name = methods.substr(0, methods.find(','));
      methods.remove_prefix(std::min(methods.size(), name.size() + 2));
      entry.method = method_named(name);
      if (Router::entry(route, entry.method)) continue;
      route.entries.push_back(entry);
      route.allow += (route.allow.empty() ? "" : ", ") + std::string(name);
    }
  }

  // The route for `path`: its own, else the nearest folder above it that
  // has one ("/a/b/" answers for "/a/b/42"; "/" itself is the home page
  // and answers for nothing under it). nullptr when there is none.
  const Route* find(std::string_view path) const {
    auto it = routes_.find(path);
    while (it == routes_.end() && path.size() > 1) {
      path = path.substr(0, path.rfind('/', path.size() - 2) + 1);  // "/a/b/c" → "/a/b/" → "/a/" → "/"
      if (path.size() > 1) it = routes_.find(path);
    }
    return it == routes_.end() ? nullptr : &it->second;
  }

  static const Route::Entry* entry(const Route& route, llhttp_method_t method) {
    for (const Route::Entry& e : route.entries)
      if (e.method == method) return &e;
    return nullptr;
  }

  static bool is_stream(const Route& r) {
    return std::any_of(r.entries.begin(), r.entries.end(), [](const Route::Entry& e) { return e.stream >= 0 || e.streams_in_query; });
  }

  // The admin token as "Authorization: Bearer <token>", or (admin_ok only)
  // as form field `token`.
  bool bearer_ok(const HttpRequest& req) const {
    std::string_view auth = req.fields[AUTHORIZATION];
    return auth.size() > 7 && http_iequals(auth.substr(0, 7), "bearer ") && token_equal(auth.substr(7), admin_token);
  }
  bool admin_ok(const HttpRequest& req) const {
    std::string token;
    return bearer_ok(req) || (http_form_value(req.body, "token", &token) == FormLookup::Found && token_equal(token, admin_token));
  }

 private:
  // A method an app names for its route; any other is a mistake in the
  // app's code, found at start-up.
  static llhttp_method_t method_named(std::string_view name) {
    for (llhttp_method_t m : {HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_PATCH, HTTP_DELETE, HTTP_OPTIONS})
      if (name == llhttp_method_name(m)) return m;
    fprintf(stderr, "sse-server: a route names the method '%.*s', which no route may\n", int(name.size()), name.data());
    abort();
  }
  struct PathHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Route, PathHash, std::equal_to<>> routes_;
};
