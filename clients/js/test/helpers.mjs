// Test helpers: spawn the real jobwire binary on an ephemeral port, restart it, sign HS256 tokens.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '../../..');
export const BIN = process.env.JOBWIRE_BIN || join(REPO, 'target/debug/jobwire');
if (!existsSync(BIN)) {
  throw new Error(`jobwire binary not found at ${BIN}: build it (cargo build) or set JOBWIRE_BIN`);
}
export { WebSocket };

/** A running server. `args` are extra `serve` flags; `port` pins the port (for restarts); `env` adds variables (test hooks). */
export async function startServer({ args = [], dataDir, port = 0, env = {} } = {}) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'jw-js-'));
  const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dir, '--log', 'warn', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const url = await new Promise((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`server did not start: ${stderr}`)), 10_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /jobwire listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        res(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`server exited (${code}) before listening: ${stderr}`));
    });
  });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return {
    url,
    port: Number(new URL(url).port),
    dataDir: dir,
    child,
    args,
    /** Stops with a signal and waits for the exit. */
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    /** Stops (SIGTERM or SIGKILL) then starts again on the same port and data dir (`env`: the new process's extra variables). */
    async restart(signal = 'SIGTERM', { env: next = {} } = {}) {
      await this.stop(signal);
      return startServerRetry({ args, dataDir: dir, port: this.port, env: next });
    },
    cleanup() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The port may linger for a moment after a kill: retry the bind briefly. */
async function startServerRetry(opts) {
  for (let i = 0; ; i++) {
    try {
      return await startServer(opts);
    } catch (e) {
      if (i >= 20) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const b64u = (b) => Buffer.from(b).toString('base64url');
/** An HS256 JWT. */
export function signToken(secret, claims) {
  const head = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64u(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** Resolves when `pred()` is true (checked on every call of the returned `poke`, and every 20 ms). */
export function until(pred, ms = 10_000, what = 'condition') {
  return new Promise((res, rej) => {
    const start = Date.now();
    const tick = () => {
      let v;
      try {
        v = pred();
      } catch (e) {
        return rej(e);
      }
      if (v) return res(v);
      if (Date.now() - start > ms) return rej(new Error(`timed out after ${ms} ms waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

/** Raw HTTP helper for test setup (not the client under test). */
export async function http(url, method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/**
 * A real `ws` WebSocket with a gate: while `gate.closed`, new sockets go to a closed port and
 * fail (1006), so a test can hold the client offline while it publishes, then let it back in.
 */
export function gatedWebSocket() {
  const gate = { closed: false, attempts: 0 };
  class Gated extends WebSocket {
    constructor(url, protocols) {
      gate.attempts++;
      super(gate.closed ? 'ws://127.0.0.1:9/' : url, protocols);
    }
  }
  return { gate, WebSocket: Gated };
}

/**
 * A tiny HTTP proxy in front of `target` that refuses WebSocket upgrades with 400 (like a proxy
 * that strips `Upgrade`), and with `refuseSse` also answers event-stream requests with 400.
 */
export async function refusingProxy(target, { refuseSse = false } = {}) {
  const { createServer, request } = await import('node:http');
  const t = new URL(target);
  const server = createServer((req, res) => {
    if (refuseSse && String(req.headers.accept ?? '').includes('text/event-stream')) {
      res.writeHead(400).end('no streams here');
      return;
    }
    const up = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('upgrade', (_req, socket) => {
    socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** The server snapshot mapped to JobView field names, for comparison with a reduced view. */
export function expected(snap) {
  const first = snap.log_count - snap.logs.length + 1;
  const e = {
    id: snap.id, status: snap.status, progress: snap.progress, completedSteps: snap.completed_steps,
    metadata: snap.metadata, logCount: snap.log_count, seq: snap.seq, historyStart: snap.history_start,
    createdAt: snap.created_at, updatedAt: snap.updated_at,
    logs: snap.logs.map((l, i) => ({ number: first + i, ...l })),
  };
  for (const k of ['project', 'stage', 'step', 'message', 'result', 'error', 'checkpoint', 'rate']) if (k in snap) e[k] = snap[k];
  const renamed = {
    finished_at: 'finishedAt', heartbeat_timeout: 'heartbeatTimeout', stall_fail_after: 'stallFailAfter',
    cancel_timeout: 'cancelTimeout', stalled_since: 'stalledSince', cancel_requested: 'cancelRequested', eta_seconds: 'etaSeconds',
  };
  for (const [k, v] of Object.entries(renamed)) if (k in snap) e[v] = snap[k];
  return e;
}

/** A JobView without its derived fields, as plain JSON. */
export function comparable(v) {
  const { steps, isTerminal, ...rest } = v;
  return JSON.parse(JSON.stringify(rest));
}
