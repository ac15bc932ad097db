// Browser tests of the dashboard in Debian's chromium against the real binary (development mode):
// `jobwire demo` jobs moving live, the log view (numbers, ANSI, 1,000-line tail, follow, download),
// a kill -9 + restart mid-job with no lost and no doubled log line, the cancel button (a running job
// is only asked to stop until its worker confirms), the stalled badge and the ETA.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { api, createJob, launchBrowser, openPage, publish, removeDir, runDemo, startServer } from './harness.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Rows of the table that are in the DOM: id -> { status, pct }. */
async function rows(page) {
  return page.$$eval('.spacer .row:not([hidden])', (els) =>
    Object.fromEntries(els.map((e) => [e.dataset.jobId, { status: e.dataset.status, pct: e.querySelector('.pct').textContent }])),
  );
}

/** The log view's lines as [number, text]. */
async function logLines(page) {
  return page.$$eval('.log .ln', (els) => els.map((e) => [Number(e.dataset.n), e.querySelector('.txt').textContent]));
}

async function withServer(fn, opts) {
  const srv = await startServer(opts);
  try {
    return await fn(srv);
  } finally {
    await srv.stop();
    removeDir(srv.dataDir);
  }
}

test('the table shows jobwire demo jobs moving, live, with counts', async () => {
  await withServer(async (srv) => {
    const page = await openPage(browser, srv.url + '/');
    await page.waitForSelector('.conn[data-state="open"]');
    // Record in the page every (job, percent) pair the table renders while the demo runs: a
    // MutationObserver sees each render, where sampling from the test would race a loaded machine.
    await page.evaluate(() => {
      const seen = (window.__seen = {});
      const record = () => {
        for (const e of document.querySelectorAll('.spacer .row:not([hidden])')) {
          (seen[e.dataset.jobId] ??= []).includes(e.querySelector('.pct').textContent) ||
            seen[e.dataset.jobId].push(e.querySelector('.pct').textContent);
        }
      };
      new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    const demo = runDemo(srv.url, ['--delay-ms', '120']);
    const { code, out } = await demo.done;
    assert.equal(code, 0, out);
    const seen = new Map(Object.entries(await page.evaluate(() => window.__seen)).map(([id, pcts]) => [id, new Set(pcts)]));
    const demoIds = [...seen.keys()].filter((id) => id.startsWith('demo-'));
    assert.equal(demoIds.length, 3, `demo jobs in the table: ${demoIds}`);
    for (const id of demoIds) assert.ok(seen.get(id).size >= 3, `${id} moved through ${[...seen.get(id)]}`);
    // Final states arrive pushed, and match the server's.
    for (const id of demoIds) {
      const snap = await api(srv.url, 'GET', `/v1/jobs/${id}`);
      await page.waitForSelector(`.spacer .row[data-job-id="${id}"][data-status="${snap.status}"]`);
    }
    const counts = await page.$$eval('.count', (els) => Object.fromEntries(els.map((e) => [e.dataset.status, Number(e.querySelector('.count-n').textContent)])));
    assert.equal(counts.all, 3);
    assert.equal(counts.completed + counts.failed, 3);
    // The status filter narrows the table.
    await page.click('.count[data-status="failed"]');
    await page.waitForFunction(() => document.querySelectorAll('.spacer .row:not([hidden])').length === 1);
    assert.deepEqual(Object.values(await rows(page)).map((r) => r.status), ['failed']);
    // Search by id: no match shows the empty state.
    await page.click('.count[data-status="all"]');
    await page.fill('#f-search', 'render');
    await page.waitForFunction(() => document.querySelectorAll('.spacer .row:not([hidden])').length === 1);
    await page.fill('#f-search', 'no-such-job');
    await page.waitForSelector('.empty:not([hidden])');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });
});

/** Whether this binary has the tenant-wide channel `/v1/projects/*\/ws` (an older one refuses the name). */
async function hasTenantChannel(url) {
  const r = await fetch(`${url}/v1/projects/*/ws`);
  return /upgrade/i.test(await r.text());
}

test('the live table uses the tenant-wide channel when the server has it', async () => {
  await withServer(async (srv) => {
    const page = await openPage(browser, srv.url + '/');
    await page.waitForSelector('.conn[data-state="open"]');
    const mode = await page.$eval('.conn', (e) => e.dataset.mode);
    assert.equal(mode, (await hasTenantChannel(srv.url)) ? 'channel' : 'subscriptions');
    // A job created after the page opened is pushed (no list refresh in channel mode).
    await createJob(srv.url, { id: 'pushed-1', project: 'p' });
    await publish(srv.url, 'pushed-1', [{ type: 'progress', progress: 42, stage: 'go' }]);
    await page.waitForFunction(() => document.querySelector('.spacer .row[data-job-id="pushed-1"] .pct')?.textContent === '42%', null, { timeout: 1500 });
    await page.context().close();
  });
});

test('fallback (per-job /v1/ws subscriptions, ?feed=subscriptions): live rows, new jobs listed, resume after kill -9', async () => {
  let srv = await startServer();
  const { dataDir, port } = srv;
  try {
    await createJob(srv.url, { id: 'fb-1', project: 'p' });
    const page = await openPage(browser, srv.url + '/?feed=subscriptions');
    await page.waitForSelector('.conn[data-state="open"][data-mode="subscriptions"]');
    await page.waitForSelector('.spacer .row[data-job-id="fb-1"]');
    await publish(srv.url, 'fb-1', [{ type: 'progress', progress: 10 }]);
    await page.waitForFunction(() => document.querySelector('.spacer .row[data-job-id="fb-1"] .pct')?.textContent === '10%');
    await createJob(srv.url, { id: 'fb-2', project: 'p' });
    await page.waitForSelector('.spacer .row[data-job-id="fb-2"]', { timeout: 5000 }); // the list refresh (2 s)
    await srv.kill9();
    await page.waitForSelector('.conn[data-state="reconnecting"]');
    srv = await startServer({ dataDir, port });
    await publish(srv.url, 'fb-1', [{ type: 'progress', progress: 70 }]);
    await publish(srv.url, 'fb-2', [{ type: 'progress', progress: 20 }]);
    await page.waitForFunction(() => document.querySelector('.spacer .row[data-job-id="fb-1"] .pct')?.textContent === '70%');
    await page.waitForFunction(() => document.querySelector('.spacer .row[data-job-id="fb-2"] .pct')?.textContent === '20%');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  } finally {
    await srv.stop();
    removeDir(dataDir);
  }
});

test('keyboard: rows are a roving tab stop; arrows move, Enter opens the job', async () => {
  await withServer(async (srv) => {
    for (const id of ['k-1', 'k-2', 'k-3']) await createJob(srv.url, { id });
    const page = await openPage(browser, srv.url + '/');
    await page.click('#f-sort');
    await page.selectOption('#f-sort', 'id');
    await page.waitForSelector('.spacer .row[data-job-id="k-3"]');
    assert.equal(await page.$$eval('.spacer .row[tabindex="0"]', (e) => e.length), 1);
    await page.focus('.spacer .row[tabindex="0"]');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.jobId), 'k-3');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#job-h');
    assert.equal(await page.textContent('#job-h'), 'k-2');
    await page.context().close();
  });
});

