// Liveness and cooperative cancel against the real server: the reduced JobView follows
// stalled / recovered / cancel_requested / rate and eta_seconds / checkpoint and equals the
// server's snapshot at each step; jw.cancel asks a running job's worker to stop (or ends a job
// nobody started, or forces); jw.heartbeat renews the deadline and returns the cancel flag;
// the server's own timeouts (worker_lost, cancel_timeout) end the job in the view.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Jobwire } from '../dist/index.js';
import { startServer, WebSocket, until, http, expected, comparable, signToken } from './helpers.mjs';

let s;
before(async () => {
  s = await startServer();
});
after(() => s.cleanup());
// Closed after each test, passed or not (an open client would keep reconnecting and hang the run).
const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));
const client = (opts = {}) => {
  const c = new Jobwire({ url: s.url, WebSocket, ...opts });
  clients.push(c);
  return c;
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until the view has caught up with the server's seq, then compares it with the snapshot. */
async function matchesServer(sub, id) {
  const snap = (await http(s.url, 'GET', `/v1/jobs/${id}`)).body;
  await until(() => (sub.getSnapshot()?.seq ?? 0) >= snap.seq, 5000, `view at seq ${snap.seq}`);
  assert.deepEqual(comparable(sub.getSnapshot()), expected(snap));
  return snap;
}

test('stalled, recovered by a heartbeat, rate and ETA, checkpoint: the view equals the snapshot', async () => {
  const jw = client();
  await http(s.url, 'POST', '/v1/jobs', { id: 'live-1', heartbeat_timeout: 1, stall_fail_after: 60, cancel_timeout: 30 });
  const types = [];
  const sub = jw.watch('live-1', { onEvent: (e) => types.push(e.type) });
  await until(() => sub.getSnapshot(), 5000, 'snapshot');
  assert.equal(sub.getSnapshot().heartbeatTimeout, 1);
  assert.equal(sub.getSnapshot().stallFailAfter, 60);
  assert.equal(sub.getSnapshot().cancelTimeout, 30);

  await jw.publish('live-1', { type: 'progress', progress: 10 });
  await sleep(300);
  const r = await jw.publish('live-1', { type: 'progress', progress: 30, checkpoint: { frame: 30 } });
  assert.equal(r.cancel_requested, false);
  await until(() => sub.getSnapshot().progress === 30);
  let v = sub.getSnapshot();
  assert.ok(v.rate > 0, `rate ${v.rate}`);
  assert.ok(v.etaSeconds > 0, `eta ${v.etaSeconds}`);
  assert.deepEqual(v.checkpoint, { frame: 30 });
  assert.equal(v.stalledSince, undefined);
  await matchesServer(sub, 'live-1');

  // No heartbeat for 1 s: the server marks it stalled.
  const t0 = Date.now();
  await until(() => sub.getSnapshot().stalledSince, 4000, 'stalledSince');
  assert.ok(Date.now() - t0 < 3000, `stalled after ${Date.now() - t0} ms`);
  let snap = await matchesServer(sub, 'live-1');
  assert.equal(typeof snap.stalled_since, 'string');
  assert.equal(sub.getSnapshot().status, 'in_progress', 'stalled is not a status');

  // A heartbeat (with a checkpoint) recovers it.
  const hb = await jw.heartbeat('live-1', { checkpoint: { frame: 31 } });
  assert.deepEqual(hb, { jobId: 'live-1', status: 'in_progress', cancelRequested: false });
  await until(() => !sub.getSnapshot().stalledSince, 4000, 'recovered');
  v = sub.getSnapshot();
  assert.deepEqual(v.checkpoint, { frame: 31 });
  snap = await matchesServer(sub, 'live-1');
  assert.equal(snap.stalled_since, undefined);
  assert.ok(types.includes('stalled') && types.includes('recovered'), types.join(','));

  // Progress going backwards: rate and ETA are unknown again.
  await jw.heartbeat('live-1', { progress: 20 });
  await until(() => sub.getSnapshot().progress === 20);
  assert.equal(sub.getSnapshot().rate, undefined);
  assert.equal(sub.getSnapshot().etaSeconds, undefined);
  await matchesServer(sub, 'live-1');

  await sleep(200);
  await jw.publish('live-1', { type: 'progress', progress: 50 });
  await until(() => sub.getSnapshot().etaSeconds > 0, 5000, 'eta known again');
  await jw.publish('live-1', { type: 'completed' });
  await until(() => sub.getSnapshot().isTerminal);
  assert.equal(sub.getSnapshot().etaSeconds, undefined, 'no ETA once finished');
  assert.ok(sub.getSnapshot().rate > 0, 'the last rate stays, as in the snapshot');
  await matchesServer(sub, 'live-1');
});

test('cancel: a pending job ends at once; a running one is asked to stop until its worker confirms', async () => {
  const jw = client();
  await http(s.url, 'POST', '/v1/jobs', { id: 'cx-pending' });
  const ended = await jw.cancel('cx-pending', 'not needed');
  assert.equal(ended.status, 'cancelled');
  assert.equal(ended.cancelRequested, false);
  assert.equal(ended.seqs.length, 1);
  assert.equal((await http(s.url, 'GET', '/v1/jobs/cx-pending')).body.message, 'not needed');

  await http(s.url, 'POST', '/v1/jobs', { id: 'cx-run' });
  await jw.publish('cx-run', { type: 'progress', progress: 40 });
  const sub = jw.watch('cx-run');
  await until(() => sub.getSnapshot()?.progress === 40, 5000, 'snapshot');
  const asked = await jw.cancel('cx-run', { reason: 'user clicked' });
  assert.equal(asked.status, 'in_progress');
  assert.equal(asked.cancelRequested, true);
  assert.equal(asked.seqs.length, 1);
  await until(() => sub.getSnapshot().cancelRequested, 5000, 'cancelRequested');
  const v = sub.getSnapshot();
  assert.equal(v.status, 'in_progress');
  assert.equal(v.isTerminal, false);
  assert.deepEqual({ ...v.cancelRequested, at: typeof v.cancelRequested.at }, { at: 'string', seq: asked.seqs[0], reason: 'user clicked' });
  await matchesServer(sub, 'cx-run');

  // A second request answers the same seq; the worker hears it from heartbeats and publishes.
  assert.deepEqual((await jw.cancel('cx-run', { reason: 'again' })).seqs, asked.seqs);
  assert.equal((await jw.heartbeat('cx-run')).cancelRequested, true);
  assert.equal((await jw.publish('cx-run', { type: 'log', line: 'stopping' })).cancel_requested, true);
  await jw.publish('cx-run', { type: 'cancelled', reason: 'stopped at 40%' });
  await until(() => sub.getSnapshot().isTerminal, 5000, 'cancelled');
  assert.equal(sub.getSnapshot().status, 'cancelled');
  assert.equal(sub.getSnapshot().cancelRequested.reason, 'user clicked', 'the request stays in the view');
  await matchesServer(sub, 'cx-run');
  await assert.rejects(jw.cancel('cx-run'), (e) => e.code === 'job_terminal' && e.status === 409);
  await assert.rejects(jw.heartbeat('cx-run'), (e) => e.code === 'job_terminal' && e.status === 409);

  // force: a running job ends now.
  await http(s.url, 'POST', '/v1/jobs', { id: 'cx-force' });
  await jw.publish('cx-force', { type: 'progress', progress: 5 });
  const forced = await jw.cancel('cx-force', { reason: 'now', force: true });
  assert.equal(forced.status, 'cancelled');
  assert.equal(forced.cancelRequested, false);
});

test("the server's timeouts end the job in the view: cancel_timeout and worker_lost", async () => {
  const jw = client();
  await http(s.url, 'POST', '/v1/jobs', { id: 'to-cancel', cancel_timeout: 1 });
  await http(s.url, 'POST', '/v1/jobs', { id: 'to-lost', heartbeat_timeout: 1, stall_fail_after: 1 });
  await jw.publish('to-cancel', { type: 'progress', progress: 10 });
  await jw.publish('to-lost', { type: 'progress', progress: 10 });
  const a = jw.watch('to-cancel');
  const b = jw.watch('to-lost');
  await jw.cancel('to-cancel');
  await until(() => a.getSnapshot()?.isTerminal && b.getSnapshot()?.isTerminal, 6000, 'both ended');
  assert.equal(a.getSnapshot().status, 'cancelled');
  assert.equal(a.getSnapshot().error, 'cancel_timeout');
  assert.equal(b.getSnapshot().status, 'failed');
  assert.equal(b.getSnapshot().error, 'worker_lost');
  assert.equal(b.getSnapshot().stalledSince, undefined, 'a finished job is not stalled');
  await matchesServer(a, 'to-cancel');
  await matchesServer(b, 'to-lost');
});

test('heartbeat and cancel errors are typed; the token goes with them (jobs:cancel scope)', async () => {
  const jw = client();
  await assert.rejects(jw.heartbeat('no-such-job'), (e) => e.code === 'job_not_found' && e.status === 404);
  await assert.rejects(jw.cancel('no-such-job'), (e) => e.code === 'job_not_found' && e.status === 404);
  await assert.rejects(jw.heartbeat('bad id!'), (e) => e.code === 'invalid_job_id');

  const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long';
  const a = await startServer({ args: ['--jwt-secret', SECRET] });
  try {
    const tok = (scope) => signToken(SECRET, { sub: 'ana', tenant: 't', scope, exp: Math.floor(Date.now() / 1000) + 60 });
    const admin = tok('jobs:admin');
    await http(a.url, 'POST', '/v1/jobs', { id: 'sc-1' }, admin);
    await http(a.url, 'POST', '/v1/jobs/sc-1/events', { type: 'progress', progress: 1 }, admin);
    const watcher = client({ url: a.url, token: tok('jobs:watch') });
    await assert.rejects(watcher.cancel('sc-1'), (e) => e.code === 'forbidden' && e.status === 403);
    const canceller = client({ url: a.url, token: tok('jobs:watch jobs:cancel') });
    const r = await canceller.cancel('sc-1', 'by ana');
    assert.equal(r.cancelRequested, true);
    const snap = (await http(a.url, 'GET', '/v1/jobs/sc-1', undefined, admin)).body;
    assert.equal(snap.cancel_requested.by, 'ana');
    const worker = client({ url: a.url, token: tok('jobs:publish') });
    assert.equal((await worker.heartbeat('sc-1', { progress: 2 })).cancelRequested, true);
  } finally {
    a.cleanup();
  }
});
