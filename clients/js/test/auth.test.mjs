// Auth mode (--jwt-secret, HS256): getToken when the token is missing, before it expires (an
// `auth` frame on the open socket, no reconnect), and when the server refuses it (close 4501,
// then reconnect and resume); a refused token without getToken ends in StopRetrying.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Jobwire, StopRetrying } from '../dist/index.js';
import { startServer, WebSocket, signToken, until, http } from './helpers.mjs';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long';
const mint = (ttlSec, extra = {}) =>
  signToken(SECRET, { sub: 'u1', tenant: 'acme', scope: 'jobs:admin', exp: Math.floor(Date.now() / 1000) + ttlSec, ...extra });
let s;
before(async () => {
  s = await startServer({ args: ['--jwt-secret', SECRET, '--heartbeat-interval', '1s'] });
});
after(() => s.cleanup());

async function job(id) {
  const r = await http(s.url, 'POST', '/v1/jobs', { id }, mint(60));
  assert.equal(r.status, 201, JSON.stringify(r.body));
  await http(s.url, 'POST', `/v1/jobs/${id}/events`, { type: 'status', status: 'in_progress' }, mint(60));
}

test('no token: getToken is asked at connect', async () => {
  await job('auth-0');
  let calls = 0;
  const jw = new Jobwire({ url: s.url, WebSocket, getToken: () => (calls++, mint(60)) });
  const sub = jw.watch('auth-0');
  await until(() => sub.getSnapshot(), 5000, 'snapshot');
  assert.equal(calls, 1);
  jw.close();
});

test('a token about to expire is refreshed on the open socket: no reconnect, events keep coming', async () => {
  await job('auth-1');
  let calls = 0;
  // exp is whole seconds: a 2-3 s token; the client refreshes 1 s before exp.
  const jw = new Jobwire({ url: s.url, WebSocket, token: mint(2), getToken: () => (calls++, mint(2)) });
  const opens = [];
  jw.subscribeConnection((c) => c.state === 'open' && opens.push(c));
  const seqs = [];
  const sub = jw.watch('auth-1', { onEvent: (e) => seqs.push(e.seq) });
  await until(() => sub.getSnapshot(), 5000, 'snapshot');
  for (let i = 0; i < 7; i++) {
    await http(s.url, 'POST', '/v1/jobs/auth-1/events', { type: 'log', line: `t${i}` }, mint(60));
    await new Promise((r) => setTimeout(r, 1000));
  }
  await until(() => seqs.length === 7, 5000, 'events');
  assert.deepEqual(seqs, [3, 4, 5, 6, 7, 8, 9]);
  assert.ok(calls >= 2, `getToken called ${calls} times`);
  assert.equal(opens.length, 1, 'the socket was never replaced');
  jw.close();
});

test('close 4501 (token expired, no early refresh): getToken, reconnect, resume without loss', async () => {
  await job('auth-2');
  let calls = 0;
  const jw = new Jobwire({ url: s.url, WebSocket, token: mint(1), refreshBeforeExpiry: false, getToken: () => (calls++, mint(60)) });
  const errors = [];
  jw.subscribeConnection((c) => c.error && errors.push(c.error));
  const seqs = [];
  const sub = jw.watch('auth-2', { onEvent: (e) => seqs.push(e.seq) });
  await until(() => sub.getSnapshot(), 5000, 'snapshot');
  const deadline = Date.now() + 15_000;
  let i = 0;
  while (!errors.some((e) => e.number === 4501) && Date.now() < deadline) {
    await http(s.url, 'POST', '/v1/jobs/auth-2/events', { type: 'log', line: `x${i++}` }, mint(60));
    await new Promise((r) => setTimeout(r, 200));
  }
  const closeErr = errors.find((e) => e.number === 4501);
  assert.ok(closeErr, `got ${errors.map((e) => e.code)}`);
  assert.equal(closeErr.code, 'token_expired');
  for (let k = 0; k < 3; k++) await http(s.url, 'POST', '/v1/jobs/auth-2/events', { type: 'log', line: `y${k}` }, mint(60));
  await until(() => seqs.length === i + 3, 10_000, 'every event');
  assert.deepEqual(seqs, Array.from({ length: i + 3 }, (_, k) => k + 3));
  assert.equal(calls, 1);
  assert.equal(jw.getConnection().state, 'open');
  jw.close();
});

test('an expired token with getToken is replaced before connecting', async () => {
  await job('auth-3');
  let calls = 0;
  const jw = new Jobwire({ url: s.url, WebSocket, token: mint(-30), getToken: () => (calls++, mint(60)) });
  const sub = jw.watch('auth-3');
  await until(() => sub.getSnapshot(), 5000, 'snapshot');
  assert.equal(calls, 1);
  jw.close();
});

test('a refused token without getToken: StopRetrying, state closed', async () => {
  await job('auth-4');
  const bad = signToken('another-secret-that-is-32-bytes-or-more!!', { tenant: 'acme', scope: 'jobs:watch', exp: Math.floor(Date.now() / 1000) + 60 });
  const jw = new Jobwire({ url: s.url, WebSocket, token: bad });
  jw.watch('auth-4');
  await until(() => jw.getConnection().state === 'closed', 5000, 'closed');
  const err = jw.getConnection().error;
  assert.ok(err instanceof StopRetrying, String(err));
  assert.equal(err.code, 'unauthorized');
  jw.close();
});

test('getToken throwing StopRetrying (logged out) stops the client', async () => {
  const jw = new Jobwire({ url: s.url, WebSocket, getToken: () => { throw new StopRetrying('logged_out', 'user logged out'); } });
  jw.watch('auth-5');
  await until(() => jw.getConnection().state === 'closed', 5000, 'closed');
  assert.equal(jw.getConnection().error.code, 'logged_out');
});

test('publish refreshes a refused token once and succeeds', async () => {
  await job('auth-6');
  let calls = 0;
  const jw = new Jobwire({ url: s.url, token: 'not-a-jwt', getToken: () => (calls++, mint(60)) });
  const r = await jw.publish('auth-6', { type: 'log', line: 'hi' });
  assert.deepEqual(r.seqs, [3]);
  assert.equal(calls, 1);
});
