// The cinema board in a browser: a showtime added through the admin API
// appears on an open page within a second; a deleted one disappears.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser;
before(async () => { browser = await h.launchBrowser(); });
after(async () => { await browser?.close(); });

test('added and deleted showtimes appear and disappear on an open page', async () => {
  const server = await h.startServer();
  try {
    const page = await h.openPage(browser, server.base + '/cinema');
    await page.waitForSelector('.showtime[data-id]');
    const before = Number(await page.textContent('#count'));
    assert.equal(before, 12);  // the sample schedule
    assert.equal(await page.locator('.showtime[data-id]').count(), 12);

    const starts = new Date(Date.now() + 26 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
    const t0 = Date.now();
    const made = await h.post(server.base, '/cinema/showtimes', { movie: 'Test Pilot', hall: 'Hall 9', starts_at: starts, seats: '8' }, h.admin);
    assert.equal(made.status, 201);
    const id = made.body.showtime.id;
    await page.waitForSelector(`.movie[data-movie="Test Pilot"] .showtime[data-id="${id}"]`, { timeout: 1000 });
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(await page.textContent('#count'), String(before + 1));
    const row = await page.textContent(`.showtime[data-id="${id}"]`);
    assert.match(row, /Hall 9/);
    assert.match(row, /8 of 8 seats left/);
    // Shown in the viewer's time zone: the page's own formatting of the same instant.
    const local = await page.evaluate((iso) => new Date(iso).getHours(), starts);
    assert.ok(row.includes(String(local).padStart(2, '0') + ':'), row);
    await h.screenshot(page, 'cinema-added');

    const res = await fetch(`${server.base}/cinema/showtimes/${id}`, { method: 'DELETE', headers: h.admin });
    assert.equal(res.status, 200);
    await page.waitForSelector(`.showtime[data-id="${id}"]`, { state: 'detached', timeout: 1000 });
    await page.waitForSelector('.movie[data-movie="Test Pilot"]', { state: 'detached', timeout: 1000 });
    assert.equal(await page.textContent('#count'), String(before));
    h.expectClean(page);
  } finally {
    await server.stop();
  }
});
