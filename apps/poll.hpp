// apps/poll.hpp — the live poll (投票): a question, named options, one vote
// per voter, and the tallies live on every page.
//
// Rules: a voter votes once per poll (a second vote is 409 and not
// counted); tallies are exact; a poll keeps each voter for its life, so
// --max-voters caps what one poll can hold (past it a new voter gets 503).
// A vote sent from a page still showing a replaced poll is refused (410),
// never counted in the new one under a matching option name.
//
// With --redis the poll lives in Redis instead (its own chapter below), so
// every process in front of it counts the same votes.
//
// Left out on purpose: changing a vote, closing a poll, more than one poll
// at a time (a new one replaces the last).
#pragma once
#include <memory>

#include "../engine/app.hpp"
#include "../engine/name_index.hpp"
#include "../engine/redis.hpp"

// ---- Rules ----------------------------------------------------------------------------

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

enum class VoteOutcome { Counted, Already, Full };

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

// ---- Storage --------------------------------------------------------------------------
//
// A poll is one row (its options one per line: option text has no control
// characters). Each vote is one row whose rowid is poll * 2^32 + its number
// in the poll, so a poll's votes are one contiguous, append-only range.

class PollStorage {
 public:
  bool open(Store& store) {
    store_ = &store;
    votes_ = &store.batch("votes", "id, voter, option, at", 4);
    return (store.exec(SCHEMA) || fail("creating tables")) &&
           store.prepare(&insert_poll_, "INSERT INTO polls (id, question, options, created_at) VALUES (?, ?, ?, ?)");
  }
  const std::string& error() const { return error_.empty() ? store_->error() : error_; }
  const Store& store() const { return *store_; }
  // Takes the database's write lock for this turn's votes (see Store::hold).
  bool hold() { return store_->hold(); }

  // The newest poll with its votes, or nothing when there is none yet.
  bool load(std::optional<Poll>* out) {
    Store::Query q = store_->query("SELECT id, question, options FROM polls ORDER BY id DESC LIMIT 1");
    sqlite3_stmt* s = q.get();
    int rc = s ? sqlite3_step(s) : SQLITE_ERROR;
    if (rc != SQLITE_ROW) return rc == SQLITE_DONE || fail("reading polls");
    int64_t id = sqlite3_column_int64(s, 0);
    std::string question(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)));
    std::vector<std::string> options = options_from_lines(reinterpret_cast<const char*>(sqlite3_column_text(s, 2)));
    if (auto why = poll_refusal(question, options)) {
      error_ = "poll " + std::to_string(id) + " in the database is invalid: " + *why;
      return false;
    }
    Poll p = poll_new(id, std::move(question), std::move(options));
    q = store_->query("SELECT id & 4294967295, voter, option FROM votes WHERE id BETWEEN ?1 << 32 AND (?1 << 32) + 4294967295 ORDER BY id");
    if (!(s = q.get())) return fail("reading votes");
    sqlite3_bind_int64(s, 1, id);
    bool ok = true;
    while (ok && (rc = sqlite3_step(s)) == SQLITE_ROW) {
      int64_t seq = sqlite3_column_int64(s, 0), option = sqlite3_column_int64(s, 2);
      std::string voter(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)), size_t(sqlite3_column_bytes(s, 1)));
      ok = seq == p.total() && option >= 0 && option < int64_t(p.options.size()) &&
           poll_vote(p, voter, size_t(option)).outcome == VoteOutcome::Counted;
    }
    if (!ok || rc != SQLITE_DONE) {
      error_ = "poll " + std::to_string(id) + " in the database is inconsistent: votes out of order, repeated or for no option";
      return false;
    }
    *out = std::move(p);
    return true;
  }

  bool insert_poll(const Poll& p, int64_t now_ms) {
    std::string options = options_to_lines(p.options);
    sqlite3_bind_int64(insert_poll_, 1, p.id);
    sqlite3_bind_text(insert_poll_, 2, p.question.data(), int(p.question.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_poll_, 3, options.data(), int(options.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert_poll_, 4, now_ms);
    return store_->write(insert_poll_);
  }

  // Vote number `seq` (0, 1, 2... within the poll), written by this turn's commit.
  void insert_vote(int64_t poll_id, int64_t seq, std::string_view voter, size_t option, int64_t at_ms) {
    votes_->row(poll_id << 32 | seq, voter, int64_t(option), at_ms);
  }

 private:
  static constexpr const char* SCHEMA = R"sql(
    CREATE TABLE IF NOT EXISTS polls (
      id         INTEGER PRIMARY KEY,
      question   TEXT NOT NULL,
      options    TEXT NOT NULL,  -- one per line
      created_at INTEGER NOT NULL  -- epoch ms
    );
    CREATE TABLE IF NOT EXISTS votes (
      id      INTEGER PRIMARY KEY,  -- poll_id * 2^32 + the vote's number in the poll
      poll_id INTEGER GENERATED ALWAYS AS (id >> 32) VIRTUAL,
      voter   TEXT NOT NULL,
      option  INTEGER NOT NULL,     -- index into the poll's options
      at      INTEGER NOT NULL      -- epoch ms
    );
  )sql";
  bool fail(const char* what) {
    error_ = std::string(what) + ": " + store_->error();
    return false;
  }
  Store* store_ = nullptr;
  RowBatch* votes_ = nullptr;
  sqlite3_stmt* insert_poll_ = nullptr;
  std::string error_;
};

