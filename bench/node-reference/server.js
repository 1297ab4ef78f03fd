// server.js — the tutorials' Node.js + Express SSE design, as a benchmark baseline.
//
// The four tutorials this project grew from (a clock, red packets, a poll, a
// cinema board) all build their server the same way: an Express app; for each
// stream, res.writeHead() with text/event-stream, no-cache and keep-alive; a
// setInterval *per connection* that JSON-encodes the current state and writes
// `data: ...\n\n`; req.on('close') to clear that timer; bodyParser for the form
// posts. This file is that design, written once, so that a benchmark compares
// the C++ server with what a reader of those tutorials would otherwise run.
//
// It is kept faithful on purpose, including the parts that cost: every
// subscriber owns a timer, and every tick of every timer encodes the state
// again and writes it whether or not it changed. That cost is what is being
// measured, so do not "fix" it here. Two departures, both for fairness: each
// stream sends one event as soon as it opens (the tutorials make a subscriber
// wait a full interval; the C++ server sends a snapshot at once), and the flag
// below.
//
// Push modes. By default a vote or a grab changes memory and nothing else:
// subscribers see it on their next tick, up to 5 s later for the poll and 1 s
// for the red packets, as in the tutorials. With --push-on-change, the server
// also keeps a Set of open poll and red-packet streams and, right after each
// vote, grab or new round, encodes the new state once and writes it to every
// one of them. That is the fairest version of the Node design, and the one to
// set against the C++ server when measuring how fast a change fans out. The
// per-connection timers keep running in both modes.
//
// Left out, because the tutorials have none of it either: persistence (state
// is in memory and dies with the process), auth (anyone may start a round),
// heartbeats, Last-Event-ID, cluster mode, and a cap on what a slow reader may
// leave queued (res.write()'s return value is ignored, so Node buffers without
// bound). Left out although the tutorials have it: the console.log on every
// connect and disconnect (it would measure the terminal), and the cinema board
// (it needs MongoDB, which would measure the database instead).
'use strict';

const express = require('express');

// ---- Flags --------------------------------------------------------------------------

const USAGE = 'usage: node server.js [--port N] [--redpacket-count N] [--redpacket-total CENTS]\n' +
  '                      [--poll-options "A,B,..."] [--push-on-change]\n';

const CLOCK_INTERVAL_MS = 3000;      // the clock tutorial's rhythm
const REDPACKET_INTERVAL_MS = 1000;  // the red-packet tutorial's rhythm
const POLL_INTERVAL_MS = 5000;       // the poll tutorial's rhythm
const MAX_PACKETS = 1000000;         // as the C++ server: a round big enough for a wrk run

// Reads process.argv into an options object; prints the usage and exits 2 on
// anything it does not understand.
function parse_flags(argv) {
  const flags = { port: 3000, redpacket_count: 100, redpacket_total_cents: 10000,
    poll_options: 'Stock ticker,Chat room,Live scores,Auction', push_on_change: false };
  const fail = (why) => { process.stderr.write(`${why}\n${USAGE}`); process.exit(2); };
  const whole = (text) => (/^\d+$/.test(text || '') ? Number(text) : fail(`not a whole number: ${text}`));
  for (let i = 2; i < argv.length; i++) {
    switch (argv[i]) {
      case '--port': flags.port = whole(argv[++i]); break;
      case '--redpacket-count': flags.redpacket_count = whole(argv[++i]); break;
      case '--redpacket-total': flags.redpacket_total_cents = whole(argv[++i]); break;
      case '--poll-options': flags.poll_options = argv[++i] || fail('--poll-options needs a list'); break;
      case '--push-on-change': flags.push_on_change = true; break;
      default: fail(`unknown flag: ${argv[i]}`);
    }
  }
  const why = round_refusal(flags.redpacket_total_cents, flags.redpacket_count);
  if (why) fail(why);
  return flags;
}

// ---- Red packets: one round in memory -----------------------------------------------

// Why a round cannot be made, or null when it can.
function round_refusal(total_cents, count) {
  if (!Number.isSafeInteger(count) || count < 1 || count > MAX_PACKETS) return `count must be from 1 to ${MAX_PACKETS}`;
  if (!Number.isSafeInteger(total_cents) || total_cents < count) return 'total_cents must be at least count';
  return null;
}

// The double-mean split: with `left` cents and n packets to go, the next packet
// is uniform in [1, 2*left/n - 1] cents, so it averages left/n and leaves at
// least a cent for each packet after it; the last takes the rest. Math.random
// is not a fair lottery for real money; for a benchmark it is enough.
function split_double_mean(total_cents, count) {
  const amounts = [];
  let left = total_cents;
  for (let n = count; n > 1; n--) {
    const max = Math.floor((2 * left) / n) - 1;
    const amount = 1 + Math.floor(Math.random() * max);
    amounts.push(amount);
    left -= amount;
  }
  amounts.push(left);
  return amounts;
}

function round_new(id, total_cents, count) {
  return { id, total_cents, amounts: split_double_mean(total_cents, count), by_user: new Map() };
}

function round_snapshot(r) {
  return { round: r.id, total_cents: r.total_cents, count: r.amounts.length,
    remaining: r.amounts.length - r.by_user.size };
}

