//! The embedded engine (the default): jobs and events in a redb database under the
//! data directory, written by one writer thread with group commit, made durable
//! between checkpoints by an append-only journal.
//!
//! Every write request (create, publish, sweep) goes through a bounded channel to the
//! writer thread. The thread takes everything queued (up to [`MAX_BATCH`]), applies it
//! to one open redb write transaction, appends the group's changes to the journal
//! as one record with one `fdatasync`, and acknowledges the callers (events of
//! existing jobs are fanned out before that flush, with epochs: see `writer`).
//! Every `CHECKPOINT_EVERY` the transaction is committed (a checkpoint) on a
//! thread of its own while the writer goes on (see `durable`), and the journal
//! starts over in its other segment; at open, the journal's records after the last
//! checkpoint are replayed. A refused request changes nothing; a failed flush fails every
//! request in the group and acknowledges none.
//!
//! Reads use redb's MVCC read transactions on the blocking pool and never wait for
//! the writer; what the last checkpoint does not hold yet comes from `inflight`, and
//! replays and snapshots of recently written jobs from the in-memory [`TailCache`].
//!
//! After a failed flush the writer reopens the database (see [`store`]), refuses
//! writes until a space probe passes, replays the journal's records into the store,
//! and then takes writes again: a full disk heals without a restart.
//!
//! # Layout
//! - `store`: opening with the damage check, reopening, redb error mapping.
//! - `journal`: the journal's two segment files and its record format.
//! - `tables`: the write transaction's tables (or an overlay while a checkpoint
//!   commits); every change as a journal op.
//! - `inflight`: what readers see that the last checkpoint does not hold.
//! - `check`: `jobwire store check` / `repair`.
//! - `read`: the read paths (snapshots, history, listings, keys).
//! - `writer`: the writer thread and its group commit.
//! - `requests`: how the writer applies each request (create, publish, keys, sweep).
//! - `group`: one group's changes and held-back replies.
//! - `intake`: how the writer takes requests, and waits for more in a flush window.
//! - `durable`: journal records, checkpoints (in the background), and healing after
//!   a failed flush.

pub mod check;
mod durable;
mod group;
mod inflight;
mod intake;
pub mod journal;
mod read;
mod requests;
pub mod store;
mod tables;
mod writer;

