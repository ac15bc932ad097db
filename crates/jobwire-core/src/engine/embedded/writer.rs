//! The writer thread: owns every write to the database. It takes what is queued
//! (up to [`MAX_BATCH`]), applies it to the open write transaction, makes the
//! group durable with one journal record and one `fdatasync` (or, every
//! [`super::CHECKPOINT_EVERY`], by committing the transaction: a checkpoint), fans the
//! events out and acknowledges the callers.
//!
//! # The flush window
//! A group stays open for up to the flush window after its first request: what
//! arrives meanwhile is applied and its events pushed as it comes (watchers do not
//! wait), and the whole group is flushed once at the end, so publishers' acks wait
//! up to the window for one `fdatasync` shared by more requests. The window closes
//! early for a group with anything that waits for its flush (a new job, an owner's
//! notification; every push after a failed flush), that asks for a checkpoint or
//! a stop, that is full, or when a checkpoint is due.

use super::inflight::{InFlight, Pending};
use super::journal::{Journal, Op};
use super::read::{read_job, read_key};
use super::tables::Tables;
use super::{db_err, storage, Request, Retention, Store, MAX_BATCH};
use crate::channel;
use crate::engine::apply::{self, ApplyError};
use crate::engine::tail::{Snapshot, TailCache};
use crate::engine::{Created, Live, NewJob, Outcome};
use crate::error::HubError;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::session::{Closed, EventKind, Published};
use jobwire_proto::{EventInput, Job, Timestamp};
use redb::{Database, ReadableTable, WriteTransaction};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Outcome of one request inside a group: refused (reply now, nothing changed) or a
/// storage failure (abort the whole group).
enum Fail {
    Refuse(HubError),
    Abort(HubError),
}

impl From<redb::StorageError> for Fail {
    fn from(e: redb::StorageError) -> Self {
        Fail::Abort(db_err(e))
    }
}

/// A reply held back until the group commits: a refusal too, since it may depend
/// on an earlier request of the same group that might not commit.
enum Ack {
    Create(
        oneshot::Sender<Result<Created, HubError>>,
        Result<Box<Created>, HubError>,
    ),
    Publish(
        oneshot::Sender<Result<Outcome, HubError>>,
        Result<Outcome, HubError>,
    ),
    PutKey(oneshot::Sender<Result<(), HubError>>),
    RevokeKey(oneshot::Sender<Result<bool, HubError>>, bool),
    Shutdown(oneshot::Sender<()>),
}

impl Ack {
    fn fail(self, e: &HubError) {
        let err = || e.duplicate();
        match self {
            Ack::Create(r, _) => drop(r.send(Err(err()))),
            Ack::Publish(r, _) => drop(r.send(Err(err()))),
            Ack::PutKey(r) => drop(r.send(Err(err()))),
            Ack::RevokeKey(r, _) => drop(r.send(Err(err()))),
            Ack::Shutdown(r) => drop(r.send(())),
        }
    }
    fn succeed(self) {
        match self {
            Ack::Create(r, v) => drop(r.send(v.map(|c| *c))),
            Ack::Publish(r, v) => drop(r.send(v)),
            Ack::PutKey(r) => drop(r.send(Ok(()))),
            Ack::RevokeKey(r, found) => drop(r.send(Ok(found))),
            Ack::Shutdown(r) => drop(r.send(())),
        }
    }
}

/// Answers every request of `batch` with `e` (nothing is written). Returns true
/// when one of them asked to stop.
fn refuse_all(batch: &mut Vec<Request>, e: &HubError) -> bool {
    let mut stop = false;
    for req in batch.drain(..) {
        let ack = match req {
            Request::Create { reply, .. } => Ack::Create(reply, Err(HubError::NotFound)),
            Request::Publish { reply, .. } => Ack::Publish(reply, Err(HubError::NotFound)),
            Request::PutKey { reply, .. } => Ack::PutKey(reply),
            Request::RevokeKey { reply, .. } => Ack::RevokeKey(reply, false),
            Request::Sweep | Request::Probe | Request::Checkpoint => continue,
            Request::Shutdown { reply } => {
                stop = true;
                Ack::Shutdown(reply)
            }
        };
        ack.fail(e);
    }
    stop
}

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
    /// Test hook: a pause between the push and the flush (a crash window).
    pub(super) flush_delay: Option<std::time::Duration>,
    /// The write transaction holding every group since the last checkpoint.
    pub(super) txn: Option<WriteTransaction>,
    pub(super) journal: Journal,
    /// The journal records since the last checkpoint, `(number, payload)`: what
    /// the transaction holds besides the checkpoint (replayed after a failure).
    pub(super) records: Vec<(u64, Vec<u8>)>,
    /// The transaction was dropped after a failure: `records` must be replayed
    /// and checkpointed before the next group.
    pub(super) replay: bool,
    pub(super) last_checkpoint: Instant,
    /// [`super::CHECKPOINT_EVERY`] unless a test says otherwise.
    pub(super) checkpoint_every: Duration,
    /// How long a group stays open for more requests (see the module docs).
    pub(super) flush_window: Duration,
}

