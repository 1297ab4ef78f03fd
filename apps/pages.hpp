// apps/pages.hpp — the pages: every file in public/, read once at start-up
// into a ready response, and the uid cookie that tells one browser from
// another.
//
// Each regular file directly in --public is served as "/<name>"; "x.html"
// also as "/x", and index.html as "/". Only these names are ever served: no
// request path is joined to a directory, so none can climb out of it. Each
// answer carries an ETag (a hash of the bytes) and a matching If-None-Match
// gets 304. A page (an .html file) answered to a browser that has no uid
// cookie yet hands it one: 128 random bits, HttpOnly, which grabs and votes
// take as the browser's identity.
//
// Left out on purpose: subdirectories, ranges, compression, reloading a file
// changed on disk (restart the server).
#pragma once
#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <deque>

#include "../engine/app.hpp"

class PagesApp : public App {
 public:
  std::string dir = "public";

  struct File {
    std::string name;
    PrebuiltResponse response;
    std::string etag;
    bool is_page = false;  // HTML: hands out the uid cookie
  };
  std::deque<File> files;  // a deque: routes keep pointers into it

  static const char* content_type(std::string_view name) {
    static constexpr std::pair<std::string_view, const char*> types[] = {
        {".html", "text/html; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"}, {".json", "application/json"},
        {".svg", "image/svg+xml"}, {".png", "image/png"}, {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"}, {".webmanifest", "application/manifest+json"}};
    for (auto& [ext, type] : types)
      if (name.ends_with(ext)) return type;
    return "application/octet-stream";
  }

  // Reads every regular file in `dir` into a ready response. 0, or 1 with *why.
  int open(Store&, int64_t, std::string* why) override {
    DIR* d = opendir(dir.c_str());
    if (!d) return *why = "cannot open the public directory " + dir + ": " + strerror(errno), 1;
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name, path = dir + "/" + name;
      struct stat st;
      if (name[0] == '.' || stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      FILE* f = fopen(path.c_str(), "rb");
      if (!f) return closedir(d), *why = "cannot read " + path, 1;
      std::string body(size_t(st.st_size), '\0');
      body.resize(fread(body.data(), 1, body.size(), f));
      fclose(f);
      uint64_t h = 1469598103934665603ull;  // FNV-1a: a content hash is all an ETag needs
      for (unsigned char ch : body) h = (h ^ ch) * 1099511628211ull;
      char etag[24];
      snprintf(etag, sizeof etag, "\"%016" PRIx64 "\"", h);
      files.push_back({name, http_prebuilt(content_type(name), body, std::string("ETag: ") + etag + "\r\nCache-Control: no-cache\r\n"), etag,
                       name.ends_with(".html")});
    }
    closedir(d);
    bool has_index = std::any_of(files.begin(), files.end(), [](const File& f) { return f.name == "index.html"; });
    return has_index ? 0 : (*why = dir + " has no index.html", 1);
  }

  static Answer serve(const File& f, const Request& req) {
    Answer a;
    std::string_view tags = req.http.fields[IF_NONE_MATCH];
    if (!tags.empty() && http_etag_matches(tags, f.etag)) {
      a.status = 304;
      a.extra = "ETag: " + f.etag + "\r\n";
    } else {
      a = prebuilt_answer(f.response);
    }
    if (f.is_page && !valid_user(req.uid()))
      a.extra += "Set-Cookie: uid=" + random_hex(16) + "; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax\r\n";
    return a;
  }

  std::vector<RouteSpec> routes() override {
    std::vector<RouteSpec> out;
    for (const File& f : files) {
      auto handler = [&f](const Request& req) { return serve(f, req); };
      out.push_back({.path = "/" + f.name, .methods = "GET, HEAD", .handler = handler});
      if (f.is_page) out.push_back({.path = "/" + f.name.substr(0, f.name.size() - 5), .methods = "GET, HEAD", .handler = handler});
      if (f.name == "index.html") out.push_back({.path = "/", .methods = "GET, HEAD", .handler = handler});
    }
    return out;
  }

  const char* name() const override { return "pages"; }
  FlagGroup flags() override { return {"pages", {{"--public", FlagKind::Text, &dir, 0, 0, "directory of pages, read once at start"}}}; }
};

// The server's one instance (tests make their own).
inline App& pages_app() { static PagesApp app; return app; }
