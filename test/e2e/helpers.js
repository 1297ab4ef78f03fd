// helpers.js — what every browser test needs: the real server and a real
// Chromium, both started fresh and both stopped for sure.
//
// The server is ../../sse-server (or $SSE_SERVER) on --port 0, bound to
// 127.0.0.1, with a database in a new temporary directory; its port comes
// from the first line it prints, and it is stopped by PID. The browser is
// Debian's /usr/bin/chromium driven by playwright-core (never a browser
// downloaded by Playwright), headless, with background networking off: this
// machine reaches nothing but loopback, and Chromium's own calls home would
// show up as failed requests.
//
// Every page a test opens records console messages, page errors and failed
// requests; `expectClean` fails the test if there were any.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const assert = require('node:assert/strict');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const SERVER = process.env.SSE_SERVER || path.join(ROOT, 'sse-server');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(__dirname, 'screenshots');
const ADMIN_TOKEN = 'e2e-admin-token';

// Starts the server; resolves to { port, base, pid, stop(), db }. Extra
// flags go after the defaults. Gives up after 5 s.
async function startServer(flags = [], dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-e2e-'))) {
  const db = path.join(dir, 'e2e.db');
  const args = ['--port', '0', '--bind', '127.0.0.1', '--db', db, '--admin-token', ADMIN_TOKEN, '--quiet', ...flags];
  const child = spawn(SERVER, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 5000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
  });
  child.stdout.resume();
  const stop = () => stopProcess(child);
  return { port, base: `http://127.0.0.1:${port}`, pid: child.pid, stop, db, dir };
}

// SIGTERM, then SIGKILL after 2 s; resolves to the exit code.
function stopProcess(child) {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code === null ? 128 + os.constants.signals[signal] : code);
    });
    child.kill('SIGTERM');
  });
}

async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--disable-default-apps'],
  });
}

// A new page (in its own context: its own cookies, so its own identity)
// that records everything that went wrong on it.
async function openPage(browser, url, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (msg) => {
    // Chromium logs every 4xx or 5xx answer to a fetch as a console error;
    // one the test expects (page.expectedErrors) is not a problem there either.
    const status = msg.text().match(/^Failed to load resource: the server responded with a status of (\d+)/);
    if (status && page.expectedErrors?.includes(Number(status[1]))) return;
    if (msg.type() === 'error' || msg.type() === 'warning') page.problems.push(`console ${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    // A stream the browser itself cancels (the page reloads or closes) is
    // not a failure; neither is one cut while the test stops the server.
    const cancelled = req.resourceType() === 'eventsource' && req.failure()?.errorText === 'net::ERR_ABORTED';
    if (!cancelled && !page.expectingStreamLoss) page.problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && !page.expectedErrors?.includes(res.status()))
      page.problems.push(`HTTP ${res.status()}: ${res.url()}`);
  });
  await page.goto(url);
  return page;
}

function expectClean(page) {
  assert.deepEqual(page.problems, [], `problems on ${page.url()}`);
}

// Nothing on the page is wider than the viewport.
async function expectNoHorizontalOverflow(page) {
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  assert.ok(scroll <= client, `page is ${scroll}px wide in a ${client}px viewport`);
}

async function screenshot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

// A form POST from the test itself (not from a page), e.g. an admin action.
async function post(base, route, form, headers = {}) {
  const res = await fetch(base + route, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: res.status, body: await res.json() };
}

const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };

module.exports = {
  startServer, launchBrowser, openPage, expectClean, expectNoHorizontalOverflow, screenshot, post, admin, ADMIN_TOKEN,
};
