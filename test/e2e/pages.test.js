// Every page, the way a phone sees it: 375 px wide, nothing sticking out,
// no console errors, no failed requests, the live indicator connected, and
// the markup a screen reader needs.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let browser, server;
before(async () => {
  browser = await h.launchBrowser();
  server = await h.startServer();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

for (const [route, name] of [['/', 'clock'], ['/redpacket', 'redpacket'], ['/cinema', 'cinema'], ['/vote', 'vote']]) {
  test(`${route} at 375 px: connected, fits, clean, accessible`, async () => {
    const page = await h.openPage(browser, server.base + route, { width: 375, height: 800 });
    await page.waitForSelector('#conn[data-state="open"]', { timeout: 5000 });
    await page.waitForTimeout(700);  // let the first snapshot render and any animation settle
    await h.expectNoHorizontalOverflow(page);
    await h.screenshot(page, `page-${name}-375`);
    const facts = await page.evaluate(() => ({
      lang: document.documentElement.lang,
      title: document.title,
      viewport: !!document.querySelector('meta[name="viewport"]'),
      stylesheet: [...document.querySelectorAll('link[rel="stylesheet"]')].map((l) => new URL(l.href).pathname),
      liveRegions: document.querySelectorAll('[aria-live="polite"], [role="status"]').length,
      inlineHandlers: [...document.querySelectorAll('*')].filter((el) => [...el.attributes].some((a) => a.name.startsWith('on'))).length,
      unnamedButtons: [...document.querySelectorAll('button')].filter((b) => !b.textContent.trim() && !b.getAttribute('aria-label')).length,
      clickableDivs: [...document.querySelectorAll('div[tabindex], span[tabindex]')].length,
      h1: document.querySelectorAll('h1').length,
    }));
    assert.equal(facts.lang, 'en');
    assert.ok(facts.title.includes('sse-server'));
    assert.ok(facts.viewport);
    assert.deepEqual(facts.stylesheet, ['/style.css']);  // one shared stylesheet
    assert.ok(facts.liveRegions >= 1);
    assert.equal(facts.inlineHandlers, 0);
    assert.equal(facts.unnamedButtons, 0);
    assert.equal(facts.clickableDivs, 0);  // buttons are buttons
    assert.equal(facts.h1, 1);
    h.expectClean(page);
  });
}

test('every page links the other three', async () => {
  for (const route of ['/', '/redpacket', '/cinema', '/vote']) {
    const page = await h.openPage(browser, server.base + route);
    const links = await page.$$eval('nav a', (as) => as.map((a) => new URL(a.href).pathname));
    for (const other of ['/', '/redpacket', '/cinema', '/vote']) assert.ok(links.includes(other), `${route} links ${other}`);
    h.expectClean(page);
    await page.context().close();
  }
});