use crate::apikey::ApiKey;
use crate::engine::tail::{TailCache, PER_JOB_EVENTS};
use crate::engine::{
    BoxFuture, Created, Engine, HistoryPage, ListPage, ListQuery, NewJob, NotificationPage, Outcome,
};
use crate::error::HubError;
use crate::liveness::Deadlines;
use crate::metrics::Metrics;
use crate::registry::Registry;
use inflight::InFlight;
use jobwire_proto::{EventInput, Job, Timestamp};
use read::{read_history, read_job, read_key, read_list, read_notifications, restore_deadlines};
use redb::{Database, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::{db_err, io_err, Store};
use tokio::sync::{mpsc, oneshot};
use writer::Writer;

/// Job id -> snapshot JSON.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// (job id, seq) -> event JSON, exactly the bytes sent to watchers.
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// (job id, event_id) -> seq, for idempotent retries.
const IDEMPOTENCY: TableDefinition<(&str, &str), u64> = TableDefinition::new("idempotency");
/// Job id -> canonical JSON of the create request, to tell retries from conflicts.
const CREATES: TableDefinition<&str, &[u8]> = TableDefinition::new("creates");
/// (expiry time in ms, job id) for terminal jobs, swept by the retention task.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");

/// API key id -> key record JSON ([`ApiKey`]). Written by the writer thread; a
/// group with a key write checkpoints, so the key is in the store when acknowledged.
const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// (owner key, notification seq) -> notification frame JSON (see `crate::channel`).
const NOTIFY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("notifications");
/// Owner key -> its last notification seq.
const NOTIFY_HEAD: TableDefinition<&str, u64> = TableDefinition::new("notification_heads");
/// Store-wide counters: [`EPOCH_KEY`] -> the current epoch.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The epoch: one more at every open and after every failed commit (see
/// [`Engine::epoch`]).
const EPOCH_KEY: &str = "epoch";
/// The number of the last journal record the store holds (see `journal`).
const JOURNAL_KEY: &str = "journal";
/// How often the writer checkpoints (commits the store and starts the journal
/// over) while it takes writes. Longer: fewer page writes per event (a leaf
/// written once holds more events), a longer commit when it comes, and more to
/// replay after a crash.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// Test hook: milliseconds between checkpoints instead of [`CHECKPOINT_EVERY`]
/// (crash tests that must find the journal holding everything).
const CHECKPOINT_ENV: &str = "JOBWIRE_TEST_CHECKPOINT_MS";
/// Test hook: milliseconds each background checkpoint waits before it commits
/// (a window in which to kill the process mid-checkpoint).
const CHECKPOINT_DELAY_ENV: &str = "JOBWIRE_TEST_CHECKPOINT_DELAY_MS";
/// The journal checkpoints sooner once it holds this many bytes.
const JOURNAL_LIMIT: u64 = 16 << 20;
/// Test hook: milliseconds the writer waits between pushing a group's events ahead
/// and flushing it (a window for crash tests; groups that pushed nothing ahead, such
/// as creates, do not wait).
const FLUSH_DELAY_ENV: &str = "JOBWIRE_TEST_FLUSH_DELAY_MS";
/// Test hook: the writer thread panics when it applies a publish to a job whose
/// key ends with this (a bug's stand-in, to test what a dead writer looks like).
const PANIC_ON_ENV: &str = "JOBWIRE_TEST_WRITER_PANIC_ON";
/// Test hook: a publish to a job whose key ends with this fails as a storage error
/// in the middle of its group (the store's read errors are the real trigger).
const ABORT_ON_ENV: &str = "JOBWIRE_TEST_ABORT_ON";
/// `1`: push events only after their flush (the behaviour before epochs; for
/// comparisons).
const PUSH_AFTER_FLUSH_ENV: &str = "JOBWIRE_PUSH_AFTER_FLUSH";

/// Most requests committed in one transaction (one fsync).
pub const MAX_BATCH: usize = 1024;
/// Write requests waiting for the writer; a full queue makes publishers wait
/// (back-pressure), it never drops a request.
const QUEUE_DEPTH: usize = 8192;
/// After a failed commit, how often the writer checks whether the disk has room
/// again (writes in between are refused at once with the commit's error).
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Bytes the space probe writes (and fsyncs, and deletes) next to the store.
const PROBE_BYTES: usize = 1 << 20;

/// How long a group of writes stays open for more before its flush, by default
/// (see `writer`): publish acks wait up to this much longer, for fewer flushes.
pub const FLUSH_WINDOW: Duration = Duration::from_millis(1);

/// Settings of the embedded engine's durable write path.
#[derive(Debug, Clone, Copy)]
pub struct Durability {
    /// How long a group of writes stays open for more before its one flush (the
    /// events are pushed to watchers as they come; only the acks wait). Zero:
    /// each group is what was queued when the writer took it.
    pub flush_window: Duration,
}

impl Default for Durability {
    fn default() -> Self {
        Durability {
            flush_window: FLUSH_WINDOW,
        }
    }
}

/// Retention settings shared by all engines.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Terminal jobs are deleted this long after they finish.
    pub terminal_ttl: Duration,
    /// Events kept per job; older ones are trimmed (the snapshot stays whole).
    pub max_events_per_job: u64,
    /// How often expired terminal jobs are deleted.
    pub sweep_interval: Duration,
    /// Memory for the newest events of each job, served to replays without reading
    /// the store (embedded engine; 0 turns it off).
    pub replay_cache_bytes: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            terminal_ttl: Duration::from_secs(24 * 3600),
            max_events_per_job: 10_000,
            sweep_interval: Duration::from_secs(60),
            replay_cache_bytes: 64 << 20,
        }
    }
}

