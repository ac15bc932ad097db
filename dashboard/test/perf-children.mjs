// Measures a parent with 1000 children in chromium against the real binary (not part of `npm test`):
// `JOBWIRE_BIN=... node test/perf-children.mjs`. Prints open-to-100-rows, long tasks while 3000
// child progress updates stream in, the rows in the DOM and the aggregate against the server's.
import { createJob, launchBrowser, publish, removeDir, startServer } from './harness.mjs';

const srv = await startServer();
const browser = await launchBrowser();
try {
  const B = srv.url;
  await createJob(B, { id: 'k-parent' });
  const ids = Array.from({ length: 1000 }, (_, i) => `k-${String(i).padStart(4, '0')}`);
  for (let i = 0; i < ids.length; i += 50) await Promise.all(ids.slice(i, i + 50).map((id) => createJob(B, { id, parent: 'k-parent' })));
  const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await p.addInitScript(() => {
    window.__lt = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__lt.push(Math.round(e.duration)); }).observe({ type: 'longtask', buffered: true });
  });
  const t0 = Date.now();
  await p.goto(B + '/#/jobs/k-parent');
  await p.waitForFunction(() => document.querySelectorAll('.child-list .child').length === 100);
  console.log(`open to 100 rows: ${Date.now() - t0} ms; long tasks ${JSON.stringify(await p.evaluate(() => window.__lt))}`);
  await p.evaluate(() => (window.__lt = []));
  const t1 = Date.now();
  for (let r = 0; r < 3; r++) for (let i = 0; i < ids.length; i += 100) await Promise.all(ids.slice(i, i + 100).map((id) => publish(B, id, { type: 'progress', progress: 10 + r * 20 })));
  console.log(`3000 child progress publishes in ${Date.now() - t1} ms`);
  await p.waitForFunction(() => document.querySelector('.child-counts [data-count="in_progress"]')?.textContent.startsWith('1000'));
  await p.waitForTimeout(1500);
  const snap = await (await fetch(`${B}/v1/jobs/k-parent`)).json();
  console.log(`rows in the DOM ${await p.evaluate(() => document.querySelectorAll('.child-list .child').length)}; aggregate ${await p.textContent('.child-source strong')} (server ${snap.progress}); long tasks ${JSON.stringify(await p.evaluate(() => window.__lt))}`);
} finally {
  await browser.close();
  await srv.stop();
  removeDir(srv.dataDir);
}