/// Per-group scratch state: snapshots changed in this group, events to fan out and
/// replies to send once the commit is durable.
#[derive(Default)]
struct Group {
    /// Jobs changed by the requests being applied, as they now are.
    dirty: HashMap<String, Job>,
    /// Jobs changed by the requests applied before (one snapshot per job, the
    /// newest), and where each one is.
    snapshots: Vec<Snapshot>,
    at: HashMap<Arc<str>, usize>,
    /// Requests taken into this group.
    requests: usize,
    /// The group's journal record so far.
    record: Vec<u8>,
    /// Its events were pushed ahead of the flush (`fanout[..pushed]` so far).
    ahead: bool,
    pushed: usize,
    /// Jobs created in this group: their events wait for the flush (a channel
    /// listing reads the store, so a job must be in it before it is announced).
    created: HashSet<String>,
    /// Job events, in order.
    fanout: Vec<Published>,
    /// Notifications of the owners of jobs that ended (pushed after the flush).
    notices: Vec<Published>,
    acks: Vec<Ack>,
    stop: bool,
    /// A sweep deleted jobs, or an API key was written (neither is journaled: the
    /// group checkpoints).
    must_checkpoint: bool,
}

impl Group {
    /// Whether `p` may be pushed before the flush: an event of a job that existed
    /// before this group (notifications and new jobs wait for the commit).
    fn ahead(&self, p: &Published) -> bool {
        !self.created.contains(&*p.job_id)
    }

    /// The newest snapshot of a job an earlier part of this group changed.
    fn snapshot(&self, id: &str) -> Option<&Arc<Job>> {
        self.at.get(id).map(|&i| &self.snapshots[i].job)
    }

    /// Keeps `s` as the job's newest snapshot in this group.
    fn keep(&mut self, s: Snapshot) {
        match self.at.get(&s.key) {
            Some(&i) => self.snapshots[i] = s,
            None => {
                self.at.insert(s.key.clone(), self.snapshots.len());
                self.snapshots.push(s);
            }
        }
    }

    /// Every job this group changed (created ones too), with its events: what
    /// readers must see until the next checkpoint.
    fn changes(&self) -> HashMap<Arc<str>, Pending> {
        let mut out: HashMap<Arc<str>, Pending> = self
            .snapshots
            .iter()
            .map(|s| {
                let p = Pending {
                    job: s.job.clone(),
                    events: Vec::new(),
                };
                (s.key.clone(), p)
            })
            .collect();
        for ev in &self.fanout {
            if let Some(p) = out.get_mut(&ev.job_id) {
                p.events.push((ev.seq, ev.bytes.clone()));
            }
        }
        out
    }
}

