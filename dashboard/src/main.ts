/** The dashboard's entry: header with the connection indicator, routing (#/ = jobs, #/jobs/{id} = a job), auth. */

import { ApiError, getToken, serverBase, setToken, tokenClaims } from './api';
import { Feed, type FeedMode } from './live/feed';
import { Mux } from './live/mux';
import type { ConnState, LiveSocket } from './live/socket';
import { JobStore } from './store';
import { tokenForm } from './ui/auth';
import { clear, h } from './ui/dom';
import { JobPage } from './ui/job';
import { ServerPanel } from './ui/server';
import { JobsTable } from './ui/table';

const store = new JobStore();
const mux = new Mux((code, reason) => {
  if (code === 4501) showAuth(new ApiError(401, 'token_expired', 'the token expired'));
  else alerts.textContent = `live updates stopped (${code} ${reason})`;
});
const connDot = h('span', { class: 'dot', 'aria-hidden': 'true' });
const connText = h('span', { class: 'conn-text' }, 'connecting');
const conn = h('div', { class: 'conn', role: 'status', 'aria-live': 'polite', 'data-state': 'connecting' }, connDot, connText);
const who = h('span', { class: 'who' });
const main = h('main', { id: 'main', tabindex: -1 });
const alerts = h('div', { class: 'alerts', role: 'alert' });
let mode: FeedMode = 'probing';
let page: JobPage | null = null;
let authShown = false;

const feed = new Feed(store, mux, {
  mode: (m) => {
    mode = m;
    updateConn();
  },
  loaded: () => {},
  authRequired: (err) => showAuth(err),
  error: (message) => {
    alerts.textContent = message;
  },
});
const table = new JobsTable(store, serverBase());
const server = new ServerPanel();
const home = h('div', { class: 'home' }, table.root, server.root);

function sockets(): LiveSocket[] {
  const s: LiveSocket[] = [];
  if (mode === 'channel') s.push(feed.channel);
  if (mode === 'subscriptions' || page) s.push(mux.socket);
  return s;
}

const RANK: Record<ConnState, number> = { open: 0, connecting: 1, reconnecting: 2, closed: 3 };

function updateConn(): void {
  const socks = sockets();
  let state: ConnState = socks.length ? 'open' : 'connecting';
  let why = '';
  for (const s of socks) {
    if (RANK[s.state] > RANK[state]) {
      state = s.state;
      why = s.lastError;
    }
  }
  if (socks.length && socks.every((s) => s.state === 'closed')) state = 'closed';
  conn.dataset.state = state;
  conn.dataset.mode = mode;
  const label: Record<ConnState, string> = { open: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', closed: 'Offline' };
  connText.textContent = label[state];
  conn.title = `${label[state]}${why ? ` (${why})` : ''}${mode === 'subscriptions' ? ' · per-job subscriptions (this server has no tenant-wide channel)' : ''}`;
  if (state === 'open') alerts.textContent = '';
}

feed.channel.onState(updateConn);
mux.socket.onState(updateConn);

function showAuth(err: ApiError): void {
  if (authShown) return;
  authShown = true;
  feed.stop();
  page?.stop();
  const reason = getToken() ? `The server refused the token (${err.code}): ${err.message}.` : 'This server requires a token.';
  setToken(null);
  clear(main);
  main.append(tokenForm(reason, () => location.reload()));
  conn.dataset.state = 'closed';
  connText.textContent = 'Signed out';
}

function route(): void {
  if (authShown) return;
  const m = /^#\/jobs\/(.+)$/.exec(location.hash);
  page?.stop();
  page = null;
  clear(main);
  if (m) {
    page = new JobPage(decodeURIComponent(m[1]!), mux);
    main.append(page.root);
    page.start();
    main.focus({ preventScroll: true });
  } else {
    document.title = 'jobwire';
    main.append(home);
    table.refresh(true);
  }
  updateConn();
}

function header(): HTMLElement {
  const claims = tokenClaims();
  if (getToken()) {
    who.textContent = claims?.tenant ? `tenant ${claims.tenant}` : 'token set';
  }
  const signOut = getToken()
    ? h(
        'button',
        {
          type: 'button',
          class: 'btn small',
          onclick: () => {
            setToken(null);
            location.reload();
          },
        },
        'Sign out',
      )
    : null;
  return h('header', { class: 'top' }, h('a', { href: '#main', class: 'skip', onclick: (e: Event) => (e.preventDefault(), main.focus()) }, 'Skip to content'), h('h1', {}, h('a', { href: '#/' }, 'jobwire')), conn, h('span', { class: 'spacer-flex' }), who, signOut);
}

document.body.append(header(), alerts, main);
addEventListener('hashchange', route);
route();
void feed.start(new URLSearchParams(location.search).get('feed') === 'subscriptions');
