// Accessibility in chromium with axe-core (WCAG 2 A/AA rules, colour contrast included) on the jobs
// table, on a job, a parent and a child, in light and dark, at 1280 and 360 px; plus the job page's landmarks and labels.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { createJob, launchBrowser, publish, removeDir, startServer } from './harness.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
let browser;
let srv;

before(async () => {
  browser = await launchBrowser();
  srv = await startServer();
  for (const [id, events] of [
    ['a11y-run', [{ type: 'step', step: 's1', label: 'Step one' }, { type: 'progress', progress: 40, stage: 'encode', message: 'half way' }, { type: 'log', line: '\u001b[31mred\u001b[0m \u001b[33myellow\u001b[0m \u001b[34mblue\u001b[0m', level: 'warn' }]],
    ['a11y-done', [{ type: 'progress', progress: 50 }, { type: 'completed', result: { ok: true } }]],
    ['a11y-fail', [{ type: 'progress', progress: 50 }, { type: 'failed', error: 'boom' }]],
    ['a11y-queued', [{ type: 'status', status: 'queued' }]],
    ['a11y-cancel', [{ type: 'cancelled', reason: 'no' }]],
    ['a11y-pending', []],
  ]) {
    await createJob(srv.url, { id, project: 'p' });
    if (events.length) await publish(srv.url, id, events);
  }
  // A parent with children in every state (its page lists them; a child links its parent).
  await createJob(srv.url, { id: 'a11y-parent', project: 'p', on_child_failure: 'continue' });
  for (const [i, events] of [[{ type: 'progress', progress: 30 }], [{ type: 'progress', progress: 50 }, { type: 'completed' }], [{ type: 'failed', error: 'x' }], [{ type: 'status', status: 'queued' }], [{ type: 'cancelled' }], []].entries()) {
    await createJob(srv.url, { id: `a11y-child-${i}`, parent: 'a11y-parent', weight: i === 0 ? 2 : 1 });
    if (events.length) await publish(srv.url, `a11y-child-${i}`, events);
  }
});
after(async () => {
  await browser?.close();
  await srv?.stop();
  if (srv) removeDir(srv.dataDir);
});

async function axe(page) {
  await page.addScriptTag({ content: AXE });
  const r = await page.evaluate(() => window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa'] } }));
  return r.violations.map((v) => `${v.id}: ${v.nodes.length} node(s), e.g. ${v.nodes[0]?.target.join(' ')} ${v.nodes[0]?.failureSummary?.split('\n')[1] ?? ''}`);
}

for (const scheme of ['light', 'dark']) {
  for (const width of [1280, 360]) {
    test(`axe: no WCAG A/AA violations (${scheme}, ${width} px)`, async () => {
      const ctx = await browser.newContext({ viewport: { width, height: 800 }, colorScheme: scheme, reducedMotion: 'reduce', bypassCSP: true });
      const page = await ctx.newPage();
      await page.goto(srv.url + '/');
      await page.waitForSelector('.spacer .row[data-job-id="a11y-pending"]');
      await page.waitForSelector('.conn[data-state="open"]');
      assert.deepEqual(await axe(page), [], 'jobs page');
      await page.goto(srv.url + '/#/jobs/a11y-run');
      await page.waitForSelector('.log .ln');
      assert.deepEqual(await axe(page), [], 'job page');
      await page.goto(srv.url + '/#/jobs/a11y-parent');
      await page.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 6);
      assert.deepEqual(await axe(page), [], 'parent page');
      await page.goto(srv.url + '/#/jobs/a11y-child-0');
      await page.waitForSelector('.parent-link:not([hidden]) a');
      assert.deepEqual(await axe(page), [], 'child page');
      await ctx.close();
    });
  }
}

test('the job page has labelled regions, a labelled progress bar and a status line', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(srv.url + '/#/jobs/a11y-run');
  await page.waitForSelector('.log .ln');
  assert.equal(await page.getAttribute('[role="progressbar"]', 'aria-valuenow'), '40');
  assert.equal(await page.getAttribute('[role="log"]', 'aria-label'), 'Job log');
  const regions = await page.$$eval('section[aria-labelledby]', (els) => els.map((e) => document.getElementById(e.getAttribute('aria-labelledby'))?.textContent));
  for (const name of ['Log', 'Timeline', 'Steps', 'Details', 'Watch']) assert.ok(regions.includes(name), `region ${name} in ${regions}`);
  assert.equal(await page.getAttribute('.conn', 'role'), 'status');
  // A parent: a labelled Children region, a labelled status filter, a labelled list of links.
  await page.goto(srv.url + '/#/jobs/a11y-parent');
  await page.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 6);
  assert.equal(await page.$eval('section.children-panel', (e) => document.getElementById(e.getAttribute('aria-labelledby')).textContent), 'Children');
  assert.equal(await page.$eval('#ch-status', (e) => e.labels[0].textContent.startsWith('Status')), true);
  assert.equal(await page.getAttribute('.child-list', 'aria-label'), 'Children');
  assert.equal(await page.$$eval('.child-list .child a[href^="#/jobs/a11y-child-"]', (e) => e.length), 6);
  await ctx.close();
});
