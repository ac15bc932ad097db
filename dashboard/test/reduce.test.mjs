// The dashboard's fold of wire events (src/reduce.ts) gives the server's snapshot: a real job is
// driven through steps, logs, progress, metadata and completion; its JSON history folded from the
// `created` event must equal GET /v1/jobs/{id}. Also liveness: stalled / recovered / cancel_requested,
// rate and eta_seconds, checkpoint, and the server's timeouts (worker_lost, cancel_timeout).
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
  'heartbeat_timeout', 'stall_fail_after', 'cancel_timeout', 'stalled_since', 'cancel_requested', 'checkpoint', 'rate', 'eta_seconds',
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
