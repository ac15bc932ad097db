// Reconnect and resume through a graceful restart (SIGTERM, close 1012) and a crash (kill -9)
// on the same --data-dir: every event arrives exactly once, in seq order; and a dead socket
// (server frozen with SIGSTOP) is detected by the heartbeat deadline, not by TCP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Jobwire } from '../dist/index.js';
import { startServer, WebSocket, gatedWebSocket, until, http } from './helpers.mjs';

/** Publishes one event, retrying (same event_id) until the server is back. */
async function publishUntilOk(url, jobId, ev) {
  for (let i = 0; ; i++) {
    const r = await http(url, 'POST', `/v1/jobs/${jobId}/events`, ev).catch(() => null);
    if (r && r.status === 200) return r.body;
    if (i > 400) throw new Error(`publish never succeeded: ${r && JSON.stringify(r.body)}`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

for (const signal of ['SIGTERM', 'SIGKILL']) {
  test(`resume through a ${signal} restart: nothing lost, nothing doubled`, async () => {
    let s = await startServer({ args: ['--heartbeat-interval', '1s', '--shutdown-grace', '1s'] });
    try {
      await http(s.url, 'POST', '/v1/jobs', { id: 'rs-1' });
      const { gate, WebSocket: Gated } = gatedWebSocket();
      const jw = new Jobwire({ url: s.url, WebSocket: Gated, transports: ['websocket'], minReconnectDelay: 100, maxReconnectDelay: 500, heartbeatInterval: 1000, heartbeatGrace: 1000 });
      const states = [];
      jw.subscribeConnection((c) => states.push(c.state));
      const seqs = [];
      const infos = [];
      const sub = jw.watch('rs-1', { onEvent: (e) => seqs.push(e.seq), onSnapshot: (_v, info) => infos.push(info) });
      await until(() => sub.getSnapshot(), 5000, 'first snapshot');
      await publishUntilOk(s.url, 'rs-1', { type: 'status', status: 'in_progress' });
      const N = 40;
      for (let i = 1; i <= N; i++) {
        // Hold the client offline across the restart and the next events, so they must come from the resume.
        if (i === 15) {
          gate.closed = true;
          s = await s.restart(signal);
        }
        if (i === 25) gate.closed = false;
        await publishUntilOk(s.url, 'rs-1', { type: 'log', line: `line ${i}`, event_id: `l-${i}` });
      }
      await publishUntilOk(s.url, 'rs-1', { type: 'completed', event_id: 'done' });
      await until(() => sub.getSnapshot()?.isTerminal, 15_000, 'terminal');
      const expectSeqs = Array.from({ length: N + 2 }, (_, i) => i + 2);
      assert.deepEqual(seqs, expectSeqs, 'every seq exactly once, in order');
      const view = sub.getSnapshot();
      assert.deepEqual(view.logs.map((l) => l.line), Array.from({ length: N }, (_, i) => `line ${i + 1}`));
      assert.deepEqual(view.logs.map((l) => l.number), Array.from({ length: N }, (_, i) => i + 1));
      assert.ok(states.includes('reconnecting'), `the client saw the restart: ${states}`);
      assert.equal(states.at(-1), 'open');
      assert.ok(infos.length >= 2 && infos.slice(1).every((i) => i.resumed && i.recovered), JSON.stringify(infos));
      const snap = (await http(s.url, 'GET', '/v1/jobs/rs-1')).body;
      assert.equal(view.seq, snap.seq);
      assert.equal(view.logCount, snap.log_count);
      jw.close();
    } finally {
      s.cleanup();
    }
  });
}

test('a frozen server is detected by the heartbeat deadline; the client resumes after it thaws', async () => {
  const s = await startServer({ args: ['--heartbeat-interval', '500ms'] });
  try {
    await http(s.url, 'POST', '/v1/jobs', { id: 'hb-1' });
    const jw = new Jobwire({ url: s.url, WebSocket, heartbeatInterval: 500, heartbeatGrace: 500, connectTimeout: 700, minReconnectDelay: 50, maxReconnectDelay: 200 });
    const errors = [];
    jw.subscribeConnection((c) => c.error && errors.push(c.error.code));
    const seqs = [];
    const sub = jw.watch('hb-1', { onEvent: (e) => seqs.push(e.seq) });
    await until(() => sub.getSnapshot() && jw.getConnection().state === 'open', 5000, 'open');
    process.kill(s.child.pid, 'SIGSTOP');
    const t0 = Date.now();
    await until(() => errors.includes('heartbeat_timeout'), 5000, 'heartbeat_timeout');
    const detected = Date.now() - t0;
    assert.ok(detected < 2500, `detected after ${detected} ms`);
    process.kill(s.child.pid, 'SIGCONT');
    await http(s.url, 'POST', '/v1/jobs/hb-1/events', [{ type: 'log', line: 'a' }, { type: 'log', line: 'b' }]);
    await until(() => seqs.length === 2, 10_000, 'events after thaw');
    assert.deepEqual(seqs, [2, 3]);
    jw.close();
  } finally {
    try { process.kill(s.child.pid, 'SIGCONT'); } catch {}
    s.cleanup();
  }
});
