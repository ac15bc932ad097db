// The dashboard's fold of wire events (src/reduce.ts) gives the server's snapshot: a real job is
// driven through steps, logs, progress, metadata and completion; its JSON history folded from the
// `created` event must equal GET /v1/jobs/{id}. Also the `stalled` flag for the liveness work.
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

const FIELDS = ['id', 'project', 'status', 'progress', 'stage', 'step', 'completed_steps', 'message', 'metadata', 'result', 'error', 'logs', 'log_count', 'seq', 'updated_at', 'finished_at'];
const pick = (j) => Object.fromEntries(FIELDS.filter((k) => j[k] !== undefined).map((k) => [k, j[k]]));

async function foldMatches(id) {
  const hist = await api(srv.url, 'GET', `/v1/jobs/${id}/events?since=0&limit=1000`);
  const [first, ...rest] = hist.events;
  const job = reduce.jobFromEvent(first);
  for (const ev of rest) assert.ok(reduce.applyEvent(job, ev), `seq ${ev.seq} applied`);
  for (const ev of hist.events) assert.equal(reduce.applyEvent(job, ev), false, 'an old seq is ignored');
  const snap = await api(srv.url, 'GET', `/v1/jobs/${id}`);
  assert.deepEqual(pick(job), pick(snap));
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

test('a stalled event marks the job; its next event clears it; a gap is tolerated', () => {
  const job = reduce.jobFromEvent({ type: 'created', job_id: 's', seq: 1, timestamp: 't1', status: 'pending' });
  reduce.applyEvent(job, { type: 'stalled', job_id: 's', seq: 2, timestamp: 't2', status: 'in_progress' });
  assert.equal(job.stalled, true);
  // seq 3 (a coalesced progress) never arrives.
  assert.ok(reduce.applyEvent(job, { type: 'progress', progress: 5, job_id: 's', seq: 4, timestamp: 't4', status: 'in_progress' }));
  assert.equal(job.stalled, false);
  assert.equal(job.progress, 5);
  assert.equal(job.seq, 4);
});
