// Parents and children in Debian's chromium against the real binary: a parent with 20 children
// created over HTTP; children publish progress, complete and fail while the parent's page is open,
// and its counts, aggregate progress, list, timeline and the table's "n/m children done" follow live;
// the status filter (GET /children), a child's link and the child's "Parent:" link; paging of 250
// children 100 at a time (also filtered); own progress instead of the aggregate.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, createJob, launchBrowser, openPage, publish, removeDir, startServer } from './harness.mjs';

let browser;
let srv;
before(async () => {
  browser = await launchBrowser();
  srv = await startServer();
});
after(async () => {
  await browser?.close();
  await srv?.stop();
  if (srv) removeDir(srv.dataDir);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pad = (i) => String(i).padStart(2, '0');

/** The parent's snapshot once it folded every child's latest state (progress is coalesced 250 ms). */
async function caughtUp(parent, ids) {
  const want = {};
  for (const id of ids) want[id] = (await api(srv.url, 'GET', `/v1/jobs/${id}`)).seq;
  const t0 = Date.now();
  for (;;) {
    const p = await api(srv.url, 'GET', `/v1/jobs/${parent}`);
    if (ids.every((id) => p.child_jobs?.[id]?.seq === want[id])) return p;
    if (Date.now() - t0 > 5000) throw new Error(`parent ${parent} did not catch up: ${JSON.stringify(p.child_jobs)}`);
    await sleep(50);
  }
}

/** The children panel as the page shows it. */
function panel(page) {
  return page.evaluate(() => ({
    counts: Object.fromEntries([...document.querySelectorAll('.child-counts [data-count]')].map((e) => [e.dataset.count, Number(e.textContent.match(/\d+/)[0])])),
    source: document.querySelector('.child-source')?.dataset.source,
    pct: document.querySelector('.child-source strong')?.textContent,
    rows: [...document.querySelectorAll('.child-list .child')].map((e) => [e.dataset.childId, e.dataset.status, e.querySelector('.pct').textContent]),
    more: document.querySelector('.child-more .muted')?.textContent,
    moreHidden: document.querySelector('.child-more button')?.hidden,
  }));
}

const fmt = (p) => `${p.toFixed(p % 1 ? 1 : 0)}%`;

/** Waits until the page's aggregate equals the server's (after `caughtUp`). */
async function aggregateShown(page, snap) {
  await page.waitForFunction((want) => document.querySelector('.child-source strong')?.textContent === want, fmt(snap.progress), { timeout: 5000 });
  assert.equal(await page.$eval('.progress-line strong', (e) => e.textContent), fmt(snap.progress));
}

test('a parent with 20 children: counts, aggregate progress, rows and timeline move live; filter; links both ways; the table row', async () => {
  const ids = Array.from({ length: 20 }, (_, i) => `page-${pad(i + 1)}`);
  await createJob(srv.url, { id: 'batch-1', project: 'pages', complete_when: 'all_children' });
  for (const id of ids) await createJob(srv.url, { id, parent: 'batch-1', weight: id === 'page-03' ? 2 : 1 });
  const page = await openPage(browser, srv.url + '/#/jobs/batch-1');
  await page.waitForSelector('.children-panel:not([hidden]) .child-list .child');
  let p = await panel(page);
  assert.deepEqual(p.counts, { total: 20, pending: 20 });
  assert.equal(p.source, 'children');
  assert.equal(p.pct, '0%');
  assert.deepEqual(p.rows.map((r) => r[0]), ids);
  assert.equal(p.more, 'Showing 20 of 20 children');
  assert.equal(p.moreHidden, true, 'one page: no "load more"');
  assert.match(await page.textContent('.child-policy'), /Completes when every child has ended/);
  assert.equal(await page.$eval('.child[data-child-id="page-03"] .child-weight', (e) => e.textContent), 'weight 2');
  assert.equal(await page.$eval('.child[data-child-id="page-04"] .child-weight', (e) => e.hidden), true);

  // Five children start: counts and the aggregate move without a reload.
  for (const id of ids.slice(0, 5)) await publish(srv.url, id, [{ type: 'progress', progress: 50 }]);
  await page.waitForFunction(() => document.querySelector('.child-counts [data-count="in_progress"]')?.textContent.startsWith('5'));
  let snap = await caughtUp('batch-1', ids);
  await aggregateShown(page, snap);
  assert.equal(snap.progress, Math.round(((50 * 4 + 50 * 2) / 21) * 10) / 10);
  await page.waitForSelector('.job-head .badge-in_progress');
  assert.deepEqual((await panel(page)).rows[0], ['page-01', 'in_progress', '50%']);
  // Progress only (coalesced by the server), then ends.
  await publish(srv.url, 'page-01', [{ type: 'progress', progress: 80 }]);
  await page.waitForFunction(() => document.querySelector('.child[data-child-id="page-01"] .pct')?.textContent === '80%', null, { timeout: 3000 });
  for (const id of ids.slice(5, 8)) await publish(srv.url, id, [{ type: 'progress', progress: 10 }, { type: 'completed' }]);
  await publish(srv.url, 'page-09', [{ type: 'failed', error: 'bad page' }]);
  await publish(srv.url, 'page-10', [{ type: 'status', status: 'queued' }]);
  await page.waitForFunction(() => document.querySelector('.child-counts [data-count="failed"]'));
  snap = await caughtUp('batch-1', ids);
  await aggregateShown(page, snap);
  p = await panel(page);
  assert.deepEqual(p.counts, { total: 20, pending: 10, queued: 1, in_progress: 5, completed: 3, failed: 1 });
  assert.deepEqual(p.counts, Object.fromEntries(Object.entries(snap.children).filter(([, n]) => n > 0)), 'the server counts');
  assert.deepEqual(p.rows.find((r) => r[0] === 'page-09'), ['page-09', 'failed', '0%']);
  assert.match(await page.textContent('.progress-line'), /aggregate of 20 children/);
  // The timeline: the children's status changes, readably.
  const tl = await page.$$eval('.timeline .tl-child', (els) => els.map((e) => {
    const c = e.cloneNode(true);
    c.querySelectorAll('time, .muted').forEach((x) => x.remove());
    return c.textContent;
  }));
  assert.ok(tl.includes('child page-05 → running 50%'), tl.join('\n'));
  assert.ok(tl.includes('child page-06 → completed'), tl.join('\n'));
  assert.ok(tl.includes('child page-09 → failed'), tl.join('\n'));
  assert.ok(!tl.some((t) => t.includes('80%')), 'progress-only updates are not timeline entries');

  // The filter asks the server for one status; a child ending meanwhile joins the filtered list live.
  await page.selectOption('#ch-status', 'completed');
  await page.waitForFunction(() => [...document.querySelectorAll('.child-list .child')].every((e) => e.dataset.status === 'completed') && document.querySelectorAll('.child-list .child').length === 3);
  assert.deepEqual((await panel(page)).rows.map((r) => r[0]), ['page-06', 'page-07', 'page-08']);
  assert.equal((await panel(page)).more, 'Showing 3 of 3 completed children');
  assert.equal(await page.$eval('#ch-status option[value="completed"]', (e) => e.textContent), 'completed (3)');
  await publish(srv.url, 'page-02', [{ type: 'completed' }]);
  await page.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 4);
  assert.deepEqual((await panel(page)).rows.map((r) => r[0]), ['page-02', 'page-06', 'page-07', 'page-08']);
  await page.selectOption('#ch-status', 'cancelled');
  await page.waitForFunction(() => document.querySelector('.child-note')?.textContent === 'No cancelled children.');
  assert.equal(await page.$$eval('.child-list .child', (e) => e.length), 0);
  await page.selectOption('#ch-status', '');
  await page.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 20);

  // A child's link opens the child; its page links back to the parent.
  await page.click('.child[data-child-id="page-03"] .child-id');
  await page.waitForFunction(() => document.querySelector('#job-h')?.textContent === 'page-03');
  assert.equal(new URL(page.url()).hash, '#/jobs/page-03');
  assert.equal(await page.textContent('.parent-link'), 'Parent: batch-1 · weight 2');
  assert.equal(await page.$eval('.children-panel', (e) => e.hidden), true, 'a child without children has no children panel');
  await page.click('.parent-link a');
  await page.waitForFunction(() => document.querySelector('#job-h')?.textContent === 'batch-1');
  await page.waitForSelector('.children-panel:not([hidden]) .child');
  assert.equal(await page.$eval('.parent-link', (e) => e.hidden), true, 'a job without a parent has no parent link');

  // The table: the parent's row counts its ended children, live.
  await page.click('.back');
  const row = '.spacer .row[data-job-id="batch-1"]';
  await page.waitForFunction((sel) => document.querySelector(`${sel} .c-stage`)?.textContent === '5/20 done', row);
  assert.equal(await page.$eval(`${row} .c-stage`, (e) => e.title), '5/20 children done');
  await publish(srv.url, 'page-11', [{ type: 'cancelled' }]);
  await page.waitForFunction((sel) => document.querySelector(`${sel} .c-stage`)?.textContent === '6/20 done', row);
  assert.match(await page.getAttribute(row, 'aria-label'), /, 6\/20 children done$/);
  assert.equal(await page.$eval('.spacer .row[data-job-id="page-01"] .c-stage', (e) => e.textContent), '', 'a child row has no children count');

  // The parent publishes progress itself: then that is its progress, and the page says so.
  await page.goto(srv.url + '/#/jobs/batch-1');
  await page.waitForSelector('.child-source[data-source="children"]');
  await publish(srv.url, 'batch-1', [{ type: 'progress', progress: 12, stage: 'merge' }]);
  await page.waitForSelector('.child-source[data-source="own"]');
  assert.match(await page.textContent('.child-source'), /^Progress 12% is the job's own/);
  await publish(srv.url, 'page-12', [{ type: 'progress', progress: 90 }]);
  await page.waitForFunction(() => document.querySelector('.child[data-child-id="page-12"] .pct')?.textContent === '90%');
  assert.equal(await page.$eval('.progress-line strong', (e) => e.textContent), '12%');
  assert.doesNotMatch(await page.textContent('.progress-line'), /aggregate/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('250 children are listed 100 at a time ("load more"), also filtered by status', async () => {
  await createJob(srv.url, { id: 'big-1' });
  const ids = Array.from({ length: 250 }, (_, i) => `c-${String(i).padStart(3, '0')}`);
  for (const id of ids) await createJob(srv.url, { id, parent: 'big-1' });
  // Every other child of the first 240 runs: 120 running children, more than a page.
  for (const id of ids.filter((_, i) => i % 2 === 0 && i < 240)) await publish(srv.url, id, [{ type: 'progress', progress: 25 }]);
  const page = await openPage(browser, srv.url + '/#/jobs/big-1');
  await page.waitForSelector('.child-list .child');
  await page.waitForFunction(() => document.querySelector('.child-counts [data-count="in_progress"]')?.textContent.startsWith('120'));
  let p = await panel(page);
  assert.equal(p.rows.length, 100, 'one page at first');
  assert.deepEqual(p.rows.map((r) => r[0]), ids.slice(0, 100));
  assert.equal(p.more, 'Showing 100 of 250 children');
  assert.equal(p.moreHidden, false);
  await page.click('.child-more button');
  await page.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 200);
  await page.click('.child-more button');
  await page.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 250);
  p = await panel(page);
  assert.deepEqual(p.rows.map((r) => r[0]), ids);
  assert.equal(p.moreHidden, true);
  // Filtered: the first page of running children, then the remaining 20.
  await page.selectOption('#ch-status', 'in_progress');
  await page.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 100 && [...document.querySelectorAll('.child-list .child')].every((e) => e.dataset.status === 'in_progress'));
  assert.equal((await panel(page)).more, 'Showing 100 of 120 running children');
  await page.click('.child-more button');
  await page.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 120);
  p = await panel(page);
  assert.deepEqual(p.rows.map((r) => r[0]), ids.filter((_, i) => i % 2 === 0 && i < 240));
  assert.ok(p.rows.every((r) => r[1] === 'in_progress' && r[2] === '25%'));
  // The aggregate: 120 children at 25 of 250.
  const snap = await caughtUp('big-1', ids.filter((_, i) => i % 2 === 0 && i < 240));
  assert.equal(snap.progress, 12);
  await aggregateShown(page, snap);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
