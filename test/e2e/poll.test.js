// The poll in two browsers: a vote in one moves the bars in both within a
// second; the voting page says what it voted for and cannot vote twice.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser;
before(async () => { browser = await h.launchBrowser(); });
after(async () => { await browser?.close(); });

const countOf = (page, name) =>
  page.$eval(`.option[data-name="${name}"] .count`, (el) => parseInt(el.textContent, 10));

test('a vote moves the bars on both pages; the voter sees its choice and cannot vote again', async () => {
  const server = await h.startServer(['--poll-question', 'Best colour?', '--poll-options', 'Red,Green,Blue']);
  try {
    const a = await h.openPage(browser, server.base + '/vote');
    const b = await h.openPage(browser, server.base + '/vote', { width: 375, height: 800 });
    for (const page of [a, b]) await page.waitForSelector('.option[data-name="Green"] button:not([disabled])');
    assert.equal(await a.textContent('#question'), 'Best colour?');
    const barWidth = (page) => page.$eval('.option[data-name="Green"] [role="meter"]', (el) => Number(el.getAttribute('aria-valuenow')));

    await a.click('.option[data-name="Green"] button');
    const t0 = Date.now();
    await Promise.all([a, b].map((p) => p.waitForFunction(
      () => parseInt(document.querySelector('.option[data-name="Green"] .count').textContent, 10) === 1, null, { timeout: 1000 })));
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(await barWidth(b), 100);
    assert.equal(await a.textContent('#total'), '1');
    await a.waitForFunction(() => /You voted for Green/.test(document.querySelector('#result').textContent));
    // The voting page's buttons are all off now; the other page may still vote.
    assert.equal(await a.locator('.option button:not([disabled])').count(), 0);
    assert.ok((await b.locator('.option button:not([disabled])').count()) > 0);

    // Another voter moves the bars on both pages again.
    await b.click('.option[data-name="Blue"] button');
    await Promise.all([a, b].map((p) => p.waitForFunction(() => document.querySelector('#total').textContent === '2', null, { timeout: 1000 })));
    assert.equal(await countOf(a, 'Blue'), 1);
    assert.equal(await barWidth(a), 50);
    await h.screenshot(a, 'poll-voted');
    await h.screenshot(b, 'poll-voted-375');
    await h.expectNoHorizontalOverflow(b);

    // A reload does not give a second vote.
    await a.reload();
    await a.waitForFunction(() => /You voted for Green/.test(document.querySelector('#result').textContent), null, { timeout: 2000 });
    assert.equal(await a.locator('.option button:not([disabled])').count(), 0);
    // Even forced through the API, the same browser cannot vote twice.
    const cookies = await a.context().cookies();
    const uid = cookies.find((c) => c.name === 'uid').value;
    const again = await fetch(server.base + '/vote', {
      method: 'POST', headers: { Cookie: `uid=${uid}`, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'option=Red',
    });
    assert.equal(again.status, 409);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await countOf(a, 'Red'), 0);
    h.expectClean(a);
    h.expectClean(b);
  } finally {
    await server.stop();
  }
});
