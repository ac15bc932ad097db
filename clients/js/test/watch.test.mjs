// Watching over the multiplexed socket: the reduced JobView equals the server's snapshot,
// subscriptions are reference-counted, bad input gets typed errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Jobwire, JobwireError } from '../dist/index.js';
import { startServer, WebSocket, until, http, expected, comparable } from './helpers.mjs';

let s;
before(async () => {
  s = await startServer();
});
after(() => s.cleanup());

test('the reduced view equals the server snapshot after every kind of event', async () => {
  const jw = new Jobwire({ url: s.url, WebSocket });
  await http(s.url, 'POST', '/v1/jobs', { id: 'red-1', project: 'p', metadata: { a: 1 } });
  const seen = [];
  let terminal = 0;
  const sub = jw.watch('red-1', { onEvent: (e) => seen.push(e.seq), onTerminal: () => terminal++ });
  await until(() => sub.getSnapshot(), 5000, 'snapshot');
  const first = sub.getSnapshot();
  await jw.publish('red-1', [
    { type: 'status', status: 'queued' },
    { type: 'step', step: 'decode', label: 'Decode' },
    { type: 'log', line: 'one', level: 'info' },
    { type: 'progress', progress: 12.5, stage: 'decode', message: 'frame 1', metadata: { b: 2 } },
    { type: 'step', step: 'render', label: 'Render' },
    { type: 'custom', name: 'x', data: { k: 1 } },
    { type: 'log', line: 'two' },
    { type: 'step', step: 'render' },
    { type: 'completed', result: { url: 's3://x' }, message: 'done' },
  ]);
  await until(() => sub.getSnapshot()?.isTerminal, 5000, 'terminal');
  const view = sub.getSnapshot();
  const snap = (await http(s.url, 'GET', '/v1/jobs/red-1')).body;
  assert.deepEqual(comparable(view), expected(snap));
  assert.deepEqual(seen, [2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(terminal, 1);
  assert.ok(Object.isFrozen(view) && Object.isFrozen(view.logs));
  assert.notEqual(first, view);
  assert.deepEqual(view.steps.map((x) => [x.name, x.label, x.state]), [['decode', 'Decode', 'done'], ['render', 'Render', 'done']]);
  jw.close();
});

test('failed and cancelled jobs reduce like the server', async () => {
  const jw = new Jobwire({ url: s.url, WebSocket });
  for (const [id, last] of [['red-f', { type: 'failed', error: 'oom', message: 'bye' }], ['red-c', { type: 'cancelled', reason: 'user' }]]) {
    await http(s.url, 'POST', '/v1/jobs', { id });
    const sub = jw.watch(id);
    await until(() => sub.getSnapshot());
    await jw.publish(id, [{ type: 'progress', progress: 5 }, last]);
    await until(() => sub.getSnapshot()?.isTerminal);
    const snap = (await http(s.url, 'GET', `/v1/jobs/${id}`)).body;
    assert.deepEqual(comparable(sub.getSnapshot()), expected(snap));
  }
  jw.close();
});

test('two watches of one job share one subscription; since replays history', async () => {
  const jw = new Jobwire({ url: s.url, WebSocket });
  await http(s.url, 'POST', '/v1/jobs', { id: 'ref-1' });
  await http(s.url, 'POST', '/v1/jobs/ref-1/events', [{ type: 'log', line: 'a' }, { type: 'log', line: 'b' }]);
  const a = [];
  const b = [];
  const s1 = jw.watch('ref-1', { since: 1, onEvent: (e) => a.push(e.seq) });
  const s2 = jw.watch('ref-1', { onEvent: (e) => b.push(e.seq) });
  await until(() => a.length === 2, 5000, 'replay');
  assert.deepEqual(a, [2, 3]);
  s1.close();
  await jw.publish('ref-1', { type: 'log', line: 'c' });
  await until(() => b.includes(4));
  assert.deepEqual(a, [2, 3], 'a closed handle gets nothing');
  assert.equal(s2.getSnapshot().logs.length, 3);
  assert.deepEqual(s2.getSnapshot().logs.map((l) => l.number), [1, 2, 3]);
  jw.close();
});

test('unknown job: typed job_not_found error on the subscription; the socket stays up', async () => {
  const jw = new Jobwire({ url: s.url, WebSocket });
  let err;
  const sub = jw.watch('no-such-job', { onError: (e) => (err = e) });
  await until(() => err, 5000, 'error');
  assert.ok(err instanceof JobwireError);
  assert.equal(err.code, 'job_not_found');
  assert.equal(sub.error, err);
  assert.equal(jw.getConnection().state, 'open');
  jw.close();
});

test('bad input gets typed errors', async () => {
  assert.throws(() => new Jobwire({ url: 'localhost:8000' }), (e) => e instanceof JobwireError && e.code === 'bad_option');
  const jw = new Jobwire({ url: s.url, WebSocket });
  assert.throws(() => jw.watch('bad id!'), (e) => e.code === 'invalid_job_id');
  assert.throws(() => jw.watch('ok', { since: -1 }), (e) => e.code === 'bad_option');
  await assert.rejects(jw.publish('ok', []), (e) => e.code === 'invalid_event');
  await assert.rejects(jw.publish('nope-404', { type: 'log', line: 'x' }), (e) => e.code === 'job_not_found' && e.status === 404);
  jw.close();
});
