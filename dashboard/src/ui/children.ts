/**
 * A parent's children on its job page: the live counts (each non-zero status, and stalled), whether
 * its progress is the children's aggregate or its own, its policies, and the list of children in id
 * order (link, status, stalled, progress, weight), with a status filter and "load more".
 *
 * Which children are listed comes from `GET /v1/jobs/{id}/children` pages of 100: every child up to
 * the last page's cursor (all of them once `next` is null) that has the chosen status. What each row
 * shows is the newer (by the child's seq) of that page's row and the parent's live `child_jobs`, which
 * reduce.ts keeps from `child` events; so rows move live, and a child created (or turning to the
 * filtered status) inside the loaded range appears without a reload. At most one page more is drawn
 * per "load more", so a parent with 1000 children starts with 100 rows.
 */

import { ApiError, listChildren, type ChildRow } from '../api';
import { sortedIds } from '../reduce';
import { STATUSES, TERMINAL, type ChildState, type Job } from '../types';
import { clear, h, statusLabel } from './dom';

const PAGE = 100;

interface Row {
  el: HTMLLIElement;
  badge: HTMLElement;
  stalled: HTMLElement;
  fill: HTMLElement;
  pct: HTMLElement;
  weight: HTMLElement;
  key: string;
}

export class ChildrenPanel {
  readonly root: HTMLElement;
  private readonly counts = h('p', { class: 'child-counts' });
  private readonly source = h('p', { class: 'child-source' });
  private readonly policy = h('p', { class: 'child-policy muted' });
  private readonly select: HTMLSelectElement;
  private readonly list = h('ul', { class: 'child-list', 'aria-label': 'Children' });
  private readonly more = h('div', { class: 'child-more' });
  private readonly moreText = h('span', { class: 'muted', 'aria-live': 'polite' });
  private readonly moreBtn: HTMLButtonElement;
  private readonly note = h('p', { class: 'child-note muted' });
  private filter = '';
  /** Rows of the pages fetched so far, by id. */
  private fetched = new Map<string, ChildState>();
  /** The last id the fetched pages cover; null before the first page. */
  private cursor: string | null = null;
  private exhausted = false;
  private loading = false;
  private gen = 0;
  private started = false;
  private error = '';
  private rows = new Map<string, Row>();
  private order = '';
  private keys = new WeakMap<HTMLElement, string>();

  constructor(
    private readonly parentId: string,
    private readonly changed: () => void,
  ) {
    this.select = h('select', { id: 'ch-status', onchange: () => this.setFilter(this.select.value) }, h('option', { value: '' }, 'all'));
    for (const s of STATUSES) this.select.append(h('option', { value: s }, statusLabel(s)));
    this.moreBtn = h('button', { type: 'button', class: 'btn small', onclick: () => void this.load() }, 'Load more');
    this.more.append(this.moreText, this.moreBtn);
    this.root = h(
      'section',
      { class: 'panel children-panel', 'aria-labelledby': 'ch-h', hidden: true },
      h('h3', { id: 'ch-h' }, 'Children'),
      this.counts,
      this.source,
      this.policy,
      h('div', { class: 'filters' }, h('label', { for: 'ch-status' }, 'Status', this.select)),
      this.note,
      this.list,
      this.more,
    );
  }

  /** Renders `job` (the page calls it once per frame with changes). */
  update(job: Job): void {
    const c = job.children;
    if (!c) {
      this.root.hidden = true;
      return;
    }
    this.root.hidden = false;
    if (!this.started) {
      this.started = true;
      void this.load();
    }
    this.part(this.counts, JSON.stringify(c), () => {
      this.counts.append(h('strong', { 'data-count': 'total' }, String(c.total)), c.total === 1 ? ' child' : ' children');
      for (const s of [...STATUSES, 'stalled'] as const) {
        const n = c[s];
        if (n > 0) this.counts.append(' · ', h('span', { class: `cc cc-${s}`, 'data-count': s }, h('strong', {}, String(n)), ` ${statusLabel(s)}`));
      }
      for (const o of this.select.options) {
        const n = o.value ? c[o.value as keyof typeof c] : c.total;
        o.textContent = `${o.value ? statusLabel(o.value) : 'all'} (${n})`;
      }
    });
    const own = job.own_progress === true;
    const pct = Math.max(0, Math.min(100, job.progress));
    this.part(this.source, `${own}|${pct}|${c.total}`, () => {
      this.source.dataset.source = own ? 'own' : 'children';
      const p = h('strong', {}, `${pct.toFixed(pct % 1 ? 1 : 0)}%`);
      if (own) this.source.append('Progress ', p, " is the job's own: it publishes progress itself, so its children do not move it.");
      else this.source.append('Progress ', p, ` is the children's aggregate: the weighted mean of ${c.total} ${c.total === 1 ? 'child' : 'children'} (an ended child counts as 100%).`);
    });
    const policy = [
      job.complete_when === 'all_children' ? 'Completes when every child has ended.' : '',
      job.on_child_failure === 'fail' ? 'Fails when a child fails.' : job.on_child_failure === 'continue' ? 'A failed child counts as ended.' : '',
    ].filter(Boolean).join(' ');
    if (this.policy.textContent !== policy) this.policy.textContent = policy;
    this.policy.hidden = !policy;
    this.renderList(job);
  }

