// Regenerates src/codes.ts from crates/jobwire-proto/codes.json (test/codes.test.mjs fails when they drift).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const codes = JSON.parse(readFileSync(join(root, '../../crates/jobwire-proto/codes.json'), 'utf8'));
const close = codes.close_codes.map((c) => `  ${c.number}: { name: '${c.name}', action: '${c.action}' },`).join('\n');
const errors = codes.error_codes.map((c) => `  ${c.name}: { number: ${c.number}, http: ${c.http_status} },`).join('\n');
writeFileSync(
  join(root, 'src/codes.ts'),
  `/** Wire codes of jobwire, mirrored from crates/jobwire-proto/codes.json by scripts/codes.mjs (test/codes.test.mjs checks they agree). */

/** What a client does when the server closes its WebSocket with a code. */
export type CloseAction = 'reconnect' | 'refresh_token' | 'stop';

/** WebSocket close codes: number -> name and client action. */
export const CLOSE_CODES: Readonly<Record<number, { readonly name: string; readonly action: CloseAction }>> = {
${close}
};

/** Error codes: name -> stable number and HTTP status. */
export const ERROR_CODES: Readonly<Record<string, { readonly number: number; readonly http: number }>> = {
${errors}
};

/**
 * The action for a close code. Unknown codes follow the protocol's ranges: 4000-4499
 * reconnect, 4500-4999 stop; anything else (1001, 1006 abnormal closure, ...) reconnects.
 */
export function closeAction(code: number): CloseAction {
  const known = CLOSE_CODES[code];
  if (known) return known.action;
  if (code >= 4500 && code <= 4999) return 'stop';
  return 'reconnect';
}
`,
);