// ---- Storage in Redis (--redis) --------------------------------------------------------
//
// Keys: sse:poll:current (the poll's id), sse:poll:<id> (a hash: question,
// options one per line), sse:poll:<id>:voters (voter → option index),
// sse:poll:<id>:counts (option index → votes). Each write is one Lua
// script, so it decides and applies atomically however many processes send
// votes; it publishes "poll <version>" on sse:changed. Shortcut: the scripts
// name keys they build themselves, as a single Redis allows (a Redis Cluster
// would not).
//
// The stream's version (the event id on every process) is not stored: it is
// the poll's id followed by its voters in 10 digits (--max-voters is at most
// 10^9), poll 3 with 42 voters making "30000000042". Votes are only added
// and a new poll has a greater id, so the version grows with the state, and
// one version is one state, whichever process reads it — without a counter
// that would cost every vote a call and its bytes in the append-only file.
// Versions only grow, past those of older builds too.

// A turn's votes (batched: see RedisScripts): ARGV four per vote — voter,
// option, the poll the page shows ("" if none), max voters. For each, in
// order: {status, id, options, option index, total, counts...}; 410 and
// 503 carry only {status, id}, 400 {status, id, options}. Decided one by
// one as if they had come alone; what is the same for all is done once:
// the poll and its options, the voters so far and the counts are read
// once and kept in step here, each option's new votes go in one HINCRBY,
// one PUBLISH says the new version. Each redis.call costs Redis about a
// microsecond, as much as the rest of the script, so a first vote makes
// one (HSETNX records the voter and says whether they are new).
inline constexpr const char* POLL_VOTE_LUA = R"lua(
local out = {}
local id = redis.call('GET', 'sse:poll:current')
local p = 'sse:poll:' .. (id or '')
local voters, options, names = p .. ':voters', id and redis.call('HGET', p, 'options') or '', {}
for name in string.gmatch(options, '[^\n]+') do names[#names + 1] = name end
local total, counts, added = nil, {}, {}
for k = 1, #ARGV, 4 do
  local voter, option, shown, n = ARGV[k], ARGV[k + 1], ARGV[k + 2], (k + 3) / 4
  local idx = -1
  for i, name in ipairs(names) do
    if name == option then idx = i - 1 end
  end
  if not id then
    out[n] = {503, '0'}
  elseif shown ~= '' and shown ~= id then
    out[n] = {410, id}
  elseif idx < 0 then
    out[n] = {400, id, options}
  else
    if not total then
      total = redis.call('HLEN', voters)
      local fields = {}
      for i = 1, #names do fields[i] = i - 1 end
      for i, c in ipairs(redis.call('HMGET', p .. ':counts', unpack(fields))) do counts[i] = tonumber(c or '0') end
    end
    local status = 200
    if total < tonumber(ARGV[k + 3]) and redis.call('HSETNX', voters, voter, idx) == 1 then
      total = total + 1
      counts[idx + 1] = counts[idx + 1] + 1
      added[idx + 1] = (added[idx + 1] or 0) + 1
    else
      local before = redis.call('HGET', voters, voter)
      if before then status, idx = 409, tonumber(before) else status = 503 end
    end
    if status == 503 then
      out[n] = {503, id}
    else
      out[n] = {status, id, options, idx, total, unpack(counts)}
    end
  end
end
local changed = false
for i, d in pairs(added) do
  redis.call('HINCRBY', p .. ':counts', i - 1, d)
  changed = true
end
if changed then redis.call('PUBLISH', 'sse:changed', string.format('poll %s%010d', id, total)) end
return out
)lua";

