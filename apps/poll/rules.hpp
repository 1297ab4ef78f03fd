// apps/poll/rules.hpp — the rules of the poll, and the answers both modes
// give: what a poll is, what a vote does, and the JSON every answer and
// snapshot is made of. Pure: no storage, no Redis.
//
// Both modes (in_sqlite.hpp, in_redis.hpp) decide a vote into a VoteReply
// and answer it with vote_answer, and so with the others: "the same bytes
// in both modes" is the structure, not a promise. The end of the file is
// what each mode must do (PollMode).
#pragma once
#include "../../engine/app.hpp"
#include "../../engine/name_index.hpp"

constexpr size_t MIN_OPTIONS = 2, MAX_OPTIONS = 20;
constexpr size_t MAX_QUESTION_BYTES = 200, MAX_OPTION_BYTES = 100;

struct Ballot {
  std::string voter;
  size_t option;
};

struct Poll {
  int64_t id = 0;
  std::string question;
  std::vector<std::string> options;
  std::vector<int64_t> counts;                          // counts[i]: votes for options[i]
  std::vector<Ballot> ballots;                          // in the order they were cast
  NameIndex by_voter;                                   // voter -> their row in ballots
  int64_t total() const {  // every ballot counts once: the same as ballots.size(), also for a poll read from Redis (no ballots)
    int64_t sum = 0;
    for (int64_t c : counts) sum += c;
    return sum;
  }
  // The row of `voter`'s ballot, or -1.
  int64_t ballot_of(std::string_view voter) const { return by_voter.find(voter, ballots, &Ballot::voter); }
  // The option `voter` voted for, or -1.
  int64_t vote_of(std::string_view voter) const {
    int64_t row = ballot_of(voter);
    return row < 0 ? -1 : int64_t(ballots[size_t(row)].option);
  }
};

// "Red, Green ,Blue" → {"Red", "Green", "Blue"}: split at commas, trimmed.
inline std::vector<std::string> split_options(std::string_view csv) {
  std::vector<std::string> out;
  for (;;) {
    size_t comma = csv.find(',');
    std::string_view one = csv.substr(0, comma);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    out.emplace_back(one);
    if (comma == csv.npos) return out;
    csv.remove_prefix(comma + 1);
  }
}

// Why this question and these options cannot make a poll, or nothing.
inline std::optional<std::string> poll_refusal(std::string_view question, const std::vector<std::string>& options) {
  if (question.empty() || question.size() > MAX_QUESTION_BYTES || !valid_text(question))
    return "question must be 1 to 200 bytes of UTF-8 text";
  if (options.size() < MIN_OPTIONS || options.size() > MAX_OPTIONS) return "a poll needs 2 to 20 options, separated by commas";
  for (size_t i = 0; i < options.size(); i++) {
    if (options[i].empty() || options[i].size() > MAX_OPTION_BYTES || !valid_text(options[i]))
      return "each option must be 1 to 100 bytes of UTF-8 text";
    for (size_t k = 0; k < i; k++)
      if (options[k] == options[i]) return "option '" + options[i] + "' is listed twice";
  }
  return std::nullopt;
}

// A poll's options one per line, as both modes store them (option text has
// no control characters), and back; "" is no options.
inline std::string options_to_lines(const std::vector<std::string>& options) {
  std::string lines;
  for (const std::string& o : options) lines += (lines.empty() ? "" : "\n") + o;
  return lines;
}
inline std::vector<std::string> options_from_lines(std::string_view lines) {
  std::vector<std::string> options;
  for (size_t nl; !lines.empty() && (nl = lines.find('\n')) != lines.npos; lines.remove_prefix(nl + 1)) options.emplace_back(lines.substr(0, nl));
  if (!lines.empty() || !options.empty()) options.emplace_back(lines);
  return options;
}

// /vote/me's answer: `voted_for` null when the voter has not voted in poll `id`.
inline std::string me_json(int64_t id, const std::string* voted_for) {
  std::string j = "{\"ok\":true,\"poll\":" + std::to_string(id);
  if (!voted_for) return j + ",\"voted\":false}";
  j += ",\"voted\":true,\"voted_for\":";
  json_string(j, *voted_for);
  return j + "}";
}

// Precondition: poll_refusal(question, options) is empty.
inline Poll poll_new(int64_t id, std::string question, std::vector<std::string> options) {
  Poll p;
  p.id = id;
  p.question = std::move(question);
  p.counts.assign(options.size(), 0);
  p.options = std::move(options);
  return p;
}

// The option named `name`, or -1.
inline int poll_option(const Poll& p, std::string_view name) {
  for (size_t i = 0; i < p.options.size(); i++)
    if (p.options[i] == name) return int(i);
  return -1;
}

// poll_vote decides the first three; a vote for no option of the poll
// (NoOption), or sent from a page showing a poll that is over (Over), is
// refused before it.
enum class VoteOutcome { Counted, Already, Full, NoOption, Over };

struct VoteResult {
  VoteOutcome outcome;
  size_t option = 0;  // the option counted now, or the one voted for before
  size_t row = 0;     // the voter's ballot (Counted or Already)
};

// One voter's vote for option `option` (a valid index): counted; refused
// because this voter has voted in this poll already; or refused because the
// poll has `max_voters` ballots and this is a new voter (Full). Every voter
// is kept for the poll's life, so the cap is what bounds its memory.
inline VoteResult poll_vote(Poll& p, const std::string& voter, size_t option, size_t max_voters = SIZE_MAX) {
  size_t next = p.ballots.size();
  int64_t row = next < max_voters ? p.by_voter.find_or_insert(voter, p.ballots, &Ballot::voter, next) : p.ballot_of(voter);
  if (row >= 0) return {VoteOutcome::Already, p.ballots[size_t(row)].option, size_t(row)};
  if (next >= max_voters) return {VoteOutcome::Full};
  p.ballots.push_back({voter, option});
  p.counts[option]++;
  return {VoteOutcome::Counted, option, next};
}

