/**
 * The jobs table: counts per status (also the status filter), project and id filters, sort, and a
 * virtualised body (only the visible rows exist in the DOM, updated at most once per frame), so
 * 10,000 jobs scroll smoothly. A parent's row says "3/10 done" (children) in its stage cell.
 * Keyboard: a roving tab stop over the rows; arrows, Page, Home/End, Enter.
 */

import type { JobStore } from '../store';
import { STATUSES, TERMINAL, type Job } from '../types';
import { cancelPending, clear, fmtAgo, fmtDuration, fmtEta, h, stalledBadge, stalledDetail, statusLabel } from './dom';

type SortKey = 'updated' | 'created' | 'id';

/** Re-sorting happens at most this often while jobs stream in (rows update in place meanwhile). */
const RESORT_MS = 300;
const OVERSCAN = 6;

interface RowEl {
  el: HTMLAnchorElement;
  /** The row object last filled in: a replaced one (a rewind) is refilled even at the same seq. */
  job?: Job;
  id: HTMLElement;
  project: HTMLElement;
  status: HTMLElement;
  badge: HTMLElement;
  stalled: ReturnType<typeof stalledBadge>;
  bar: HTMLElement;
  pct: HTMLElement;
  eta: HTMLElement;
  stage: HTMLElement;
  message: HTMLElement;
  updated: HTMLElement;
  duration: HTMLElement;
  key: string;
}

export class JobsTable {
  readonly root: HTMLElement;
  private view: Job[] = [];
  private status: string = 'all';
  private project = '';
  private query = '';
  private sort: SortKey = 'updated';
  private builtMembership = -1;
  private builtVersion = -1;
  private lastSort = 0;
  private resortTimer: ReturnType<typeof setTimeout> | null = null;
  private rowH = 44;
  private pool: RowEl[] = [];
  private focusIndex = 0;
  private counts = new Map<string, HTMLElement>();
  private projects: string[] = [];
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly grid: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly summary: HTMLElement;
  private readonly projectSel: HTMLSelectElement;
  private readonly countBar: HTMLElement;

  constructor(
    private readonly store: JobStore,
    private readonly serverHint: string,
  ) {
    this.countBar = h('div', { class: 'counts', role: 'group', 'aria-label': 'Filter by status' });
    for (const s of ['all', ...STATUSES]) {
      const n = h('span', { class: 'count-n' }, '0');
      const btn = h(
        'button',
        { type: 'button', class: `count count-${s}`, 'aria-pressed': s === 'all' ? 'true' : 'false', 'data-status': s, onclick: () => this.setStatus(s) },
        h('span', { class: 'count-label' }, s === 'all' ? 'all' : statusLabel(s)),
        n,
      );
      this.counts.set(s, n);
      this.countBar.append(btn);
    }
    this.projectSel = h('select', { id: 'f-project', onchange: () => this.setFilter({ project: this.projectSel.value }) }, h('option', { value: '' }, 'all projects'));
    const search = h('input', {
      id: 'f-search',
      type: 'search',
      placeholder: 'job id contains…',
      autocomplete: 'off',
      spellcheck: 'false',
      oninput: () => this.setFilter({ query: search.value.trim().toLowerCase() }),
    });
    const sortSel = h(
      'select',
      { id: 'f-sort', onchange: () => this.setFilter({ sort: sortSel.value as SortKey }) },
      h('option', { value: 'updated' }, 'recently updated'),
      h('option', { value: 'created' }, 'recently created'),
      h('option', { value: 'id' }, 'id'),
    );
    const filters = h(
      'div',
      { class: 'filters' },
      h('label', { for: 'f-search' }, 'Search', search),
      h('label', { for: 'f-project' }, 'Project', this.projectSel),
      h('label', { for: 'f-sort' }, 'Sort', sortSel),
    );
    this.summary = h('p', { class: 'summary', 'aria-live': 'polite' });
    this.spacer = h('div', { class: 'spacer' });
    this.viewport = h('div', { class: 'viewport', role: 'rowgroup', onscroll: () => this.renderRows(), onkeydown: (e: Event) => this.key(e as KeyboardEvent) }, this.spacer);
    const head = h(
      'div',
      { role: 'rowgroup', class: 'thead' },
      h(
        'div',
        { role: 'row', class: 'row head', 'aria-rowindex': 1 },
        ...['Id', 'Project', 'Status', 'Progress', 'Stage', 'Message', 'Updated', 'Duration'].map((c) => h('span', { role: 'columnheader', class: `c-${c.toLowerCase()}` }, c)),
      ),
    );
    this.empty = h('div', { class: 'empty', hidden: true });
    this.grid = h('div', { role: 'table', class: 'jobs', 'aria-label': 'Jobs', 'aria-rowcount': 1 }, head, this.viewport);
    this.root = h('section', { class: 'panel jobs-panel', 'aria-labelledby': 'jobs-h' }, h('h2', { id: 'jobs-h' }, 'Jobs'), this.countBar, filters, this.summary, this.grid, this.empty);
    store.subscribe(() => this.refresh());
    new ResizeObserver(() => {
      this.measure();
      this.renderRows();
    }).observe(this.viewport);
    setInterval(() => this.tick(), 1000);
  }

