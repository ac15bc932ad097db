// Epochs against the real binary: the embedded engine pushes an event to watchers before it
// is durable (JOBWIRE_TEST_FLUSH_DELAY_MS holds the flush back), the server is killed with
// SIGKILL inside that window, restarted on the same --data-dir, and another event is written
// under the same seq. The client resumes with since + epoch, is told `rewound`, drops the lost
// event and ends with the new one (onRewind fired). Without a crash a reconnect never rewinds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Jobwire } from '../dist/index.js';
import { startServer, WebSocket, gatedWebSocket, until, http } from './helpers.mjs';

const DELAY = { JOBWIRE_TEST_FLUSH_DELAY_MS: '3000' };

/** Publishes, retrying (same event_id) until the server answers 200. */
async function publishUntilOk(url, jobId, ev) {
  for (let i = 0; ; i++) {
    const r = await http(url, 'POST', `/v1/jobs/${jobId}/events`, ev).catch(() => null);
    if (r && r.status === 200) return r.body;
    if (i > 400) throw new Error(`publish never succeeded: ${r && JSON.stringify(r.body)}`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

const lines = (v) => v.logs.map((l) => [l.seq, l.number, l.line]);

// websocket: held offline (gate) until the new event is written, so the resume gets snapshot
// (seq 2, new) + rewound + replayed 2. sse and polling reconnect on their own: whichever comes
// first (the reconnect or the new publish), the view must end the same. (Polling gets no
// `rewound` from the HTTP API: it works the rewind out from the snapshot's `epochs`.)
for (const transports of [['websocket'], ['sse'], ['polling']]) {
  test(`${transports[0]}: an event lost in a SIGKILL before its flush is rewound and replaced`, { timeout: 90_000 }, async () => {
    let s = await startServer({ args: ['--heartbeat-interval', '1s'], env: DELAY });
    try {
      const id = `ep-${transports[0]}`;
      assert.equal((await http(s.url, 'POST', '/v1/jobs', { id })).status, 201);
      const { gate, WebSocket: Gated } = gatedWebSocket();
      const jw = new Jobwire({
        url: s.url, WebSocket: Gated, transports, pollInterval: 50,
        minReconnectDelay: 50, maxReconnectDelay: 200, heartbeatInterval: 1000, heartbeatGrace: 1000,
      });
      const rewinds = [];
      const gaps = [];
      const events = [];
      const sub = jw.watch(id, {
        onRewind: (r, v) => rewinds.push({ r, logs: v && lines(v) }),
        onGap: (g) => gaps.push(g),
        onEvent: (e) => events.push([e.seq, e.line]),
      });
      await until(() => sub.getSnapshot(), 10_000, 'first snapshot');
      const epoch1 = sub.epoch;
      assert.ok(Number.isInteger(epoch1), `the snapshot carried an epoch: ${epoch1}`);

      // Never acknowledged: the flush it waits for is killed.
      const lost = http(s.url, 'POST', `/v1/jobs/${id}/events`, { type: 'log', line: 'lost in the crash' }).catch(() => null);
      const t0 = Date.now();
      await until(() => sub.getSnapshot()?.logs.some((l) => l.line === 'lost in the crash'), 2500, 'the pushed-ahead event');
      if (process.env.JW_TRACE) console.error(`${transports[0]}: pushed-ahead event seen after ${Date.now() - t0} ms`);
      assert.equal(sub.seq, 2);
      if (transports[0] === 'websocket') gate.closed = true;
      s = await s.restart('SIGKILL', { env: {} });
      const ack = await lost;
      assert.ok(!ack || ack.status !== 200, `the lost publish was never acknowledged: ${JSON.stringify(ack)}`);
      const written = await publishUntilOk(s.url, id, { type: 'log', line: 'written after the restart', event_id: 'new-2' });
      assert.deepEqual(written.seqs, [2], 'the store reused seq 2');
      gate.closed = false;

      // Polling rebuilds the view from the snapshot, then fetches the replayed events in a
      // second request: wait for the replay too, not only for the view.
      await until(
        () => rewinds.length > 0 && sub.getSnapshot()?.logs.some((l) => l.line === 'written after the restart')
          && events.some((e) => e[1] === 'written after the restart'),
        10_000, 'rewind and the new event');
      const v = sub.getSnapshot();
      assert.deepEqual(lines(v), [[2, 1, 'written after the restart']], 'the lost line is gone, the new one is in');
      assert.equal(v.logCount, 1);
      assert.equal(v.seq, 2);
      assert.equal(rewinds.length, 1, JSON.stringify(rewinds));
      assert.deepEqual({ ...rewinds[0].r, epoch: undefined }, { jobId: id, since: 2, from: 2, epoch: undefined });
      assert.ok(rewinds[0].r.epoch > epoch1, `a new epoch after the restart: ${rewinds[0].r.epoch} > ${epoch1}`);
      assert.ok(!rewinds[0].logs.some((l) => l[2] === 'lost in the crash'), 'the view passed to onRewind has no lost line');
      assert.deepEqual(gaps, [], 'a rewind is not a gap');
      assert.equal(sub.epoch, rewinds[0].r.epoch);
      assert.deepEqual(events.at(-1), [2, 'written after the restart'], `seq 2 delivered again, new: ${JSON.stringify(events)}`);
      assert.deepEqual(events[0], [2, 'lost in the crash']);

      // Live after the rewind: the next seq folds in, nothing doubled.
      await publishUntilOk(s.url, id, { type: 'log', line: 'after', event_id: 'after-3' });
      await until(() => sub.getSnapshot().seq === 3, 5000, 'seq 3');
      assert.deepEqual(lines(sub.getSnapshot()), [[2, 1, 'written after the restart'], [3, 2, 'after']]);
      const snap = (await http(s.url, 'GET', `/v1/jobs/${id}`)).body;
      assert.deepEqual(sub.getSnapshot().logs.map((l) => l.line), snap.logs.map((l) => l.line));
      jw.close();
    } finally {
      s.cleanup();
    }
  });
}

// Polling with a restart that falls between two polls: no request fails, so the client never
// reconnects; the history page it sends its epoch with says `rewound`, and it starts a new cycle.
test('polling: a SIGKILL restart between two polls (no request fails) is still rewound', { timeout: 90_000 }, async () => {
  let s = await startServer({ args: ['--heartbeat-interval', '1s'], env: { JOBWIRE_TEST_FLUSH_DELAY_MS: '6000' } });
  try {
    const id = 'ep-between-polls';
    assert.equal((await http(s.url, 'POST', '/v1/jobs', { id })).status, 201);
    const jw = new Jobwire({ url: s.url, transports: ['polling'], pollInterval: 2000, minReconnectDelay: 50, maxReconnectDelay: 200 });
    const states = [];
    jw.subscribeConnection((c) => states.push(c.state));
    const rewinds = [];
    const events = [];
    const sub = jw.watch(id, {
      onRewind: (r) => rewinds.push(r),
      onEvent: (e) => events.push([e.seq, e.line]),
    });
    await until(() => sub.getSnapshot(), 10_000, 'first snapshot');
    const epoch1 = sub.epoch;
    const lost = http(s.url, 'POST', `/v1/jobs/${id}/events`, { type: 'log', line: 'lost in the crash' }).catch(() => null);
    await until(() => sub.getSnapshot()?.logs.some((l) => l.line === 'lost in the crash'), 4000, 'the pushed-ahead event');
    // The poll that saw it has just returned: the next one is 2 s away.
    const seen = states.length;
    s = await s.restart('SIGKILL', { env: {} });
    const ack = await lost;
    assert.ok(!ack || ack.status !== 200, 'the lost publish was never acknowledged');
    const written = await publishUntilOk(s.url, id, { type: 'log', line: 'written after the restart', event_id: 'new-2' });
    assert.deepEqual(written.seqs, [2], 'the store reused seq 2');

    await until(() => events.some((e) => e[1] === 'written after the restart'), 10_000, 'the new event');
    assert.deepEqual(states.slice(seen), [], `no reconnect: the rewind came from a history page (${states})`);
    assert.equal(rewinds.length, 1, JSON.stringify(rewinds));
    assert.equal(rewinds[0].since, 2);
    assert.equal(rewinds[0].from, 2);
    assert.ok(rewinds[0].epoch > epoch1, `a new epoch: ${rewinds[0].epoch} > ${epoch1}`);
    assert.deepEqual(events, [[2, 'lost in the crash'], [2, 'written after the restart']]);
    assert.deepEqual(lines(sub.getSnapshot()), [[2, 1, 'written after the restart']]);
    assert.equal(sub.epoch, rewinds[0].epoch);
    jw.close();
  } finally {
    s.cleanup();
  }
});

for (const signal of ['SIGTERM', 'SIGKILL']) {
  test(`no rewind when nothing was lost: a ${signal} restart resumes with the epoch and replays once`, { timeout: 90_000 }, async () => {
    let s = await startServer({ args: ['--heartbeat-interval', '1s', '--shutdown-grace', '1s'] });
    try {
      await http(s.url, 'POST', '/v1/jobs', { id: 'ep-ok' });
      await http(s.url, 'POST', '/v1/jobs/ep-ok/events', [{ type: 'log', line: 'a' }, { type: 'log', line: 'b' }]);
      const { gate, WebSocket: Gated } = gatedWebSocket();
      const jw = new Jobwire({ url: s.url, WebSocket: Gated, transports: ['websocket'], minReconnectDelay: 50, maxReconnectDelay: 200, heartbeatInterval: 1000, heartbeatGrace: 1000 });
      const rewinds = [];
      const gaps = [];
      const infos = [];
      const seqs = [];
      const sub = jw.watch('ep-ok', { since: 0, onRewind: (r) => rewinds.push(r), onGap: (g) => gaps.push(g), onSnapshot: (_v, i) => infos.push(i), onEvent: (e) => seqs.push(e.seq) });
      await until(() => sub.seq === 3, 5000, 'replay');
      const epoch1 = sub.epoch;
      assert.ok(Number.isInteger(epoch1));
      gate.closed = true;
      s = await s.restart(signal);
      await publishUntilOk(s.url, 'ep-ok', { type: 'log', line: 'c', event_id: 'c' });
      gate.closed = false;
      await until(() => sub.seq === 4 && infos.length === 2, 10_000, 'resume');
      assert.deepEqual(rewinds, []);
      assert.deepEqual(gaps, []);
      assert.deepEqual(seqs, [1, 2, 3, 4], 'each seq once, replayed from since 0');
      assert.ok(infos[1].resumed && infos[1].recovered);
      assert.ok(sub.epoch > epoch1, 'the new incarnation has a new epoch, and the client took it');
      assert.deepEqual(lines(sub.getSnapshot()), [[2, 1, 'a'], [3, 2, 'b'], [4, 3, 'c']]);
      jw.close();
    } finally {
      s.cleanup();
    }
  });
}

// A saved position (seq + epoch of a WebSocket client) given to a new client on each transport:
// the WebSocket and SSE get `rewound` from the server; polling works it out from the job's epochs.
for (const transports of [['websocket'], ['sse'], ['polling']]) {
test(`${transports[0]}: watch({ since, epoch }) from a saved position is rewound like a reconnect`, { timeout: 90_000 }, async () => {
  let s = await startServer({ env: DELAY });
  try {
    await http(s.url, 'POST', '/v1/jobs', { id: 'ep-saved' });
    const first = new Jobwire({ url: s.url, WebSocket });
    const a = first.watch('ep-saved');
    await until(() => a.getSnapshot(), 10_000, 'snapshot');
    void http(s.url, 'POST', '/v1/jobs/ep-saved/events', { type: 'log', line: 'lost' }).catch(() => null);
    await until(() => a.seq === 2, 2500, 'pushed-ahead event');
    const saved = { since: a.seq, epoch: a.epoch };
    first.close();
    s = await s.restart('SIGKILL', { env: {} });
    await publishUntilOk(s.url, 'ep-saved', { type: 'log', line: 'kept', event_id: 'k' });
    const jw = new Jobwire({ url: s.url, WebSocket, transports, pollInterval: 50 });
    const rewinds = [];
    const b = jw.watch('ep-saved', { ...saved, onRewind: (r) => rewinds.push(r) });
    await until(() => rewinds.length === 1 && b.seq === 2, 5000, 'rewind');
    assert.equal(rewinds[0].from, 2);
    assert.deepEqual(b.getSnapshot().logs.map((l) => l.line), ['kept']);
    jw.close();
  } finally {
    s.cleanup();
  }
});
}
