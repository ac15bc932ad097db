//! The embedded engine (the default): jobs and events in a redb database under the
//! data directory, written by one writer thread with group commit.
//!
//! Every write request (create, publish, sweep) goes through a bounded channel to the
//! writer thread. The thread takes everything queued (up to [`MAX_BATCH`]), applies it
//! in one write transaction, commits once (one fsync for the whole group), and only
//! then fans the events out and acknowledges the callers. A refused request changes
//! nothing; a failed commit fails every request in the group and acknowledges none.
//! Reads use redb's MVCC read transactions on the blocking pool and never wait for the
//! writer; replays and snapshots of recently written jobs come from the in-memory
//! [`TailCache`] first.
//!
//! After a failed commit the writer reopens the database and rebuilds its cache
//! from it (see [`store`]), refuses writes until a space probe passes, and then
//! takes writes again: a full disk heals without a restart.
//!
//! # Layout
//! - `store`: opening with the damage check, reopening, redb error mapping.
//! - `check`: `jobwire store check` / `repair`.

pub mod check;
pub mod store;

use crate::apikey::ApiKey;
use crate::channel;
use crate::engine::apply::{self, ApplyError};
use crate::engine::tail::{Snapshot, TailCache, PER_JOB_EVENTS};
use crate::engine::{
    history_window, BoxFuture, Created, Engine, HistoryPage, ListPage, ListQuery, Live, NewJob,
    NotificationPage, Outcome,
};
use crate::error::HubError;
use crate::liveness::Deadlines;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::session::{EventKind, Published};
use bytes::Bytes;
use jobwire_proto::{EventInput, Job, Timestamp};
use redb::{Database, ReadableTable, Table, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{db_err, Store};
use tokio::sync::{mpsc, oneshot};

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

/// API key id -> key record JSON ([`ApiKey`]). Written outside the writer thread
/// (key writes are rare; redb serializes them with the group commits).
const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// (owner key, notification seq) -> notification frame JSON (see `crate::channel`).
const NOTIFY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("notifications");
/// Owner key -> its last notification seq.
const NOTIFY_HEAD: TableDefinition<&str, u64> = TableDefinition::new("notification_heads");

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
    /// Sent every [`PROBE_INTERVAL`] while unhealthy, so readiness comes back
    /// without traffic.
    Probe,
    Shutdown {
        reply: oneshot::Sender<()>,
    },
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
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Embedded>, HubError> {
        std::fs::create_dir_all(&data_dir).map_err(db_err)?;
        let path = data_dir.join(store::FILE);
        let db = store::open_checked(&path, true)?;
        {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(JOBS).map_err(db_err)?;
            txn.open_table(EVENTS).map_err(db_err)?;
            txn.open_table(IDEMPOTENCY).map_err(db_err)?;
            txn.open_table(CREATES).map_err(db_err)?;
            txn.open_table(EXPIRY).map_err(db_err)?;
            txn.open_table(API_KEYS).map_err(db_err)?;
            txn.open_table(NOTIFY).map_err(db_err)?;
            txn.open_table(NOTIFY_HEAD).map_err(db_err)?;
            txn.commit().map_err(db_err)?;
        }
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
        };
        std::thread::Builder::new()
            .name("jobwire-writer".into())
            .spawn(move || writer.run(rx))
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
            .map_err(|_| HubError::ShuttingDown)?;
        rx.await.map_err(|_| HubError::ShuttingDown)?
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

    /// Runs `f` in its own durable write transaction on the blocking pool. redb
    /// allows one write transaction at a time, so this waits for the writer's group.
    async fn write_keys<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Table<'_, &'static str, &'static [u8]>) -> Result<T, HubError>
            + Send
            + 'static,
    ) -> Result<T, HubError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(HubError::ShuttingDown);
        }
        let db = self.store.db()?;
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(db_err)?;
            let out = {
                let mut table = txn.open_table(API_KEYS).map_err(db_err)?;
                f(&mut table)?
            };
            txn.commit().map_err(db_err)?;
            Ok(out)
        })
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
        if let Some(page) = self.tail.history(job_id, after, limit) {
            return Box::pin(std::future::ready(Ok(page)));
        }
        let id = job_id.to_owned();
        Box::pin(self.read(move |db| read_history(db, &id, after, limit)))
    }

    fn snapshot<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<Job, HubError>> {
        if let Some(job) = self.tail.snapshot(job_id) {
            return Box::pin(std::future::ready(Ok(job)));
        }
        let id = job_id.to_owned();
        Box::pin(self.read(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let jobs = txn.open_table(JOBS).map_err(db_err)?;
            read_job(&jobs, &id)?.ok_or(HubError::NotFound)
        }))
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<ListPage, HubError>> {
        Box::pin(self.read(move |db| read_list(db, &query)))
    }

    fn put_key(&self, key: ApiKey) -> BoxFuture<'_, Result<(), HubError>> {
        Box::pin(self.write_keys(move |t| {
            let bytes = serde_json::to_vec(&key).map_err(storage)?;
            t.insert(key.id.as_str(), bytes.as_slice())
                .map_err(db_err)?;
            Ok(())
        }))
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
        Box::pin(self.write_keys(move |t| {
            let Some(mut key) = read_key(t, &id)?.filter(|k| k.tenant == tenant) else {
                return Ok(false);
            };
            key.revoked = true;
            let bytes = serde_json::to_vec(&key).map_err(storage)?;
            t.insert(id.as_str(), bytes.as_slice()).map_err(db_err)?;
            Ok(true)
        }))
    }

    fn notifications<'a>(
        &'a self,
        owner: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<NotificationPage, HubError>> {
        let owner = owner.to_owned();
        Box::pin(self.read(move |db| read_notifications(db, &owner, after, limit)))
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

/// Rebuilds the liveness deadlines of every running job with liveness settings from
/// its stored snapshot (see [`Deadlines::restore`]).
fn restore_deadlines(store: &Store, deadlines: &Deadlines) -> Result<(), HubError> {
    let db = store.db()?;
    let txn = db.begin_read().map_err(db_err)?;
    let jobs = txn.open_table(JOBS).map_err(db_err)?;
    for item in jobs.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        // Cheap filter first: most jobs have no liveness settings.
        let bytes = v.value();
        if may_have_timers(bytes) {
            if let Ok(job) = serde_json::from_slice::<Job>(bytes) {
                if !job.status.is_terminal() {
                    deadlines.restore(k.value(), &job);
                }
            }
        }
    }
    if !deadlines.is_empty() {
        tracing::info!(count = deadlines.len(), "liveness deadlines restored");
    }
    Ok(())
}