test('log view: line numbers, ANSI colours, last 1,000 lines then stream, follow only at the bottom, whole-log download', async () => {
  await withServer(async (srv) => {
    await createJob(srv.url, { id: 'logs-1', project: 'p' });
    const lines = Array.from({ length: 1200 }, (_, i) => ({ type: 'log', line: `line ${i + 1}` }));
    lines[1199] = { type: 'log', line: '\u001b[31mred\u001b[0m and \u001b[1;32mbold green\u001b[0m', level: 'warn' };
    await publish(srv.url, 'logs-1', lines.slice(0, 1000));
    await publish(srv.url, 'logs-1', lines.slice(1000));
    const page = await openPage(browser, srv.url + '/#/jobs/logs-1');
    await page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '1200');
    let got = await logLines(page);
    assert.equal(got.length, 1000);
    assert.deepEqual(got[0], [201, 'line 201']);
    assert.deepEqual(got[998], [1199, 'line 1199']);
    assert.deepEqual(got[999], [1200, 'red and bold green']);
    assert.equal(await page.$eval('.log .ln:last-child .fg-c1', (e) => e.textContent), 'red');
    assert.equal(await page.$eval('.log .ln:last-child .fg-c2.ansi-bold', (e) => e.textContent), 'bold green');
    assert.match(await page.textContent('.log-note'), /last 1000 of 1200/);
    const atBottom = () => page.$eval('.log', (b) => b.scrollHeight - b.scrollTop - b.clientHeight < 8);
    assert.ok(await atBottom(), 'follows the end at first');

    // Scrolled up: new lines stream in but the view stays where the reader is.
    // Scroll up so that the middle of the 300th shown line is at the top (robust to sub-pixel rounding).
    await page.$eval('.log', (b) => {
      const l = b.children[300];
      b.scrollTop = l.offsetTop - b.offsetTop + l.offsetHeight / 2;
    });
    await page.waitForSelector('.jump:not([hidden])');
    const topLine = () =>
      page.$eval('.log', (b) => [...b.children].find((l) => l.offsetTop + l.offsetHeight > b.scrollTop + b.offsetTop).dataset.n);
    const top = await topLine();
    await publish(srv.url, 'logs-1', [{ type: 'log', line: 'line 1201' }]);
    await page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '1201');
    assert.equal(await topLine(), top, 'the line at the top of the view stays put');
    assert.ok(!(await atBottom()));
    // Back at the bottom: it follows again.
    await page.click('.jump');
    await publish(srv.url, 'logs-1', [{ type: 'log', line: 'line 1202' }]);
    await page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '1202');
    await page.waitForFunction(() => {
      const b = document.querySelector('.log');
      return b.scrollHeight - b.scrollTop - b.clientHeight < 8;
    });
    got = await logLines(page);
    assert.equal(got.length, 1000);
    assert.deepEqual(got[0], [203, 'line 203']);

    // The whole log, from the JSON history.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('text=Download whole log')]);
    assert.equal(download.suggestedFilename(), 'logs-1.log');
    const text = readFileSync(await download.path(), 'utf8').split('\n');
    assert.equal(text.length, 1203); // 1202 lines + the final newline
    assert.equal(text[0], 'line 1');
    assert.equal(text[1200], 'line 1201');
    assert.equal(text[1199], lines[1199].line);

    // Watch URL and curl line are there to copy.
    assert.match(await page.textContent('[data-copy="curl"]'), /curl -N -H 'Accept: text\/event-stream' 'http:\/\/127\.0\.0\.1:\d+\/v1\/jobs\/logs-1\/events\?since=0'/);
    assert.match(await page.textContent('[data-copy="page"]'), /#\/jobs\/logs-1$/);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });
});

