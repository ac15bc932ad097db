// Screenshots of the jobs table, of a job and of a parent job with its children, light and dark,
// desktop and 360 px wide, taken in chromium against the real binary; at 360 px nothing may overflow
// sideways. `npm run screenshots` writes them to dashboard/screenshots/ (committed); `npm test` writes them to test-output/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DASHBOARD, createJob, launchBrowser, publish, removeDir, startServer } from './harness.mjs';

const OUT = process.env.UPDATE_SCREENSHOTS ? join(DASHBOARD, 'screenshots') : join(DASHBOARD, 'test-output/screenshots');
let browser;
let srv;

before(async () => {
  mkdirSync(OUT, { recursive: true });
  browser = await launchBrowser();
  srv = await startServer();
  const u = srv.url;
  // A parent with 12 children in various states (first: the jobs below are the recently updated ones).
  await createJob(u, { id: 'book-export-5', project: 'reports', complete_when: 'all_children', metadata: { owner: 'ana', priority: 'normal' } });
  for (let i = 1; i <= 12; i++) await createJob(u, { id: `chapter-${String(i).padStart(2, '0')}`, project: 'reports', parent: 'book-export-5', weight: i === 1 ? 2 : 1 });
  const child = (i) => `chapter-${String(i).padStart(2, '0')}`;
  for (const i of [1, 2, 3, 4]) await publish(u, child(i), [{ type: 'progress', progress: 50 }, { type: 'completed' }]);
  await publish(u, child(5), [{ type: 'progress', progress: 30 }, { type: 'failed', error: 'missing figure 5.2' }]);
  for (const [i, p] of [[6, 72], [7, 40], [8, 15]]) await publish(u, child(i), [{ type: 'progress', progress: p, stage: 'typeset' }]);
  await publish(u, child(9), [{ type: 'status', status: 'queued' }]);
  const jobs = [
    ['render-42', 'video', [{ type: 'step', step: 'decode', label: 'Decode' }, { type: 'step', step: 'render', label: 'Render frames' }, { type: 'progress', progress: 62.5, stage: 'render', message: 'frame 1250/2000' }]],
    ['build-7', 'hardware', [{ type: 'progress', progress: 100, stage: 'bitstream' }, { type: 'completed', result: { bitstream: 'top.bit' }, message: 'timing met' }]],
    ['docs-index-3', 'ai', [{ type: 'progress', progress: 35, stage: 'embed', message: 'chunk 128/365' }]],
    ['train-bert-11', 'ai', [{ type: 'progress', progress: 48, stage: 'epoch 2' }, { type: 'failed', error: 'CUDA out of memory', message: 'epoch 2 step 812' }]],
    ['thumbs-2026-11', 'video', [{ type: 'status', status: 'queued', message: 'waiting for a worker' }]],
    ['export-csv-88', 'reports', [{ type: 'progress', progress: 10 }, { type: 'cancelled', reason: 'superseded by export-csv-89' }]],
    ['export-csv-89', 'reports', [{ type: 'progress', progress: 84, stage: 'write', message: 'rows 840k/1M' }]],
    ['nightly-backup', 'ops', []],
  ];
  for (const [id, project, events] of jobs) {
    await createJob(u, { id, project, metadata: { owner: 'ana', priority: 'normal' } });
    if (events.length) await publish(u, id, events);
  }
  const logs = [
    'decoder: \u001b[1mh264\u001b[0m 1920x1080 30 fps',
    '\u001b[32m✔\u001b[0m decoded 2000 frames',
    '\u001b[33mwarning\u001b[0m: frame 411 has no keyframe, using previous',
    ...Array.from({ length: 30 }, (_, i) => `render: frame ${(i + 1) * 40}/2000 \u001b[36m${(3.1 + i / 10).toFixed(1)} fps\u001b[0m`),
    '\u001b[31merror\u001b[0m: tile 7 retried (1/3)',
    'render: frame 1250/2000',
  ].map((line) => ({ type: 'log', line }));
  await publish(u, 'render-42', logs);
});
after(async () => {
  await browser?.close();
  await srv?.stop();
  if (srv) removeDir(srv.dataDir);
});

for (const scheme of ['light', 'dark']) {
  for (const [size, width, height] of [['desktop', 1280, 820], ['360', 360, 780]]) {
    test(`screenshots: ${scheme}, ${size}`, async () => {
      const ctx = await browser.newContext({ viewport: { width, height }, colorScheme: scheme, deviceScaleFactor: 1 });
      const page = await ctx.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e));
      await page.goto(srv.url + '/');
      await page.waitForSelector('.spacer .row[data-job-id="render-42"]');
      await page.waitForSelector('.conn[data-state="open"]');
      // The server panel has counted this page's socket and has a rate (two samples).
      await page.waitForFunction(() => {
        const [conns, , pub] = [...document.querySelectorAll('.stats dd')].map((d) => d.textContent);
        return conns !== '–' && conns !== '0' && pub !== '–';
      });
      await page.waitForTimeout(1500);
      const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok((await overflow()) <= 0, `the jobs page overflows by ${await overflow()} px at ${width} px`);
      await page.screenshot({ path: join(OUT, `jobs-${scheme}-${size}.png`) });
      await page.click('.spacer .row[data-job-id="render-42"]');
      await page.waitForFunction(() => document.querySelectorAll('.log .ln').length === 35);
      assert.ok((await overflow()) <= 0, `the job page overflows by ${await overflow()} px at ${width} px`);
      await page.mouse.move(0, 0); // no hover highlight in the picture
      await page.screenshot({ path: join(OUT, `job-${scheme}-${size}.png`) });
      await page.goto(srv.url + '/#/jobs/book-export-5');
      await page.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 12 && document.querySelector('.child[data-child-id="chapter-08"]')?.dataset.status === 'in_progress');
      assert.ok((await overflow()) <= 0, `the parent's page overflows by ${await overflow()} px at ${width} px`);
      await page.mouse.move(0, 0);
      await page.screenshot({ path: join(OUT, `parent-${scheme}-${size}.png`) });
      assert.deepEqual(errors, []);
      await ctx.close();
    });
  }
}
