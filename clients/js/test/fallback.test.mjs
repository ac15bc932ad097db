// Fallback when the WebSocket upgrade is refused by a proxy: SSE, and polling when SSE is
// refused too; same JobView, resume after a server restart, nothing lost or doubled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Jobwire } from '../dist/index.js';
import { startServer, WebSocket, refusingProxy, until, http } from './helpers.mjs';

let s;
before(async () => {
  s = await startServer({ args: ['--shutdown-grace', '1s'] });
});
after(() => s.cleanup());

for (const [kind, refuseSse] of [['sse', false], ['polling', true]]) {
  test(`upgrade refused -> ${kind}: live view, restart resume, nothing lost or doubled`, async () => {
    const proxy = await refusingProxy(s.url, { refuseSse });
    const id = `fb-${kind}`;
    try {
      await http(s.url, 'POST', '/v1/jobs', { id });
      await http(s.url, 'POST', `/v1/jobs/${id}/events`, [{ type: 'status', status: 'in_progress' }, { type: 'log', line: 'before' }]);
      const jw = new Jobwire({ url: proxy.url, WebSocket, pollInterval: 100, minReconnectDelay: 100, maxReconnectDelay: 300 });
      const seqs = [];
      const sub = jw.watch(id, { since: 1, onEvent: (e) => seqs.push(e.seq) });
      await until(() => sub.getSnapshot(), 5000, 'snapshot');
      assert.equal(jw.getConnection().transport, kind);
      assert.equal(jw.getConnection().state, 'open');
      for (let i = 0; i < 5; i++) await http(s.url, 'POST', `/v1/jobs/${id}/events`, { type: 'progress', progress: i * 10, stage: `s${i}` });
      await until(() => seqs.length === 7, 5000, 'live events');
      s = await s.restart('SIGTERM');
      for (let i = 0; i < 5; i++) await http(s.url, 'POST', `/v1/jobs/${id}/events`, { type: 'log', line: `after ${i}` });
      await http(s.url, 'POST', `/v1/jobs/${id}/events`, { type: 'completed', result: { ok: true } });
      await until(() => sub.getSnapshot()?.isTerminal, 10_000, 'terminal');
      assert.deepEqual(seqs, Array.from({ length: 13 }, (_, i) => i + 2));
      const v = sub.getSnapshot();
      const snap = (await http(s.url, 'GET', `/v1/jobs/${id}`)).body;
      assert.equal(v.seq, snap.seq);
      assert.equal(v.stage, snap.stage);
      assert.equal(v.progress, 100);
      assert.deepEqual(v.result, { ok: true });
      assert.deepEqual(v.logs.map((l) => l.line), snap.logs.map((l) => l.line));
      assert.equal(jw.getConnection().transport, kind);
      jw.close();
    } finally {
      await proxy.close();
    }
  });
}