/// Whether a stored snapshot may carry liveness settings.
fn may_have_timers(bytes: &[u8]) -> bool {
    [
        &b"\"heartbeat_timeout\""[..],
        b"\"cancel_timeout\"",
        b"\"stall_fail_after\"",
    ]
    .iter()
    .any(|needle| bytes.windows(needle.len()).any(|w| w == *needle))
}

fn read_job(
    jobs: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<Job>, HubError> {
    match jobs.get(id).map_err(db_err)? {
        Some(raw) => serde_json::from_slice(raw.value())
            .map(Some)
            .map_err(storage),
        None => Ok(None),
    }
}

fn read_key(
    keys: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<ApiKey>, HubError> {
    match keys.get(id).map_err(db_err)? {
        Some(raw) => serde_json::from_slice(raw.value())
            .map(Some)
            .map_err(storage),
        None => Ok(None),
    }
}

fn read_history(
    db: &Database,
    id: &str,
    after: u64,
    limit: usize,
) -> Result<HistoryPage, HubError> {
    let txn = db.begin_read().map_err(db_err)?;
    let jobs = txn.open_table(JOBS).map_err(db_err)?;
    let job = read_job(&jobs, id)?.ok_or(HubError::NotFound)?;
    let (truncated, start) = history_window(&job, after);
    let mut events = Vec::new();
    let mut last_seq = after;
    if start <= job.seq && limit > 0 {
        let table = txn.open_table(EVENTS).map_err(db_err)?;
        for item in table
            .range((id, start)..=(id, job.seq))
            .map_err(db_err)?
            .take(limit)
        {
            let (k, v) = item.map_err(db_err)?;
            last_seq = k.value().1;
            events.push((last_seq, Bytes::copy_from_slice(v.value())));
        }
    }
    Ok(HistoryPage {
        job,
        events,
        last_seq,
        truncated,
    })
}

fn read_notifications(
    db: &Database,
    owner: &str,
    after: u64,
    limit: usize,
) -> Result<NotificationPage, HubError> {
    let txn = db.begin_read().map_err(db_err)?;
    let heads = txn.open_table(NOTIFY_HEAD).map_err(db_err)?;
    let head = heads.get(owner).map_err(db_err)?.map_or(0, |v| v.value());
    let table = txn.open_table(NOTIFY).map_err(db_err)?;
    let start = match table
        .range((owner, 0)..=(owner, u64::MAX))
        .map_err(db_err)?
        .next()
    {
        Some(item) => item.map_err(db_err)?.0.value().1,
        None => head + 1,
    };
    let mut frames = Vec::new();
    let from = after.saturating_add(1);
    if from <= head && limit > 0 {
        for item in table
            .range((owner, from)..=(owner, head))
            .map_err(db_err)?
            .take(limit)
        {
            let (k, v) = item.map_err(db_err)?;
            frames.push((k.value().1, Bytes::copy_from_slice(v.value())));
        }
    }
    Ok(NotificationPage {
        frames,
        head,
        start,
    })
}

fn read_list(db: &Database, q: &ListQuery) -> Result<ListPage, HubError> {
    let txn = db.begin_read().map_err(db_err)?;
    let jobs = txn.open_table(JOBS).map_err(db_err)?;
    let mut out = Vec::new();
    // A tenant's keys are `<tenant>/<id>`: one contiguous range.
    let prefix = q
        .tenant
        .as_ref()
        .map(|t| format!("{t}/"))
        .unwrap_or_default();
    let start = match &q.after {
        Some(after) => std::ops::Bound::Excluded(format!("{prefix}{after}")),
        None => std::ops::Bound::Included(prefix.clone()),
    };
    let range = jobs
        .range::<&str>((
            start.as_ref().map(String::as_str),
            std::ops::Bound::Unbounded,
        ))
        .map_err(db_err)?;
    let mut next = None;
    for item in range {
        let (k, v) = item.map_err(db_err)?;
        let key = k.value();
        if !key.starts_with(prefix.as_str()) {
            break;
        }
        if q.tenant.is_none() && key.contains('/') {
            continue;
        }
        let job: Job = serde_json::from_slice(v.value()).map_err(storage)?;
        if q.status.is_some_and(|s| s != job.status) {
            continue;
        }
        if q.project.is_some() && q.project != job.project {
            continue;
        }
        if out.len() == q.limit {
            next = out.last().map(|j: &Job| j.id.clone());
            break;
        }
        out.push(job);
    }
    Ok(ListPage { jobs: out, next })
}

/// The tables of one write transaction.
struct Tables<'t> {
    jobs: Table<'t, &'static str, &'static [u8]>,
    events: Table<'t, (&'static str, u64), &'static [u8]>,
    idem: Table<'t, (&'static str, &'static str), u64>,
    creates: Table<'t, &'static str, &'static [u8]>,
    expiry: Table<'t, (u64, &'static str), ()>,
    notify: Table<'t, (&'static str, u64), &'static [u8]>,
    notify_head: Table<'t, &'static str, u64>,
}

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
    Shutdown(oneshot::Sender<()>),
}

