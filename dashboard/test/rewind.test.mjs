// Epochs in the browser against the real binary: the server pushes events to watchers before
// they are durable (JOBWIRE_TEST_FLUSH_DELAY_MS holds the flush back 3 s), is killed with SIGKILL
// inside that window, restarts on the same --data-dir and port, and writes other events under the
// same seqs. The job page (per-job /v1/ws, resumed with since + epoch, told `rewound`) and the
// table (tenant channel: a snapshot of a new epoch replaces the row) must drop the lost events.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createJob, launchBrowser, openPage, publish, removeDir, startServer } from './harness.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

const logLines = (page) => page.$$eval('.log .ln', (els) => els.map((e) => [Number(e.dataset.n), Number(e.dataset.seq), e.querySelector('.txt').textContent]));
const timeline = (page) => page.$$eval('.timeline li', (els) => els.map((e) => e.textContent));

/** Names the step that timed out. */
async function step(name, p) {
  try {
    return await p;
  } catch (e) {
    throw new Error(`${name}: ${e.message}`);
  }
}

/** Retries a publish until the restarted server takes it. */
async function publishUntilOk(url, id, events) {
  for (let i = 0; ; i++) {
    try {
      return await publish(url, id, events);
    } catch (e) {
      if (i > 200) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

test('events lost in a SIGKILL before their flush are rewound: job page (per-job /v1/ws) and table (channel)', { timeout: 120_000 }, async () => {
  let srv = await startServer({ env: { JOBWIRE_TEST_FLUSH_DELAY_MS: '3000' } });
  const { dataDir, port } = srv;
  try {
    await createJob(srv.url, { id: 'rw-1', project: 'p' });
    await publish(srv.url, 'rw-1', [{ type: 'log', line: 'kept line' }]); // seq 2, durable
    const page = await openPage(browser, `${srv.url}/#/jobs/rw-1`);
    await step('wait 1', page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '1'));
    // Never acknowledged: seqs 3 (77 %, a stage) and 4 (a log line) are pushed, then the server dies.
    const lost = publish(srv.url, 'rw-1', [{ type: 'progress', progress: 77, stage: 'lost stage' }, { type: 'log', line: 'lost in the crash' }]).catch((e) => e);
    await step('wait 2', page.waitForFunction(() => document.querySelector('.log .ln:last-child')?.dataset.n === '2', null, { timeout: 2500 }));
    assert.match((await timeline(page)).join('|'), /seq 3/);
    await srv.kill9();
    assert.ok((await lost) instanceof Error, 'the lost publish was never acknowledged');
    await step('wait 3', page.waitForSelector('.conn[data-state="reconnecting"]'));
    srv = await startServer({ dataDir, port });
    const r = await publishUntilOk(srv.url, 'rw-1', [{ type: 'log', line: 'written after the restart', event_id: 'n3' }]);
    assert.deepEqual(r.seqs, [3], 'the store reused seq 3');
    await step('wait 4', page.waitForFunction(() => [...document.querySelectorAll('.log .ln .txt')].some((e) => e.textContent === 'written after the restart')));
    await step('wait 5', page.waitForSelector('.conn[data-state="open"]'));
    assert.deepEqual(await logLines(page), [
      [1, 2, 'kept line'],
      [2, 3, 'written after the restart'],
    ]);
    assert.doesNotMatch(await page.textContent('.job-progress'), /77|lost stage/);
    assert.doesNotMatch((await timeline(page)).join('|'), /seq 3/, 'the lost in_progress entry (seq 3) left the timeline');
    // The table: the channel resumed without positions, so the new epoch's snapshot (same seq 3)
    // must replace the row that had the lost 77 %.
    await page.click('.back');
    await step('table row', page.waitForSelector('.spacer .row[data-job-id="rw-1"]'));
    await page.waitForTimeout(300);
    assert.doesNotMatch(await page.textContent('.spacer .row[data-job-id="rw-1"] .pct'), /77/);
    // Live after the rewind: the next seq reaches the table and, back on the job page, the log.
    await publish(srv.url, 'rw-1', [{ type: 'progress', progress: 20 }]);
    await step('table 20', page.waitForFunction(() => document.querySelector('.spacer .row[data-job-id="rw-1"] .pct')?.textContent.includes('20')));
    assert.deepEqual(page.errors, []);
    await page.context().close();
  } finally {
    await srv.stop();
    removeDir(dataDir);
  }
});

// Fallback mode (?feed=subscriptions): the table's rows are per-job /v1/ws subscriptions; the
// rewound snapshot replaces the row (an upsert by seq would keep the lost 77 % for good).
test('fallback table (?feed=subscriptions): a row whose events a crash took back is rebuilt from the snapshot', { timeout: 120_000 }, async () => {
  let srv = await startServer({ env: { JOBWIRE_TEST_FLUSH_DELAY_MS: '3000' } });
  const { dataDir, port } = srv;
  try {
    await createJob(srv.url, { id: 'rw-2', project: 'p' });
    await publish(srv.url, 'rw-2', [{ type: 'status', status: 'in_progress' }]);
    const page = await openPage(browser, `${srv.url}/?feed=subscriptions#/`);
    const pct = () => page.textContent('.spacer .row[data-job-id="rw-2"] .pct');
    await step('row', page.waitForSelector('.spacer .row[data-job-id="rw-2"]'));
    await page.waitForTimeout(300); // the fallback subscribes after the list
    const lost = publish(srv.url, 'rw-2', [{ type: 'progress', progress: 77 }]).catch((e) => e);
    await step('pushed-ahead 77', page.waitForFunction(() => document.querySelector('.spacer .row[data-job-id="rw-2"] .pct')?.textContent.includes('77'), null, { timeout: 2500 }));
    await srv.kill9();
    assert.ok((await lost) instanceof Error);
    srv = await startServer({ dataDir, port });
    const r = await publishUntilOk(srv.url, 'rw-2', [{ type: 'log', line: 'seq 3 again', event_id: 'n3' }]);
    assert.deepEqual(r.seqs, [3]);
    await step('rewound row', page.waitForFunction(() => !document.querySelector('.spacer .row[data-job-id="rw-2"] .pct')?.textContent.includes('77')));
    await publish(srv.url, 'rw-2', [{ type: 'progress', progress: 20 }]);
    await step('live 20', page.waitForFunction(() => document.querySelector('.spacer .row[data-job-id="rw-2"] .pct')?.textContent.includes('20')));
    assert.match(await pct(), /20/);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  } finally {
    await srv.stop();
    removeDir(dataDir);
  }
});

