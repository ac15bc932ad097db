// Test harness: the real jobwire binary on an ephemeral port (serving this dashboard's dist/ with
// --dashboard-dir), Debian's chromium through playwright-core, HS256 tokens, and small HTTP helpers.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const DASHBOARD = resolve(here, '..');
export const REPO = resolve(DASHBOARD, '..');
export const DIST = join(DASHBOARD, 'dist');

export function binary() {
  const bin = process.env.JOBWIRE_BIN || join(REPO, 'target/debug/jobwire');
  if (!existsSync(bin)) {
    throw new Error(`jobwire binary not found at ${bin}: build it (cargo build -p jobwire) or set JOBWIRE_BIN`);
  }
  return bin;
}

export function tempDir(prefix = 'jobwire-dash-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Starts `jobwire serve`; resolves once it printed its address. `port` 0 = ephemeral; `env` adds variables (test hooks). */
export async function startServer({ dataDir, port = 0, args = [], env = {} } = {}) {
  dataDir ??= tempDir();
  const proc = spawn(binary(), ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--dashboard-dir', DIST, '--heartbeat-interval', '2s', '--shutdown-grace', '1s', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const url = await new Promise((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`jobwire serve did not start in 10 s: ${stderr}`)), 10_000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /jobwire listening on (http:\/\/[0-9.:]+)/.exec(out);
      if (m) {
        clearTimeout(t);
        res(m[1]);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`jobwire serve exited with ${code}: ${stderr}`));
    });
  });
  const exited = new Promise((r) => proc.on('exit', r));
  return {
    url,
    port: Number(new URL(url).port),
    dataDir,
    proc,
    stderr: () => stderr,
    /** SIGKILL: no graceful close, no flush beyond what was acknowledged. */
    async kill9() {
      proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
        await exited;
      }
    },
  };
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** HS256 JWT signed with node's crypto. */
export function jwt(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** A JSON call; throws with the server's answer on a non-2xx status. */
export async function api(base, method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

export const createJob = (base, job, token) => api(base, 'POST', '/v1/jobs', job, token);
export const publish = (base, id, events, token) => api(base, 'POST', `/v1/jobs/${encodeURIComponent(id)}/events`, events, token);

/** Runs `jobwire demo` against the server; resolves with its exit code. */
export function runDemo(url, extra = []) {
  const proc = spawn(binary(), ['demo', '--server', url, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const done = new Promise((res) => proc.on('exit', (code) => res({ code, out })));
  return { proc, done };
}

/** Runs `fn` with pages of a fresh browser, closed (with the server) afterwards. */
export async function withBrowser(fn) {
  const browser = await launchBrowser();
  try {
    return await fn(browser);
  } finally {
    await browser.close();
  }
}

/** A page that fails the test on any uncaught page error. */
export async function openPage(browser, url, { width = 1280, height = 860, colorScheme = 'light' } = {}) {
  const ctx = await browser.newContext({ viewport: { width, height }, colorScheme, acceptDownloads: true });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.errors = errors;
  await page.goto(url);
  return page;
}
