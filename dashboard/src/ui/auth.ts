/** The token form (auth mode): the token is kept in sessionStorage for this tab only. */

import { setToken } from '../api';
import { h } from './dom';

export function tokenForm(reason: string, onToken: () => void): HTMLElement {
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-describedby': 'token-help' });
  const form = h(
    'form',
    { class: 'panel token-form', 'aria-labelledby': 'token-h' },
    h('h2', { id: 'token-h' }, 'Sign in'),
    h('p', { class: 'error', role: 'alert' }, reason),
    h('label', { for: 'token' }, 'Token (a JWT with scope jobs:watch)'),
    input,
    h('p', { id: 'token-help', class: 'muted small' }, 'Kept in this tab only (sessionStorage). WebSockets send it as a subprotocol, HTTP as Authorization: Bearer.'),
    h('button', { type: 'submit', class: 'btn primary' }, 'Use token'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    setToken(t);
    onToken();
  });
  queueMicrotask(() => input.focus());
  return form;
}