test('log numbers stay right when retention trimmed the history (history_truncated)', async () => {
  await withServer(
    async (srv) => {
      await createJob(srv.url, { id: 'trim-1' });
      await publish(srv.url, 'trim-1', Array.from({ length: 100 }, (_, i) => ({ type: 'log', line: `line ${i + 1}` })));
      const page = await openPage(browser, srv.url + '/#/jobs/trim-1');
      // Seq 1 (created) and the first 50 lines are gone: 50 lines remain, numbered 51..100.
      await page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '100');
      const got = await logLines(page);
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => [i + 51, `line ${i + 51}`]));
      await publish(srv.url, 'trim-1', [{ type: 'log', line: 'line 101' }]);
      await page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '101');
      assert.equal(await page.$eval('.log .ln:last-child .txt', (e) => e.textContent), 'line 101');
      await page.context().close();
    },
    { args: ['--max-events-per-job', '50'] },
  );
});

for (const [how, signal] of [['kill -9', 'SIGKILL'], ['graceful (SIGTERM, close 1012)', 'SIGTERM']]) {
  test(`${how} and restart mid-job: the log view resumes with no lost and no doubled line`, async () => {
    let srv = await startServer();
    const { dataDir, port } = srv;
    try {
      await createJob(srv.url, { id: 'restart-1', project: 'p' });
      const line = (i) => ({ type: 'log', line: `line ${i}`, event_id: `l${i}` });
      for (let i = 1; i <= 40; i++) await publish(srv.url, 'restart-1', [line(i)]);
      await publish(srv.url, 'restart-1', [{ type: 'progress', progress: 40, stage: 'first half' }]);
      const page = await openPage(browser, srv.url + '/#/jobs/restart-1');
      await page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '40');
      // Lines published while the page watches live.
      for (let i = 41; i <= 60; i++) await publish(srv.url, 'restart-1', [line(i)]);
      await page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '60');

      if (signal === 'SIGKILL') await srv.kill9();
      else await srv.stop();
      await page.waitForSelector('.conn[data-state="reconnecting"]');
      srv = await startServer({ dataDir, port });
      // Published right after the restart: some reach the page by replay (since=60), some live.
      for (let i = 61; i <= 120; i++) await publish(srv.url, 'restart-1', [line(i)]);
      await publish(srv.url, 'restart-1', [{ type: 'completed', result: { lines: 120 } }]);
      await page.waitForSelector('.job-head .badge-completed');
      await page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '120');
      await page.waitForSelector('.conn[data-state="open"]');
      const got = await logLines(page);
      assert.deepEqual(
        got,
        Array.from({ length: 120 }, (_, i) => [i + 1, `line ${i + 1}`]),
      );
      // The table's channel reconnected too.
      await page.click('.back');
      await page.waitForSelector('.spacer .row[data-job-id="restart-1"][data-status="completed"]');
      assert.deepEqual(page.errors, []);
      await page.context().close();
    } finally {
      await srv.stop();
      removeDir(dataDir);
    }
  });
}

