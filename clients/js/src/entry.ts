/**
 * One watched job's state machine: the subscribe cycle (snapshot, optional gap or rewind,
 * replay, live), the resume position and its epoch, dedupe by seq, and the reduced JobView.
 * Shared by the multiplexed client and the project channel.
 */
import type { JobwireError } from './errors.js';
import type { HistoryTruncatedFrame, JobSnapshot, RewoundFrame, WireEvent } from './types.js';
import { applyEvent, truncateView, viewFromCreated, viewFromSnapshot, type JobView, type ViewOptions } from './view.js';

/** Passed to `onSnapshot`. */
export interface SnapshotInfo {
  /** This snapshot started a resume (the client sent `since`). */
  resumed: boolean;
  /** The resume is whole: every event after `since` follows, none missed. False on a fresh subscribe or after a gap. */
  recovered: boolean;
}

/** Passed to `onGap`: events after `since` and before `historyStart` are gone (retention); the view was rebuilt from the snapshot. */
export interface GapInfo {
  since: number;
  historyStart: number;
}

/**
 * Passed to `onRewind`: the server took back the events from `from` on (a crash or a failed
 * flush before they were durable; the client had up to `since`). They were dropped from the
 * view and its logs, the view was rebuilt from the snapshot, and seqs `from`.. follow again.
 */
export interface RewindInfo {
  jobId: string;
  since: number;
  from: number;
  /** The epoch the subscription resumes with from now on. */
  epoch: number;
}

/** What an entry tells its watchers. */
export interface EntrySink {
  snapshot(view: JobView, info: SnapshotInfo): void;
  event(event: WireEvent, view: JobView | null): void;
  terminal(view: JobView): void;
  gap(info: GapInfo, view: JobView | null): void;
  rewind(info: RewindInfo, view: JobView | null): void;
  error(error: JobwireError): void;
  changed(): void;
}

export class Entry {
  view: JobView | null = null;
  /** The last seq delivered: the `since` of the next (re)subscribe. */
  delivered: number | undefined;
  /** The epoch of the last snapshot (or `rewound`): sent with `delivered` on resume. Undefined on engines without epochs. */
  epoch: number | undefined;
  /** Events with seq <= floor are already in the view (the snapshot covers them); they are delivered, not folded. */
  private floor = 0;
  private cycle: JobSnapshot | null = null;
  /** True between a (re)subscribe and its snapshot: frames of an older cycle are dropped. */
  awaiting = true;
  recovered = false;
  error: JobwireError | null = null;
  private terminalSent = false;
  readonly opts: ViewOptions;

  constructor(
    readonly jobId: string,
    since: number | undefined,
    maxLogs: number,
    private readonly sink: EntrySink,
    epoch?: number,
  ) {
    this.delivered = since;
    this.epoch = since === undefined ? undefined : epoch;
    this.opts = { maxLogs, labels: new Map() };
  }

  /** A (re)subscribe was sent. */
  beginCycle(): void {
    this.awaiting = true;
    this.cycle = null;
  }

  /** A snapshot; `epoch` is the frame's (absent: the engine has none, or an HTTP read). */
  onSnapshot(s: JobSnapshot, epoch?: number): void {
    const since = this.delivered;
    const sentEpoch = this.epoch;
    if (epoch !== undefined) this.epoch = epoch;
    const resumed = since !== undefined;
    const recovered = resumed && since + 1 >= s.history_start && since <= s.seq;
    if (this.view && recovered) {
      this.floor = this.view.seq;
    } else {
      this.view = viewFromSnapshot(s, this.opts, this.view);
      this.floor = s.seq;
    }
    if (!resumed || since > s.seq) this.delivered = s.seq;
    this.cycle = s;
    this.awaiting = false;
    this.recovered = recovered;
    this.sink.changed();
    this.sink.snapshot(this.view, { resumed, recovered });
    // Past the job's seq on an engine with epochs: the store lost those events and a `rewound` follows.
    const rewindComing = sentEpoch !== undefined && epoch !== undefined;
    if (resumed && since > s.seq && !rewindComing) this.sink.gap({ since, historyStart: s.history_start }, this.view);
    this.checkTerminal();
  }

  /**
   * `rewound`, right after the cycle's snapshot: drop what we hold from `from` on, rebuild the
   * view from that snapshot (it already has the new events up to its seq), and accept seqs
   * `from`.. again.
   */
  onRewound(f: RewoundFrame): void {
    if (this.awaiting || !this.cycle) return;
    const since = this.delivered ?? f.since;
    this.epoch = f.epoch;
    const kept = this.view ? truncateView(this.view, f.from) : null;
    this.view = viewFromSnapshot(this.cycle, this.opts, kept);
    this.floor = this.cycle.seq;
    this.delivered = Math.min(since, f.from - 1);
    this.terminalSent = false; // a lost terminal event is not the job's end any more
    this.sink.changed();
    this.sink.rewind({ jobId: this.jobId, since: f.since, from: f.from, epoch: f.epoch }, this.view);
    this.checkTerminal();
  }

  onTruncated(f: HistoryTruncatedFrame): void {
    if (this.awaiting) return;
    // The cycle's snapshot covers every trimmed event (they are all <= its seq): rebuild from it.
    if (this.cycle && (!this.view || this.view.seq < this.cycle.seq)) {
      this.view = viewFromSnapshot(this.cycle, this.opts, this.view);
      this.floor = this.cycle.seq;
    }
    this.recovered = false;
    this.sink.changed();
    this.sink.gap({ since: f.since, historyStart: f.history_start }, this.view);
  }

  onEvent(e: WireEvent): void {
    if (this.awaiting) return;
    if (this.delivered !== undefined && e.seq <= this.delivered) return; // already had it
    this.delivered = e.seq;
    if (!this.view) {
      if (e.type === 'created') {
        this.view = viewFromCreated(e, this.opts);
        this.floor = e.seq;
      }
    } else if (e.seq > this.floor && e.seq > this.view.seq) {
      this.view = applyEvent(this.view, e, this.opts);
    }
    this.sink.changed();
    this.sink.event(e, this.view);
    this.checkTerminal();
  }

  onError(err: JobwireError): void {
    this.error = err;
    this.awaiting = false;
    this.sink.changed();
    this.sink.error(err);
  }

  private checkTerminal(): void {
    const v = this.view;
    if (v && v.isTerminal && !this.terminalSent && (this.delivered ?? 0) >= v.seq) {
      this.terminalSent = true;
      this.sink.terminal(v);
    }
  }
}
