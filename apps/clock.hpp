// apps/clock.hpp — the hello world: the server's time, pushed every few
// seconds on /sse (the tutorials' first demo). An app in its smallest form:
// a rule (what the time looks like as JSON), no storage, no routes of its
// own but its stream, one flag.
#pragma once
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "../app.hpp"

struct ClockApp {
  int64_t interval_ms = 3000;

  // {"time":"2026-11-22T02:31:45.617Z","epoch_ms":1795314705617}
  static std::string render(int64_t wall_ms) {
    time_t secs = time_t(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char iso[32], json[96];
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(json, sizeof json, "{\"time\":\"%s.%03dZ\",\"epoch_ms\":%" PRId64 "}", iso, int(wall_ms % 1000), wall_ms);
    return json;
  }

  AppSpec spec() {
    AppSpec app;
    app.name = "clock";
    app.flags = {"the clock", {{"--clock-interval", FlagKind::Seconds, &interval_ms, 0.001, 86400, "seconds between clock events on /sse"}}};
    // The state is the time itself, so each newcomer gets it fresh (is_time).
    app.streams = {{{"/sse"}, "clock", &interval_ms, render, true, true}};
    return app;
  }
};

// The server's one instance (tests make their own).
inline AppSpec clock_app() { static ClockApp app; return app.spec(); }