test('a frozen server (SIGSTOP: TCP open, no heartbeat) is detected by the heartbeat deadline', async () => {
  await withServer(async (srv) => {
    await createJob(srv.url, { id: 'frozen-1' });
    const page = await openPage(browser, srv.url + '/#/jobs/frozen-1');
    await page.waitForSelector('.conn[data-state="open"]');
    await page.waitForTimeout(4500); // two heartbeats (--heartbeat-interval 2s): the deadline is now 2 x 3 s
    srv.proc.kill('SIGSTOP');
    try {
      const t0 = Date.now();
      await page.waitForSelector('.conn[data-state="reconnecting"]', { timeout: 12_000 });
      const detected = Date.now() - t0;
      assert.ok(detected < 10_000, `detected after ${detected} ms`);
    } finally {
      srv.proc.kill('SIGCONT');
    }
    await page.waitForSelector('.conn[data-state="open"]', { timeout: 15_000 });
    await publish(srv.url, 'frozen-1', [{ type: 'log', line: 'after the freeze' }]);
    await page.waitForFunction(() => document.querySelector('.log .ln:last-child .txt')?.textContent === 'after the freeze');
    await page.context().close();
  });
});

test('the cancel button cancels the job', async () => {
  await withServer(async (srv) => {
    await createJob(srv.url, { id: 'cancel-me', project: 'p' });
    await publish(srv.url, 'cancel-me', [{ type: 'progress', progress: 30, stage: 'work' }]);
    const page = await openPage(browser, srv.url + '/#/jobs/cancel-me');
    await page.click('text=Cancel job');
    // Live events while the confirmation is open do not take it away.
    await publish(srv.url, 'cancel-me', [{ type: 'progress', progress: 35, message: 'still working' }]);
    await page.waitForFunction(() => document.querySelector('.progress-line')?.textContent.includes('still working'));
    await page.click('text=Keep running');
    await page.click('text=Cancel job');
    await page.click('text=Yes, cancel it');
    // The job runs: its worker is asked to stop, and the page says so until the worker confirms.
    await page.waitForSelector('.job-head .badge-cancel_requested');
    await page.waitForSelector('.cancel-area >> text=Cancel requested — waiting for the worker');
    assert.equal(await page.$$eval('text=Cancel job', (e) => e.length), 0, 'no second cancel button');
    assert.equal(await page.$eval('.job-head .badge-in_progress', (e) => e.textContent), 'running');
    let snap = await api(srv.url, 'GET', '/v1/jobs/cancel-me');
    assert.equal(snap.status, 'in_progress');
    assert.equal(snap.cancel_requested.reason, 'cancelled from the dashboard');
    await page.waitForSelector('.timeline .badge-cancel_requested');
    // The table shows it too (and its row still counts as running).
    await page.click('.back');
    await page.waitForSelector('.spacer .row[data-job-id="cancel-me"][data-status="in_progress"][data-cancel-requested] .badge-cancel_requested');
    assert.equal(await page.$eval('.spacer .row[data-job-id="cancel-me"] .badge-cancel_requested', (e) => e.textContent), 'cancel requested');
    await page.goBack();
    await page.waitForSelector('.cancel-area >> text=Cancel requested — waiting for the worker');
    // The worker stops.
    const reply = await publish(srv.url, 'cancel-me', [{ type: 'cancelled' }]);
    assert.equal(reply.cancel_requested, true);
    await page.waitForSelector('.job-head .badge-cancelled');
    assert.equal(await page.$$eval('.cancel-area > *', (e) => e.length), 0, 'no cancel button nor waiting note on a finished job');
    assert.equal(await page.$$eval('.job-head .badge-cancel_requested', (e) => e.length), 0);
    snap = await api(srv.url, 'GET', '/v1/jobs/cancel-me');
    assert.equal(snap.status, 'cancelled');
    await page.waitForSelector('.timeline .badge-cancelled');
    await page.click('.back');
    await page.waitForSelector('.spacer .row[data-job-id="cancel-me"][data-status="cancelled"]:not([data-cancel-requested])');
    // A job no worker started ends at once.
    await createJob(srv.url, { id: 'cancel-pending' });
    await page.goto(srv.url + '/#/jobs/cancel-pending');
    await page.click('text=Cancel job');
    await page.click('text=Yes, cancel it');
    await page.waitForSelector('.job-head .badge-cancelled');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });
});