const cents_text = (cents) => `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;

// ---- The poll -------------------------------------------------------------------------

function poll_new(names) {
  return { id: 1, names, counts: names.map(() => 0), by_voter: new Map(), total: 0 };
}

// Percentages with one decimal, as the C++ server prints them (42.9).
function poll_snapshot(p) {
  const percent = (count) => (p.total === 0 ? 0 : Math.round((count * 1000) / p.total) / 10);
  return { poll: p.id, options: p.names.map((name, i) => ({ name, count: p.counts[i], percent: percent(p.counts[i]) })),
    total: p.total };
}

// ---- Streams ---------------------------------------------------------------------------

// The tutorials' stream handler, once for all three streams: headers, a timer
// of this connection's own that writes the snapshot every interval_ms, and the
// timer cleared on close. `subscribers` (a Set, or null) is where the response
// is kept for --push-on-change.
function stream_every(interval_ms, snapshot, subscribers) {
  return (req, res) => {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      'Connection': 'keep-alive',
    });
    const send = () => res.write(`data: ${JSON.stringify(snapshot())}\n\n`);
    send();  // added for fairness with the C++ server: no waiting a full interval for the first event
    const timer = setInterval(send, interval_ms);
    if (subscribers) subscribers.add(res);
    req.on('close', () => {
      clearInterval(timer);
      if (subscribers) subscribers.delete(res);
    });
  };
}

// --push-on-change only: encode once, write to every open stream of that kind.
function push_to(subscribers, value) {
  const event = `data: ${JSON.stringify(value)}\n\n`;
  for (const res of subscribers) res.write(event);
}

// ---- Routes ----------------------------------------------------------------------------

const INDEX_HTML = `<!doctype html>
<meta charset="utf-8"><title>node-reference</title>
<h1>node-reference</h1><p>The tutorials' Express design. Streams: /sse, /redpacket/events, /vote/result-sse.</p>
<pre id="clock">connecting…</pre>
<script>new EventSource('/sse').onmessage = (e) => { document.getElementById('clock').textContent = e.data; };</script>
`;

function make_app(flags) {
  let round = round_new(1, flags.redpacket_total_cents, flags.redpacket_count);
  const poll = poll_new(flags.poll_options.split(',').map((s) => s.trim()).filter((s) => s));
  const round_streams = flags.push_on_change ? new Set() : null;
  const vote_streams = flags.push_on_change ? new Set() : null;
  const fail = (res, status, message) => res.status(status).json({ ok: false, message });
  const text_field = (body, key) => (typeof body[key] === 'string' && body[key] !== '' ? body[key] : null);

  const app = express();
  app.use(express.urlencoded({ extended: false }));  // bodyParser.urlencoded, which Express now bundles

  app.get('/', (req, res) => res.type('html').send(INDEX_HTML));
  app.get('/healthz', (req, res) => res.type('text/plain').send('ok\n'));
  app.get('/sse', stream_every(CLOCK_INTERVAL_MS, () => {
    const now = new Date();
    return { time: now.toISOString(), epoch_ms: now.getTime() };
  }, null));

  // A user's second grab answers with the packet they already hold, even once the round is empty.
  function on_grab(req, res) {
    const user = text_field(req.body, 'user');
    if (user === null) return fail(res, 400, "'user' is required");
    let packet = round.by_user.get(user);
    const already = packet !== undefined;
    if (!already) {
      if (round.by_user.size === round.amounts.length) return fail(res, 410, 'all red packets have been taken');
      packet = round.by_user.size;
      round.by_user.set(user, packet);
      if (round_streams) push_to(round_streams, round_snapshot(round));
    }
    const cents = round.amounts[packet];
    res.json({ ok: true, ...(already && { already: true }), amount_cents: cents, amount: cents_text(cents),
      remaining: round.amounts.length - round.by_user.size, round: round.id });
  }
  app.post('/grab', on_grab);
  app.post('/redpacket/grab', on_grab);

  // No auth, unlike the C++ server's admin token: the tutorials have none.
  app.post('/redpacket/rounds', (req, res) => {
    const total_cents = Number(req.body.total_cents), count = Number(req.body.count);
    const why = round_refusal(total_cents, count);
    if (why) return fail(res, 400, why);
    round = round_new(round.id + 1, total_cents, count);
    if (round_streams) push_to(round_streams, round_snapshot(round));
    res.json({ ok: true, ...round_snapshot(round) });
  });
  app.get('/redpacket/events', stream_every(REDPACKET_INTERVAL_MS, () => round_snapshot(round), round_streams));

  app.post('/vote', (req, res) => {
    const voter = text_field(req.body, 'voter');
    if (voter === null) return fail(res, 400, "'voter' is required");
    const option = poll.names.indexOf(req.body.option);
    if (option < 0) return fail(res, 400, 'unknown option');
    if (poll.by_voter.has(voter)) return fail(res, 409, 'already voted');
    poll.by_voter.set(voter, option);
    poll.counts[option]++;
    poll.total++;
    if (vote_streams) push_to(vote_streams, poll_snapshot(poll));
    res.json({ ok: true, voted_for: poll.names[option], counts: poll.counts, total: poll.total });
  });
  app.get('/vote/result-sse', stream_every(POLL_INTERVAL_MS, () => poll_snapshot(poll), vote_streams));

  return app;
}

// ---- Start and stop --------------------------------------------------------------------

function main() {
  const flags = parse_flags(process.argv);
  const server = make_app(flags).listen(flags.port, '127.0.0.1', () => {
    process.stdout.write(`node-reference listening on http://127.0.0.1:${server.address().port}\n`);
  });
  server.on('error', (err) => { process.stderr.write(`node-reference: ${err.message}\n`); process.exit(1); });
  // Streams never end by themselves, so close() alone would wait for them forever:
  // drop every connection, which fires each req 'close' and clears its timer.
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
