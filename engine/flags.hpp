// engine/flags.hpp — the command line as one table: the server's rows, then each
// app's, every row pointing at the variable it sets.
//
// A flag is "--name value" or "--name=value" (a switch takes no value).
// Numbers are checked against the row's range, seconds may have a
// fraction; anything that does not fit is a message naming the flag and
// exit status 2, before the server opens a socket or a file. --help prints
// the rows group by group with their current values, which are the
// defaults since nothing has been parsed yet.
//
// Left out on purpose: short options, environment variables (only the
// admin token reads one, in server.cpp), config files.
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

enum class FlagKind { Int, Int64, Size, Seconds, Millis, Text, Switch };  // Size: a size_t, bytes or a count

struct Flag {
  const char* name;
  FlagKind kind;
  void* target;  // int, int64_t (ms for Seconds and Millis), size_t, std::string or bool, as `kind` says
  double min, max;
  const char* help;
};

// The rows of one part of the server, under a title in --help.
struct FlagGroup {
  const char* title;
  std::vector<Flag> rows;
};

// The target's value as --help shows it.
inline std::string flag_value(const Flag& f) {
  char buf[64];
  switch (f.kind) {
    case FlagKind::Int: return std::to_string(*static_cast<int*>(f.target));
    case FlagKind::Size: return std::to_string(*static_cast<size_t*>(f.target));
    case FlagKind::Int64:
    case FlagKind::Millis: return std::to_string(*static_cast<int64_t*>(f.target));
    case FlagKind::Seconds: snprintf(buf, sizeof buf, "%g", double(*static_cast<int64_t*>(f.target)) / 1000); return buf;
    case FlagKind::Text: return "'" + *static_cast<std::string*>(f.target) + "'";
    case FlagKind::Switch: return *static_cast<bool*>(f.target) ? "on" : "off";
  }
  return "";
}

inline void flags_usage(FILE* to, const std::vector<FlagGroup>& groups) {
  fprintf(to, "usage: sse-server [flags]\n\nflags (default in brackets):\n");
  for (const FlagGroup& g : groups) {
    fprintf(to, "\n %s:\n", g.title);
    for (const Flag& f : g.rows) fprintf(to, "  %-20s %s [%s]\n", f.name, f.help, flag_value(f).c_str());
  }
  fprintf(to, "\n  %-20s %s\n", "--help", "show this and exit");
}

[[noreturn]] inline void flag_refused(const std::string& why) {
  fprintf(stderr, "sse-server: %s\nrun 'sse-server --help' for the list of flags\n", why.c_str());
  exit(2);
}

// Stores `text` into the flag's target; exits 2 with a message when it does not fit.
inline void flag_set(const Flag& f, const char* text) {
  if (f.kind == FlagKind::Text) {
    *static_cast<std::string*>(f.target) = text;
    return;
  }
  char* end = nullptr;
  errno = 0;
  double v = strtod(text, &end);
  bool whole = f.kind != FlagKind::Seconds && v != std::floor(v);
  if (*text == '\0' || *end != '\0' || errno != 0 || whole || !(v >= f.min && v <= f.max)) {
    char range[160];
    snprintf(range, sizeof range, "%s needs %s from %g to %g, got '%s'", f.name,
             f.kind == FlagKind::Seconds ? "seconds" : "a whole number", f.min, f.max, text);
    flag_refused(range);
  }
  switch (f.kind) {
    case FlagKind::Int: *static_cast<int*>(f.target) = int(v); break;
    case FlagKind::Size: *static_cast<size_t*>(f.target) = size_t(v); break;
    case FlagKind::Int64:
    case FlagKind::Millis: *static_cast<int64_t*>(f.target) = int64_t(v); break;
    case FlagKind::Seconds: *static_cast<int64_t*>(f.target) = std::max<int64_t>(1, std::llround(v * 1000)); break;
    default: break;
  }
}

// Sets the targets from argv; --help prints the table and exits 0.
inline void flags_parse(int argc, char** argv, const std::vector<FlagGroup>& groups) {
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      flags_usage(stdout, groups);
      exit(0);
    }
    size_t eq = arg.find('=');
    std::string name = arg.substr(0, eq);
    const Flag* flag = nullptr;
    for (const FlagGroup& g : groups)
      for (const Flag& f : g.rows)
        if (name == f.name) flag = &f;
    if (!flag) flag_refused("unknown flag '" + arg + "'");
    if (flag->kind == FlagKind::Switch) {
      if (eq != arg.npos) flag_refused(name + " takes no value");
      *static_cast<bool*>(flag->target) = true;
    } else if (eq != arg.npos) {
      flag_set(*flag, argv[i] + eq + 1);
    } else {
      if (i + 1 >= argc) flag_refused(name + " needs a value");
      flag_set(*flag, argv[++i]);
    }
  }
}
