/** A tiny DOM builder and formatters shared by the views (text goes in as text nodes, never as HTML). */

import { TERMINAL, type Job } from '../types';

type Attrs = Record<string, string | number | boolean | null | undefined | ((e: Event) => void)>;
type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v as EventListener);
    else if (k === 'class') el.className = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

const STATUS_LABEL: Record<string, string> = {
  pending: 'pending',
  queued: 'queued',
  in_progress: 'running',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
  stalled: 'stalled',
  recovered: 'recovered',
  cancel_requested: 'cancel requested',
};

export function statusLabel(s: string): string {
  return STATUS_LABEL[s] ?? s;
}

/** A status badge (also the timeline's `stalled`, `recovered` and `cancel_requested` entries). */
export function badge(status: string): HTMLElement {
  return h('span', { class: `badge badge-${status}` }, statusLabel(status));
}

/** "no heartbeat for 45s": the job's heartbeat timeout plus the time since the server found it stalled. */
export function stalledDetail(job: Job, now: number): string {
  const since = Date.parse(job.stalled_since ?? '');
  const timeout = job.heartbeat_timeout ?? 0;
  const s = Math.max(timeout, Math.round(timeout + (now - since) / 1000));
  return `no heartbeat for ${fmtDuration(Number.isFinite(s) ? s * 1000 : timeout * 1000)}`;
}

/** The `stalled` badge; its accessible text (and title) is "stalled — no heartbeat for Ns". */
export function stalledBadge(): { el: HTMLElement; set(job: Job, now: number): void } {
  const detail = h('span', { class: 'offscreen' });
  const el = h('span', { class: 'badge badge-stalled' }, 'stalled', detail);
  return {
    el,
    set(job, now) {
      const text = ` — ${stalledDetail(job, now)}`;
      if (detail.textContent !== text) {
        detail.textContent = text;
        el.title = `stalled${text}`;
      }
    },
  };
}

/** The badge of a cancel the worker has not confirmed yet. */
export function cancelRequestedBadge(job: Job): HTMLElement {
  const c = job.cancel_requested;
  const who = c?.by ? ` by ${c.by}` : '';
  return h('span', { class: 'badge badge-cancel_requested', title: `cancel requested${who}${c?.reason ? `: ${c.reason}` : ''}` }, 'cancel requested');
}

/** True while a cancel was requested and the job has not ended. */
export function cancelPending(job: Job): boolean {
  return job.cancel_requested !== undefined && !TERMINAL.has(job.status);
}

/** "~2 min left" from the server's `eta_seconds` (`short`: "~2 min"); empty when unknown or finished. */
export function fmtEta(job: Job, short = false): string {
  const s = job.eta_seconds;
  if (typeof s !== 'number' || !(s > 0) || TERMINAL.has(job.status)) return '';
  let t: string;
  if (s < 60) t = `${Math.max(1, Math.round(s))} s`;
  else if (s < 3600) t = `${Math.round(s / 60)} min`;
  else if (s < 172800) t = `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  else t = `${Math.round(s / 86400)} d`;
  return short ? `~${t}` : `~${t} left`;
}

export function fmtDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

export function fmtAgo(iso: string, now: number): string {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '';
  const d = Math.max(0, now - t);
  if (d < 5000) return 'just now';
  return fmtDuration(d) + ' ago';
}

export function fmtTime(iso: string): string {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? iso : t.toLocaleString();
}

export async function copyText(text: string, button: HTMLElement): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const ta = h('textarea', { 'aria-hidden': 'true', class: 'offscreen' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand('copy');
    ta.remove();
  }
  const old = button.textContent;
  button.textContent = 'Copied';
  setTimeout(() => (button.textContent = old), 1200);
}