// The stream's state: {version (text), id, question, options, total, counts...}, or {0}.
inline constexpr const char* POLL_STATE_LUA = R"lua(
local id = redis.call('GET', 'sse:poll:current')
if not id then return {0} end
local p = 'sse:poll:' .. id
local q = redis.call('HMGET', p, 'question', 'options')
local total = redis.call('HLEN', p .. ':voters')
local out, fields = {string.format('%s%010d', id, total), id, q[1], q[2], total}, {}
for _ in string.gmatch(q[2], '[^\n]+') do fields[#fields + 1] = #fields end
if #fields > 0 then
  for i, c in ipairs(redis.call('HMGET', p .. ':counts', unpack(fields))) do out[5 + i] = tonumber(c or '0') end
end
return out
)lua";

// A new poll: ARGV question, options (one per line), and "first" to make it
// only if there is none yet (every process starting up asks). {id} or {0}.
inline constexpr const char* POLL_NEW_LUA = R"lua(
if ARGV[3] == 'first' and redis.call('EXISTS', 'sse:poll:current') == 1 then return {0} end
local id = redis.call('INCR', 'sse:poll:ids')
redis.call('HSET', 'sse:poll:' .. id, 'question', ARGV[1], 'options', ARGV[2])
redis.call('SET', 'sse:poll:current', id)
redis.call('PUBLISH', 'sse:changed', string.format('poll %d0000000000', id))
return {id}
)lua";

// What `voter` voted for: {id, options, option index or -1}.
inline constexpr const char* POLL_ME_LUA = R"lua(
local id = redis.call('GET', 'sse:poll:current')
if not id then return {'0', '', -1} end
local p = 'sse:poll:' .. id
return {id, redis.call('HGET', p, 'options'), tonumber(redis.call('HGET', p .. ':voters', ARGV[1]) or '-1')}
)lua";

// A poll without its ballots from reply elements: id, options, and from
// `counts_at` on the counts (the total is theirs summed).
inline Poll poll_from_reply(const redisReply* r, size_t id_at, std::string question, size_t options_at, size_t counts_at) {
  std::string_view id = reply_text(r, id_at);
  Poll p = poll_new(std::atoll(std::string(id).c_str()), std::move(question), options_from_lines(reply_text(r, options_at)));
  for (size_t i = 0; i < p.counts.size(); i++) p.counts[i] = reply_number(r, counts_at + i);
  return p;
}

// ---- Routes ---------------------------------------------------------------------------

class PollApp : public App {
 public:
  int64_t interval_ms = 5000;  // flags
  size_t max_voters = 1'000'000;
  std::string first_question = "Which live demo should we build next?";
  std::string first_options = "Stock ticker,Chat room,Live scores,Auction";
  Poll poll;
  PollStorage storage;
  int64_t stored_poll = 0;  // what the last commit stored: the poll, and how many of its votes
  size_t stored_ballots = 0;

  // True when the current poll, or the ballot in row `row` (-1: none), is
  // not stored yet: an answer that reads it must wait for the commit.
  bool unstored(int64_t row) const { return poll.id != stored_poll || (row >= 0 && size_t(row) >= stored_ballots); }

  std::string vote_answer(bool ok, std::string_view message, size_t option) const { return vote_json(poll, ok, message, option); }

  static Answer poll_over(int64_t id) { return refusal(410, "that poll is over; vote in poll " + std::to_string(id)); }
  Answer poll_full() const {
    return refusal(503, "this poll has reached its limit of " + std::to_string(max_voters) +
                            " voters (--max-voters); a new poll starts counting again");
  }
  static Answer no_option(const Poll& p, bool has_option, const std::string& option) {
    std::string valid;
    for (const std::string& o : p.options) valid += (valid.empty() ? "'" : ", '") + o + "'";
    return refusal(400, (has_option ? "no option '" + option + "'" : "send an 'option' field") + "; the options are " + valid);
  }

