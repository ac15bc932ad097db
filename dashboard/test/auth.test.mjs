// Auth mode in chromium: the token form (kept in sessionStorage), two tenants each seeing only
// their own jobs (also with the same job id), live updates over the token-authenticated sockets,
// a watch-only token without the cancel button, and a refused token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createJob, jwt, launchBrowser, openPage, publish, removeDir, startServer } from './harness.mjs';

const SECRET = 'dashboard-test-secret-0123456789abcdef';
let browser;
let srv;
const A = jwt(SECRET, { sub: 'alice', tenant: 'acme', scope: 'jobs:admin' });
const B = jwt(SECRET, { sub: 'bob', tenant: 'globex', scope: 'jobs:admin' });
const WATCH = jwt(SECRET, { sub: 'carol', tenant: 'acme', scope: 'jobs:watch' });

before(async () => {
  browser = await launchBrowser();
  srv = await startServer({ args: ['--jwt-secret', SECRET] });
  await createJob(srv.url, { id: 'a-1', project: 'pa' }, A);
  await createJob(srv.url, { id: 'shared', project: 'pa' }, A);
  await createJob(srv.url, { id: 'b-1', project: 'pb' }, B);
  await createJob(srv.url, { id: 'shared', project: 'pb' }, B);
});
after(async () => {
  await browser?.close();
  await srv?.stop();
  if (srv) removeDir(srv.dataDir);
});

async function signIn(token, hash = '') {
  const page = await openPage(browser, `${srv.url}/${hash}`);
  await page.waitForSelector('#token');
  assert.match(await page.textContent('.token-form'), /requires a token/);
  await page.fill('#token', token);
  await Promise.all([page.waitForNavigation(), page.click('text=Use token')]);
  return page;
}

const ids = (page) => page.$$eval('.spacer .row:not([hidden])', (els) => els.map((e) => `${e.dataset.jobId}:${e.querySelector('.c-project').textContent}`).sort());
const pct = (page, id) => page.$eval(`.spacer .row[data-job-id="${id}"] .pct`, (e) => e.textContent);

test('each tenant sees only its own jobs, live', async () => {
  const pa = await signIn(A);
  const pb = await signIn(B);
  await pa.waitForSelector('.conn[data-state="open"]');
  await pb.waitForSelector('.conn[data-state="open"]');
  await pa.waitForFunction(() => document.querySelectorAll('.spacer .row:not([hidden])').length === 2);
  await pb.waitForFunction(() => document.querySelectorAll('.spacer .row:not([hidden])').length === 2);
  assert.deepEqual(await ids(pa), ['a-1:pa', 'shared:pa']);
  assert.deepEqual(await ids(pb), ['b-1:pb', 'shared:pb']);
  assert.match(await pa.textContent('.who'), /acme/);
  assert.equal(await pa.evaluate(() => sessionStorage.getItem('jobwire.token')), A);

  // Live: each tenant's update reaches only that tenant's page (same id "shared" in both).
  await publish(srv.url, 'shared', [{ type: 'progress', progress: 77 }], B);
  await publish(srv.url, 'a-1', [{ type: 'progress', progress: 55 }], A);
  await pb.waitForFunction(() => document.querySelector('.spacer .row[data-job-id="shared"] .pct')?.textContent === '77%');
  await pa.waitForFunction(() => document.querySelector('.spacer .row[data-job-id="a-1"] .pct')?.textContent === '55%');
  assert.equal(await pct(pa, 'shared'), '0%');
  assert.deepEqual(await ids(pa), ['a-1:pa', 'shared:pa']);

  // Another tenant's job is "not found", like a job that does not exist.
  await pa.goto(`${srv.url}/#/jobs/b-1`);
  await pa.waitForSelector('.job-status.error');
  assert.match(await pa.textContent('.job-status'), /No job "b-1"/);
  // Its own job view works over the authenticated socket, with the cancel button.
  await pa.goto(`${srv.url}/#/jobs/a-1`);
  await pa.waitForSelector('.job-head .badge-in_progress');
  assert.equal(await pa.$$eval('text=Cancel job', (e) => e.length), 1);
  assert.deepEqual([...pa.errors, ...pb.errors], []);
  await pa.context().close();
  await pb.context().close();
});

test('a watch-only token gets no cancel button; a bad token is refused back to the form', async () => {
  const pw = await signIn(WATCH, '#/jobs/a-1');
  await pw.waitForSelector('#job-h');
  await pw.waitForSelector('.job-head .badge');
  assert.equal(await pw.$$eval('text=Cancel job', (e) => e.length), 0);
  await pw.context().close();

  const bad = jwt('another-secret-0123456789abcdef-xyz', { sub: 'eve', tenant: 'acme', scope: 'jobs:admin' });
  const pe = await signIn(bad);
  await pe.waitForSelector('#token');
  assert.match(await pe.textContent('.token-form'), /refused the token \(unauthorized\)/);
  assert.equal(await pe.evaluate(() => sessionStorage.getItem('jobwire.token')), null);
  await pe.context().close();
});

test('an expiring token: the server closes the sockets (4501) and the page asks for a new token', async () => {
  const short = jwt(SECRET, { sub: 'alice', tenant: 'acme', scope: 'jobs:admin', exp: Math.floor(Date.now() / 1000) + 3 });
  const page = await signIn(short, '#/jobs/a-1');
  await page.waitForSelector('.conn[data-state="open"]');
  await page.waitForSelector('#token', { timeout: 15_000 });
  assert.match(await page.textContent('.token-form'), /token_expired/);
  await page.context().close();
});
