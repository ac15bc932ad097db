// The dashboard's fold of wire events (src/reduce.ts) gives the server's snapshot: a real job is
// driven through steps, logs, progress, metadata and completion; its JSON history folded from the
// `created` event must equal GET /v1/jobs/{id}. Also liveness: stalled / recovered / cancel_requested,
// rate and eta_seconds, checkpoint, and the server's timeouts (worker_lost, cancel_timeout). And
// parents: `child` events folded into children / child_jobs / aggregate progress like the server.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { DASHBOARD, api, createJob, publish, removeDir, startServer, tempDir } from './harness.mjs';

let srv;
let reduce;
before(async () => {
  srv = await startServer();
  const out = join(tempDir('jobwire-reduce-'), 'reduce.mjs');
  await esbuild.build({ entryPoints: [join(DASHBOARD, 'src/reduce.ts')], bundle: true, format: 'esm', outfile: out, logLevel: 'warning' });
  reduce = await import(out);
});
after(async () => {
  await srv?.stop();
  if (srv) removeDir(srv.dataDir);
});

const FIELDS = [
  'id', 'project', 'status', 'progress', 'stage', 'step', 'completed_steps', 'message', 'metadata', 'result', 'error', 'logs', 'log_count', 'seq', 'updated_at', 'finished_at',
  'heartbeat_timeout', 'stall_fail_after', 'cancel_timeout', 'stalled_since', 'cancel_requested', 'checkpoint', 'rate', 'eta_seconds', 'progress_at',
  'parent', 'weight', 'depth', 'children', 'child_jobs', 'own_progress', 'complete_when', 'on_child_failure',
];
const pick = (j) => Object.fromEntries(FIELDS.filter((k) => j[k] !== undefined).map((k) => [k, j[k]]));