enum Request {
    Create {
        job: NewJob,
        reply: oneshot::Sender<Result<Created, HubError>>,
    },
    Publish {
        job_id: String,
        events: Vec<EventInput>,
        reply: oneshot::Sender<Result<Outcome, HubError>>,
    },
    Sweep,
    /// Stores an API key record (the group checkpoints: auth reads the store).
    PutKey {
        key: ApiKey,
        reply: oneshot::Sender<Result<(), HubError>>,
    },
    /// Marks a tenant's key revoked; `false` when it has no such key.
    RevokeKey {
        tenant: String,
        id: String,
        reply: oneshot::Sender<Result<bool, HubError>>,
    },
    /// Sent every [`PROBE_INTERVAL`] while unhealthy, so readiness comes back
    /// without traffic.
    Probe,
    /// Sent every [`CHECKPOINT_EVERY`], so a checkpoint comes without traffic.
    Checkpoint,
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

impl Request {
    /// Whether it reads or writes the store beyond what a checkpoint committing in
    /// the background lets the writer do (see `tables`): it waits for the commit.
    fn needs_store(&self) -> bool {
        matches!(
            self,
            Request::Sweep
                | Request::PutKey { .. }
                | Request::RevokeKey { .. }
                | Request::Shutdown { .. }
        )
    }
}

/// The embedded, durable engine.
pub struct Embedded {
    store: Arc<Store>,
    /// Liveness deadlines (in memory; rebuilt from the snapshots at open).
    deadlines: Deadlines,
    tail: Arc<TailCache>,
    tx: mpsc::Sender<Request>,
    closing: AtomicBool,
    healthy: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
    /// The group pushed ahead of its flush (see `inflight`).
    inflight: Arc<InFlight>,
}

fn storage(e: impl std::fmt::Display) -> HubError {
    HubError::Storage(e.to_string())
}

impl Embedded {
    /// Opens (or creates) the store in `data_dir` and starts the writer thread and,
    /// when called inside a tokio runtime, the retention sweeper.
    pub fn open(
        data_dir: PathBuf,
        retention: Retention,
        durability: Durability,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Embedded>, HubError> {
        std::fs::create_dir_all(&data_dir).map_err(db_err)?;
        let path = data_dir.join(store::FILE);
        let db = store::open_checked(&path, true)?;
        let (mut journal, found) = journal::Journal::open(&data_dir).map_err(io_err)?;
        let epoch;
        {
            let txn = db.begin_write().map_err(db_err)?;
            let mut t = tables::Tables::open(&txn)?;
            t.txn()?.open_all().map_err(db_err)?;
            // What the journal holds after the last checkpoint, back in the store.
            let after = t.meta(JOURNAL_KEY)?.unwrap_or(0);
            let records = journal::chain(&found, after);
            for (number, payload) in &records {
                t.replay(*number, payload).map_err(|e| {
                    HubError::Damaged(format!(
                        "the journal {} is damaged ({e}); with the server stopped, move it \
                         aside to start from the store's last checkpoint (what the journal \
                         held after it is then lost)",
                        journal.path().display()
                    ))
                })?;
            }
            let last = records.last().map_or(after, |r| r.0);
            t.set_meta(JOURNAL_KEY, last)?;
            // A new epoch at every open, durable before any write is pushed.
            epoch = t.meta(EPOCH_KEY)?.unwrap_or(0) + 1;
            t.set_meta(EPOCH_KEY, epoch)?;
            drop(t);
            txn.commit().map_err(db_err)?;
            journal.restart(last + 1);
            if !records.is_empty() {
                tracing::info!(records = records.len(), "journal replayed into the store");
            }
        }
        let epoch = Arc::new(AtomicU64::new(epoch));
        let inflight = Arc::new(InFlight::default());
        let flush_delay = std::env::var(FLUSH_DELAY_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        let checkpoint_every = std::env::var(CHECKPOINT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(CHECKPOINT_EVERY, Duration::from_millis);
        let ahead = std::env::var(PUSH_AFTER_FLUSH_ENV).map_or(true, |v| v != "1");
        let store = Arc::new(Store::new(path, db));
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let healthy = Arc::new(AtomicBool::new(true));
        let tail = Arc::new(TailCache::new(retention.replay_cache_bytes, PER_JOB_EVENTS));
        let writer = Writer {
            store: store.clone(),
            data_dir,
            draining: None,
            broken: None,
            last_probe: None,
            tail: tail.clone(),
            cache: HashMap::new(),
            retention,
            registry,
            metrics,
            healthy: healthy.clone(),
            epoch: epoch.clone(),
            epoch_durable: true,
            ahead,
            inflight: inflight.clone(),
            flush_delay,
            panic_on: std::env::var(PANIC_ON_ENV).ok().filter(|v| !v.is_empty()),
            abort_on: std::env::var(ABORT_ON_ENV).ok().filter(|v| !v.is_empty()),
            txn: None,
            committing: None,
            sweep_deferred: false,
            checkpoint_delay: std::env::var(CHECKPOINT_DELAY_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
            journal,
            records: Vec::new(),
            replay: false,
            last_checkpoint: std::time::Instant::now(),
            checkpoint_every,
            flush_window: durability.flush_window,
            window_misses: 0,
            window_skips: 0,
        };
        let sick = healthy.clone();
        std::thread::Builder::new()
            .name("jobwire-writer".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(move || writer.run(rx));
                if std::panic::catch_unwind(run).is_err() {
                    // A bug, never input: say so, and stop answering ready so that
                    // the orchestrator restarts the process (the journal has every
                    // acknowledged write).
                    sick.store(false, Ordering::Release);
                    tracing::error!(
                        "the store's writer thread panicked; writes fail with \
                         storage_unavailable and /readyz answers 503 until jobwire restarts"
                    );
                }
            })
            .map_err(db_err)?;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let sweep_tx = tx.clone();
            rt.spawn(async move {
                let mut tick = tokio::time::interval(retention.sweep_interval);
                loop {
                    tick.tick().await;
                    if sweep_tx.send(Request::Sweep).await.is_err() {
                        break;
                    }
                }
            });
            let checkpoint_tx = tx.clone();
            rt.spawn(async move {
                let mut tick = tokio::time::interval(checkpoint_every);
                while !checkpoint_tx.is_closed() {
                    tick.tick().await;
                    // A busy writer checkpoints on its own; never wait for room.
                    let _ = checkpoint_tx.try_send(Request::Checkpoint);
                }
            });
            let (probe_tx, sick) = (tx.clone(), healthy.clone());
            rt.spawn(async move {
                let mut tick = tokio::time::interval(PROBE_INTERVAL);
                while !probe_tx.is_closed() {
                    tick.tick().await;
                    if !sick.load(Ordering::Acquire) {
                        // A full queue already wakes the writer; no need to wait.
                        let _ = probe_tx.try_send(Request::Probe);
                    }
                }
            });
        }
        let deadlines = Deadlines::default();
        restore_deadlines(&store, &deadlines)?;
        Ok(Arc::new(Embedded {
            store,
            deadlines,
            tail,
            tx,
            closing: AtomicBool::new(false),
            healthy,
            epoch,
            inflight,
        }))
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, HubError>>) -> Request,
    ) -> Result<T, HubError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(HubError::ShuttingDown);
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| self.writer_gone())?;
        rx.await.map_err(|_| self.writer_gone())?
    }

