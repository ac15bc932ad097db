/**
 * One job: status timeline, progress and stage, steps, the live log tail, result / error and
 * metadata JSON, a cancel button (when the token may publish or cancel; on a running job it only asks the
 * worker, and shows "Cancel requested — waiting for the worker" until the worker publishes `cancelled`),
 * the `stalled` badge while the server finds no heartbeat, the ETA, copyable watch URL and curl line;
 * for a parent its children (ui/children.ts) and their `child` events in the timeline, for a child
 * a link to its parent.
 * It subscribes with since=0 on the multiplexed socket, so after a reconnect it resumes from the
 * last seq it rendered: every log line exactly once.
 */

import { ApiError, canPublish, cancelJob, getToken, history, serverBase, wsBase } from '../api';
import type { Mux } from '../live/mux';
import { applyEvent } from '../reduce';
import { STATUSES, TERMINAL, type Job, type WireEvent } from '../types';
import { badge, cancelPending, cancelRequestedBadge, clear, copyText, fmtDuration, fmtEta, fmtTime, h, stalledBadge, statusLabel } from './dom';
import { ChildrenPanel } from './children';
import { LogView } from './log';

interface TimelineEntry {
  status: string;
  at: string;
  seq: number;
  /** A `child` event: which child, and its state after it. */
  child?: { id: string; status: string; progress: number; stalled: boolean };
}

/** The timeline keeps the newest this many child entries (a parent may have 1000 children). */
const TIMELINE_CHILDREN = 20;