  // POST /vote
  Answer vote(const Request& req) {
    std::string voter, option, shown;
    bool has_option = false, has_poll = false;
    if (auto no = req.identity("voter", &voter)) return *no;
    if (auto no = req.form("option", &option, &has_option)) return *no;
    if (auto no = req.form("poll", &shown, &has_poll)) return *no;  // the poll the page shows
    if (redis) return vote_in_redis(req, voter, option, has_option, has_poll ? shown : "");
    if (unstored(-1)) return wait_for_commit();  // a poll started this turn: nothing said of it yet
    if (has_poll && shown != std::to_string(poll.id)) return poll_over(poll.id);
    int index = poll_option(poll, option);
    if (index < 0) return no_option(poll, has_option, option);
    VoteResult v = poll_vote(poll, voter, size_t(index), max_voters);
    // A refusal changes nothing, but the tallies it reports must be stored first.
    if (v.outcome != VoteOutcome::Counted && unstored(poll.total() - 1)) return wait_for_commit();
    if (v.outcome == VoteOutcome::Full) return poll_full();
    if (v.outcome == VoteOutcome::Already) return json_answer(409, vote_answer(false, "already voted", v.option));
    if (!storage.hold()) {  // the lock before the "counted": see the red packets' grab
      poll_undo_last_vote(poll);
      return write_refused(storage.store(), storage.error());
    }
    storage.insert_vote(poll.id, int64_t(v.row), voter, v.option, req.wall_ms);  // written by this turn's commit
    Answer a = json_answer(200, vote_answer(true, {}, v.option));
    a.changed = true;
    a.undo = [this] { poll_undo_last_vote(poll); };  // undone newest first: this vote is the last
    return a;
  }

  // GET /vote/me: what this browser (its uid cookie only: a ?voter= would
  // let anyone look up anyone's vote) voted for in the current poll.
  Answer me(const Request& req) {
    std::string_view voter = req.uid();
    if (!valid_user(voter)) return refusal(400, "no identity: load a page first for a uid cookie");
    if (redis) return me_in_redis(req, voter);
    int64_t row = poll.ballot_of(voter);
    if (unstored(row)) return wait_for_commit();
    return json_answer(200, me_json(poll.id, row < 0 ? nullptr : &poll.options[poll.ballots[size_t(row)].option]));
  }

  // Makes a new poll the current one. Returns the one it replaced, or
  // nullptr if the store refused the new one.
  std::shared_ptr<Poll> start_poll(std::string question, std::vector<std::string> options, int64_t wall_ms) {
    Poll p = poll_new(poll.id + 1, std::move(question), std::move(options));
    if (!storage.insert_poll(p, wall_ms)) return nullptr;
    auto previous = std::make_shared<Poll>(std::move(poll));
    poll = std::move(p);
    return previous;
  }

  // POST /vote/polls (admin)
  Answer new_poll(const Request& req) {
    std::string question, options;
    if (auto no = req.form("question", &question)) return *no;
    if (auto no = req.form("options", &options)) return *no;
    std::vector<std::string> list = split_options(options);
    if (auto why = poll_refusal(question, list)) return refusal(400, *why);
    if (redis) return new_poll_in_redis(req, question, list);
    std::shared_ptr<Poll> previous = start_poll(std::move(question), std::move(list), req.wall_ms);
    if (!previous) return write_refused(storage.store(), storage.error());
    log_app("poll: poll " + std::to_string(poll.id) + " started with " + std::to_string(poll.options.size()) + " options");
    Answer a = json_answer(200, "{\"ok\":true," + poll_json(poll).substr(1));
    a.changed = true;
    a.undo = [this, previous] { poll = std::move(*previous); };
    return a;
  }

  // ---- In Redis (--redis) ---------------------------------------------------------------
  //
  // The same routes, each one script call whose reply makes the answer.

  Redis* redis = nullptr;
  RedisScripts scripts;
  size_t vote_lua = scripts.add(POLL_VOTE_LUA, 4), state_lua = scripts.add(POLL_STATE_LUA), new_lua = scripts.add(POLL_NEW_LUA),
         me_lua = scripts.add(POLL_ME_LUA);

  Answer vote_in_redis(const Request& req, const std::string& voter, const std::string& option, bool has_option, const std::string& shown) {
    std::string max = std::to_string(max_voters);
    return redis_answer(req, scripts, vote_lua, {voter, option, shown, max}, [this, option, has_option](const redisReply* r) {
      int64_t status = reply_number(r, 0);
      Poll p = poll_from_reply(r, 1, "", 2, 5);
      if (status == 410) return poll_over(p.id);
      if (status == 503) return poll_full();
      if (status == 400) return no_option(p, has_option, option);
      size_t index = size_t(reply_number(r, 3));
      if (index >= p.options.size()) return redis_unclear();
      return json_answer(int(status), vote_json(p, status == 200, "already voted", index));
    });
  }

