// Many tabs in one browser: the four pages, three times each, share one
// connection (public/live.js). Over HTTP/1.1 a browser keeps six
// connections per host, so with a connection per page the seventh tab
// would never load. Every tab loads and goes live, every change made from
// outside reaches every tab that shows it, the server sees one stream
// connection, and the tabs go on when the one holding it closes.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser;
before(async () => { browser = await h.launchBrowser(); });
after(async () => { await browser?.close(); });

const PAGES = ['/', '/redpacket', '/cinema', '/vote'];
const PUSH_GAP_MS = 100;  // the server's default --push-gap-ms

// A tab in `context` that records its problems as h.openPage's do.
async function openTab(context, url) {
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') page.problems.push(`console ${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const cancelled = req.resourceType() === 'eventsource' && req.failure()?.errorText === 'net::ERR_ABORTED';
    if (!cancelled) page.problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
  });
  const t0 = Date.now();
  await page.goto(url, { timeout: 2000 });
  await page.waitForSelector('#conn[data-state="open"]', { timeout: 2000 });
  page.loadedMs = Date.now() - t0;
  return page;
}

async function metric(base, name) {
  const text = await (await fetch(base + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line === undefined ? NaN : Number(line.slice(name.length + 1));
}

// Resolves once `pred` (run in the page) is true, within `ms`.
const within = (page, ms, pred, arg) => page.waitForFunction(pred, arg, { timeout: ms });
const roleOf = (page) => page.getAttribute('#conn', 'data-role');

test('12 tabs of the four pages in one browser: all live on one connection, through a change of leader', async () => {
  const server = await h.startServer();
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  try {
    let tabs = [];
    for (let i = 0; i < 12; i++) {
      tabs.push(await openTab(context, server.base + PAGES[i % 4]));
      tabs[i].kind = PAGES[i % 4];
      assert.ok(tabs[i].loadedMs < 2000, `tab ${i + 1} (${tabs[i].kind}) took ${tabs[i].loadedMs} ms`);
    }
    const of = (path) => tabs.filter((t) => t.kind === path);
    assert.equal(await roleOf(tabs[0]), 'leader');
    for (const t of tabs.slice(1)) assert.equal(await roleOf(t), 'follower');
    // One stream connection for the whole browser, carrying all four streams.
    assert.equal(await metric(server.base, 'sse_live_subscribers'), 1);
    for (const s of ['clock', 'redpacket', 'poll', 'cinema'])
      assert.equal(await metric(server.base, `sse_subscribers{stream="${s}"}`), 1, s);
    await h.screenshot(tabs[0], 'tabs-leader');
    await h.screenshot(tabs[6], 'tabs-follower-cinema');
    await h.screenshot(tabs[11], 'tabs-follower-vote');

    // Changes from outside reach every tab that shows them.
    const changes = async (label) => {
      const ms = PUSH_GAP_MS + 500;
      const remaining = Number(await of('/redpacket')[0].textContent('#remaining'));
      const total = Number(await of('/vote')[0].textContent('#total'));
      const movie = `Film ${label}`;
      const starts = new Date(Date.now() + 30 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
      const ticks = await Promise.all(of('/').map((t) => t.textContent('#count').then(Number)));
      assert.equal((await h.post(server.base, '/redpacket/grab', { user: `outside-${label}` })).status, 200);
      assert.equal((await h.post(server.base, '/vote', { voter: `outside-${label}`, option: 'Auction' })).status, 200);
      assert.equal((await h.post(server.base, '/cinema/showtimes', { movie, hall: 'Hall 9', starts_at: starts, seats: '5' }, h.admin)).status, 201);
      await Promise.all([
        ...of('/redpacket').map((t) => within(t, ms, (n) => Number(document.querySelector('#remaining').textContent) === n, remaining - 1)),
        ...of('/vote').map((t) => within(t, ms, (n) => Number(document.querySelector('#total').textContent) === n, total + 1)),
        ...of('/cinema').map((t) => t.waitForSelector(`.movie[data-movie="${movie}"]`, { timeout: ms })),
        // The clock ticks every 3 s: each clock tab shows the next tick.
        ...of('/').map((t, k) => within(t, 3500, (n) => Number(document.querySelector('#count').textContent) > n, ticks[k])),
      ]);
    };
    await changes('one');

    // The leader closes: another tab leads within 2 s, and every tab stays live.
    await tabs[0].close();
    tabs = tabs.slice(1);
    const t0 = Date.now();
    await Promise.any(tabs.map((t) => t.waitForSelector('#conn[data-role="leader"][data-state="open"]', { timeout: 2000 })));
    assert.ok(Date.now() - t0 < 2000);
    for (const t of tabs) await t.waitForSelector('#conn[data-state="open"]', { timeout: 2000 });
    assert.equal(await metric(server.base, 'sse_live_subscribers'), 1);
    await changes('two');

    // The cinema tabs navigate away: the connection no longer carries the cinema.
    const leaving = of('/cinema');
    for (const t of leaving) await t.goto(server.base + '/healthz');
    tabs = tabs.filter((t) => !leaving.includes(t));
    await h.screenshot(of('/vote')[0], 'tabs-after-leader-closed');
    const deadline = Date.now() + 5000;
    while (await metric(server.base, 'sse_subscribers{stream="cinema"}') !== 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal(await metric(server.base, 'sse_subscribers{stream="cinema"}'), 0);
    assert.equal(await metric(server.base, 'sse_live_subscribers'), 1);
    assert.equal(await metric(server.base, 'sse_subscribers{stream="poll"}'), 1);
    for (const t of tabs) h.expectClean(t);
  } finally {
    await context.close();
    await server.stop();
  }
});

// Kills the tab's renderer, as a crash would: no pagehide, no goodbye.
async function crash(context, page) {
  const crashed = page.waitForEvent('crash', { timeout: 2000 });
  (await context.newCDPSession(page)).send('Page.crash').catch(() => {}); // never answered: the renderer is gone
  await crashed;
}

// Resolves once the metric reads `want`, within 6 s.
async function metricBecomes(base, name, want) {
  const deadline = Date.now() + 6000;
  while ((await metric(base, name)) !== want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await metric(base, name), want, name);
}

test('a tab that crashes leaves the union; a leader that crashes is replaced within 2 s', async () => {
  const server = await h.startServer();
  const context = await browser.newContext();
  try {
    const clock = await openTab(context, server.base + '/');
    const vote = await openTab(context, server.base + '/vote');
    const cinema = await openTab(context, server.base + '/cinema');
    assert.equal(await roleOf(clock), 'leader');
    await metricBecomes(server.base, 'sse_subscribers{stream="cinema"}', 1);
    // A follower's renderer dies: no goodbye, but its lock goes with it.
    await crash(context, cinema);
    await metricBecomes(server.base, 'sse_subscribers{stream="cinema"}', 0);
    assert.equal(await metric(server.base, 'sse_live_subscribers'), 1);
    // The leader's renderer dies: the vote tab takes the connection over.
    const t0 = Date.now();
    await crash(context, clock);
    await vote.waitForSelector('#conn[data-role="leader"][data-state="open"]', { timeout: 2000 });
    assert.ok(Date.now() - t0 < 2000);
    await metricBecomes(server.base, 'sse_subscribers{stream="clock"}', 0);
    assert.equal(await metric(server.base, 'sse_live_subscribers'), 1);
    assert.equal((await h.post(server.base, '/vote', { voter: 'after-crash', option: 'Auction' })).status, 200);
    await within(vote, PUSH_GAP_MS + 500, () => document.querySelector('#total').textContent === '1');
    h.expectClean(vote);
  } finally {
    await context.close();
    await server.stop();
  }
});

test('without Web Locks or BroadcastChannel a page keeps its own connection, and is live', async () => {
  const server = await h.startServer();
  const context = await browser.newContext();
  await context.addInitScript(() => { delete window.BroadcastChannel; });
  try {
    const a = await openTab(context, server.base + '/vote');
    const b = await openTab(context, server.base + '/vote');
    assert.equal(await roleOf(a), 'alone');
    assert.equal(await roleOf(b), 'alone');
    assert.equal(await metric(server.base, 'sse_live_subscribers'), 2);
    assert.equal((await h.post(server.base, '/vote', { voter: 'outside', option: 'Auction' })).status, 200);
    for (const t of [a, b]) await within(t, PUSH_GAP_MS + 500, () => document.querySelector('#total').textContent === '1');
    h.expectClean(a);
    h.expectClean(b);
  } finally {
    await context.close();
    await server.stop();
  }
});
