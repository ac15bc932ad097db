// The end-to-end promise, with real parts only: a cancel clicked in the
// dashboard (Chromium) reaches a Python worker (the jobwire SDK in its own process,
// blocked in work and listening with `on_cancel`) within a second, and the job ends
// `cancelled` when that worker confirms; the page shows "cancel requested" until then.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, startServer, launchBrowser, openPage, api } from './harness.mjs';

const PYTHON = process.env.JOBWIRE_PYTHON || join(REPO, 'clients/python/.venv/bin/python');

// The worker: starts the job, then blocks in "work" until its cancel listener fires;
// prints when it learned of the cancel, cleans up for 1.5 s, then confirms.
const WORKER = `
import sys, threading, time, jobwire
client = jobwire.Client(sys.argv[1])
asked = threading.Event()
job = client.job("py-render", cancel_timeout=30)
job.progress(10, stage="render")
job.flush()
job.on_cancel(asked.set)
print("ready", flush=True)
asked.wait(30)
print("cancel-seen %.3f" % time.time(), flush=True)
time.sleep(1.5)  # cleaning up: the page says "cancel requested" meanwhile
job.confirm_cancelled("stopped by the worker")
job.flush()
print("confirmed", flush=True)
`;

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test('a cancel clicked in the dashboard reaches a Python worker within a second; the job ends when it confirms', { skip: !existsSync(PYTHON) && `no Python SDK venv at ${PYTHON} (make deps-python)` }, async () => {
  const srv = await startServer();
  const worker = spawn(PYTHON, ['-c', WORKER, srv.url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  worker.stdout.on('data', (d) => (out += d));
  worker.stderr.on('data', (d) => (err += d));
  const waitFor = async (needle, ms) => {
    const t0 = Date.now();
    while (!out.includes(needle)) {
      if (Date.now() - t0 > ms) throw new Error(`worker never printed ${needle}: ${out} ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    await waitFor('ready', 15_000);
    const page = await openPage(browser, srv.url + '/#/jobs/py-render');
    await page.waitForSelector('.job-head .badge-in_progress');
    await page.click('text=Cancel job');
    const clicked = Date.now() / 1000;
    await page.click('text=Yes, cancel it');
    await page.waitForSelector('.cancel-area >> text=Cancel requested — waiting for the worker');
    await waitFor('cancel-seen', 5_000);
    const seen = Number(/cancel-seen ([0-9.]+)/.exec(out)[1]);
    console.log(`# the Python worker learned of the cancel ${((seen - clicked) * 1000).toFixed(0)} ms after the click`);
    assert.ok(seen - clicked < 1.0, `the worker learned of the cancel after ${(seen - clicked).toFixed(3)} s`);
    await page.waitForSelector('.job-head .badge-cancelled', { timeout: 5_000 });
    const snap = await api(srv.url, 'GET', '/v1/jobs/py-render');
    assert.equal(snap.status, 'cancelled');
    assert.equal(snap.cancel_requested.reason, 'cancelled from the dashboard');
    assert.equal(snap.message, 'stopped by the worker');
    await waitFor('confirmed', 5_000);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  } finally {
    worker.kill('SIGKILL');
    await srv.stop();
  }
});