  private part(el: HTMLElement, key: string, build: () => void): void {
    if (this.keys.get(el) === key) return;
    this.keys.set(el, key);
    clear(el);
    build();
  }

  private setFilter(s: string): void {
    this.filter = s;
    this.fetched.clear();
    this.cursor = null;
    this.exhausted = false;
    this.error = '';
    void this.load();
    this.changed();
  }

  /** The next page (the first after a filter change); a stale answer (the filter moved on) is dropped. */
  private async load(): Promise<void> {
    const gen = ++this.gen;
    this.loading = true;
    this.changed();
    try {
      const page = await listChildren(this.parentId, this.filter, this.cursor, PAGE);
      if (gen !== this.gen) return;
      for (const r of page.children) this.fetched.set(r.id, fromRow(r));
      this.exhausted = page.next === null;
      this.cursor = page.next ?? page.children.at(-1)?.id ?? this.cursor;
      this.error = '';
    } catch (e) {
      if (gen !== this.gen) return;
      this.error = `Children not loaded: ${(e as ApiError).code ?? ''} ${(e as Error).message}`;
    } finally {
      if (gen === this.gen) {
        this.loading = false;
        this.changed();
      }
    }
  }

  /** The newer (by child seq) of the page's and the live state of `id`. */
  private state(live: Record<string, ChildState>, id: string): ChildState | undefined {
    const a = live[id];
    const b = this.fetched.get(id);
    if (!a) return b;
    return b && b.seq > a.seq ? b : a;
  }

  private renderList(job: Job): void {
    const live = job.child_jobs ?? {};
    let ids = sortedIds(live);
    const extra = [...this.fetched.keys()].filter((id) => !(id in live));
    if (extra.length) ids = [...ids, ...extra].sort();
    const shown: [string, ChildState][] = [];
    const loaded = this.cursor !== null || this.exhausted;
    if (loaded) {
      for (const id of ids) {
        if (!this.exhausted && id > this.cursor!) break;
        const s = this.state(live, id);
        if (!s || (this.filter && s.status !== this.filter)) continue;
        shown.push([id, s]);
      }
    }
    const next = new Map<string, Row>();
    for (const [id, s] of shown) {
      const row = this.rows.get(id) ?? makeRow(id);
      const key = `${s.status}|${s.progress}|${s.weight}|${s.stalled ? 1 : 0}`;
      if (row.key !== key) {
        row.key = key;
        fillRow(row, s);
      }
      next.set(id, row);
    }
    this.rows = next;
    const order = shown.map(([id]) => id).join('\u0000');
    if (order !== this.order) {
      this.order = order;
      this.list.replaceChildren(...[...next.values()].map((r) => r.el));
    }
    const c = job.children;
    const of = c ? (this.filter ? c[this.filter as keyof typeof c] : c.total) : 0;
    const what = this.filter ? `${statusLabel(this.filter)} children` : 'children';
    let note = '';
    if (this.error) note = this.error;
    else if (!loaded) note = 'Loading children…';
    else if (shown.length === 0) note = this.filter ? `No ${statusLabel(this.filter)} children.` : 'No children.';
    if (this.note.textContent !== note) this.note.textContent = note;
    this.note.classList.toggle('error', !!this.error);
    this.note.hidden = !note;
    const moreText = loaded && shown.length ? `Showing ${shown.length} of ${Math.max(of, shown.length)} ${what}` : '';
    if (this.moreText.textContent !== moreText) this.moreText.textContent = moreText;
    this.moreBtn.hidden = this.exhausted || !loaded;
    this.moreBtn.disabled = this.loading;
  }
}

function fromRow(r: ChildRow): ChildState {
  const s: ChildState = { status: r.status, seq: r.seq, progress: r.progress, weight: r.weight };
  if (r.stalled) s.stalled = true;
  return s;
}

function makeRow(id: string): Row {
  const b = h('span', { class: 'badge' });
  const stalled = h('span', { class: 'badge badge-stalled' }, 'stalled');
  const fill = h('span', { class: 'bar-fill' });
  const pct = h('span', { class: 'pct' });
  const weight = h('span', { class: 'child-weight muted' });
  const el = h(
    'li',
    { class: 'child', 'data-child-id': id },
    h('a', { class: 'child-id', href: `#/jobs/${encodeURIComponent(id)}`, title: id }, id),
    h('span', { class: 'badges' }, b, stalled),
    h('span', { class: 'bar', 'aria-hidden': 'true' }, fill),
    pct,
    weight,
  );
  return { el, badge: b, stalled, fill, pct, weight, key: '' };
}

/** Updates a row in place (a focused link keeps its focus). */
function fillRow(r: Row, s: ChildState): void {
  const pct = Math.max(0, Math.min(100, s.progress));
  const stalled = !!s.stalled && !TERMINAL.has(s.status);
  r.el.dataset.status = s.status;
  r.el.toggleAttribute('data-stalled', stalled);
  r.badge.className = `badge badge-${s.status}`;
  r.badge.textContent = statusLabel(s.status);
  r.stalled.hidden = !stalled;
  r.fill.className = `bar-fill bar-${s.status}`;
  r.fill.style.width = `${pct}%`;
  r.pct.textContent = `${Math.round(pct)}%`;
  r.weight.textContent = s.weight !== 1 ? `weight ${s.weight}` : '';
  r.weight.hidden = s.weight === 1;
}
