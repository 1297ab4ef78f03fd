// Red packets in two browsers at once: a grab in one shows its amount there
// and the remaining count drops in both; a second grab says so; an emptied
// round says "all taken" everywhere.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser;
before(async () => { browser = await h.launchBrowser(); });
after(async () => { await browser?.close(); });

const remaining = (page) => page.textContent('#remaining').then(Number);

test('two pages: a grab shows here, the count drops in both, twice is "already", empty is "all taken"', async () => {
  const server = await h.startServer(['--redpacket-total', '300', '--redpacket-count', '3']);
  try {
    const a = await h.openPage(browser, server.base + '/redpacket');
    const b = await h.openPage(browser, server.base + '/redpacket', { width: 375, height: 800 });
    for (const page of [a, b]) await page.waitForFunction(() => document.querySelector('#remaining').textContent === '3');
    assert.equal(await a.textContent('#count'), '3');

    await a.click('#grab');
    const t0 = Date.now();
    await a.waitForFunction(() => /You got ¥\d+\.\d\d!/.test(document.querySelector('#result').textContent), null, { timeout: 1000 });
    await Promise.all([a, b].map((p) => p.waitForFunction(() => document.querySelector('#remaining').textContent === '2', null, { timeout: 1000 })));
    assert.ok(Date.now() - t0 < 1000);
    const got = (await a.textContent('#result')).match(/¥(\d+\.\d\d)/)[1];
    // The winner shows in both lists, and as "you" only on the page that grabbed.
    await b.waitForFunction((amount) => document.querySelector('#winners').textContent.includes(amount), got, { timeout: 1000 });
    assert.equal(await a.locator('#winners li.is-mine').count(), 1);
    assert.equal(await b.locator('#winners li.is-mine').count(), 0);
    await h.screenshot(a, 'redpacket-grabbed');

    await a.click('#grab');
    await a.waitForFunction((amount) => document.querySelector('#result').textContent.includes(`already grabbed ¥${amount}`), got, { timeout: 1000 });
    assert.equal(await remaining(a), 2);

    // A reloaded page remembers what this browser holds.
    await a.reload();
    await a.waitForFunction((amount) => document.querySelector('#result').textContent.includes(amount), got, { timeout: 2000 });

    // Others empty the round: both pages say all taken.
    await b.click('#grab');
    await h.post(server.base, '/redpacket/grab', { user: 'someone-else' });
    await Promise.all([a, b].map((p) => p.waitForFunction(() => document.querySelector('#remaining').textContent === '0', null, { timeout: 1000 })));
    for (const page of [a, b]) {
      assert.equal(await page.isDisabled('#grab'), true);
      assert.equal((await page.textContent('#grab')).trim(), 'All taken');
    }
    await h.screenshot(b, 'redpacket-all-taken-375');
    await h.expectNoHorizontalOverflow(b);
    h.expectClean(a);
    h.expectClean(b);
  } finally {
    await server.stop();
  }
});

test('a late page on an empty round says all taken when it grabs', async () => {
  const server = await h.startServer(['--redpacket-total', '1', '--redpacket-count', '1']);
  try {
    await h.post(server.base, '/redpacket/grab', { user: 'first' });
    const page = await h.openPage(browser, server.base + '/redpacket');
    await page.waitForFunction(() => document.querySelector('#remaining').textContent === '0');
    assert.equal((await page.textContent('#grab')).trim(), 'All taken');
    h.expectClean(page);
  } finally {
    await server.stop();
  }
});