    /// The error of a write the writer thread will never answer: shutting down, or
    /// the thread is gone (a panic; see `open`).
    fn writer_gone(&self) -> HubError {
        if self.closing.load(Ordering::Acquire) {
            HubError::ShuttingDown
        } else {
            HubError::Storage("the store's writer thread stopped; restart jobwire".into())
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, HubError> + Send + 'static,
    ) -> Result<T, HubError> {
        let db = self.store.db()?;
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(storage)?
    }

    /// Deletes terminal jobs whose TTL has passed, now (tests and admin use).
    pub async fn sweep_now(&self) -> Result<(), HubError> {
        self.tx
            .send(Request::Sweep)
            .await
            .map_err(|_| HubError::ShuttingDown)
    }
}

impl Engine for Embedded {
    fn create(&self, job: NewJob) -> BoxFuture<'_, Result<Created, HubError>> {
        Box::pin(self.request(|reply| Request::Create { job, reply }))
    }

    fn publish<'a>(
        &'a self,
        job_id: &'a str,
        events: Vec<EventInput>,
    ) -> BoxFuture<'a, Result<Outcome, HubError>> {
        let job_id = job_id.to_owned();
        Box::pin(self.request(|reply| Request::Publish {
            job_id,
            events,
            reply,
        }))
    }

    fn history<'a>(
        &'a self,
        job_id: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, HubError>> {
        // In flight first, then the tail or the store (see `inflight`).
        let pending = self.inflight.get(job_id);
        if let Some(page) = self.tail.history(job_id, after, limit) {
            let page = match pending {
                Some(p) => p.extend(page, after, limit),
                None => page,
            };
            return Box::pin(std::future::ready(Ok(page)));
        }
        let id = job_id.to_owned();
        Box::pin(async move {
            let page = self
                .read(move |db| read_history(db, &id, after, limit))
                .await;
            match (pending, page) {
                (Some(p), Ok(page)) => Ok(p.extend(page, after, limit)),
                // Created since the last checkpoint.
                (Some(p), Err(HubError::NotFound)) => Ok(p.page(after, limit)),
                (_, page) => page,
            }
        })
    }

    fn snapshot<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<Job, HubError>> {
        let pending = self.inflight.get(job_id);
        if let Some(job) = self.tail.snapshot(job_id) {
            let job = match pending {
                Some(p) => p.newer(job),
                None => job,
            };
            return Box::pin(std::future::ready(Ok(job)));
        }
        let id = job_id.to_owned();
        Box::pin(async move {
            let job = self
                .read(move |db| {
                    let txn = db.begin_read().map_err(db_err)?;
                    let jobs = txn.open_table(JOBS).map_err(db_err)?;
                    read_job(&jobs, &id)?.ok_or(HubError::NotFound)
                })
                .await;
            match (pending, job) {
                (Some(p), Ok(job)) => Ok(p.newer(job)),
                (Some(p), Err(HubError::NotFound)) => Ok(Arc::unwrap_or_clone(p.job)),
                (_, job) => job,
            }
        })
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<ListPage, HubError>> {
        let prefix = query
            .tenant
            .as_ref()
            .map(|t| format!("{t}/"))
            .unwrap_or_default();
        let pending = self.inflight.jobs(&prefix);
        Box::pin(self.read(move |db| read_list(db, &query, pending)))
    }

    fn put_key(&self, key: ApiKey) -> BoxFuture<'_, Result<(), HubError>> {
        Box::pin(self.request(|reply| Request::PutKey { key, reply }))
    }

    fn key_by_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<ApiKey>, HubError>> {
        let id = id.to_owned();
        Box::pin(self.read(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(API_KEYS).map_err(db_err)?;
            read_key(&t, &id)
        }))
    }

    fn list_keys<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<Vec<ApiKey>, HubError>> {
        let tenant = tenant.to_owned();
        Box::pin(self.read(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(API_KEYS).map_err(db_err)?;
            // Keys are few (people create them): a full scan is fine.
            let mut out = Vec::new();
            for item in t.iter().map_err(db_err)? {
                let (_, v) = item.map_err(db_err)?;
                let key: ApiKey = serde_json::from_slice(v.value()).map_err(storage)?;
                if key.tenant == tenant {
                    out.push(key);
                }
            }
            Ok(out)
        }))
    }

    fn revoke_key<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, HubError>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(self.request(|reply| Request::RevokeKey { tenant, id, reply }))
    }

    fn notifications<'a>(
        &'a self,
        owner: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<NotificationPage, HubError>> {
        let pending = self.inflight.notices(owner);
        let owner = owner.to_owned();
        Box::pin(async move {
            let page = self
                .read(move |db| read_notifications(db, &owner, after, limit))
                .await?;
            Ok(inflight::with_notices(page, pending, after, limit))
        })
    }

    fn set_deadline<'a>(
        &'a self,
        member: &'a str,
        at: Option<Timestamp>,
    ) -> BoxFuture<'a, Result<(), HubError>> {
        self.deadlines.set(member, at);
        Box::pin(std::future::ready(Ok(())))
    }

    fn due_deadlines(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, HubError>> {
        if self.closing.load(Ordering::Acquire) {
            return Box::pin(std::future::ready(Err(HubError::ShuttingDown)));
        }
        Box::pin(std::future::ready(Ok(self.deadlines.due(now, limit))))
    }

    fn epoch(&self) -> Option<u64> {
        Some(self.epoch.load(Ordering::Acquire))
    }

    fn is_ready(&self) -> bool {
        !self.closing.load(Ordering::Acquire) && self.healthy.load(Ordering::Acquire)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.closing.swap(true, Ordering::AcqRel) {
                return;
            }
            let (reply, rx) = oneshot::channel();
            if self.tx.send(Request::Shutdown { reply }).await.is_ok() {
                let _ = rx.await;
            }
        })
    }
}
