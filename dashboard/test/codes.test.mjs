// The dashboard's close-code and error-code tables (src/codes.ts) agree exactly with
// crates/jobwire-proto/codes.json, the server's machine-readable table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { DASHBOARD, REPO } from './harness.mjs';

async function load() {
  const src = readFileSync(join(DASHBOARD, 'src/codes.ts'), 'utf8');
  const { code } = await esbuild.transform(src, { loader: 'ts', format: 'esm' });
  return import('data:text/javascript;base64,' + Buffer.from(code).toString('base64'));
}

test('close codes and error codes mirror codes.json', async () => {
  const json = JSON.parse(readFileSync(join(REPO, 'crates/jobwire-proto/codes.json'), 'utf8'));
  const { CLOSE_CODES, ERROR_CODES, closeAction } = await load();
  const close = Object.fromEntries(json.close_codes.map((c) => [String(c.number), [c.name, c.action]]));
  assert.deepEqual(Object.fromEntries(Object.entries(CLOSE_CODES).map(([k, v]) => [k, [...v]])), close);
  const errors = Object.fromEntries(json.error_codes.map((c) => [c.name, [c.number, c.http_status]]));
  assert.deepEqual(Object.fromEntries(Object.entries(ERROR_CODES).map(([k, v]) => [k, [...v]])), errors);
  // Codes outside the table follow the protocol's ranges.
  assert.equal(closeAction(1006), 'reconnect');
  assert.equal(closeAction(4100), 'reconnect');
  assert.equal(closeAction(4600), 'stop');
});