// Takes back the poll's last vote (one its commit failed to store).
inline void poll_undo_last_vote(Poll& p) {
  const Ballot& b = p.ballots.back();
  p.counts[b.option]--;
  p.by_voter.erase(b.voter, p.ballots.size() - 1);
  p.ballots.pop_back();
}

// 3 of 7 → "42.9": one decimal, rounded half up, in tenths of a percent.
inline std::string percent_text(int64_t part, int64_t whole) {
  int64_t tenths = whole == 0 ? 0 : (part * 2000 + whole) / (2 * whole);
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10);
}

// The poll's snapshot: the question, each option with its count and
// percentage, and the total.
inline std::string poll_json(const Poll& p) {
  std::string j = "{\"poll\":";
  json_number(j, p.id);
  j += ",\"question\":";
  json_string(j, p.question);
  j += ",\"options\":[";
  for (size_t i = 0; i < p.options.size(); i++) {
    j += i ? ",{\"name\":" : "{\"name\":";
    json_string(j, p.options[i]);
    j += ",\"count\":";
    json_number(j, p.counts[i]);
    j += ",\"percent\":" + percent_text(p.counts[i], p.total()) + "}";
  }
  j += "],\"total\":";
  json_number(j, p.total());
  return j + "}";
}

// ok, the voter's choice and the new tallies, as counts in option order
// (names, question and percentages come with the stream; repeating them
// on every vote cost more than the vote itself).
inline std::string vote_json(const Poll& p, bool ok, std::string_view message, size_t option) {
  std::string j;
  j.reserve(160);  // one allocation for the whole answer
  j += ok ? "{\"ok\":true," : "{\"ok\":false,\"message\":";
  if (!ok) json_string(j, message), j += ',';
  j += "\"poll\":";
  json_number(j, p.id);
  j += ",\"voted_for\":";
  json_string(j, p.options[option]);
  j += ",\"counts\":[";
  for (size_t i = 0; i < p.counts.size(); i++) {
    if (i) j += ',';
    json_number(j, p.counts[i]);
  }
  j += "],\"total\":";
  json_number(j, p.total());
  j += '}';
  return j;
}

// ---- The answers both modes give ------------------------------------------------------
//
// Each answer is made from what the mode found and from the poll as far as
// the answer shows it: in SQLite the poll itself, from Redis the poll its
// reply describes (no ballots: its total is its counts summed).

// What POST /vote sent (PollApp::vote reads it): who votes, for which
// option, and the poll the page shows.
struct VoteForm {
  std::string voter, option, shown;
  bool has_option = false, has_poll = false;
};

// What a vote found: counted, or refused (see VoteOutcome). `option` is the
// option counted now (Counted) or voted for before (Already).
struct VoteReply {
  VoteOutcome outcome;
  size_t option = 0;
};

// `option` and `has_option` are the form's option field; `max_voters` the flag.
inline Answer vote_answer(const VoteReply& v, const Poll& p, const std::string& option, bool has_option, size_t max_voters) {
  if (v.outcome == VoteOutcome::Over) return refusal(410, "that poll is over; vote in poll " + std::to_string(p.id));
  if (v.outcome == VoteOutcome::Full)
    return refusal(503, "this poll has reached its limit of " + std::to_string(max_voters) +
                            " voters (--max-voters); a new poll starts counting again");
  if (v.outcome == VoteOutcome::NoOption) {
    std::string valid;
    for (const std::string& o : p.options) valid += (valid.empty() ? "'" : ", '") + o + "'";
    return refusal(400, (has_option ? "no option '" + option + "'" : "send an 'option' field") + "; the options are " + valid);
  }
  bool counted = v.outcome == VoteOutcome::Counted;
  return json_answer(counted ? 200 : 409, vote_json(p, counted, "already voted", v.option));
}

// What /vote/me found: the option the voter voted for in the current poll,
// or -1 for none.
struct MyVote {
  int64_t option;
};

inline Answer my_vote_answer(const MyVote& m, const Poll& p) {
  return json_answer(200, me_json(p.id, m.option < 0 ? nullptr : &p.options[size_t(m.option)]));
}

// A new poll was made: logged, and answered with its snapshot.
inline Answer poll_made_answer(const Poll& p) {
  log_app("poll: poll " + std::to_string(p.id) + " started with " + std::to_string(p.options.size()) + " options");
  return json_answer(200, "{\"ok\":true," + poll_json(p).substr(1));
}

// ---- What each mode does --------------------------------------------------------------
//
// One of these is made at start-up (PollApp::open or open_redis); the
// routes have read and checked the form, and hand it what they found.
struct PollMode {
  virtual ~PollMode() = default;
  virtual Answer vote(const Request& req, const VoteForm& form) = 0;
  virtual Answer me(const Request& req, std::string_view voter) = 0;
  virtual Answer new_poll(const Request& req, std::string question, std::vector<std::string> options) = 0;
  virtual void snapshot(StreamSpec* s) = 0;  // how the stream's state is read: s->render, or s->fetch
  virtual void committed() {}                // SQLite: a turn's commit succeeded
  virtual void connected() {}                // Redis: on every (re)connect
};
