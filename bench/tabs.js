// tabs.js — twelve tabs of the four pages in one browser: how many load
// and go live, and how long each takes (issue #26's last row).
//
// For each SERVER_DIR given (a checkout with its built sse-server and its
// public/), starts that server (--port 0, a fresh database, 127.0.0.1) and
// Debian's Chromium (headless, through test/e2e's playwright-core), opens
// 12 tabs in one browser context, cycling /, /redpacket, /cinema, /vote,
// one after another, and waits at most 5 s for each page's connection
// indicator to say "connected". Over HTTP/1.1 a browser keeps six
// connections per host: with one EventSource per page, tab 7 waits for a
// connection that never frees. Prints one line per tab and a summary per
// checkout; every server is stopped by PID.
//
//   make deps-e2e; node bench/tabs.js . /path/to/an/older/checkout
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require(path.join(__dirname, '..', 'test', 'e2e', 'node_modules', 'playwright-core'));

const PAGES = ['/', '/redpacket', '/cinema', '/vote'];
const TABS = 12, WAIT_MS = 5000;

function startServer(checkout) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-tabs-'));
  const child = spawn(path.join(checkout, 'sse-server'),
    ['--port', '0', '--bind', '127.0.0.1', '--db', path.join(dir, 'tabs.db'), '--quiet', '--public', path.join(checkout, 'public')],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('server did not start')); }, 5000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        child.stdout.resume();
        resolve({ base: `http://127.0.0.1:${m[1]}`, stop: () => child.kill('SIGTERM') });
      }
    });
  });
}

async function twelveTabs(browser, base) {
  const context = await browser.newContext();
  const rows = [];
  try {
    for (let i = 0; i < TABS; i++) {
      const page = await context.newPage();
      const t0 = Date.now();
      let ms = null;
      try {
        await page.goto(base + PAGES[i % 4], { timeout: WAIT_MS });
        await page.waitForSelector('#conn[data-state="open"]', { timeout: Math.max(1, WAIT_MS - (Date.now() - t0)) });
        ms = Date.now() - t0;
      } catch (err) {
        // not live within WAIT_MS
      }
      rows.push({ tab: i + 1, page: PAGES[i % 4], ms });
    }
  } finally {
    await context.close();
  }
  return rows;
}

(async () => {
  const checkouts = process.argv.slice(2);
  if (checkouts.length === 0) throw new Error('usage: node bench/tabs.js CHECKOUT [CHECKOUT...]');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update'],
  });
  try {
    for (const checkout of checkouts) {
      const server = await startServer(checkout);
      try {
        const rows = await twelveTabs(browser, server.base);
        for (const r of rows) console.log(`  ${checkout} tab ${String(r.tab).padStart(2)} ${r.page.padEnd(10)} ${r.ms === null ? `not live after ${WAIT_MS} ms` : `live in ${r.ms} ms`}`);
        const live = rows.filter((r) => r.ms !== null);
        const slowest = live.length ? Math.max(...live.map((r) => r.ms)) : NaN;
        console.log(`${checkout}: ${live.length} of ${TABS} tabs live; slowest ${slowest} ms`);
      } finally {
        server.stop();
      }
    }
  } finally {
    await browser.close();
  }
})().catch((err) => { console.error(err.message); process.exit(1); });
