//! The writer thread: owns every write to the database. It takes what is queued
//! (up to [`MAX_BATCH`]), applies it to the open write transaction, makes the
//! group durable with one journal record and one `fdatasync` (or, every
//! [`super::CHECKPOINT_EVERY`], by committing the transaction: a checkpoint), fans the
//! events out and acknowledges the callers. How each request is applied is in
//! `requests`.
//!
//! # The flush window
//! A group stays open for up to the flush window after its first request: what
//! arrives meanwhile is applied and its events pushed as it comes (watchers do not
//! wait), and the whole group is flushed once at the end, so publishers' acks wait
//! up to the window for one `fdatasync` shared by more requests. The window closes
//! early for a group with anything that waits for its flush (a new job, an owner's
//! notification; every push after a failed flush), that asks for a checkpoint or
//! a stop, that already holds 16 requests, or when a checkpoint is due. Under
//! light traffic (three windows in a row caught nothing) groups stop waiting, but
//! for one in eight, until a window catches a request again.

use super::durable::Committing;
use super::group::{refuse_all, Group};
use super::inflight::InFlight;
use super::intake::Intake;
use super::journal::Journal;
use super::tables::Tables;
use super::{db_err, Request, Retention, Store};
use crate::engine::tail::TailCache;
use crate::error::HubError;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::session::{Closed, Published};
use jobwire_proto::Job;
use redb::{Database, WriteTransaction};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A group that holds this many requests shares its flush widely enough: it
/// stops waiting. Publishers that all wait for their acks (a fixed set at full
/// speed) queue up while the writer flushes; waiting for more would only add
/// their latency (ingest at concurrency 64 lost 10-15 % with no such limit).
const WINDOW_ENOUGH: usize = 16;
/// After this many windows in a row that caught no request, traffic is light:
/// waiting only delays acks. Groups then wait only one time in [`WINDOW_PROBE`],
/// until a window catches one again.
const WINDOW_IDLE: u32 = 3;
const WINDOW_PROBE: u32 = 8;

