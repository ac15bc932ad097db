// The committed dist/ is what the sources build (byte for byte), has the layout the binary serves
// (index.html + assets/), references its assets by absolute path, and fits the 150 KB gzip budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { DASHBOARD, DIST } from './harness.mjs';

const BUDGET = 150 * 1024;

function files(dir) {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : [join(dir, n)]));
}

test('dist/ is reproducible from the sources', () => {
  const out = execFileSync(process.execPath, [join(DASHBOARD, 'build.mjs'), '--check'], { encoding: 'utf8' });
  assert.match(out, /matches a fresh build/);
});

test('dist/ layout, absolute asset paths, gzip budget', () => {
  const rel = files(DIST).map((f) => relative(DIST, f)).sort();
  assert.deepEqual(rel, ['assets/app.css', 'assets/app.js', 'index.html']);
  const html = readFileSync(join(DIST, 'index.html'), 'utf8');
  assert.match(html, /src="\/assets\/app\.js"/);
  assert.match(html, /href="\/assets\/app\.css"/);
  assert.doesNotMatch(html, /<script>(?!<\/script>)/, 'no inline script (the server CSP forbids it)');
  const gz = files(DIST).reduce((n, f) => n + gzipSync(readFileSync(f), { level: 9 }).length, 0);
  console.log(`dashboard bundle: ${gz} bytes gzipped (budget ${BUDGET})`);
  assert.ok(gz <= BUDGET, `bundle ${gz} B gzipped is over the ${BUDGET} B budget`);
});
