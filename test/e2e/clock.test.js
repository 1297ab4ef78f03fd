// The home page: a live clock over /sse, and a connection indicator that
// tells the truth through a server restart.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser;
before(async () => { browser = await h.launchBrowser(); });
after(async () => { await browser?.close(); });

test('the clock ticks, and the indicator follows the server down and back up', async () => {
  const server = await h.startServer(['--clock-interval', '0.3']);
  let again;
  try {
    const page = await h.openPage(browser, server.base + '/');
    await page.waitForFunction(() => Number(document.querySelector('#count').textContent) >= 2, null, { timeout: 5000 });
    const first = await page.textContent('#clock');
    assert.match(first, /^\d\d:\d\d:\d\d$/);
    assert.equal(await page.getAttribute('#conn', 'data-state'), 'open');
    assert.equal((await page.textContent('#conn')).trim(), 'connected');
    await h.screenshot(page, 'clock-connected');

    // Stop the server: the page must say so, and not pretend.
    page.expectingStreamLoss = true;
    await server.stop();
    await page.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 5000 });
    await h.screenshot(page, 'clock-reconnecting');

    // Same port, same database: the page comes back by itself.
    again = await h.startServer(['--clock-interval', '0.3', '--port', String(server.port)], server.dir);
    await page.waitForSelector('#conn[data-state="open"]', { timeout: 15000 });
    const count = Number(await page.textContent('#count'));
    await page.waitForFunction((n) => Number(document.querySelector('#count').textContent) > n, count, { timeout: 5000 });
    // While the server was down the browser logged its refused reconnects;
    // anything else is a real problem.
    page.problems = page.problems.filter((p) => !/ERR_CONNECTION_REFUSED|EventSource|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE/.test(p));
    h.expectClean(page);
  } finally {
    await server.stop();
    await again?.stop();
  }
});