/// The writer thread's state. Owns every write to the database.
pub(super) struct Writer {
    /// The database; the writer alone reopens it.
    pub(super) store: Arc<Store>,
    /// Where the space probe writes.
    pub(super) data_dir: PathBuf,
    /// The old database of a reopen still held by a read, dropped at the next try.
    pub(super) draining: Option<Arc<Database>>,
    /// The error of the last failed commit, until a space probe passes; writes are
    /// refused with it meanwhile.
    pub(super) broken: Option<HubError>,
    pub(super) last_probe: Option<Instant>,
    /// Updated after each commit, before the fan-out.
    pub(super) tail: Arc<TailCache>,
    /// Snapshots of non-terminal jobs, as committed (terminal jobs take no writes).
    pub(super) cache: HashMap<String, Arc<Job>>,
    pub(super) retention: Retention,
    pub(super) registry: Arc<Registry>,
    pub(super) metrics: Arc<Metrics>,
    /// False after a failed commit, until a space probe or a commit succeeds
    /// (drives /readyz).
    pub(super) healthy: Arc<AtomicBool>,
    /// The store's epoch (see `Engine::epoch`); shared with readers.
    pub(super) epoch: Arc<AtomicU64>,
    /// False after a failed commit until the new epoch is stored: meanwhile groups
    /// are pushed only after their flush.
    pub(super) epoch_durable: bool,
    /// Push events before the flush (the default); off: after it.
    pub(super) ahead: bool,
    /// The group between its push and its flush, for readers.
    pub(super) inflight: Arc<InFlight>,
    /// Test hook: a pause between the push ahead and the flush (a crash window).
    pub(super) flush_delay: Option<std::time::Duration>,
    /// Test hook: panic on a publish to a job whose key ends with this.
    pub(super) panic_on: Option<String>,
    /// Test hook: a publish to a job whose key ends with this fails as a storage
    /// error in the middle of its group (what a failed redb read does).
    pub(super) abort_on: Option<String>,
    /// The write transaction holding every group since the last checkpoint (none
    /// while one commits in the background).
    pub(super) txn: Option<WriteTransaction>,
    /// The checkpoint committing in the background, if one is.
    pub(super) committing: Option<Committing>,
    /// A sweep arrived while a checkpoint committed: it runs once the commit is
    /// done (it needs the store, and nothing waits for it).
    pub(super) sweep_deferred: bool,
    /// Test hook: a pause before each background checkpoint's commit.
    pub(super) checkpoint_delay: Option<Duration>,
    pub(super) journal: Journal,
    /// The journal records since the last checkpoint began, `(number, payload)`:
    /// what the transaction holds besides the checkpoint (replayed after a
    /// failure), or while one commits, what the next transaction will.
    pub(super) records: Vec<(u64, Vec<u8>)>,
    /// The transaction was dropped after a failure: `records` must be replayed
    /// and checkpointed before the next group.
    pub(super) replay: bool,
    pub(super) last_checkpoint: Instant,
    /// [`super::CHECKPOINT_EVERY`] unless a test says otherwise.
    pub(super) checkpoint_every: Duration,
    /// How long a group stays open for more requests (see the module docs).
    pub(super) flush_window: Duration,
    /// Windows in a row that waited and caught nothing, and groups since that did
    /// not wait (see [`WINDOW_IDLE`]).
    pub(super) window_misses: u32,
    pub(super) window_skips: u32,
}

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Request>) {
        let mut intake = Intake::new(rx);
        let mut batch = Vec::with_capacity(64);
        while let Some(first) = intake.next() {
            batch.push(first);
            intake.take_queued(&mut batch, 0);
            if self.commit_group(&mut batch, &mut intake) {
                break;
            }
        }
        if let Err(e) = self.finish_commit(true) {
            tracing::error!(error = %e, "the last checkpoint failed; the journal holds its writes");
        }
        tracing::debug!("writer thread stopped");
    }

    /// Applies `batch`, then what comes within the flush window (see the module
    /// docs), and commits it all as one group. Returns true when asked to stop.
    fn commit_group(&mut self, batch: &mut Vec<Request>, intake: &mut Intake) -> bool {
        if let Err(e) = self.finish_commit(false) {
            self.checkpoint_failed(e);
        }
        if self.sweep_deferred && self.committing.is_none() {
            self.sweep_deferred = false;
            batch.push(Request::Sweep);
        }
        if !self.probe() {
            let e = self.broken.as_ref().map_or_else(
                || HubError::Storage("store unavailable".into()),
                HubError::duplicate,
            );
            return refuse_all(batch, &e);
        }
        let closes = Instant::now() + self.flush_window;
        let mut group = Group {
            pushes_ahead: self.ahead && self.epoch_durable,
            ..Group::default()
        };
        let mut pushed = HashSet::new();
        let (mut waited, mut caught) = (false, false);
        let applied = loop {
            group.requests += batch.len();
            if let Err(e) = self.apply_group(batch, &mut group) {
                break Err(e);
            }
            if group.pushes_ahead {
                self.push_ahead(&mut group, &mut pushed);
            }
            if !self.window_open(&group) || (!waited && !self.window_worth()) {
                break Ok(());
            }
            waited = true;
            match intake.next_before(closes) {
                Some(next) => {
                    caught = true;
                    batch.push(next);
                    intake.take_queued(batch, group.requests);
                }
                None => break Ok(()),
            }
        };
        if caught {
            (self.window_misses, self.window_skips) = (0, 0);
        } else if waited {
            self.window_misses = self.window_misses.saturating_add(1);
        }
        let stop = group.stop;
        let result = applied.and_then(|()| {
            let record = std::mem::take(&mut group.record);
            // Only a group that pushed events ahead of its flush waits: the crash
            // window the hook is for (creates and checkpoint ticks go on at once).
            if let Some(d) = self.flush_delay.filter(|_| !pushed.is_empty()) {
                std::thread::sleep(d);
            }
            let force = group.stop || group.must_checkpoint;
            self.make_durable(record, force)
        });
        match result {
            Ok(checkpointed) => {
                if !checkpointed {
                    let notices = group
                        .notices
                        .iter()
                        .map(|n| (n.job_id.clone(), n.seq, n.bytes.clone()));
                    self.inflight.settle(group.changes(), notices);
                }
                self.epoch_durable = true;
                let snapshots = std::mem::take(&mut group.snapshots);
                for s in &snapshots {
                    if s.job.status.is_terminal() {
                        self.cache.remove(&*s.key);
                    } else {
                        self.cache.insert(s.key.to_string(), s.job.clone());
                    }
                }
                // Before the rest of the fan-out, like the commit (see `tail`).
                self.tail.commit(
                    snapshots,
                    group.fanout.iter().map(|p| (&p.job_id, p.seq, &p.bytes)),
                );
                if checkpointed {
                    self.inflight.clear();
                }
                self.metrics.events_published.add(group.fanout.len() as u64);
                self.metrics
                    .replay_cache_bytes
                    .set(self.tail.bytes() as i64);
                for ev in &group.fanout {
                    if !group.pushes_ahead || !group.ahead(ev) {
                        self.registry.broadcast(ev);
                    }
                }
                for ev in &group.notices {
                    self.registry.broadcast(ev);
                }
                for ack in group.acks {
                    ack.succeed();
                }
                self.healthy.store(true, Ordering::Release);
                if !checkpointed {
                    self.checkpoint_if_due();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; nothing in this group was acknowledged");
                self.healthy.store(false, Ordering::Release);
                // A background checkpoint ends first (the store reopens below);
                // whatever it does, the records stay in `records` or the store.
                if let Err(ce) = self.finish_commit(true) {
                    tracing::error!(error = %ce, "the background checkpoint failed too");
                }
                // The transaction holds this group: drop it; the records since the
                // checkpoint (acknowledged) are replayed once the store takes
                // writes again, and readers see them meanwhile (settled).
                self.txn = None;
                self.replay = !self.records.is_empty();
                self.inflight.drop_current();
                self.take_back(&group, &pushed);
                for ack in group.acks {
                    ack.fail(&e);
                }
                // Requests the failed group never reached fail the same way.
                let stop = refuse_all(batch, &e) || stop;
                self.broke(e);
                return stop;
            }
        }
        stop
    }

    /// Whether the group may wait for more requests: it wrote something, all of
    /// it was pushed ahead of its flush (no new job, no notification: those wait
    /// for the flush), it needs no checkpoint or stop, is still small, and a
    /// checkpoint is not due.
    fn window_open(&self, group: &Group) -> bool {
        // A group that wrote nothing (a checkpoint or probe tick, a sweep that
        // deleted nothing) has no flush to share.
        !group.record.is_empty()
            && group.pushes_ahead
            && group.created.is_empty()
            && group.notices.is_empty()
            && !self.flush_window.is_zero()
            && !group.stop
            && !group.must_checkpoint
            && group.requests < WINDOW_ENOUGH
            && self.last_checkpoint.elapsed() < self.checkpoint_every
    }

    /// Whether this group's window is worth waiting for: always, unless the last
    /// [`WINDOW_IDLE`] caught nothing; then one group in [`WINDOW_PROBE`].
    fn window_worth(&mut self) -> bool {
        if self.window_misses < WINDOW_IDLE {
            return true;
        }
        self.window_skips = self.window_skips.wrapping_add(1);
        self.window_skips % WINDOW_PROBE == 0
    }

    /// Pushes the group's events not pushed yet of jobs that existed before it,
    /// ahead of the flush, after showing the whole group to readers (see
    /// `inflight`). Adds the keys pushed to `pushed` (a failed commit takes them
    /// back).
    fn push_ahead(&self, group: &mut Group, pushed: &mut HashSet<Arc<str>>) {
        let fresh: Vec<&Published> = group.fanout[group.pushed..]
            .iter()
            .filter(|p| group.ahead(p))
            .collect();
        if fresh.is_empty() {
            return;
        }
        let mut pending = group.changes();
        pending.retain(|key, p| !group.created.contains(&**key) && !p.events.is_empty());
        self.inflight.set(pending);
        for ev in fresh {
            pushed.insert(ev.job_id.clone());
            self.registry.broadcast(ev);
        }
        group.pushed = group.fanout.len();
    }

    /// A commit failed after its events were pushed: a new epoch begins (stored by
    /// the next commit, which pushes only after its flush), and every watcher that
    /// may hold one of those events is closed with `resync`, to resume with the
    /// epoch it was given and be told where to rewind.
    fn take_back(&mut self, group: &Group, pushed: &HashSet<Arc<str>>) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.epoch_durable = false;
        if pushed.is_empty() {
            return;
        }
        let mut projects = HashSet::new();
        for ev in group.fanout.iter().filter(|p| group.ahead(p)) {
            if let Some(p) = &ev.project {
                projects.insert(p.clone());
            }
        }
        tracing::warn!(
            jobs = pushed.len(),
            epoch,
            "events pushed ahead of a failed flush are taken back; their watchers resync"
        );
        for key in pushed.iter().chain(projects.iter()) {
            self.registry.close_watchers(key, Closed::Resync);
        }
    }

    /// Applies `batch` to the open write transaction (begun if none is), or while
    /// a checkpoint commits, to the overlay (see `tables`), adding its ops to the
    /// group's journal record and the new snapshots of the jobs it changed to the
    /// group's. A request that needs the store itself waits for the commit.
    fn apply_group(&mut self, batch: &mut Vec<Request>, group: &mut Group) -> Result<(), HubError> {
        if self.committing.is_some() && batch.iter().any(|r| matches!(r, Request::Sweep)) {
            // The sweep timer's tick waits for the commit instead of the group.
            batch.retain(|r| !matches!(r, Request::Sweep));
            self.sweep_deferred = true;
        }
        if self.committing.is_some() && batch.iter().any(Request::needs_store) {
            self.finish_commit(true)?;
            if !group.record.is_empty() {
                // What this group applied to the overlay goes into the new
                // transaction too.
                let txn = self.begin()?;
                let replayed = Tables::open(&txn).and_then(|mut t| t.replay(0, &group.record));
                self.txn = Some(txn);
                replayed?;
            }
        }
        if let Some(mut c) = self.committing.take() {
            let applied = {
                let mut t = Tables::overlay(&mut c.overlay, &c.committed);
                self.apply_to(&mut t, batch, group)
            };
            self.committing = Some(c);
            return applied;
        }
        let txn = self.begin()?;
        let applied = Tables::open(&txn).and_then(|mut t| self.apply_to(&mut t, batch, group));
        self.txn = Some(txn);
        applied
    }

    /// The open write transaction, taken (begun if none is).
    pub(super) fn begin(&mut self) -> Result<WriteTransaction, HubError> {
        match self.txn.take() {
            Some(txn) => Ok(txn),
            None => self.store.db()?.begin_write().map_err(db_err),
        }
    }
}
