// Budgets measured in chromium against the real binary: 10,000 jobs in the list stay responsive
// (load, scroll, filter), 100 updates/s render without long tasks over 50 ms (PerformanceObserver
// 'longtask'), and the gzipped bundle size. Figures go to stdout and test-output/perf.json.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DASHBOARD, DIST, createJob, launchBrowser, openPage, publish, removeDir, startServer } from './harness.mjs';

const JOBS = 10_000;
const figures = {};
let browser;
let srv;

before(async () => {
  browser = await launchBrowser();
  // The store's fsyncs are not what is measured here: keep the data in memory when /dev/shm exists.
  const shm = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/jobwire-perf-') : undefined;
  srv = await startServer({ dataDir: shm });
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < JOBS) {
        const i = next++;
        await createJob(srv.url, { id: `perf-${String(i).padStart(5, '0')}`, project: `proj-${i % 7}` });
      }
    }),
  );
  figures.create_10k_jobs_ms = Math.round(performance.now() - t0);
});
after(async () => {
  await browser?.close();
  await srv?.stop();
  if (srv) removeDir(srv.dataDir);
  mkdirSync(join(DASHBOARD, 'test-output'), { recursive: true });
  writeFileSync(join(DASHBOARD, 'test-output/perf.json'), JSON.stringify(figures, null, 2) + '\n');
  console.log('perf figures', JSON.stringify(figures));
});

const OBSERVE = () => {
  window.__lt = [];
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) window.__lt.push({ start: e.startTime, duration: e.duration });
  }).observe({ type: 'longtask', buffered: true });
};
const longTasksSince = (page, t) => page.evaluate((t) => window.__lt.filter((e) => e.start >= t).map((e) => Math.round(e.duration)), t);

test('10,000 jobs: load, scroll, filter; 100 updates/s without long tasks over 50 ms', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await ctx.addInitScript(OBSERVE);
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  const t0 = Date.now();
  await page.goto(srv.url + '/');
  await page.waitForFunction((n) => document.querySelector('.summary')?.textContent === `${n} jobs`, JOBS, { timeout: 30_000 });
  figures.load_10k_ms = Date.now() - t0;
  figures.load_long_tasks_ms = await longTasksSince(page, 0);
  assert.ok(await page.$$eval('.spacer .row', (e) => e.length) < 80, 'only the visible rows are in the DOM');

  // Scroll from top to bottom in 40 frames; every frame must stay short.
  await page.waitForTimeout(500);
  const scroll = await page.evaluate(async () => {
    const v = document.querySelector('.viewport');
    const start = performance.now();
    const frames = [];
    let last = start;
    for (let i = 1; i <= 40; i++) {
      v.scrollTop = (v.scrollHeight * i) / 40;
      await new Promise((r) => requestAnimationFrame(() => r()));
      const now = performance.now();
      frames.push(now - last);
      last = now;
    }
    const lastRow = [...document.querySelectorAll('.spacer .row:not([hidden])')].map((r) => r.dataset.jobId);
    return { start, maxFrame: Math.max(...frames), avgFrame: frames.reduce((a, b) => a + b) / frames.length, rows: lastRow.length };
  });
  figures.scroll_max_frame_ms = Math.round(scroll.maxFrame);
  figures.scroll_avg_frame_ms = Math.round(scroll.avgFrame * 10) / 10;
  figures.scroll_long_tasks_ms = await longTasksSince(page, scroll.start);
  assert.ok(scroll.rows > 5, 'rows are drawn at the bottom');

  // Filter by id text and by status over 10,000 rows.
  const filterStart = await page.evaluate(() => performance.now());
  const tf = Date.now();
  await page.fill('#f-search', 'perf-0999');
  await page.waitForFunction(() => document.querySelector('.summary').textContent === '10 of 10000 jobs');
  figures.filter_10k_ms = Date.now() - tf;
  figures.filter_long_tasks_ms = await longTasksSince(page, filterStart);
  await page.fill('#f-search', '');
  await page.waitForFunction((n) => document.querySelector('.summary').textContent === `${n} jobs`, JOBS);
  await page.waitForTimeout(300);

  // 100 updates per second for 4 s, to 100 different jobs (sorted by "recently updated", so rows
  // move). Up to two windows: a window counts as passed with no long task over 50 ms (another
  // process hogging the 2 cores can spoil one window; a slow renderer spoils both).
  const ids = Array.from({ length: 100 }, (_, i) => `perf-${String(i).padStart(5, '0')}`);
  figures.updates_long_tasks_ms = [];
  for (let attempt = 0; attempt < 2; attempt++) {
    const updStart = await page.evaluate(() => performance.now());
    const tu = performance.now();
    let sent = 0;
    for (let sec = 0; sec < 4; sec++) {
      for (let tick = 0; tick < 10; tick++) {
        const due = tu + sec * 1000 + tick * 100;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const p = attempt * 50 + sec * 10 + tick + 1;
        await Promise.all(ids.slice(tick * 10, tick * 10 + 10).map((id) => publish(srv.url, id, [{ type: 'progress', progress: p, stage: `s${sec}` }])));
        sent += 10;
      }
    }
    figures.updates_sent = sent;
    figures.updates_wall_ms = Math.round(performance.now() - tu);
    const last = `${attempt * 50 + 40}%`;
    await page.waitForFunction((v) => document.querySelector('.spacer .row[data-job-id="perf-00099"] .pct')?.textContent === v, last, { timeout: 10_000 });
    const lt = await longTasksSince(page, updStart);
    figures.updates_long_tasks_ms.push(lt);
    if (lt.every((d) => d <= 50)) break;
  }
  const gz = readdirSync(join(DIST, 'assets')).map((f) => join(DIST, 'assets', f)).concat(join(DIST, 'index.html')).reduce((n, f) => n + gzipSync(readFileSync(f), { level: 9 }).length, 0);
  figures.bundle_gzip_bytes = gz;
  assert.deepEqual(errors, []);
  assert.ok(figures.updates_long_tasks_ms.some((w) => w.every((d) => d <= 50)), `long tasks over 50 ms during 100 updates/s in every window: ${JSON.stringify(figures.updates_long_tasks_ms)}`);
  assert.deepEqual(figures.scroll_long_tasks_ms.filter((d) => d > 50), [], 'long tasks over 50 ms while scrolling 10,000 rows');
  assert.ok(figures.filter_10k_ms < 1000, `filter took ${figures.filter_10k_ms} ms`);
  assert.ok(figures.load_10k_ms < 20_000, `load took ${figures.load_10k_ms} ms`);
  await ctx.close();
});