  /** After store changes: rows update in place now; the filter/sort is re-run at most every RESORT_MS. */
  refresh(force = false): void {
    const contentMatters = this.sort !== 'id' || this.status !== 'all';
    const stale = this.builtMembership !== this.store.membership || (contentMatters && this.builtVersion !== this.store.version);
    if (force || (stale && this.view.length === 0)) this.rebuild();
    else if (stale) {
      const wait = RESORT_MS - (performance.now() - this.lastSort);
      if (wait <= 0) this.rebuild();
      else if (!this.resortTimer)
        this.resortTimer = setTimeout(() => {
          this.resortTimer = null;
          this.refresh();
        }, wait);
    }
    this.renderCounts();
    this.renderRows();
  }

  private setStatus(s: string): void {
    this.status = s;
    for (const b of this.countBar.querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.status === s));
    this.setFilter({});
  }

  private setFilter(f: { project?: string; query?: string; sort?: SortKey }): void {
    if (f.project !== undefined) this.project = f.project;
    if (f.query !== undefined) this.query = f.query;
    if (f.sort !== undefined) this.sort = f.sort;
    this.focusIndex = 0;
    this.viewport.scrollTop = 0;
    this.rebuild();
    this.renderRows();
  }

  private rebuild(): void {
    this.lastSort = performance.now();
    this.builtMembership = this.store.membership;
    this.builtVersion = this.store.version;
    const out: Job[] = [];
    const projects = new Set<string>();
    for (const j of this.store.rows.values()) {
      if (j.project) projects.add(j.project);
      if (this.status !== 'all' && j.status !== this.status) continue;
      if (this.project && j.project !== this.project) continue;
      if (this.query && !j.id.toLowerCase().includes(this.query)) continue;
      out.push(j);
    }
    if (this.sort === 'id') out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    else {
      const k = this.sort === 'updated' ? 'updated_at' : 'created_at';
      // RFC 3339 UTC strings of one width sort as text.
      out.sort((a, b) => (a[k] < b[k] ? 1 : a[k] > b[k] ? -1 : a.id < b.id ? -1 : 1));
    }
    this.view = out;
    if (projects.size !== this.projects.length) this.renderProjects(projects);
    this.grid.setAttribute('aria-rowcount', String(out.length + 1));
    this.spacer.style.height = `${out.length * this.rowH}px`;
    this.viewport.style.height = `min(68vh, 760px, ${Math.max(240, out.length * this.rowH + 2)}px)`;
    const total = this.store.rows.size;
    this.summary.textContent = out.length === total ? `${total} jobs` : `${out.length} of ${total} jobs`;
    this.empty.hidden = out.length > 0;
    if (out.length === 0) {
      clear(this.empty);
      if (total === 0) this.empty.append('No jobs yet. Start some with ', h('code', {}, `jobwire demo --server ${this.serverHint}`), '.');
      else this.empty.append('No job matches these filters.');
    }
    if (this.focusIndex >= out.length) this.focusIndex = Math.max(0, out.length - 1);
  }

  private renderProjects(set: Set<string>): void {
    this.projects = [...set].sort();
    const cur = this.projectSel.value;
    clear(this.projectSel);
    this.projectSel.append(h('option', { value: '' }, 'all projects'), ...this.projects.map((p) => h('option', { value: p }, p)));
    this.projectSel.value = cur;
  }

  private renderCounts(): void {
    const c = new Map<string, number>();
    for (const j of this.store.rows.values()) c.set(j.status, (c.get(j.status) ?? 0) + 1);
    this.counts.get('all')!.textContent = String(this.store.rows.size);
    for (const s of STATUSES) this.counts.get(s)!.textContent = String(c.get(s) ?? 0);
  }

  private measure(): void {
    const v = parseFloat(getComputedStyle(this.viewport).getPropertyValue('--row-h'));
    if (v > 0 && v !== this.rowH) {
      this.rowH = v;
      this.spacer.style.height = `${this.view.length * this.rowH}px`;
    }
  }

  private makeRow(): RowEl {
    const cell = (c: string) => h('span', { role: 'cell', class: `c-${c}` });
    const id = cell('id');
    const project = cell('project');
    const badgeEl = h('span', { class: 'badge' });
    const stalled = stalledBadge();
    stalled.el.hidden = true;
    const status = h('span', { role: 'cell', class: 'c-status' }, h('span', { class: 'badges' }, badgeEl, stalled.el));
    const bar = h('span', { class: 'bar-fill' });
    const pct = h('span', { class: 'pct' });
    const eta = h('span', { class: 'eta' });
    const progress = h('span', { role: 'cell', class: 'c-progress' }, h('span', { class: 'bar', 'aria-hidden': 'true' }, bar), pct, eta);
    const stage = cell('stage');
    const message = cell('message');
    const updated = cell('updated');
    const duration = cell('duration');
    const el = h('a', { role: 'row', class: 'row', tabindex: -1 }, id, project, status, progress, stage, message, updated, duration);
    el.addEventListener('focus', () => {
      const i = Number(el.dataset.index);
      if (Number.isFinite(i)) this.focusIndex = i;
    });
    this.spacer.append(el);
    return { el, id, project, status, badge: badgeEl, stalled, bar, pct, eta, stage, message, updated, duration, key: '' };
  }

  /** Draws the rows in view (plus a few), reusing elements; untouched rows keep their DOM. */
  renderRows(): void {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / this.rowH) - OVERSCAN);
    const last = Math.min(this.view.length, Math.ceil((top + height) / this.rowH) + OVERSCAN);
    const need = last - first;
    while (this.pool.length < need) this.pool.push(this.makeRow());
    const now = Date.now();
    const hadFocus = this.viewport.contains(document.activeElement);
    for (let k = 0; k < this.pool.length; k++) {
      const r = this.pool[k]!;
      const i = first + k;
      if (k >= need) {
        r.el.hidden = true;
        continue;
      }
      const job = this.view[i]!;
      r.el.hidden = false;
      r.el.dataset.index = String(i);
      r.el.style.transform = `translateY(${i * this.rowH}px)`;
      r.el.setAttribute('aria-rowindex', String(i + 2));
      r.el.tabIndex = i === this.focusIndex ? 0 : -1;
      const key = `${job.id}\u0000${job.seq}`;
      if (r.key !== key || r.job !== job) {
        r.key = key;
        r.job = job;
        this.fill(r, job, now);
      }
      this.live(r, job, now);
    }
    if (hadFocus && !this.viewport.contains(document.activeElement)) this.focusRow(this.focusIndex);
  }

  private fill(r: RowEl, job: Job, now: number): void {
    r.el.href = `#/jobs/${encodeURIComponent(job.id)}`;
    r.el.dataset.jobId = job.id;
    r.el.dataset.status = job.status;
    // A requested cancel replaces "running" (the status stays in_progress until the worker confirms).
    const asked = cancelPending(job);
    r.el.toggleAttribute('data-cancel-requested', asked);
    r.id.textContent = job.id;
    r.id.title = job.id;
    r.project.textContent = job.project ?? '';
    r.badge.className = `badge badge-${asked ? 'cancel_requested' : job.status}`;
    r.badge.textContent = asked ? 'cancel requested' : statusLabel(job.status);
    r.stalled.el.hidden = !job.stalled_since;
    r.bar.style.width = `${Math.max(0, Math.min(100, job.progress))}%`;
    r.bar.className = `bar-fill bar-${job.status}`;
    r.pct.textContent = `${Math.round(job.progress)}%`;
    const eta = fmtEta(job, true);
    r.eta.textContent = eta;
    r.eta.title = eta && fmtEta(job);
    r.eta.hidden = !eta;
    this.live(r, job, now);
    const stage = job.stage ?? job.step?.label ?? job.step?.step ?? '';
    // A parent: "3/10 done" (the cell is narrow; its title and the row's label say "children").
    const c = job.children;
    const kids = c && c.total ? `${c.completed + c.failed + c.cancelled}/${c.total} done` : '';
    r.stage.textContent = kids ? (stage ? `${stage} · ${kids}` : kids) : stage;
    r.stage.title = kids ? `${stage ? `${stage} · ` : ''}${childrenDone(job)}` : stage;
    r.el.toggleAttribute('data-parent', !!kids);
    r.message.textContent = job.message ?? '';
    r.message.title = job.message ?? '';
  }

  private tick(): void {
    if (document.hidden) return;
    const now = Date.now();
    for (const r of this.pool) {
      if (r.el.hidden) continue;
      const job = this.view[Number(r.el.dataset.index)];
      if (job) this.live(r, job, now);
    }
  }

  /** The parts of a row that move with the clock: ages, duration, how long a stalled job has been silent. */
  private live(r: RowEl, job: Job, now: number): void {
    r.updated.textContent = fmtAgo(job.updated_at, now);
    r.duration.textContent = duration(job, now);
    if (job.stalled_since) r.stalled.set(job, now);
    const state = cancelPending(job) ? `${statusLabel(job.status)}, cancel requested` : statusLabel(job.status);
    const stalled = job.stalled_since ? `, stalled — ${stalledDetail(job, now)}` : '';
    const eta = fmtEta(job);
    const kids = childrenDone(job);
    const label = `${job.id}, ${state}${stalled}, ${Math.round(job.progress)}%${eta ? `, ${eta}` : ''}${kids ? `, ${kids}` : ''}`;
    if (r.el.getAttribute('aria-label') !== label) r.el.setAttribute('aria-label', label);
  }

  private focusRow(i: number): void {
    if (this.view.length === 0) return;
    i = Math.max(0, Math.min(this.view.length - 1, i));
    this.focusIndex = i;
    const top = i * this.rowH;
    if (top < this.viewport.scrollTop) this.viewport.scrollTop = top;
    else if (top + this.rowH > this.viewport.scrollTop + this.viewport.clientHeight) this.viewport.scrollTop = top + this.rowH - this.viewport.clientHeight;
    this.renderRows();
    const r = this.pool.find((p) => !p.el.hidden && Number(p.el.dataset.index) === i);
    r?.el.focus({ preventScroll: true });
  }

  private key(e: KeyboardEvent): void {
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / this.rowH) - 1);
    const moves: Record<string, number> = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
    if (e.key in moves) this.focusRow(this.focusIndex + moves[e.key]!);
    else if (e.key === 'Home') this.focusRow(0);
    else if (e.key === 'End') this.focusRow(this.view.length - 1);
    else return;
    e.preventDefault();
  }
}

/** "3/10 children done" for a parent (done = ended: completed, failed or cancelled). */
function childrenDone(job: Job): string {
  const c = job.children;
  if (!c || c.total === 0) return '';
  return `${c.completed + c.failed + c.cancelled}/${c.total} children done`;
}

function duration(job: Job, now: number): string {
  const start = Date.parse(job.created_at);
  const end = job.finished_at ? Date.parse(job.finished_at) : TERMINAL.has(job.status) ? Date.parse(job.updated_at) : now;
  return fmtDuration(end - start);
}
