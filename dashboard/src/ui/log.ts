/**
 * The live log tail: numbered lines with ANSI colours, the last 1,000 lines in the DOM then
 * streaming, appended once per frame, following the end only while the reader is scrolled to it.
 */

import type { WireEvent } from '../types';
import { renderAnsi } from './ansi';
import { h } from './dom';

/** Lines kept in the DOM; older ones are in the downloadable full log. */
export const LOG_TAIL = 1000;
const RENDER_CHUNK = 200;

interface Line {
  n: number;
  seq: number;
  text: string;
  level?: string;
}

export class LogView {
  readonly root: HTMLElement;
  readonly box: HTMLElement;
  private readonly note: HTMLElement;
  private readonly jump: HTMLButtonElement;
  private queue: Line[] = [];
  private shown = 0;
  private total = 0;
  private follow = true;
  private scheduled = false;
  /** Log lines before the first one received (history trimmed by retention). */
  private base = 0;
  private received = 0;
  private trimmed = false;
  /** Numbers are not known yet: hold the lines until setCountAt. */
  private waiting = false;
  private held = false;
  /** The queue overflowed: the DOM's lines are all older than the queue's, drop them at the next flush. */
  private reset = false;

  constructor() {
    this.box = h('div', { class: 'log', role: 'log', 'aria-live': 'off', 'aria-label': 'Job log', tabindex: 0 });
    this.note = h('p', { class: 'log-note' });
    this.jump = h('button', { type: 'button', class: 'jump', hidden: true, onclick: () => this.toBottom() }, 'Follow log ↓');
    this.box.addEventListener('scroll', () => {
      this.follow = this.atBottom();
      this.jump.hidden = this.follow;
    });
    this.root = h('div', { class: 'log-wrap' }, this.note, this.box, this.jump);
    this.updateNote();
  }

  /** Retention dropped older events: numbering is fixed once the snapshot's `log_count` is reached. */
  markTrimmed(): void {
    this.trimmed = true;
    this.waiting = true;
  }

  /** Called with the snapshot's log_count when the replay reached the snapshot's seq. */
  setCountAt(logCount: number): void {
    if (!this.trimmed || !this.waiting) return;
    this.waiting = false;
    this.schedule();
    const base = logCount - this.received;
    if (base > this.base) {
      const d = base - this.base;
      this.base = base;
      for (const l of this.queue) l.n += d;
      this.total += d;
    }
  }

  /** Drops the lines with seq >= `from` (the server took those events back; they follow again). */
  truncate(from: number): void {
    const kept = this.queue.filter((l) => l.seq < from);
    let dropped = this.queue.length - kept.length;
    this.queue = kept;
    for (const el of Array.from(this.box.children)) {
      if (Number((el as HTMLElement).dataset.seq) >= from) {
        el.remove();
        dropped += 1;
      }
    }
    this.received = Math.max(0, this.received - dropped);
    this.total = this.base + this.received;
    this.shown = this.box.childElementCount;
    this.updateNote();
    this.schedule();
  }

  add(ev: WireEvent): void {
    this.received += 1;
    this.total = this.base + this.received;
    const line: Line = { n: this.base + this.received, seq: ev.seq, text: String(ev.line ?? '') };
    if (typeof ev.level === 'string') line.level = ev.level;
    this.queue.push(line);
    if (this.queue.length > LOG_TAIL) {
      this.queue.splice(0, this.queue.length - LOG_TAIL);
      this.reset = true;
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => this.flush());
  }

  private atBottom(): boolean {
    const b = this.box;
    return b.scrollHeight - b.scrollTop - b.clientHeight < 8;
  }

  private toBottom(): void {
    this.box.scrollTop = this.box.scrollHeight;
    this.follow = true;
    this.jump.hidden = true;
  }

  /** Holds rendering (during the initial replay: rendering the stream frame by frame would churn the DOM). */
  hold(): void {
    this.held = true;
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    this.schedule();
  }

  /** Appends up to RENDER_CHUNK queued lines per frame, so a 1,000-line tail never blocks the page. */
  private flush(): void {
    this.scheduled = false;
    if (this.waiting || this.held) return;
    const follow = this.follow;
    if (this.reset) {
      // The queue alone holds the newest LOG_TAIL lines: whatever is in the DOM is older than all of them.
      this.reset = false;
      this.box.replaceChildren();
    }
    const frag = document.createDocumentFragment();
    for (const l of this.queue.splice(0, RENDER_CHUNK)) {
      const text = h('span', { class: 'txt' });
      renderAnsi(l.text, text);
      frag.append(h('div', { class: `ln${l.level ? ' lv-' + l.level.replace(/[^a-z]/gi, '') : ''}`, 'data-seq': l.seq, 'data-n': l.n }, h('span', { class: 'num', 'aria-hidden': 'true' }, String(l.n)), text));
    }
    if (this.queue.length) this.schedule();
    this.box.append(frag);
    let extra = this.box.childElementCount - LOG_TAIL;
    if (extra > 0) {
      // Keep the lines the reader is looking at in place while the oldest ones go.
      const before = follow ? 0 : this.box.scrollHeight;
      while (extra-- > 0) this.box.firstElementChild?.remove();
      if (!follow) this.box.scrollTop -= before - this.box.scrollHeight;
    }
    this.shown = this.box.childElementCount;
    this.updateNote();
    if (follow) this.box.scrollTop = this.box.scrollHeight;
  }

  private updateNote(): void {
    if (this.total === 0) this.note.textContent = 'No log lines yet.';
    else if (this.shown < this.total) this.note.textContent = `Showing the last ${this.shown} of ${this.total} lines.`;
    else this.note.textContent = `${this.total} lines.`;
  }
}