impl Ack {
    fn fail(self, e: &HubError) {
        let err = || e.duplicate();
        match self {
            Ack::Create(r, _) => drop(r.send(Err(err()))),
            Ack::Publish(r, _) => drop(r.send(Err(err()))),
            Ack::Shutdown(r) => drop(r.send(())),
        }
    }
    fn succeed(self) {
        match self {
            Ack::Create(r, v) => drop(r.send(v.map(|c| *c))),
            Ack::Publish(r, v) => drop(r.send(v)),
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
            Request::Sweep | Request::Probe => continue,
            Request::Shutdown { reply } => {
                stop = true;
                Ack::Shutdown(reply)
            }
        };
        ack.fail(e);
    }
    stop
}

/// Writes, fsyncs and deletes [`PROBE_BYTES`] in `dir`: Ok when the disk has room.
fn probe_space(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".jobwire-space-probe");
    let result = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    result.and(removed)
}

/// The writer thread's state. Owns every write to the database.
struct Writer {
    /// The database; the writer alone reopens it.
    store: Arc<Store>,
    /// Where the space probe writes.
    data_dir: PathBuf,
    /// The old database of a reopen still held by a read, dropped at the next try.
    draining: Option<Arc<Database>>,
    /// The error of the last failed commit, until a space probe passes; writes are
    /// refused with it meanwhile.
    broken: Option<HubError>,
    last_probe: Option<Instant>,
    /// Updated after each commit, before the fan-out.
    tail: Arc<TailCache>,
    /// Snapshots of non-terminal jobs, as committed (terminal jobs take no writes).
    cache: HashMap<String, Arc<Job>>,
    retention: Retention,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    /// False after a failed commit, until a space probe or a commit succeeds
    /// (drives /readyz).
    healthy: Arc<AtomicBool>,
}