test('stalled: a job whose worker stops shows the stalled badge within ~2.5 s; a heartbeat clears it; ETA next to the percentage', async () => {
  await withServer(async (srv) => {
    await createJob(srv.url, { id: 'stall-1', project: 'p', heartbeat_timeout: 1 });
    const page = await openPage(browser, srv.url + '/');
    await page.waitForSelector('.spacer .row[data-job-id="stall-1"]');
    await publish(srv.url, 'stall-1', [{ type: 'progress', progress: 10 }]);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await publish(srv.url, 'stall-1', [{ type: 'progress', progress: 40 }]);
    // The table: ETA after the percentage, then the stalled badge once the worker is silent.
    await page.waitForFunction(() => /^~\d+ s$/.test(document.querySelector('.spacer .row[data-job-id="stall-1"] .eta')?.textContent ?? ''));
    await page.waitForSelector('.spacer .row[data-job-id="stall-1"] .badge-stalled:not([hidden])', { timeout: 2500 });
    const within = Date.now() - t0;
    assert.ok(within < 2500, `stalled badge after ${within} ms`);
    const text = await page.$eval('.spacer .row[data-job-id="stall-1"] .badge-stalled', (e) => e.textContent);
    assert.match(text, /^stalled — no heartbeat for \d+s$/);
    assert.match(await page.$eval('.spacer .row[data-job-id="stall-1"]', (e) => e.getAttribute('aria-label')), /running, stalled — no heartbeat for \d+s, 40%/);
    // The job page.
    await page.goto(srv.url + '/#/jobs/stall-1');
    await page.waitForSelector('.job-head .badge-stalled');
    assert.match(await page.$eval('.job-head .badge-stalled', (e) => e.textContent), /^stalled — no heartbeat for \d+s$/);
    assert.match(await page.textContent('.progress-line'), /^40% \(~\d+ s left\)/);
    const n = (t) => Number(/for (\d+)s/.exec(t)[1]);
    const first = n(await page.$eval('.job-head .badge-stalled', (e) => e.textContent));
    await page.waitForFunction((f) => Number(/for (\d+)s/.exec(document.querySelector('.job-head .badge-stalled').textContent)[1]) > f, first, { timeout: 3000 });
    // A heartbeat (no body) clears it, on the page and in the table.
    const hb = await api(srv.url, 'POST', '/v1/jobs/stall-1/heartbeat');
    assert.equal(hb.cancel_requested, false);
    await page.waitForFunction(() => !document.querySelector('.job-head .badge-stalled'), null, { timeout: 2000 });
    await page.waitForSelector('.timeline .badge-stalled');
    await page.waitForSelector('.timeline .badge-recovered');
    await page.click('.back');
    await page.waitForSelector('.spacer .row[data-job-id="stall-1"] .badge-stalled[hidden]', { state: 'attached' });
    // Finished: no ETA.
    await publish(srv.url, 'stall-1', [{ type: 'completed' }]);
    await page.waitForSelector('.spacer .row[data-job-id="stall-1"][data-status="completed"] .eta[hidden]', { state: 'attached' });
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });
});
