// Project channel: a live list of a project's jobs (catch-up snapshots, jobs created later),
// resumed with per-job positions after a restart: every event once, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Jobwire } from '../dist/index.js';
import { startServer, gatedWebSocket, until, http } from './helpers.mjs';

test('watchProject: catch-up, new jobs, resume with positions after a restart', async () => {
  let s = await startServer({ args: ['--shutdown-grace', '1s'] });
  try {
    await http(s.url, 'POST', '/v1/jobs', { id: 'pc-1', project: 'pc' });
    await http(s.url, 'POST', '/v1/jobs', { id: 'other', project: 'elsewhere' });
    await http(s.url, 'POST', '/v1/jobs/pc-1/events', { type: 'progress', progress: 10 });
    const { gate, WebSocket } = gatedWebSocket();
    const jw = new Jobwire({ url: s.url, WebSocket, minReconnectDelay: 50, maxReconnectDelay: 200 });
    const seen = {};
    const readies = [];
    const pw = jw.watchProject('pc', {
      onEvent: (e) => (seen[e.job_id] ??= []).push(e.seq),
      onReady: (r) => readies.push(r),
    });
    await until(() => pw.ready, 5000, 'ready');
    assert.deepEqual(readies[0], { jobs: 1, omitted: 0 });
    assert.deepEqual(pw.getSnapshot().map((v) => [v.id, v.progress]), [['pc-1', 10]]);
    await http(s.url, 'POST', '/v1/jobs', { id: 'pc-2', project: 'pc' });
    await http(s.url, 'POST', '/v1/jobs/pc-2/events', { type: 'log', line: 'hello' });
    await until(() => pw.get('pc-2')?.logCount === 1, 5000, 'new job live');
    gate.closed = true;
    s = await s.restart('SIGTERM');
    await http(s.url, 'POST', '/v1/jobs/pc-1/events', [{ type: 'log', line: 'a' }, { type: 'completed' }]);
    await http(s.url, 'POST', '/v1/jobs/pc-2/events', { type: 'log', line: 'b' });
    gate.closed = false;
    await until(() => pw.get('pc-1')?.isTerminal && pw.get('pc-2')?.logCount === 2, 10_000, 'resumed');
    assert.deepEqual(seen['pc-1'], [3, 4]);
    assert.deepEqual(seen['pc-2'], [1, 2, 3]);
    assert.equal(pw.get('other'), null);
    assert.deepEqual(pw.getSnapshot().map((v) => v.id), ['pc-1', 'pc-2']);
    assert.ok(Object.isFrozen(pw.getSnapshot()));
    pw.close();
    jw.close();
  } finally {
    s.cleanup();
  }
});