  Answer me_in_redis(const Request& req, std::string_view voter) {
    return redis_answer(req, scripts, me_lua, {voter}, [](const redisReply* r) {
      Poll p = poll_from_reply(r, 0, "", 1, 3);
      int64_t index = reply_number(r, 2);
      bool voted = index >= 0 && index < int64_t(p.options.size());
      return json_answer(200, me_json(p.id, voted ? &p.options[size_t(index)] : nullptr));
    });
  }

  Answer new_poll_in_redis(const Request& req, const std::string& question, const std::vector<std::string>& options) {
    std::string lines = options_to_lines(options);
    return redis_answer(req, scripts, new_lua, {question, lines, ""}, [question, options](const redisReply* r) {
      Poll p = poll_new(reply_number(r, 0), question, options);
      log_app("poll: poll " + std::to_string(p.id) + " started with " + std::to_string(p.options.size()) + " options");
      return json_answer(200, "{\"ok\":true," + poll_json(p).substr(1));
    });
  }

  // The stream's state, read from Redis.
  void fetch(SnapshotDone done) {
    auto got = [done](const redisReply* r) {
      std::optional<uint64_t> version = reply_version(r, 0);
      if (!version) return done(nullptr);
      Poll p = poll_from_reply(r, 1, std::string(reply_text(r, 2)), 3, 5);
      Snapshot s{poll_json(p), *version};
      done(&s);
    };
    if (!scripts.call(state_lua, {}, got)) done(nullptr);
  }

  // On every connect: the scripts, then the first poll if Redis has none.
  void redis_connected() override {
    scripts.load(*redis);
    std::string lines = options_to_lines(split_options(first_options));
    redis->command({"EVAL", POLL_NEW_LUA, "0", first_question, lines, "first"}, nullptr);
  }

  // ---- Descriptor ---------------------------------------------------------------------

  int open(Store& store, int64_t wall_ms, std::string* why) override {
    std::optional<Poll> loaded;
    if (!storage.open(store) || !storage.load(&loaded)) return *why = storage.error(), 1;
    if (loaded) {
      poll = std::move(*loaded);
    } else {
      std::vector<std::string> options = split_options(first_options);
      if (auto no = poll_refusal(first_question, options)) return *why = "--poll-question/--poll-options: " + *no, 2;
      if (!start_poll(first_question, std::move(options), wall_ms) || !store.commit()) return *why = storage.error(), 1;
    }
    committed();
    return 0;
  }
  void committed() override {
    stored_poll = poll.id;
    stored_ballots = poll.ballots.size();
  }

  const char* name() const override { return "poll"; }
  FlagGroup flags() override {
    return {"the poll", {
        {"--vote-interval", FlagKind::Seconds, &interval_ms, 0.001, 86400, "seconds between tally pushes on /vote/result-sse"},
        {"--max-voters", FlagKind::Size, &max_voters, 1, 1e9, "voters one poll counts; past it a new voter gets 503"},  // ≤ 10^9: the version's 10 digits
        {"--poll-question", FlagKind::Text, &first_question, 0, 0, "question of the poll made on first start"},
        {"--poll-options", FlagKind::Text, &first_options, 0, 0, "its options, comma-separated"}}};
  }
  std::vector<StreamSpec> streams() override {
    return {{.paths = {"/vote/result-sse"},
             .name = "poll",
             .period_ms = interval_ms,
             .render = [this](int64_t) { return poll_json(poll); },
             .repeat = true,
             .fetch = std::bind_front(&PollApp::fetch, this)}};
  }
  std::vector<RouteSpec> routes() override {
    return {{.path = "/vote", .methods = "POST", .handler = std::bind_front(&PollApp::vote, this)},
            {.path = "/vote/me", .methods = "GET, HEAD", .handler = std::bind_front(&PollApp::me, this)},
            {.path = "/vote/polls", .methods = "POST", .handler = std::bind_front(&PollApp::new_poll, this), .admin = true}};
  }
  bool has_redis_mode() const override { return true; }
  int open_redis(Redis& r, std::string* why) override {
    redis = &r;
    if (auto no = poll_refusal(first_question, split_options(first_options))) return *why = "--poll-question/--poll-options: " + *no, 2;
    return 0;
  }
};

// The server's one instance (tests make their own).
inline App& poll_app() { static PollApp app; return app; }