export class JobPage {
  readonly root: HTMLElement;
  private job: Job | null = null;
  private unwatch: (() => void) | null = null;
  private readonly log = new LogView();
  private timeline: TimelineEntry[] = [];
  private timelineRev = 0;
  private childEntries = 0;
  private childHidden = 0;
  /** Each child's status (and stalled flag) as of the last `child` event seen, for the timeline. */
  private childSeen = new Map<string, string>();
  private readonly children: ChildrenPanel;
  private readonly parentEl = h('p', { class: 'parent-link', hidden: true });
  private labels = new Map<string, string>();
  private lastStatus = '';
  private firstSnap: { seq: number; logCount: number } | null = null;
  private scheduled = false;
  private keys = new WeakMap<HTMLElement, string>();
  private readonly head = h('div', { class: 'job-head' });
  private readonly progress = h('div', { class: 'job-progress' });
  private readonly timelineEl = h('ol', { class: 'timeline', 'aria-label': 'Status timeline' });
  private readonly stepsEl = h('ol', { class: 'steps', 'aria-label': 'Steps' });
  private readonly outcome = h('div', { class: 'outcome' });
  private readonly facts = h('dl', { class: 'facts' });
  private readonly meta = h('pre', { class: 'json', tabindex: 0, 'aria-label': 'Metadata JSON' });
  private readonly status = h('p', { class: 'job-status', role: 'status' });
  private readonly cancelArea = h('div', { class: 'cancel-area' });
  private readonly stalled = stalledBadge();
  /** Set when this page's cancel was answered "requested", before the event arrives. */
  private requested = false;
  private ticker: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly id: string,
    private readonly mux: Mux,
  ) {
    this.children = new ChildrenPanel(id, () => this.schedule());
    const download = h('button', { type: 'button', class: 'btn', onclick: () => void this.download(download) }, 'Download whole log');
    this.root = h(
      'section',
      { class: 'job-page', 'aria-labelledby': 'job-h' },
      h('p', {}, h('a', { href: '#/', class: 'back' }, '← All jobs')),
      this.head,
      this.parentEl,
      this.status,
      this.progress,
      this.children.root,
      h(
        'div',
        { class: 'job-grid' },
        h('section', { class: 'panel log-panel', 'aria-labelledby': 'log-h' }, h('div', { class: 'panel-title' }, h('h3', { id: 'log-h' }, 'Log'), download), this.log.root),
        h(
          'div',
          { class: 'job-side' },
          h('section', { class: 'panel', 'aria-labelledby': 'tl-h' }, h('h3', { id: 'tl-h' }, 'Timeline'), this.timelineEl),
          h('section', { class: 'panel', 'aria-labelledby': 'st-h' }, h('h3', { id: 'st-h' }, 'Steps'), this.stepsEl),
          this.outcome,
          h('section', { class: 'panel', 'aria-labelledby': 'md-h' }, h('h3', { id: 'md-h' }, 'Details'), this.facts, h('h4', {}, 'Metadata'), this.meta),
          this.watchPanel(),
        ),
      ),
    );
    this.status.textContent = 'Loading…';
  }

  start(): void {
    this.ticker = setInterval(() => this.job?.stalled_since && this.stalled.set(this.job, Date.now()), 1000);
    this.log.hold(); // until the replay reaches the first snapshot's seq
    this.unwatch = this.mux.watch(
      this.id,
      {
        snapshot: (job) => this.snapshot(job),
        event: (ev) => this.event(ev),
        rewound: (from, job) => this.rewound(from, job),
        truncated: () => this.log.markTrimmed(),
        error: (code, message) => {
          this.status.textContent = code === 'job_not_found' ? `No job "${this.id}" here (or your token may not see it).` : `${code}: ${message}`;
          this.status.classList.add('error');
        },
      },
      0,
    );
  }

  stop(): void {
    clearInterval(this.ticker);
    this.unwatch?.();
    this.unwatch = null;
  }

  private snapshot(job: Job): void {
    const copy: Job = structuredClone(job);
    if (!this.job || copy.seq >= this.job.seq) this.job = copy;
    if (!this.firstSnap) {
      this.firstSnap = { seq: job.seq, logCount: job.log_count };
      if (job.step?.label) this.labels.set(job.step.step, job.step.label);
    }
    this.status.textContent = '';
    this.status.classList.remove('error');
    this.schedule();
  }

  /** The server took back events from `from` on: rebuild from its snapshot, drop the timeline and log from `from`. */
  private rewound(from: number, job: Job): void {
    this.job = structuredClone(job);
    this.timeline = this.timeline.filter((t) => t.seq < from);
    this.childSeen.clear();
    this.childEntries = 0;
    this.lastStatus = '';
    for (const t of this.timeline) {
      if (t.child) {
        this.childSeen.set(t.child.id, `${t.child.status}|${t.child.stalled}`);
        this.childEntries += 1;
      } else if ((STATUSES as readonly string[]).includes(t.status)) this.lastStatus = t.status;
    }
    this.timelineRev += 1;
    this.log.truncate(from);
    this.schedule();
  }

  private event(ev: WireEvent): void {
    if (this.job) applyEvent(this.job, ev);
    if (ev.type === 'log') this.log.add(ev);
    if (ev.type === 'step' && typeof ev.label === 'string') this.labels.set(String(ev.step), ev.label);
    const liveness = ev.type === 'stalled' || ev.type === 'recovered' || ev.type === 'cancel_requested';
    if (ev.status !== this.lastStatus || liveness) {
      this.timeline.push({ status: liveness ? ev.type : ev.status, at: ev.timestamp, seq: ev.seq });
      this.lastStatus = ev.status;
      this.timelineRev += 1;
    }
    if (ev.type === 'child') this.childEvent(ev);
    if (this.firstSnap && ev.seq >= this.firstSnap.seq) {
      if (ev.seq === this.firstSnap.seq) this.log.setCountAt(this.firstSnap.logCount);
      this.log.release();
    }
    this.schedule();
  }

  /** A child's status change (or stall) becomes a timeline entry; progress-only updates do not. */
  private childEvent(ev: WireEvent): void {
    const id = String(ev.child);
    const stalled = ev.stalled === true;
    const status = String(ev.child_status);
    const seen = `${status}|${stalled}`;
    if (this.childSeen.get(id) === seen) return;
    this.childSeen.set(id, seen);
    this.timeline.push({ status, at: ev.timestamp, seq: ev.seq, child: { id, status, progress: Number(ev.progress), stalled } });
    this.timelineRev += 1;
    if (++this.childEntries > TIMELINE_CHILDREN) {
      const i = this.timeline.findIndex((t) => t.child);
      this.timeline.splice(i, 1);
      this.childEntries -= 1;
      this.childHidden += 1;
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  /** Rebuilds `el` only when its key changed: most events touch one or two parts of the page. */
  private part(el: HTMLElement, key: string, build: () => void): void {
    if (this.keys.get(el) === key) return;
    this.keys.set(el, key);
    clear(el);
    build();
  }

  private render(): void {
    const job = this.job;
    if (!job) return;
    const title = `${job.id} · ${statusLabel(job.status)} · jobwire`;
    if (document.title !== title) document.title = title;
    const cancellable = !TERMINAL.has(job.status) && canPublish();
    const asked = cancelPending(job) || (this.requested && !TERMINAL.has(job.status));
    this.part(this.head, `${job.status}|${job.stalled_since ? 1 : 0}|${asked}|${cancellable}`, () => {
      const badges = h('span', { class: 'badges' }, badge(job.status), asked ? cancelRequestedBadge(job) : null, job.stalled_since ? this.stalled.el : null);
      this.head.append(h('h2', { id: 'job-h', class: 'job-id' }, job.id), badges, this.cancelArea);
      clear(this.cancelArea);
      if (cancellable && asked) this.cancelArea.append(h('span', { class: 'cancel-wait', role: 'status' }, 'Cancel requested — waiting for the worker'));
      else if (cancellable) this.cancelArea.append(this.cancelButton());
    });
    if (job.stalled_since) this.stalled.set(job, Date.now());
    this.part(this.parentEl, `${job.parent ?? ''}|${job.weight ?? 1}`, () => {
      this.parentEl.hidden = !job.parent;
      if (job.parent)
        this.parentEl.append('Parent: ', h('a', { href: `#/jobs/${encodeURIComponent(job.parent)}`, class: 'parent-id' }, job.parent), job.weight !== undefined && job.weight !== 1 ? ` · weight ${job.weight}` : '');
    });

    const pct = Math.max(0, Math.min(100, job.progress));
    const eta = fmtEta(job);
    const agg = job.children && !job.own_progress ? ` · aggregate of ${job.children.total} ${job.children.total === 1 ? 'child' : 'children'}` : '';
    this.part(this.progress, `${pct}|${job.status}|${job.stage ?? ''}|${job.message ?? ''}|${eta}|${agg}`, () =>
      this.progress.append(
        h(
          'div',
          { class: 'bigbar', role: 'progressbar', 'aria-label': 'Progress', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(pct * 10) / 10 },
          h('div', { class: `bar-fill bar-${job.status}`, style: `width:${pct}%` }),
        ),
        h('p', { class: 'progress-line' }, h('strong', {}, `${pct.toFixed(pct % 1 ? 1 : 0)}%`), eta ? h('span', { class: 'eta' }, ` (${eta})`) : null, agg ? h('span', { class: 'agg' }, agg) : null, job.stage ? h('span', { class: 'stage' }, ` · ${job.stage}`) : null, job.message ? h('span', { class: 'message' }, ` · ${job.message}`) : null),
      ),
    );

    this.part(this.timelineEl, String(this.timelineRev), () => {
      if (this.childHidden) this.timelineEl.append(h('li', { class: 'muted' }, `${this.childHidden} earlier child ${this.childHidden === 1 ? 'change' : 'changes'} not shown`));
      for (const t of this.timeline) this.timelineEl.append(h('li', { class: t.child ? 'tl-child' : null }, ...this.entry(t), h('time', { datetime: t.at }, ` ${fmtTime(t.at)}`), h('span', { class: 'muted' }, ` seq ${t.seq}`)));
      if (this.timeline.length === 0) this.timelineEl.append(h('li', { class: 'muted' }, 'No events yet.'));
    });

    this.children.update(job);

    const label = (s: string) => this.labels.get(s) ?? s;
    const cur = job.step?.step;
    this.part(this.stepsEl, JSON.stringify([job.completed_steps, job.step, this.labels.size]), () => {
      for (const s of job.completed_steps) this.stepsEl.append(h('li', { class: 'step done' }, h('span', { 'aria-hidden': 'true' }, '✓ '), label(s), h('span', { class: 'offscreen' }, ' (done)')));
      if (cur && !job.completed_steps.includes(cur))
        this.stepsEl.append(h('li', { class: 'step current', 'aria-current': 'step' }, h('span', { 'aria-hidden': 'true' }, '▶ '), job.step?.label ?? label(cur)));
      if (!this.stepsEl.firstChild) this.stepsEl.append(h('li', { class: 'muted' }, 'No steps.'));
    });

    const result = job.result !== undefined ? JSON.stringify(job.result, null, 2) : '';
    this.part(this.outcome, `${result}|${job.error ?? ''}`, () => {
      if (job.result !== undefined)
        this.outcome.append(h('section', { class: 'panel', 'aria-labelledby': 'res-h' }, h('h3', { id: 'res-h' }, 'Result'), h('pre', { class: 'json', tabindex: 0 }, result)));
      if (job.error) this.outcome.append(h('section', { class: 'panel error-panel', 'aria-labelledby': 'err-h' }, h('h3', { id: 'err-h' }, 'Error'), h('pre', { class: 'json' }, JSON.stringify(job.error, null, 2))));
    });

    const duration = fmtDuration((job.finished_at ? Date.parse(job.finished_at) : Date.now()) - Date.parse(job.created_at));
    this.part(this.facts, `${job.seq}|${duration}`, () => {
      const fact = (k: string, v: string | undefined) => v && this.facts.append(h('dt', {}, k), h('dd', {}, v));
      fact('Project', job.project);
      fact('Tenant', job.tenant);
      fact('Created by', job.created_by);
      fact('Created', fmtTime(job.created_at));
      fact('Updated', fmtTime(job.updated_at));
      fact('Finished', job.finished_at && fmtTime(job.finished_at));
      fact('Duration', duration);
      fact('Seq', String(job.seq));
      fact('Log lines', String(job.log_count));
    });
    const meta = JSON.stringify(job.metadata, null, 2);
    if (this.meta.textContent !== meta) this.meta.textContent = meta;
  }

  /** "running", or for a child event "child page-7 → running 50%". */
  private entry(t: TimelineEntry): (Node | string)[] {
    const c = t.child;
    if (!c) return [badge(t.status)];
    const pct = c.status === 'in_progress' ? ` ${Math.round(c.progress)}%` : '';
    return ['child ', h('a', { href: `#/jobs/${encodeURIComponent(c.id)}` }, c.id), ' → ', badge(c.status), pct, c.stalled ? ' (stalled)' : ''];
  }

  private cancelButton(): HTMLElement {
    const btn = h('button', { type: 'button', class: 'btn danger', 'aria-haspopup': 'true' }, 'Cancel job');
    btn.addEventListener('click', () => {
      const yes = h('button', { type: 'button', class: 'btn danger', onclick: () => void this.cancel(yes) }, 'Yes, cancel it');
      const no = h('button', { type: 'button', class: 'btn', onclick: () => (this.keys.delete(this.head), this.schedule()) }, 'Keep running');
      this.cancelArea.replaceChildren(h('span', { role: 'group', 'aria-label': 'Confirm cancel', class: 'confirm' }, 'Cancel this job? ', yes, no));
      yes.focus();
    });
    return btn;
  }

  private async cancel(btn: HTMLButtonElement): Promise<void> {
    btn.disabled = true;
    try {
      const r = await cancelJob(this.id, 'cancelled from the dashboard');
      // A running job is only asked to stop: its worker confirms with `cancelled`.
      if (r.cancel_requested) {
        this.requested = true;
        this.keys.delete(this.head);
        this.schedule();
      } else this.status.textContent = 'Job cancelled.';
    } catch (e) {
      const err = e as ApiError;
      this.status.textContent = `Cancel refused: ${err.code} (${err.message})`;
      this.status.classList.add('error');
      btn.disabled = false;
    }
  }

  private watchPanel(): HTMLElement {
    const id = encodeURIComponent(this.id);
    const page = `${location.origin}${location.pathname}${location.search}#/jobs/${id}`;
    const ws = `${wsBase()}/v1/jobs/${id}/ws?since=0`;
    const auth = getToken() ? ` -H "Authorization: Bearer $JOBWIRE_TOKEN"` : '';
    const curl = `curl -N${auth} -H 'Accept: text/event-stream' '${serverBase()}/v1/jobs/${id}/events?since=0'`;
    const row = (label: string, value: string, name: string) => {
      const code = h('code', { class: 'copy-value', 'data-copy': name, tabindex: 0, 'aria-label': `${label}: ${value}` }, value);
      const btn = h('button', { type: 'button', class: 'btn small', 'aria-label': `Copy ${label}` }, 'Copy');
      btn.addEventListener('click', () => void copyText(value, btn));
      return h('div', { class: 'copy-row' }, h('span', { class: 'copy-label' }, label), code, btn);
    };
    return h('section', { class: 'panel', 'aria-labelledby': 'wt-h' }, h('h3', { id: 'wt-h' }, 'Watch'), row('Page', page, 'page'), row('WebSocket', ws, 'ws'), row('curl (SSE)', curl, 'curl'));
  }

  /** The whole log from the JSON history, page by page, as a text file. */
  private async download(btn: HTMLButtonElement): Promise<void> {
    btn.disabled = true;
    const old = btn.textContent;
    try {
      const lines: string[] = [];
      let since = 0;
      for (;;) {
        const page = await history(this.id, since);
        for (const ev of page.events) if (ev.type === 'log') lines.push(String(ev.line));
        btn.textContent = `Downloading… ${lines.length} lines`;
        if (page.events.length === 0 || page.next_since >= page.seq) break;
        since = page.next_since;
      }
      const blob = new Blob([lines.join('\n') + (lines.length ? '\n' : '')], { type: 'text/plain;charset=utf-8' });
      const a = h('a', { href: URL.createObjectURL(blob), download: `${this.id}.log` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    } catch (e) {
      this.status.textContent = `Download failed: ${(e as Error).message}`;
    } finally {
      btn.disabled = false;
      btn.textContent = old;
    }
  }
}
