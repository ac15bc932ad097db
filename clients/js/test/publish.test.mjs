// Publishing from Node: automatic event_id (a retry never doubles), 429 retried after
// Retry-After, no retry on a 4xx; the backoff formulas stay in their bounds; the bundle budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Jobwire, fullJitter, retryDelay } from '../dist/index.js';
import { startServer, http } from './helpers.mjs';

test('publish: 429 is retried after Retry-After; event_ids make retries idempotent', async () => {
  const s = await startServer({ args: ['--publish-rate', '1', '--publish-burst', '2'] });
  try {
    await http(s.url, 'POST', '/v1/jobs', { id: 'pub-1' });
    const jw = new Jobwire({ url: s.url });
    await jw.publish('pub-1', { type: 'log', line: 'a', event_id: 'k1' });
    const t0 = Date.now();
    const again = await jw.publish('pub-1', [{ type: 'log', line: 'a', event_id: 'k1' }, { type: 'log', line: 'b' }]);
    const waited = Date.now() - t0;
    assert.equal(again.seqs[0], 2, 'the stored event_id answers its original seq');
    assert.equal(again.seqs[1], 3);
    assert.ok(waited >= 500, `a 429 was waited out (${waited} ms)`);
    const hist = (await http(s.url, 'GET', '/v1/jobs/pub-1/events?since=0')).body;
    assert.deepEqual(hist.events.map((e) => e.line ?? e.type), ['created', 'a', 'b']);
    assert.ok(hist.events.slice(1).every((e) => typeof e.event_id === 'string'), 'every published event has a key');
    await assert.rejects(jw.publish('pub-1', { type: 'completed' }), (e) => e.code === 'invalid_transition' && e.status === 409);
  } finally {
    s.cleanup();
  }
});

test('backoff bounds: full jitter 500 ms -> 20 s; publish retries 0.5 -> 8 s', () => {
  const o = { minDelay: 500, maxDelay: 20_000 };
  assert.equal(fullJitter(0, o, () => 0.999999), 499);
  assert.equal(fullJitter(3, o, () => 0.5), 2000);
  assert.equal(fullJitter(20, o, () => 0.999999), 19_999);
  const r = { attempts: 3, minDelay: 500, maxDelay: 8000 };
  assert.equal(retryDelay(0, r, undefined, () => 0), 250);
  assert.equal(retryDelay(10, r, undefined, () => 1), 8000);
  assert.equal(retryDelay(0, r, 3000, () => 0), 3000);
});

test('@jobwire/client stays within 10 KB minified + gzipped', () => {
  const out = execFileSync(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), '../scripts/size.mjs')], { encoding: 'utf8' });
  console.log(out.trim());
  assert.match(out, /gzipped/);
});
