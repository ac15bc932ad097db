// The client's close-code and error-code tables agree exactly with crates/jobwire-proto/codes.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLOSE_CODES, ERROR_CODES, closeAction } from '../dist/index.js';
import { REPO } from './helpers.mjs';

const codes = JSON.parse(readFileSync(join(REPO, 'crates/jobwire-proto/codes.json'), 'utf8'));

test('close codes match codes.json (number, name, action)', () => {
  const theirs = Object.fromEntries(codes.close_codes.map((c) => [c.number, { name: c.name, action: c.action }]));
  const ours = Object.fromEntries(Object.entries(CLOSE_CODES).map(([n, c]) => [n, { name: c.name, action: c.action }]));
  assert.deepEqual(ours, theirs);
  for (const c of codes.close_codes) assert.equal(closeAction(c.number), c.action);
});

test('error codes match codes.json (name, number, http status)', () => {
  const theirs = Object.fromEntries(codes.error_codes.map((c) => [c.name, { number: c.number, http: c.http_status }]));
  assert.deepEqual({ ...ERROR_CODES }, theirs);
});

test('unknown close codes follow the protocol ranges', () => {
  assert.equal(closeAction(4100), 'reconnect');
  assert.equal(closeAction(4600), 'stop');
  assert.equal(closeAction(1006), 'reconnect');
});
