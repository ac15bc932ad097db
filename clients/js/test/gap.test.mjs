// Gaps: a `since` older than the kept history (serve --max-events-per-job 5) gives
// history_truncated -> onGap, recovered:false, and a view rebuilt from the snapshot; on the
// WebSocket and on the polling fallback (which refetches the snapshot itself).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Jobwire } from '../dist/index.js';
import { startServer, WebSocket, until, http } from './helpers.mjs';

let s;
before(async () => {
  s = await startServer({ args: ['--max-events-per-job', '5'] });
});
after(() => s.cleanup());

for (const transports of [['websocket'], ['polling']]) {
  test(`history_truncated on ${transports[0]}: onGap, recovered false, view from the snapshot`, async () => {
    const id = `gap-${transports[0]}`;
    await http(s.url, 'POST', '/v1/jobs', { id });
    const lines = Array.from({ length: 9 }, (_, i) => ({ type: 'log', line: `l${i + 1}` }));
    await http(s.url, 'POST', `/v1/jobs/${id}/events`, lines); // seqs 2..10; history keeps 6..10
    const jw = new Jobwire({ url: s.url, WebSocket, transports, pollInterval: 100 });
    const gaps = [];
    const infos = [];
    const seqs = [];
    const sub = jw.watch(id, { since: 1, onGap: (g) => gaps.push(g), onSnapshot: (_v, i) => infos.push(i), onEvent: (e) => seqs.push(e.seq) });
    await until(() => gaps.length > 0 && sub.getSnapshot(), 5000, 'gap');
    assert.deepEqual(gaps[0], { since: 1, historyStart: 6 });
    assert.equal(infos[0].recovered, false);
    assert.equal(sub.recovered, false);
    await http(s.url, 'POST', `/v1/jobs/${id}/events`, { type: 'log', line: 'l10' });
    await until(() => sub.getSnapshot().seq === 11, 5000, 'live event');
    const v = sub.getSnapshot();
    assert.equal(v.logCount, 10);
    assert.deepEqual(v.logs.map((l) => [l.number, l.line]), Array.from({ length: 10 }, (_, i) => [i + 1, `l${i + 1}`]));
    assert.deepEqual(seqs.filter((x) => x <= 10), [6, 7, 8, 9, 10], 'the kept history is delivered after the gap');
    assert.equal(seqs.at(-1), 11);
    jw.close();
  });
}

test('a since inside the kept history recovers (recovered: true, no gap)', async () => {
  await http(s.url, 'POST', '/v1/jobs', { id: 'gap-ok' });
  await http(s.url, 'POST', '/v1/jobs/gap-ok/events', Array.from({ length: 6 }, (_, i) => ({ type: 'log', line: `l${i}` })));
  const jw = new Jobwire({ url: s.url, WebSocket });
  const gaps = [];
  const seqs = [];
  const sub = jw.watch('gap-ok', { since: 5, onGap: (g) => gaps.push(g), onEvent: (e) => seqs.push(e.seq) });
  await until(() => seqs.length === 2, 5000, 'replay');
  assert.deepEqual(seqs, [6, 7]);
  assert.deepEqual(gaps, []);
  assert.equal(sub.recovered, true);
  jw.close();
});
