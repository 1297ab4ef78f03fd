// The cinema board in a browser: a showtime added through the admin API
// appears on an open page within a second; a deleted one disappears. Two
// browsers race for the last seats of a showtime: one gets them, the other
// is told so, and both show "Sold out" without reloading. On a phone the
// booking controls fit, a refusal is shown, and "Your bookings" lists ours.
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

// An ISO instant `hours` from now, to the second, as the admin API takes it.
const fromNow = (hours) => new Date(Date.now() + hours * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
const uidOf = async (page) => (await page.context().cookies()).find((c) => c.name === 'uid')?.value;
// The row's note once it holds an answer.
const answerOf = (page, row) => page.waitForFunction((sel) => document.querySelector(`${sel} .st-note`).textContent, row, { timeout: 2000 })
  .then((handle) => handle.jsonValue());

test('two browsers book the last 2 seats at once: one gets them, the other is refused, both show Sold out live', async () => {
  const server = await h.startServer();
  try {
    const made = await h.post(server.base, '/cinema/showtimes', { movie: 'Last Seats', hall: 'Hall 7', starts_at: fromNow(30), seats: '2' }, h.admin);
    assert.equal(made.status, 201);
    const id = made.body.showtime.id;
    const row = `.showtime[data-id="${id}"]`;

    const a = await h.openPage(browser, server.base + '/cinema');
    const b = await h.openPage(browser, server.base + '/cinema', { width: 375, height: 800 });
    const pages = [a, b];
    for (const page of pages) page.expectedErrors = [409];  // the loser's answer, whichever page it is
    const [uidA, uidB] = await Promise.all(pages.map(uidOf));
    assert.ok(uidA && uidB && uidA !== uidB, 'two browsers, two identities');

    // Both ask for 2 seats; then both buttons are pressed with real mouse
    // clicks at once. The positions are measured first, so neither click
    // waits for the other page (a wait could see the button go disabled).
    const boxes = [];
    for (const page of pages) {
      await page.waitForSelector(`${row} .st-btn:not([disabled])`);
      assert.match(await page.textContent(row), /2 of 2 seats left/);
      await page.selectOption(`${row} .st-count`, '2');
      await page.locator(`${row} .st-btn`).scrollIntoViewIfNeeded();
      boxes.push(await page.locator(`${row} .st-btn`).boundingBox());
    }
    const t0 = Date.now();
    await Promise.all(pages.map((page, i) => page.mouse.click(boxes[i].x + boxes[i].width / 2, boxes[i].y + boxes[i].height / 2)));

    const answers = await Promise.all(pages.map((page) => answerOf(page, row)));
    const won = answers.map((text) => /^You booked 2 seats \(booking \d+\)$/.test(text));
    assert.equal(won.filter(Boolean).length, 1, `exactly one page gets the seats: ${JSON.stringify(answers)}`);
    const winner = pages[won.indexOf(true)];
    const loser = pages[won.indexOf(false)];
    assert.equal(answers[won.indexOf(false)], `Showtime ${id} is sold out`);

    // Sold out on both pages, from the stream: no reload, controls off.
    await Promise.all(pages.map((page) => page.waitForFunction(
      (sel) => /Sold out/.test(document.querySelector(`${sel} .st-seats`).textContent) &&
        document.querySelector(`${sel} .st-btn`).disabled, row, { timeout: 1000 })));
    assert.ok(Date.now() - t0 < 2000);
    for (const page of pages) {
      assert.equal(await page.isDisabled(`${row} .st-count`), true);
      assert.equal((await page.textContent(`${row} .st-btn`)).trim(), 'Book');
    }

    // The winner's bookings list it; the loser's stays empty.
    await winner.waitForSelector(`#mine li[data-showtime="${id}"]`, { timeout: 1000 });
    const mine = await winner.textContent(`#mine li[data-showtime="${id}"]`);
    assert.match(mine, /Last Seats/);
    assert.match(mine, /2 seats/);
    assert.match(mine, /Hall 7/);
    assert.equal(await loser.locator('#mine li').count(), 0);
    assert.equal(await loser.isVisible('#mine-empty'), true);

    // The database agrees: 0 left, and exactly the winner's 2 seats sold.
    const list = await (await fetch(server.base + '/cinema/showtimes')).json();
    assert.equal(list.showtimes.find((s) => s.id === id).seats_left, 0);
    await h.screenshot(winner, 'cinema-race-winner');
    await h.screenshot(loser, 'cinema-race-loser');
    await h.expectNoHorizontalOverflow(b);
    h.expectClean(a);
    h.expectClean(b);
  } finally {
    await server.stop();
  }
});

test('at 375 px: book through the page, a refusal is shown, your bookings survive a reload', async () => {
  const server = await h.startServer();
  try {
    const made = await h.post(server.base, '/cinema/showtimes', { movie: 'A Rather Long Film Title For A Small Phone Screen', hall: 'Hall 4', starts_at: fromNow(2), seats: '50' }, h.admin);
    const id = made.body.showtime.id;
    const row = `.showtime[data-id="${id}"]`;
    const page = await h.openPage(browser, server.base + '/cinema', { width: 375, height: 800 });
    page.expectedErrors = [409];
    await page.waitForSelector(`${row} .st-btn:not([disabled])`);
    assert.equal(await page.locator('#mine li').count(), 0);
    // The button names which showtime it books.
    const described = await page.$eval(`${row} .st-btn`, (el) => document.getElementById(el.getAttribute('aria-describedby')).textContent);
    assert.match(described, /Hall 4/);

    await page.selectOption(`${row} .st-count`, '7');
    await page.click(`${row} .st-btn`);
    assert.match(await answerOf(page, row), /^You booked 7 seats/);
    await page.waitForFunction((sel) => /43 of 50 seats left/.test(document.querySelector(sel).textContent), row, { timeout: 1000 });
    await page.waitForSelector(`#mine li[data-showtime="${id}"]`, { timeout: 1000 });
    assert.equal(await page.isVisible('#mine-empty'), false);

    // 7 + 4 is past the 10 a person may hold: the server's message, in the row.
    await page.selectOption(`${row} .st-count`, '4');
    await page.click(`${row} .st-btn`);
    await page.waitForFunction((sel) => /one person may hold at most 10/.test(document.querySelector(`${sel} .st-note`).textContent), row, { timeout: 1000 });
    assert.match(await page.textContent(`${row} .st-note`), /^You hold 7 seats of showtime \d+/);
    assert.equal(await page.getAttribute(`${row} .st-note`, 'role'), 'status');
    assert.equal(await page.isDisabled(`${row} .st-btn`), false);  // seats are left: others may book
    await page.waitForTimeout(700);  // let the flash settle before the picture
    await h.expectNoHorizontalOverflow(page);
    await h.screenshot(page, 'cinema-booked-375');

    await page.reload();
    await page.waitForSelector(`#mine li[data-showtime="${id}"]`, { timeout: 2000 });
    assert.match(await page.textContent(`#mine li[data-showtime="${id}"]`), /7 seats/);
    assert.equal(await page.locator('#mine li').count(), 1);
    await h.expectNoHorizontalOverflow(page);
    h.expectClean(page);
  } finally {
    await server.stop();
  }
});