test('a job with 10,000 log lines: the last 1,000 shown, then 100 lines/s streamed without long tasks over 50 ms', async () => {
  await createJob(srv.url, { id: 'perf-log' });
  for (let b = 0; b < 10; b++) await publish(srv.url, 'perf-log', Array.from({ length: 1000 }, (_, i) => ({ type: 'log', line: `\u001b[32mok\u001b[0m line ${b * 1000 + i + 1} of a long build log` })));
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await ctx.addInitScript(OBSERVE);
  const page = await ctx.newPage();
  const t0 = Date.now();
  await page.goto(srv.url + '/#/jobs/perf-log');
  await page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '10000', null, { timeout: 20_000 });
  figures.log_10k_open_ms = Date.now() - t0;
  figures.log_10k_open_long_tasks_ms = await longTasksSince(page, 0);
  assert.equal(await page.$$eval('.log .ln', (e) => e.length), 1000);
  figures.log_stream_long_tasks_ms = [];
  for (let attempt = 0; attempt < 2; attempt++) {
    const start = await page.evaluate(() => performance.now());
    const tl = performance.now();
    for (let tick = 0; tick < 30; tick++) {
      const wait = tl + tick * 100 - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await publish(srv.url, 'perf-log', Array.from({ length: 10 }, (_, i) => ({ type: 'log', line: `stream ${attempt * 300 + tick * 10 + i + 1}` })));
    }
    await page.waitForFunction((n) => document.querySelector('.log .ln:last-child')?.dataset.n === String(n), 10_300 + attempt * 300);
    const lt = await longTasksSince(page, start);
    figures.log_stream_long_tasks_ms.push(lt);
    if (lt.every((d) => d <= 50)) break;
  }
  assert.equal(await page.$$eval('.log .ln', (e) => e.length), 1000);
  assert.ok(figures.log_stream_long_tasks_ms.some((w) => w.every((d) => d <= 50)), `long tasks over 50 ms while streaming 100 lines/s: ${JSON.stringify(figures.log_stream_long_tasks_ms)}`);
  await ctx.close();
});