async function foldMatches(id) {
  const hist = await api(srv.url, 'GET', `/v1/jobs/${id}/events?since=0&limit=1000`);
  const [first, ...rest] = hist.events;
  const job = reduce.jobFromEvent(first);
  for (const ev of rest) assert.ok(reduce.applyEvent(job, ev), `seq ${ev.seq} applied`);
  for (const ev of hist.events) assert.equal(reduce.applyEvent(job, ev), false, 'an old seq is ignored');
  const snap = await api(srv.url, 'GET', `/v1/jobs/${id}`);
  assert.equal(snap.seq, job.seq, 'nothing happened between the two reads');
  assert.deepEqual(pick(job), pick(snap));
  return { job, snap, types: hist.events.map((e) => e.type) };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Polls the snapshot until `pred` holds (the server's timers act on their own). */
async function untilSnap(id, pred, ms = 5000) {
  const t0 = Date.now();
  for (;;) {
    const snap = await api(srv.url, 'GET', `/v1/jobs/${id}`);
    if (pred(snap)) return snap;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting on ${id}: ${JSON.stringify(snap)}`);
    await sleep(50);
  }
}

test('folding the history gives the server snapshot (completed job, 60 log lines)', async () => {
  await createJob(srv.url, { id: 'fold-1', project: 'p', metadata: { owner: 'ana' } });
  await publish(srv.url, 'fold-1', [
    { type: 'status', status: 'queued', message: 'waiting' },
    { type: 'step', step: 'decode', label: 'Decode' },
    { type: 'progress', progress: 12.5, stage: 'decode', metadata: { fps: 30 } },
    ...Array.from({ length: 60 }, (_, i) => ({ type: 'log', line: `l${i}`, level: i % 2 ? 'info' : 'warn' })),
    { type: 'step', step: 'render' },
    { type: 'custom', name: 'x', data: { a: 1 }, metadata: { owner: 'bo' } },
    { type: 'progress', progress: 80 },
    { type: 'completed', result: { url: 's3://x' }, message: 'done' },
  ]);
  await foldMatches('fold-1');
});

test('folding the history gives the server snapshot (failed and cancelled jobs)', async () => {
  await createJob(srv.url, { id: 'fold-2' });
  await publish(srv.url, 'fold-2', [{ type: 'progress', progress: 40, message: 'half' }, { type: 'failed', error: 'oom' }]);
  await foldMatches('fold-2');
  await createJob(srv.url, { id: 'fold-3' });
  await api(srv.url, 'POST', '/v1/jobs/fold-3/cancel', { reason: 'user' });
  await foldMatches('fold-3');
});

test('folding liveness gives the server snapshot at each step: rate/eta, stalled, recovered, checkpoint, cancel_requested, cancelled', async () => {
  await createJob(srv.url, { id: 'live-1', heartbeat_timeout: 1, stall_fail_after: 60, cancel_timeout: 30 });
  await publish(srv.url, 'live-1', [{ type: 'progress', progress: 10 }]);
  await sleep(250);
  await publish(srv.url, 'live-1', [{ type: 'progress', progress: 30, checkpoint: { frame: 30 } }]);
  let r = await foldMatches('live-1');
  assert.ok(r.job.rate > 0 && r.job.eta_seconds > 0, `rate ${r.job.rate}, eta ${r.job.eta_seconds}`);
  assert.equal(r.job.heartbeat_timeout, 1);
  await untilSnap('live-1', (j) => j.stalled_since);
  r = await foldMatches('live-1');
  assert.equal(r.job.stalled_since, r.snap.stalled_since);
  // A heartbeat with a checkpoint recovers it; then progress backwards makes rate/eta unknown.
  await api(srv.url, 'POST', '/v1/jobs/live-1/heartbeat', { checkpoint: { frame: 31 } });
  r = await foldMatches('live-1');
  assert.equal(r.job.stalled_since, undefined);
  assert.deepEqual(r.job.checkpoint, { frame: 31 });
  await api(srv.url, 'POST', '/v1/jobs/live-1/heartbeat', { progress: 20 });
  r = await foldMatches('live-1');
  assert.equal(r.job.rate, undefined);
  await sleep(200);
  await publish(srv.url, 'live-1', [{ type: 'progress', progress: 50 }]);
  const asked = await api(srv.url, 'POST', '/v1/jobs/live-1/cancel', { reason: 'user' });
  assert.equal(asked.cancel_requested, true);
  r = await foldMatches('live-1');
  assert.equal(r.job.status, 'in_progress');
  assert.deepEqual({ ...r.job.cancel_requested, at: undefined }, { at: undefined, seq: asked.seqs[0], reason: 'user' });
  assert.ok(r.job.eta_seconds > 0);
  await publish(srv.url, 'live-1', [{ type: 'cancelled', reason: 'stopped' }]);
  r = await foldMatches('live-1');
  assert.equal(r.job.eta_seconds, undefined, 'no ETA once finished');
  assert.ok(r.job.rate > 0, 'the last rate stays');
  assert.deepEqual(r.types.filter((t) => !['progress', 'created'].includes(t)), ['stalled', 'recovered', 'cancel_requested', 'cancelled']);
});

test("folding the server's timeouts gives its snapshot: worker_lost (stall_fail_after) and cancel_timeout", async () => {
  await createJob(srv.url, { id: 'lost-1', heartbeat_timeout: 1, stall_fail_after: 1 });
  await createJob(srv.url, { id: 'late-1', cancel_timeout: 1 });
  await publish(srv.url, 'lost-1', [{ type: 'progress', progress: 10 }]);
  await publish(srv.url, 'late-1', [{ type: 'progress', progress: 10 }]);
  await api(srv.url, 'POST', '/v1/jobs/late-1/cancel', {});
  await untilSnap('lost-1', (j) => j.status === 'failed', 6000);
  await untilSnap('late-1', (j) => j.status === 'cancelled', 6000);
  const lost = await foldMatches('lost-1');
  assert.equal(lost.job.error, 'worker_lost');
  assert.equal(lost.job.stalled_since, undefined);
  const late = await foldMatches('late-1');
  assert.equal(late.job.error, 'cancel_timeout');
});

test('a stalled event marks the job until recovered (other events do not clear it); a gap is tolerated', () => {
  const job = reduce.jobFromEvent({ type: 'created', job_id: 's', seq: 1, timestamp: 't1', status: 'pending', heartbeat_timeout: 30 });
  assert.equal(job.heartbeat_timeout, 30);
  reduce.applyEvent(job, { type: 'stalled', heartbeat_timeout: 30, job_id: 's', seq: 2, timestamp: 't2', status: 'in_progress' });
  assert.equal(job.stalled_since, 't2');
  // seq 3 (a coalesced progress) never arrives.
  assert.ok(reduce.applyEvent(job, { type: 'custom', name: 'x', job_id: 's', seq: 4, timestamp: 't4', status: 'in_progress' }));
  assert.equal(job.stalled_since, 't2', 'only recovered (or the end) clears it');
  reduce.applyEvent(job, { type: 'recovered', stalled_for: 3, job_id: 's', seq: 5, timestamp: 't5', status: 'in_progress' });
  assert.equal(job.stalled_since, undefined);
  reduce.applyEvent(job, { type: 'progress', progress: 5, rate: 1.5, eta_seconds: 63, job_id: 's', seq: 6, timestamp: 't6', status: 'in_progress' });
  assert.equal(job.progress, 5);
  assert.equal(job.eta_seconds, 63);
  assert.equal(job.seq, 6);
});

/** Waits until the parent has folded every child's latest state (progress updates are coalesced 250 ms). */
async function untilParentCaughtUp(parent, ids) {
  const want = {};
  for (const id of ids) want[id] = (await api(srv.url, 'GET', `/v1/jobs/${id}`)).seq;
  return untilSnap(parent, (p) => ids.every((id) => p.child_jobs?.[id]?.seq === want[id]));
}

test('folding child events gives the parent snapshot: counts, child_jobs, weighted aggregate progress, own progress', async () => {
  await createJob(srv.url, { id: 'par-1', project: 'p' });
  // Ids whose JS key order differs from byte order ("10" < "9"), and weights.
  const ids = ['9', '10', 'a-1', 'b-2', 'c-3', 'page-7'];
  for (const [i, id] of ids.entries()) await createJob(srv.url, { id, parent: 'par-1', weight: [1, 2, 0.5, 3, 1, 1.7][i]});
  let r = await foldMatches('par-1');
  assert.equal(r.job.children.total, 6);
  assert.equal(r.job.children.pending, 6);
  assert.equal(r.job.status, 'pending');
  await publish(srv.url, '9', [{ type: 'progress', progress: 33.3 }]);
  await publish(srv.url, '10', [{ type: 'status', status: 'queued' }]);
  await publish(srv.url, 'a-1', [{ type: 'progress', progress: 12.5 }]);
  await publish(srv.url, 'a-1', [{ type: 'progress', progress: 71.1 }]); // coalesced into the parent's next update
  await publish(srv.url, 'b-2', [{ type: 'progress', progress: 40 }, { type: 'completed' }]);
  await publish(srv.url, 'c-3', [{ type: 'progress', progress: 5 }]);
  await publish(srv.url, 'page-7', [{ type: 'progress', progress: 50 }, { type: 'failed', error: 'x' }]);
  await untilParentCaughtUp('par-1', ids);
  r = await foldMatches('par-1');
  assert.equal(r.job.status, 'in_progress', 'a child that started moved the parent');
  assert.deepEqual(r.job.children, { total: 6, pending: 0, queued: 1, in_progress: 3, completed: 1, failed: 1, cancelled: 0, stalled: 0 });
  const expect = Math.round(((33.3 * 1 + 0 * 2 + 71.1 * 0.5 + 100 * 3 + 5 * 1 + 100 * 1.7) / 9.2) * 10) / 10;
  assert.equal(r.job.progress, expect);
  assert.ok(r.types.filter((t) => t === 'child').length >= 12, `child events: ${r.types}`);
  // The child's own fold: parent, weight, depth.
  const child = await foldMatches('b-2');
  assert.deepEqual([child.job.parent, child.job.weight, child.job.depth], ['par-1', 3, 1]);
  // Once the parent publishes progress itself, children no longer move it.
  await publish(srv.url, 'par-1', [{ type: 'progress', progress: 12 }]);
  await publish(srv.url, '9', [{ type: 'progress', progress: 90 }]);
  await untilParentCaughtUp('par-1', ids);
  r = await foldMatches('par-1');
  assert.equal(r.job.own_progress, true);
  assert.equal(r.job.progress, 12);
  assert.equal(r.job.child_jobs['9'].progress, 90);
});

// The server's scanner writes a child's `stalled` without telling the parent (this binary), so the
// stalled flag of a child update is checked on synthetic events.
test('a child update with stalled counts it as stalled until an update without it (or its end); an older child seq is ignored', () => {
  const ev = (seq, child, child_seq, child_status, progress, extra = {}) => ({ type: 'child', job_id: 'p', seq, timestamp: `t${seq}`, status: 'in_progress', child, child_status, child_seq, progress, weight: 1, ...extra });
  const job = reduce.jobFromEvent({ type: 'created', job_id: 'p', seq: 1, timestamp: 't1', status: 'pending' });
  reduce.applyEvent(job, ev(2, 'a', 2, 'in_progress', 40, { stalled: true }));
  reduce.applyEvent(job, ev(3, 'b', 1, 'pending', 0));
  assert.equal(job.children.stalled, 1);
  assert.deepEqual(job.child_jobs.a, { status: 'in_progress', seq: 2, progress: 40, weight: 1, stalled: true });
  assert.equal(job.progress, 20);
  reduce.applyEvent(job, ev(4, 'a', 1, 'pending', 0)); // late and older: ignored, counts recomputed the same
  assert.equal(job.child_jobs.a.seq, 2);
  reduce.applyEvent(job, ev(5, 'a', 3, 'in_progress', 60));
  assert.equal(job.children.stalled, 0);
  assert.equal(job.child_jobs.a.stalled, undefined);
  reduce.applyEvent(job, ev(6, 'b', 2, 'failed', 0, { stalled: true }));
  assert.equal(job.children.stalled, 0, 'an ended child is not counted as stalled');
  assert.equal(job.progress, 80, 'an ended child counts as 100');
  assert.deepEqual(Object.keys(job.child_jobs).sort(), ['a', 'b']);
});

test('folding a parent with complete_when=all_children and on_child_failure=fail gives its snapshot', async () => {
  await createJob(srv.url, { id: 'par-all', complete_when: 'all_children' });
  await createJob(srv.url, { id: 'par-fail', on_child_failure: 'fail' });
  for (const id of ['all-a', 'all-b']) await createJob(srv.url, { id, parent: 'par-all' });
  for (const id of ['fail-a', 'fail-b']) await createJob(srv.url, { id, parent: 'par-fail' });
  for (const id of ['all-a', 'all-b', 'fail-a']) await publish(srv.url, id, [{ type: 'progress', progress: 50 }, { type: 'completed' }]);
  await publish(srv.url, 'fail-b', [{ type: 'failed', error: 'boom' }]);
  await untilSnap('par-all', (j) => j.status === 'completed');
  await untilSnap('par-fail', (j) => j.status === 'failed');
  const all = await foldMatches('par-all');
  assert.equal(all.job.complete_when, 'all_children');
  assert.deepEqual(all.job.result, { children: all.job.children });
  assert.equal(all.job.progress, 100);
  const failed = await foldMatches('par-fail');
  assert.equal(failed.job.on_child_failure, 'fail');
  assert.equal(failed.job.error, 'child_failed');
});
