// The hooks in real headless Chromium against the real binary: useJob, a6hub's build page on
// useJobWebSocket, titan's monitor on useJobProgress and a useJobs list render a job published to
// its end, across a server restart in the middle (no lost and no doubled log line), and the
// cancel button of useJob.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { startServer, http } from '../../js/test/helpers.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
let page, browser, site, jw;

before(async () => {
  const out = await build({
    entryPoints: [join(here, 'page/app.tsx')],
    bundle: true,
    format: 'esm',
    jsx: 'automatic',
    write: false,
    minify: true,
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
  });
  const js = out.outputFiles[0].text;
  const html = '<!doctype html><html><head><meta charset="utf-8"><title>jobwire react</title></head><body><div id="root"></div><script type="module" src="/app.js"></script></body></html>';
  site = createServer((req, res) => {
    if (req.url.startsWith('/app.js')) res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
    else res.writeHead(200, { 'content-type': 'text/html' }).end(html);
  });
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${site.address().port}`;
  jw = await startServer({ args: ['--allowed-origins', origin, '--heartbeat-interval', '1s', '--shutdown-grace', '1s'] });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
  await http(jw.url, 'POST', '/v1/jobs', { id: 'web-1', project: 'web' });
  await http(jw.url, 'POST', '/v1/jobs', { id: 'web-2', project: 'web' });
  await page.goto(`${origin}/?server=${encodeURIComponent(jw.url)}&job=web-1&other=web-2&project=web`);
});

after(async () => {
  await browser?.close();
  site?.close();
  jw?.cleanup();
});

const text = (sel) => page.locator(sel).first().textContent();
async function waitText(sel, expected, timeout = 10_000) {
  await page.waitForFunction(
    ([s, e]) => document.querySelector(s)?.textContent === e,
    [sel, expected],
    { timeout },
  ).catch(async (err) => {
    throw new Error(`${sel}: wanted ${JSON.stringify(expected)}, have ${JSON.stringify(await text(sel))} (${err.message})`);
  });
}
const publish = (events) => http(jw.url, 'POST', '/v1/jobs/web-1/events', events);

test('useJob, useJobWebSocket and useJobProgress render a job to its end across a restart', async () => {
  await page.locator('#a6hub .live').waitFor({ timeout: 10_000 });
  await waitText('#card-web-1 .conn', 'connected');
  await waitText('#titan', 'Waiting for updates...').catch(() => {}); // may already show the snapshot
  await waitText('#list', 'web-1:pending:0web-2:pending:0');

  await publish([{ type: 'step', step: 'synth', label: 'Synthesis' }, { type: 'progress', progress: 25, stage: 'synth', message: 'synthesising' }]);
  await publish({ type: 'log', line: 'line 1' });
  await waitText('#card-web-1 .progress', '25');
  await waitText('#a6hub .step', 'Step: synth (25%)');
  await waitText('#a6hub .job-status', 'running');
  await waitText('#titan h3', 'synth');
  assert.equal(await page.locator('#titan progress').getAttribute('value'), '0.25');

  // Restart the server mid-job; events published while the page is away arrive once, in order.
  const restarted = jw.restart('SIGTERM');
  await page.locator('#a6hub .live').waitFor({ state: 'detached', timeout: 10_000 });
  jw = await restarted;
  await publish([{ type: 'log', line: 'line 2' }, { type: 'log', line: 'line 3' }]);
  await publish([{ type: 'step', step: 'route', label: 'Routing' }, { type: 'progress', progress: 80, stage: 'route', message: 'routing' }]);
  await page.locator('#a6hub .live').waitFor({ timeout: 10_000 });
  await publish([{ type: 'log', line: 'line 4' }, { type: 'completed', result: { bitstream: 'top.bit' }, message: 'Build completed' }]);

  await waitText('#card-web-1 .status', 'completed');
  await waitText('#card-web-1 .progress', '100');
  assert.equal(await text('#card-web-1 .terminal'), 'true');
  assert.equal(await text('#card-web-1 .steps'), 'synth:done,route:done');
  assert.deepEqual(await page.locator('#card-web-1 .logs li').allTextContents(), ['1 line 1', '2 line 2', '3 line 3', '4 line 4']);

  await waitText('#a6hub .completions', 'completed:Build completed');
  assert.equal(await text('#a6hub .logs'), 'line 1\nline 2\nline 3\nline 4\n', 'each log line exactly once');
  assert.equal(await text('#a6hub .job-status'), 'completed');
  assert.equal(await text('#a6hub .step-changes'), 'Synthesis,Routing');
  assert.equal(await text('#a6hub .step'), 'Step: route (100%)');

  await waitText('#titan .titan-status', 'completed');
  assert.equal(await text('#titan p'), 'Build completed');
  assert.deepEqual(JSON.parse(await text('#titan pre')), { bitstream: 'top.bit' });
  assert.equal(await page.locator('#titan progress').getAttribute('value'), '1');

  await page.waitForFunction(() => document.querySelector('#list')?.dataset.completed === 'web-1');
  await waitText('#list', 'web-1:completed:100web-2:pending:0');
  await page.waitForTimeout(300);
  assert.equal(await text('#a6hub .completions'), 'completed:Build completed', 'onComplete exactly once');
});

test('the cancel button of useJob cancels the job; every hook sees it', async () => {
  await page.locator('#card-web-2 .cancel').click();
  await waitText('#card-web-2 .status', 'cancelled');
  const snap = (await http(jw.url, 'GET', '/v1/jobs/web-2')).body;
  assert.equal(snap.status, 'cancelled');
  assert.equal(snap.message, 'user clicked');
  await waitText('#list', 'web-1:completed:100web-2:cancelled:0');
});