/// Takes what is queued into `batch`, up to [`MAX_BATCH`] requests in the group.
fn take_queued(rx: &mut mpsc::Receiver<Request>, batch: &mut Vec<Request>, taken: usize) {
    while taken + batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

/// Waits up to `left` for the next request (`None`: the time passed, or the queue
/// closed).
fn recv_within(
    rt: &tokio::runtime::Runtime,
    rx: &mut mpsc::Receiver<Request>,
    left: Duration,
) -> Option<Request> {
    // The timer is made inside the runtime (it needs its time driver).
    rt.block_on(async { tokio::time::timeout(left, rx.recv()).await })
        .ok()
        .flatten()
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        // The flush window's timed waits; without a timer the window is off.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no timer for the flush window; it is off"))
            .ok();
        let mut batch = Vec::with_capacity(64);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            take_queued(&mut rx, &mut batch, 0);
            if self.commit_group(&mut batch, &mut rx, rt.as_ref()) {
                break;
            }
        }
        tracing::debug!("writer thread stopped");
    }

    /// Applies `batch`, then what comes within the flush window (see the module
    /// docs), and commits it all as one group. Returns true when asked to stop.
    fn commit_group(
        &mut self,
        batch: &mut Vec<Request>,
        rx: &mut mpsc::Receiver<Request>,
        rt: Option<&tokio::runtime::Runtime>,
    ) -> bool {
        if !self.probe() {
            let e = self.broken.as_ref().map_or_else(
                || HubError::Storage("store unavailable".into()),
                HubError::duplicate,
            );
            return refuse_all(batch, &e);
        }
        let opened = Instant::now();
        let mut group = Group {
            ahead: self.ahead && self.epoch_durable,
            ..Group::default()
        };
        let mut pushed = HashSet::new();
        let applied = loop {
            group.requests += batch.len();
            if let Err(e) = self.apply_group(batch, &mut group) {
                break Err(e);
            }
            if group.ahead {
                pushed.extend(self.push_ahead(&mut group));
            }
            let Some(rt) = rt.filter(|_| self.window_open(&group)) else {
                break Ok(());
            };
            let left = self.flush_window.saturating_sub(opened.elapsed());
            if left.is_zero() {
                break Ok(());
            }
            match recv_within(rt, rx, left) {
                Some(next) => {
                    batch.push(next);
                    take_queued(rx, batch, group.requests);
                }
                None => break Ok(()),
            }
        };
        let stop = group.stop;
        let result = applied.and_then(|()| {
            let record = std::mem::take(&mut group.record);
            // Only a group with writes to flush waits (not the checkpoint ticks).
            if let Some(d) = self.flush_delay.filter(|_| !record.is_empty()) {
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
                    if !group.ahead || !group.ahead(ev) {
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
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; nothing in this group was acknowledged");
                self.healthy.store(false, Ordering::Release);
                // The transaction holds this group: drop it; the records since the
                // checkpoint (acknowledged) are replayed once the store takes
                // writes again, and readers see them meanwhile (settled).
                self.txn = None;
                self.replay = !self.records.is_empty();
                self.inflight.drop_current();
                let pushed: Vec<Arc<str>> = pushed.into_iter().collect();
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

    /// Whether the group may wait for more requests: everything in it was pushed
    /// ahead of its flush (no new job, no notification: those wait for the flush),
    /// it needs no checkpoint or stop, has room, and a checkpoint is not due.
    fn window_open(&self, group: &Group) -> bool {
        group.ahead
            && group.created.is_empty()
            && group.notices.is_empty()
            && !self.flush_window.is_zero()
            && !group.stop
            && !group.must_checkpoint
            && group.requests < MAX_BATCH
            && self.last_checkpoint.elapsed() < self.checkpoint_every
    }

    /// Pushes the group's events not pushed yet of jobs that existed before it,
    /// ahead of the flush, after showing the whole group to readers (see
    /// `inflight`). Returns the keys pushed (a failed commit takes them back).
    fn push_ahead(&self, group: &mut Group) -> Vec<Arc<str>> {
        let fresh = &group.fanout[group.pushed..];
        if !fresh.iter().any(|p| group.ahead(p)) {
            return Vec::new();
        }
        let mut pending = group.changes();
        pending.retain(|key, p| !group.created.contains(&**key) && !p.events.is_empty());
        let keys: Vec<Arc<str>> = fresh
            .iter()
            .filter(|p| group.ahead(p))
            .map(|p| p.job_id.clone())
            .collect();
        self.inflight.set(pending);
        for ev in fresh.iter().filter(|p| group.ahead(p)) {
            self.registry.broadcast(ev);
        }
        group.pushed = group.fanout.len();
        keys
    }

    /// A commit failed after its events were pushed: a new epoch begins (stored by
    /// the next commit, which pushes only after its flush), and every watcher that
    /// may hold one of those events is closed with `resync`, to resume with the
    /// epoch it was given and be told where to rewind.
    fn take_back(&mut self, group: &Group, pushed: &[Arc<str>]) {
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

    /// Applies `batch` to the open write transaction (begun if none is), adding
    /// its ops to the group's journal record and the new snapshots of the jobs it
    /// changed to the group's.
    fn apply_group(&mut self, batch: &mut Vec<Request>, group: &mut Group) -> Result<(), HubError> {
        let txn = match self.txn.take() {
            Some(txn) => txn,
            None => self.store.db()?.begin_write().map_err(db_err)?,
        };
        let applied = self.apply_to(&txn, batch, group);
        self.txn = Some(txn);
        applied
    }

    fn apply_to(
        &mut self,
        txn: &WriteTransaction,
        batch: &mut Vec<Request>,
        group: &mut Group,
    ) -> Result<(), HubError> {
        let mut t = Tables::open(txn)?;
        {
            let now = Timestamp::now();
            for req in batch.drain(..) {
                match req {
                    Request::Create { job, reply } => match self.create(&mut t, group, job, now) {
                        Ok(c) => group.acks.push(Ack::Create(reply, Ok(Box::new(c)))),
                        Err(Fail::Refuse(e)) => group.acks.push(Ack::Create(reply, Err(e))),
                        Err(Fail::Abort(e)) => {
                            group.acks.push(Ack::Create(reply, Err(HubError::NotFound)));
                            return Err(e);
                        }
                    },
                    Request::Publish {
                        job_id,
                        events,
                        reply,
                    } => match self.publish(&mut t, group, &job_id, events, now) {
                        Ok(seqs) => group.acks.push(Ack::Publish(reply, Ok(seqs))),
                        Err(Fail::Refuse(e)) => group.acks.push(Ack::Publish(reply, Err(e))),
                        Err(Fail::Abort(e)) => {
                            group
                                .acks
                                .push(Ack::Publish(reply, Err(HubError::NotFound)));
                            return Err(e);
                        }
                    },
                    Request::Sweep => {
                        group.must_checkpoint |= self.sweep(&mut t, now).map_err(db_err)?;
                    }
                    Request::PutKey { key, reply } => {
                        let bytes = serde_json::to_vec(&key).map_err(storage)?;
                        group.acks.push(Ack::PutKey(reply));
                        t.api_keys
                            .insert(key.id.as_str(), bytes.as_slice())
                            .map_err(db_err)?;
                        group.must_checkpoint = true;
                    }
                    Request::RevokeKey { tenant, id, reply } => {
                        let found = read_key(&t.api_keys, &id)?.filter(|k| k.tenant == tenant);
                        let revoked = found.is_some();
                        if let Some(mut key) = found {
                            key.revoked = true;
                            let bytes = serde_json::to_vec(&key).map_err(storage)?;
                            t.api_keys
                                .insert(id.as_str(), bytes.as_slice())
                                .map_err(db_err)?;
                            group.must_checkpoint = true;
                        }
                        group.acks.push(Ack::RevokeKey(reply, revoked));
                    }
                    Request::Probe | Request::Checkpoint => {}
                    Request::Shutdown { reply } => {
                        group.acks.push(Ack::Shutdown(reply));
                        group.stop = true;
                    }
                }
            }
            if !self.epoch_durable {
                let epoch = self.epoch.load(Ordering::Acquire);
                t.put(Op::Epoch(epoch)).map_err(db_err)?;
            }
            for (id, job) in std::mem::take(&mut group.dirty) {
                let bytes = serde_json::to_vec(&job).map_err(storage)?;
                t.put(Op::Job {
                    id: id.as_str(),
                    snapshot: &bytes,
                })
                .map_err(db_err)?;
                group.keep(Snapshot {
                    key: Arc::from(id.as_str()),
                    job: Arc::new(job),
                    size: bytes.len(),
                });
            }
        }
        if group.record.is_empty() {
            group.record = std::mem::take(&mut t.record);
        } else {
            group.record.extend_from_slice(&t.record);
        }
        Ok(())
    }

    /// The job as this group sees it: changed in this group, cached, or stored.
    fn load(&self, t: &Tables<'_>, group: &Group, id: &str) -> Result<Option<Job>, Fail> {
        if let Some(j) = group.dirty.get(id) {
            return Ok(Some(j.clone()));
        }
        if let Some(j) = group.snapshot(id) {
            return Ok(Some((**j).clone()));
        }
        if let Some(j) = self.cache.get(id) {
            return Ok(Some((**j).clone()));
        }
        read_job(&t.jobs, id).map_err(Fail::Abort)
    }

    fn create(
        &mut self,
        t: &mut Tables<'_>,
        group: &mut Group,
        new: NewJob,
        now: Timestamp,
    ) -> Result<Created, Fail> {
        let fingerprint = apply::create_fingerprint(&new);
        if let Some(existing) = self.load(t, group, &new.key)? {
            let same = t
                .creates
                .get(new.key.as_str())?
                .is_some_and(|v| v.value() == fingerprint.as_slice());
            return if same {
                Ok(Created {
                    job: existing,
                    created: false,
                })
            } else {
                Err(Fail::Refuse(HubError::JobExists))
            };
        }
        let (mut job, created) = apply::create_job(&new, now).map_err(Fail::Abort)?;
        job.epochs = vec![[self.epoch.load(Ordering::Relaxed), 1]];
        t.put(Op::Event {
            id: &new.key,
            seq: 1,
            bytes: &created.bytes,
        })?;
        t.put(Op::Create {
            id: &new.key,
            fingerprint: &fingerprint,
        })?;
        group.fanout.push(created);
        group.created.insert(new.key.clone());
        group.dirty.insert(new.key, job.clone());
        Ok(Created { job, created: true })
    }

    fn publish(
        &mut self,
        t: &mut Tables<'_>,
        group: &mut Group,
        job_id: &str,
        inputs: Vec<EventInput>,
        now: Timestamp,
    ) -> Result<Outcome, Fail> {
        let mut job = self
            .load(t, group, job_id)?
            .ok_or(Fail::Refuse(HubError::NotFound))?;
        job.enter_epoch(self.epoch.load(Ordering::Relaxed));
        let idem = &t.idem;
        let applied = apply::apply_inputs(&mut job, job_id, inputs, now, |eid| {
            idem.get((job_id, eid)).map(|g| g.map(|v| v.value()))
        })
        .map_err(|e| match e {
            ApplyError::Refuse(e) => Fail::Refuse(e),
            ApplyError::Lookup(e) => Fail::Abort(storage(e)),
        })?;
        for e in &applied.events {
            let seq = e.published.seq;
            t.put(Op::Event {
                id: job_id,
                seq,
                bytes: &e.published.bytes,
            })?;
            if let Some(eid) = &e.event_id {
                t.put(Op::Idem {
                    id: job_id,
                    event_id: eid,
                    seq,
                })?;
            }
        }
        if let Some((from, to)) = apply::trim_history(&mut job, self.retention.max_events_per_job) {
            t.put(Op::Trim {
                id: job_id,
                from,
                to,
            })?;
        }
        let mut notification = None;
        if job.status.is_terminal() && !applied.events.is_empty() {
            let at = now.plus(self.retention.terminal_ttl).as_millis();
            t.put(Op::Expiry { at, id: job_id })?;
            // The terminal event is the last one; its creator is notified in the
            // same transaction, so a notification exists iff the event does.
            if let Some(last) = applied.events.last() {
                let owner = apply::owner_route(&job);
                let head = t.notify_head.get(owner.as_str())?.map_or(0, |v| v.value());
                let seq = head + 1;
                let frame = channel::notification_frame(seq, &last.published.bytes);
                t.put(Op::Notify {
                    owner: &owner,
                    seq,
                    frame: &frame,
                })?;
                t.put(Op::NotifyHead { owner: &owner, seq })?;
                if seq > channel::NOTIFICATIONS_KEPT {
                    t.put(Op::Unnotify {
                        owner: &owner,
                        seq: seq - channel::NOTIFICATIONS_KEPT,
                    })?;
                }
                notification = Some(Published {
                    job_id: Arc::from(owner.as_str()),
                    seq,
                    kind: EventKind::Terminal,
                    bytes: frame,
                    project: None,
                    encodings: Default::default(),
                });
            }
        }
        group
            .fanout
            .extend(applied.events.into_iter().map(|e| e.published));
        group.notices.extend(notification);
        let live = Live::of(&job);
        group.dirty.insert(job_id.to_owned(), job);
        Ok(Outcome {
            seqs: applied.seqs,
            live,
        })
    }

    /// Deletes terminal jobs whose expiry time has passed (not journaled: returns
    /// whether it deleted any, and then the group checkpoints).
    fn sweep(&mut self, t: &mut Tables<'_>, now: Timestamp) -> Result<bool, redb::StorageError> {
        let mut expired: Vec<(u64, String)> = Vec::new();
        for item in t.expiry.range((0, "")..(now.as_millis(), ""))? {
            let (k, _) = item?;
            let (at, id) = k.value();
            expired.push((at, id.to_owned()));
        }
        for (at, id) in &expired {
            t.expiry.remove((*at, id.as_str()))?;
            t.jobs.remove(id.as_str())?;
            t.creates.remove(id.as_str())?;
            t.events
                .retain_in((id.as_str(), 0)..=(id.as_str(), u64::MAX), |_, _| false)?;
            t.idem
                .retain_in((id.as_str(), "")..(id.as_str(), "\u{7f}"), |_, _| false)?;
            self.cache.remove(id);
            self.tail.remove(id);
        }
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "expired terminal jobs deleted");
        }
        Ok(!expired.is_empty())
    }
}
