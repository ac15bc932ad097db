// Measures @jobwire/client minified + gzipped (budget 10 KB): bundles src/index.ts with esbuild.
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = await build({ entryPoints: [join(root, 'src/index.ts')], bundle: true, minify: true, format: 'esm', target: 'es2020', write: false });
const code = out.outputFiles[0].contents;
const gz = gzipSync(code, { level: 9 }).length;
const BUDGET = 10 * 1024;
console.log(`@jobwire/client: ${code.length} B minified, ${gz} B gzipped (budget ${BUDGET} B)`);
if (gz > BUDGET) {
  console.error('over budget');
  process.exit(1);
}