/// Per-group scratch state: snapshots changed in this group, events to fan out and
/// replies to send once the commit is durable.
#[derive(Default)]
struct Group {
    dirty: HashMap<String, Dirty>,
    fanout: Vec<Published>,
    acks: Vec<Ack>,
    stop: bool,
}

/// A job changed in the current group, and the size of its stored snapshot.
struct Dirty {
    job: Job,
    size: usize,
}

impl Dirty {
    fn new(job: Job) -> Dirty {
        Dirty { job, size: 0 }
    }
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(64);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if self.commit_group(&mut batch) {
                break;
            }
        }
        tracing::debug!("writer thread stopped");
    }

    /// Applies and commits one group. Returns true when asked to stop.
    fn commit_group(&mut self, batch: &mut Vec<Request>) -> bool {
        if !self.probe() {
            let e = self.broken.as_ref().map_or_else(
                || HubError::Storage("store unavailable".into()),
                HubError::duplicate,
            );
            return refuse_all(batch, &e);
        }
        let mut group = Group::default();
        let result = self.apply_group(batch, &mut group);
        let stop = group.stop;
        match result {
            Ok(()) => {
                let mut snapshots = Vec::with_capacity(group.dirty.len());
                for (id, d) in group.dirty.drain() {
                    let job = Arc::new(d.job);
                    let key = Arc::from(id.as_str());
                    if job.status.is_terminal() {
                        self.cache.remove(&id);
                    } else {
                        self.cache.insert(id, job.clone());
                    }
                    snapshots.push(Snapshot {
                        key,
                        job,
                        size: d.size,
                    });
                }
                // Before the fan-out, like the commit (see `tail`).
                self.tail.commit(
                    snapshots,
                    group.fanout.iter().map(|p| (&p.job_id, p.seq, &p.bytes)),
                );
                self.metrics.events_published.add(group.fanout.len() as u64);
                self.metrics
                    .replay_cache_bytes
                    .set(self.tail.bytes() as i64);
                for ev in &group.fanout {
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

    /// After a failed commit: redb refuses everything after an I/O error, so close
    /// and reopen the database now (reads go on), and forget the writer cache: the
    /// store is the truth again (the commit may even have reached the disk). The
    /// replay tail only ever held committed events and stays; a gap at the next
    /// commit resets a job's tail (see `tail`).
    fn broke(&mut self, e: HubError) {
        self.cache.clear();
        if let Err(re) = self.store.reopen(&mut self.draining) {
            tracing::error!(error = %re, "reopening the store failed; retrying");
        }
        self.broken = Some(e);
        self.last_probe = Some(Instant::now());
    }

    /// Whether writes may be tried: true unless a commit failed and the disk has not
    /// shown room since. Checks at most every [`PROBE_INTERVAL`]: reopens the
    /// store if that failed before, then writes, fsyncs and deletes
    /// [`PROBE_BYTES`] next to it.
    fn probe(&mut self) -> bool {
        if self.broken.is_none() {
            return true;
        }
        if self
            .last_probe
            .is_some_and(|t| t.elapsed() < PROBE_INTERVAL)
        {
            return false;
        }
        self.last_probe = Some(Instant::now());
        if self.store.db().is_err() {
            if let Err(e) = self.store.reopen(&mut self.draining) {
                tracing::warn!(error = %e, "reopening the store failed; retrying");
                return false;
            }
        }
        match probe_space(&self.data_dir) {
            Ok(()) => {
                tracing::info!(file = %self.store.path.display(), "the store takes writes again");
                self.broken = None;
                self.healthy.store(true, Ordering::Release);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "the disk has no room yet");
                false
            }
        }
    }

    fn apply_group(&mut self, batch: &mut Vec<Request>, group: &mut Group) -> Result<(), HubError> {
        let txn = self.store.db()?.begin_write().map_err(db_err)?;
        {
            let mut t = Tables {
                jobs: txn.open_table(JOBS).map_err(db_err)?,
                events: txn.open_table(EVENTS).map_err(db_err)?,
                idem: txn.open_table(IDEMPOTENCY).map_err(db_err)?,
                creates: txn.open_table(CREATES).map_err(db_err)?,
                expiry: txn.open_table(EXPIRY).map_err(db_err)?,
                notify: txn.open_table(NOTIFY).map_err(db_err)?,
                notify_head: txn.open_table(NOTIFY_HEAD).map_err(db_err)?,
            };
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
                    Request::Sweep => self.sweep(&mut t, now).map_err(db_err)?,
                    Request::Probe => {}
                    Request::Shutdown { reply } => {
                        group.acks.push(Ack::Shutdown(reply));
                        group.stop = true;
                    }
                }
            }
            for (id, d) in group.dirty.iter_mut() {
                let bytes = serde_json::to_vec(&d.job).map_err(storage)?;
                d.size = bytes.len();
                t.jobs
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    /// The job as this group sees it: changed in this group, cached, or stored.
    fn load(&self, t: &Tables<'_>, group: &Group, id: &str) -> Result<Option<Job>, Fail> {
        if let Some(d) = group.dirty.get(id) {
            return Ok(Some(d.job.clone()));
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
        let (job, created) = apply::create_job(&new, now).map_err(Fail::Abort)?;
        t.events
            .insert((new.key.as_str(), 1), created.bytes.as_ref())?;
        t.creates.insert(new.key.as_str(), fingerprint.as_slice())?;
        group.fanout.push(created);
        group.dirty.insert(new.key, Dirty::new(job.clone()));
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
            t.events.insert((job_id, seq), e.published.bytes.as_ref())?;
            if let Some(eid) = &e.event_id {
                t.idem.insert((job_id, eid.as_str()), seq)?;
            }
        }
        if let Some((from, to)) = apply::trim_history(&mut job, self.retention.max_events_per_job) {
            t.events
                .retain_in((job_id, from)..(job_id, to), |_, _| false)?;
        }
        let mut notification = None;
        if job.status.is_terminal() && !applied.events.is_empty() {
            let at = now.plus(self.retention.terminal_ttl).as_millis();
            t.expiry.insert((at, job_id), ())?;
            // The terminal event is the last one; its creator is notified in the
            // same transaction, so a notification exists iff the event does.
            if let Some(last) = applied.events.last() {
                let owner = apply::owner_route(&job);
                let head = t.notify_head.get(owner.as_str())?.map_or(0, |v| v.value());
                let seq = head + 1;
                let frame = channel::notification_frame(seq, &last.published.bytes);
                t.notify.insert((owner.as_str(), seq), frame.as_ref())?;
                t.notify_head.insert(owner.as_str(), seq)?;
                if seq > channel::NOTIFICATIONS_KEPT {
                    t.notify
                        .remove((owner.as_str(), seq - channel::NOTIFICATIONS_KEPT))?;
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
        group.fanout.extend(notification);
        let live = Live::of(&job);
        group.dirty.insert(job_id.to_owned(), Dirty::new(job));
        Ok(Outcome {
            seqs: applied.seqs,
            live,
        })
    }

    /// Deletes terminal jobs whose expiry time has passed.
    fn sweep(&mut self, t: &mut Tables<'_>, now: Timestamp) -> Result<(), redb::StorageError> {
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
        Ok(())
    }
}
