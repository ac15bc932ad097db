// Builds dist/ (index.html + assets/app.js + assets/app.css) from src/ with esbuild.
// The output is deterministic (no hashes, no timestamps) because the binary embeds the committed
// dist/ and CI rebuilds it: `node build.mjs --check` fails if the committed dist/ differs.
import * as esbuild from 'esbuild';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdtempSync, statSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes('--check');

async function build(out) {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, 'assets'), { recursive: true });
  const common = { bundle: true, minify: true, legalComments: 'none', logLevel: 'warning', charset: 'utf8' };
  await esbuild.build({ ...common, entryPoints: [join(here, 'src/main.ts')], outfile: join(out, 'assets/app.js'), format: 'esm', target: ['chrome110', 'firefox115', 'safari16'] });
  await esbuild.build({ ...common, entryPoints: [join(here, 'src/styles.css')], outfile: join(out, 'assets/app.css'), target: ['chrome110', 'firefox115', 'safari16'] });
  writeFileSync(join(out, 'index.html'), readFileSync(join(here, 'src/index.html')));
}

function files(dir, root = dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p, root) : [relative(root, p)];
  }).sort();
}

const dist = join(here, 'dist');
if (check) {
  const tmp = mkdtempSync(join(tmpdir(), 'jobwire-dashboard-'));
  await build(tmp);
  const a = files(tmp);
  let b = [];
  try { b = files(dist); } catch { /* missing */ }
  const bad = [];
  for (const f of new Set([...a, ...b])) {
    let x = null, y = null;
    try { x = readFileSync(join(tmp, f)); } catch {}
    try { y = readFileSync(join(dist, f)); } catch {}
    if (!x || !y || !x.equals(y)) bad.push(f);
  }
  rmSync(tmp, { recursive: true, force: true });
  if (bad.length) {
    console.error(`dashboard/dist is not what the sources build (run \`npm run build\` in dashboard/ and commit dist/): ${bad.join(', ')}`);
    process.exit(1);
  }
  console.log('dashboard/dist matches a fresh build');
} else {
  await build(dist);
  let total = 0;
  for (const f of files(dist)) {
    const buf = readFileSync(join(dist, f));
    const gz = gzipSync(buf, { level: 9 }).length;
    total += gz;
    console.log(`${f.padEnd(20)} ${String(buf.length).padStart(8)} B  ${String(gz).padStart(7)} B gzipped`);
  }
  console.log(`${'total'.padEnd(20)} ${''.padStart(8)}    ${String(total).padStart(7)} B gzipped`);
}
