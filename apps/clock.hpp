// apps/clock.hpp — the hello world: the server's time, pushed every few
// seconds on /sse (the tutorials' first demo). An app in its smallest form:
// a rule (what the time looks like as JSON), no storage, no routes of its
// own but its stream, one flag.
#pragma once
#include "../engine/app.hpp"

class ClockApp : public App {
 public:
  int64_t interval_ms = 3000;

  // {"time":"2026-11-22T02:31:45.617Z","epoch_ms":1795314705617}
  static std::string render(int64_t wall_ms) {
    std::string json = "{\"time\":\"" + iso_time(wall_ms) + "\",\"epoch_ms\":";
    json_number(json, wall_ms);
    return json + "}";
  }

  const char* name() const override { return "clock"; }
  FlagGroup flags() override {
    return {"the clock", {{"--clock-interval", FlagKind::Seconds, &interval_ms, 0.001, 86400, "seconds between clock events on /sse"}}};
  }
  std::vector<StreamSpec> streams() override {
    return {{.paths = {"/sse"},
             .name = "clock",
             .period_ms = interval_ms,
             .render = render,
             .repeat = true,
             .is_time = true}};  // the state is the time itself: each newcomer gets it fresh
  }
};

// The server's one instance (tests make their own).
inline App& clock_app() { static ClockApp app; return app; }
