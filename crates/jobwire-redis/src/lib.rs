//! The Redis engine: many jobwire instances sharing one Redis act as one hub.
//!
//! State lives in Redis (per job: a hash with the snapshot and seq, a capped stream
//! of events keyed by seq, a hash of idempotency keys; plus an index and an expiry
//! set). Writes are compare-and-set Lua scripts: the state machine runs in Rust
//! (`jobwire_core::engine::apply`, shared with the embedded engine) against the
//! snapshot at seq S, and the script appends, updates the snapshot and publishes
//! only if the job is still at S, so two instances never produce duplicate, missing
//! or out-of-order seqs. "Acknowledged" means the script ran on the Redis primary;
//! how durable that is depends on Redis persistence (docs/operations.md).
//!
//! Fan-out: one pub/sub connection per instance ([`subscriber`]), one channel per job
//! with local watchers, reference-counted; missed messages (reconnects, gaps) are
//! read back from the stream by seq. Project channels (`jobwire_core::channel`) get
//! one extra channel per project, published by the same scripts; a user's
//! notifications are a stream + channel of their own, written by the publish script
//! in the same step as the terminal event.
//!
//! # Layout
//! - [`keys`]: key and channel names.
//! - [`subscriber`]: the pub/sub task, gap filling and resync after reconnects.
//! - [`feed`]: its connection: classic (`SUBSCRIBE`) or sharded (`SSUBSCRIBE`, RESP3).
//! - [`tls`]: `rediss://` settings (CA file, client certificate).
//! - `scripts/*.lua`: create, publish (CAS), history read, retention sweep.

mod feed;
pub mod ingest;
mod keys;
mod liveness;
mod subscriber;
mod tail;
mod tls;

pub use tls::RedisTls;

use bytes::Bytes;
use jobwire_core::apikey::ApiKey;
use jobwire_core::channel;
use jobwire_core::engine::apply::{self, ApplyError};
use jobwire_core::engine::embedded::Retention;
use jobwire_core::engine::{
    BoxFuture, Created, Engine, HistoryPage, ListPage, ListQuery, Live, NewJob, NotificationPage,
    Outcome,
};
use jobwire_core::metrics::Metrics;
use jobwire_core::registry::Registry;
use jobwire_core::session::EventKind;
use jobwire_core::HubError;
use jobwire_proto::{EventInput, Job, Timestamp};
use keys::Keys;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Compare-and-set attempts before a publish gives up (only under heavy contention
/// on one job from many instances).
const MAX_CAS_ATTEMPTS: usize = 64;
/// Events read per stream range request.
pub(crate) const RANGE_PAGE: usize = 500;

/// Redis engine settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host:port/db`, or `rediss://…` for TLS.
    pub url: String,
    /// CA and client certificate files for `rediss://` (see [`RedisTls`]).
    pub tls: RedisTls,
    /// Prefix of every key and channel.
    pub prefix: String,
    pub retention: Retention,
    /// Connect and per-command timeout; past it a publish fails with 503.
    pub command_timeout: Duration,
    /// Sharded pub/sub (Redis 7+): the scripts `SPUBLISH` and the subscriber
    /// `SSUBSCRIBE`s, each job's channel in its job's hash slot.
    pub sharded_pubsub: bool,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            tls: RedisTls::default(),
            prefix: "jobwire:".into(),
            retention: Retention::default(),
            command_timeout: Duration::from_secs(2),
            sharded_pubsub: false,
        }
    }
}

/// Why [`RedisEngine::connect`] failed. The redis-rs errors are shown in the message
/// rather than as `source()`, because redis-rs repeats its inner error as its own source
/// (error chains would print it twice).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(redis::RedisError),
    #[error("a CA file or client certificate was given but the Redis URL is not rediss:// (TLS)")]
    TlsNeedsRediss,
    #[error("a client certificate needs its key and a key needs its certificate")]
    IncompleteClientCert,
    #[error("cannot read the Redis {what} {}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid Redis TLS files (expected PEM): {0}")]
    TlsConfig(redis::RedisError),
    #[error(
        "TLS handshake with Redis failed: {0} (is the server certificate signed by the CA \
         given with --redis-ca-file, or by one in the system store, and does it name the \
         host in the URL?)"
    )]
    TlsHandshake(redis::RedisError),
    #[error("cannot connect to Redis: {0}")]
    Connect(redis::RedisError),
    #[error("the Redis pub/sub connection did not open within the timeout")]
    PubSub,
    #[error(
        "--redis-sharded-pubsub needs Redis 7 or later (SSUBSCRIBE is unknown to this server)"
    )]
    ShardedPubSubUnsupported,
}

struct Scripts {
    create: Script,
    publish: Script,
    sweep: Script,
}

/// The Redis engine.
pub struct RedisEngine {
    conn: ConnectionManager,
    /// What the scripts publish with: `PUBLISH`, or `SPUBLISH` for sharded pub/sub.
    publish_cmd: &'static str,
    keys: Keys,
    retention: Retention,
    scripts: Scripts,
    watcher: subscriber::Handle,
    metrics: Arc<Metrics>,
    /// False after a failed command, until one succeeds (drives /readyz).
    commands_ok: AtomicBool,
    closing: AtomicBool,
    /// Bounds the history and notification range reads in flight (see
    /// [`MAX_CONCURRENT_READS`]).
    reads: tokio::sync::Semaphore,
    /// The newest events of watched jobs, fed by the subscriber (see `tail`).
    tails: Arc<tail::Tails>,
}

/// Range reads (history pages, notification pages) sent to Redis at once by one
/// instance. All commands share one multiplexed connection with a response timeout:
/// a reconnect storm of 10,000 clients otherwise queued 10,000 range reads at once,
/// the last ones timed out (`storage_unavailable`, close 1011) and the engine
/// reported itself unhealthy. Waiting for a permit is not part of the timeout.
pub const MAX_CONCURRENT_READS: usize = 8;

/// `OOM command not allowed when used memory > 'maxmemory'`, also from inside a script.
fn is_oom(e: &redis::RedisError) -> bool {
    e.code() == Some("OOM") || e.to_string().contains("OOM command not allowed")
}

fn storage(e: impl std::fmt::Display) -> HubError {
    HubError::Storage(e.to_string())
}

/// Kind marker used in streams and channel payloads.
pub(crate) fn kind_char(k: EventKind) -> &'static str {
    match k {
        EventKind::Progress => "p",
        EventKind::Terminal => "t",
        EventKind::Other => "o",
    }
}

pub(crate) fn kind_from(b: &[u8]) -> EventKind {
    match b {
        b"p" => EventKind::Progress,
        b"t" => EventKind::Terminal,
        _ => EventKind::Other,
    }
}

/// Parses XRANGE output: `[[id, [k, kind, e, json]], …]` into `(seq, kind, json)`.
pub(crate) fn parse_entries(v: Value) -> Vec<(u64, EventKind, Bytes)> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop();
        let id = parts.pop();
        let seq = match id {
            Some(Value::BulkString(b)) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.split('-').next())
                .and_then(|s| s.parse::<u64>().ok()),
            _ => None,
        };
        let Some(seq) = seq else { continue };
        let Some(Value::Array(mut fields)) = fields else {
            continue;
        };
        let mut kind = EventKind::Other;
        let mut json = None;
        for pair in fields.chunks_mut(2) {
            if let [Value::BulkString(k), Value::BulkString(v)] = pair {
                match k.as_slice() {
                    b"k" => kind = kind_from(v),
                    b"e" => json = Some(Bytes::from(std::mem::take(v))),
                    _ => {}
                }
            }
        }
        if let Some(json) = json {
            out.push((seq, kind, json));
        }
    }
    out
}

impl RedisEngine {
    /// Connects (failing fast if Redis is unreachable now), starts the pub/sub task
    /// and, inside a tokio runtime, the retention sweeper.
    pub async fn connect(
        config: RedisConfig,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<RedisEngine>, ConnectError> {
        let client = tls::client(&config.url, &config.tls, redis::ProtocolVersion::RESP2)?;
        let is_tls = matches!(
            client.get_connection_info().addr(),
            redis::ConnectionAddr::TcpTls { .. }
        );
        let cm = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1);
        let conn = client
            .get_connection_manager_with_config(cm)
            .await
            .map_err(|e| {
                if is_tls && tls::is_tls_failure(&e) {
                    ConnectError::TlsHandshake(e)
                } else {
                    ConnectError::Connect(e)
                }
            })?;
        if config.sharded_pubsub {
            // `COMMAND INFO` answers nil for a command the server does not know.
            let mut probe = conn.clone();
            let info: Vec<Value> = redis::cmd("COMMAND")
                .arg("INFO")
                .arg("SSUBSCRIBE")
                .query_async(&mut probe)
                .await
                .map_err(ConnectError::Connect)?;
            if matches!(info.first(), None | Some(Value::Nil)) {
                return Err(ConnectError::ShardedPubSubUnsupported);
            }
        }
        let keys = Keys::new(&config.prefix);
        // Sharded pub/sub needs RESP3 push messages on the subscriber's connection.
        let pubsub_client = if config.sharded_pubsub {
            tls::client(&config.url, &config.tls, redis::ProtocolVersion::RESP3)?
        } else {
            client
        };
        let per_job =
            usize::try_from(config.retention.max_events_per_job.clamp(1, 10_000)).unwrap_or(10_000);
        let tails = Arc::new(tail::Tails::new(
            config.retention.replay_cache_bytes,
            per_job,
        ));
        let watcher = subscriber::spawn(
            pubsub_client,
            config.sharded_pubsub,
            conn.clone(),
            keys.clone(),
            registry,
            config.command_timeout,
            tails.clone(),
        );
        if !watcher.wait_connected(config.command_timeout).await {
            watcher.stop();
            return Err(ConnectError::PubSub);
        }
        let engine = Arc::new(RedisEngine {
            conn,
            publish_cmd: if config.sharded_pubsub {
                "SPUBLISH"
            } else {
                "PUBLISH"
            },
            keys,
            retention: config.retention,
            tails,
            scripts: Scripts {
                create: Script::new(include_str!("scripts/create.lua")),
                publish: Script::new(include_str!("scripts/publish.lua")),
                sweep: Script::new(include_str!("scripts/sweep.lua")),
            },
            watcher,
            metrics,
            commands_ok: AtomicBool::new(true),
            closing: AtomicBool::new(false),
            reads: tokio::sync::Semaphore::new(MAX_CONCURRENT_READS),
        });
        let weak = Arc::downgrade(&engine);
        let every = config.retention.sweep_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(engine) = weak.upgrade() else { break };
                if engine.closing.load(Ordering::Acquire) {
                    break;
                }
                if let Err(e) = engine.sweep().await {
                    tracing::warn!(error = %e, "retention sweep failed");
                }
            }
        });
        Ok(engine)
    }

    /// Records whether a Redis command worked (readiness) and maps its error.
    fn track<T>(&self, r: redis::RedisResult<T>) -> Result<T, HubError> {
        match r {
            Ok(v) => {
                self.commands_ok.store(true, Ordering::Release);
                Ok(v)
            }
            // Redis at `maxmemory` refusing a write: the store is full. Readiness stays
            // (reads work, and every instance shares this Redis: draining one helps none).
            Err(e) if is_oom(&e) => {
                tracing::warn!(error = %e, "redis is out of memory (maxmemory)");
                Err(HubError::StorageFull(e.to_string()))
            }
            Err(e) => {
                self.commands_ok.store(false, Ordering::Release);
                tracing::warn!(error = %e, "redis command failed");
                Err(storage(e))
            }
        }
    }

    fn writable(&self) -> Result<(), HubError> {
        if self.closing.load(Ordering::Acquire) {
            Err(HubError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Deletes finished jobs past their TTL (any instance may run it).
    pub async fn sweep(&self) -> Result<u64, HubError> {
        let mut conn = self.conn.clone();
        let r = self
            .scripts
            .sweep
            .key(self.keys.expiry())
            .key(self.keys.index())
            .arg(Timestamp::now().as_millis())
            .arg(self.keys.prefix())
            .invoke_async(&mut conn)
            .await;
        self.track(r)
    }

    async fn create_job(&self, new: NewJob) -> Result<Created, HubError> {
        self.writable()?;
        let fingerprint = apply::create_fingerprint(&new);
        let (job, created) = apply::create_job(&new, Timestamp::now())?;
        let snap = serde_json::to_vec(&job).map_err(storage)?;
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<Value> = self
            .scripts
            .create
            .key(self.keys.job(&new.key))
            .key(self.keys.events(&new.key))
            .key(self.keys.index())
            .arg(snap)
            .arg(fingerprint.as_slice())
            .arg(created.bytes.as_ref())
            .arg(self.keys.channel(&new.key))
            .arg(&new.key)
            .arg(
                created
                    .project
                    .as_deref()
                    .map_or_else(String::new, |p| self.keys.project_channel(p)),
            )
            .arg(self.publish_cmd)
            .arg(
                self.keys
                    .project_channel(&channel::all_projects_key_of_job(&new.key)),
            )
            .invoke_async(&mut conn)
            .await;
        let Value::Array(parts) = self.track(r)? else {
            return Err(storage("unexpected reply from the create script"));
        };
        match parts.as_slice() {
            [Value::Int(1)] => {
                self.metrics.events_published.inc();
                Ok(Created { job, created: true })
            }
            [Value::Int(0), Value::BulkString(existing), stored] => {
                let same = matches!(stored, Value::BulkString(f) if *f == fingerprint);
                if !same {
                    return Err(HubError::JobExists);
                }
                let job = serde_json::from_slice(existing).map_err(storage)?;
                Ok(Created {
                    job,
                    created: false,
                })
            }
            _ => Err(storage("unexpected reply from the create script")),
        }
    }

    async fn publish_events(
        &self,
        job_id: &str,
        inputs: Vec<EventInput>,
    ) -> Result<Outcome, HubError> {
        self.writable()?;
        let job_key = self.keys.job(job_id);
        let idem_key = self.keys.idem(job_id);
        let eids: Vec<String> = inputs.iter().filter_map(|i| i.event_id.clone()).collect();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let mut conn = self.conn.clone();
            let (snap, stored): (Option<Vec<u8>>, Vec<Option<u64>>) = if eids.is_empty() {
                let r = redis::cmd("HGET")
                    .arg(&job_key)
                    .arg("snap")
                    .query_async(&mut conn)
                    .await;
                (self.track(r)?, Vec::new())
            } else {
                let r = redis::pipe()
                    .cmd("HGET")
                    .arg(&job_key)
                    .arg("snap")
                    .cmd("HMGET")
                    .arg(&idem_key)
                    .arg(&eids)
                    .query_async(&mut conn)
                    .await;
                self.track(r)?
            };
            let snap = snap.ok_or(HubError::NotFound)?;
            let mut job: Job = serde_json::from_slice(&snap).map_err(storage)?;
            let expected = job.seq;
            let known: HashMap<&str, u64> = eids
                .iter()
                .zip(stored)
                .filter_map(|(e, s)| s.map(|s| (e.as_str(), s)))
                .collect();
            let now = Timestamp::now();
            let applied = apply::apply_inputs(&mut job, job_id, inputs.clone(), now, |eid| {
                Ok::<_, Infallible>(known.get(eid).copied())
            })
            .map_err(|e| match e {
                ApplyError::Refuse(e) => e,
                ApplyError::Lookup(never) => match never {},
            })?;
            if applied.events.is_empty() {
                return Ok(Outcome {
                    seqs: applied.seqs,
                    live: Live::of(&job),
                });
            }
            apply::trim_history(&mut job, self.retention.max_events_per_job);
            let expire_at = if job.status.is_terminal() {
                now.plus(self.retention.terminal_ttl)
                    .as_millis()
                    .to_string()
            } else {
                String::new()
            };
            let snap = serde_json::to_vec(&job).map_err(storage)?;
            let owner = apply::owner_route(&job);
            let project_channel = apply::project_route(&job)
                .map_or_else(String::new, |p| self.keys.project_channel(&p));
            let mut inv = self.scripts.publish.prepare_invoke();
            inv.key(&job_key)
                .key(self.keys.events(job_id))
                .key(&idem_key)
                .key(self.keys.expiry())
                .key(self.keys.job(&owner))
                .key(self.keys.events(&owner))
                .arg(expected)
                .arg(job.seq)
                .arg(snap)
                .arg(self.keys.channel(job_id))
                .arg(self.retention.max_events_per_job.max(1))
                .arg(expire_at)
                .arg(job_id)
                .arg(applied.events.len())
                .arg(project_channel)
                .arg(self.keys.channel(&owner))
                .arg(channel::NOTIFICATIONS_KEPT)
                .arg(self.publish_cmd)
                .arg(
                    self.keys
                        .project_channel(&channel::all_projects_key_of_job(job_id)),
                );
            for e in &applied.events {
                inv.arg(e.published.seq)
                    .arg(kind_char(e.published.kind))
                    .arg(e.published.bytes.as_ref())
                    .arg(e.event_id.as_deref().unwrap_or(""));
            }
            let r: redis::RedisResult<i64> = inv.invoke_async(&mut conn).await;
            match self.track(r)? {
                1 => {
                    self.metrics
                        .events_published
                        .add(applied.events.len() as u64);
                    return Ok(Outcome {
                        seqs: applied.seqs,
                        live: Live::of(&job),
                    });
                }
                0 => continue, // another writer got there first: re-read and re-check
                _ => return Err(HubError::NotFound),
            }
        }
        Err(storage("too much write contention on this job; retry"))
    }

    async fn read_history(
        &self,
        job_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<HistoryPage, HubError> {
        if self.tails.has(job_id) {
            if let Some(page) = self.history_from_tail(job_id, after, limit).await? {
                return Ok(page);
            }
        }
        let _permit = self.reads.acquire().await.map_err(storage)?;
        let mut conn = self.conn.clone();
        // MULTI/EXEC: the snapshot and the range at one point in time. (A Lua script
        // did this before; Redis then converted every entry into a Lua table and back,
        // which made it the larger half of a replay's cost.)
        let mut pipe = redis::pipe();
        pipe.atomic().hget(self.keys.job(job_id), "snap");
        if limit > 0 {
            pipe.cmd("XRANGE")
                .arg(self.keys.events(job_id))
                .arg(format!("{}-0", after.saturating_add(1)))
                .arg("+")
                .arg("COUNT")
                .arg(limit);
        }
        let r: redis::RedisResult<Vec<Value>> = pipe.query_async(&mut conn).await;
        let mut parts = self.track(r)?.into_iter();
        let Some(Value::BulkString(snap)) = parts.next() else {
            return Err(HubError::NotFound);
        };
        let entries = parts.next().unwrap_or(Value::Nil);
        let job: Job = serde_json::from_slice(&snap).map_err(storage)?;
        let (truncated, _) = jobwire_core::engine::history_window(&job, after);
        let events: Vec<(u64, Bytes)> = parse_entries(entries)
            .into_iter()
            .filter(|(seq, _, _)| *seq <= job.seq)
            .map(|(seq, _, json)| (seq, json))
            .collect();
        let last_seq = events.last().map_or(after, |(s, _)| *s);
        Ok(HistoryPage {
            job,
            events,
            last_seq,
            truncated,
        })
    }

    /// A history page from the replay tail: the snapshot from Redis (the point in
    /// time of the read), the events from memory when the tail holds them all.
    async fn history_from_tail(
        &self,
        job_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Option<HistoryPage>, HubError> {
        let job = self.read_snapshot(job_id).await?;
        let (truncated, start) = jobwire_core::engine::history_window(&job, after);
        let Some(events) = self.tails.page(job_id, start, job.seq, limit) else {
            return Ok(None);
        };
        let last_seq = events.last().map_or(after, |(s, _)| *s);
        self.metrics
            .replay_cache_bytes
            .set(i64::try_from(self.tails.bytes()).unwrap_or(i64::MAX));
        Ok(Some(HistoryPage {
            job,
            events,
            last_seq,
            truncated,
        }))
    }

    async fn read_notifications(
        &self,
        owner: &str,
        after: u64,
        limit: usize,
    ) -> Result<NotificationPage, HubError> {
        let _permit = self.reads.acquire().await.map_err(storage)?;
        let mut conn = self.conn.clone();
        let stream = self.keys.events(owner);
        // MULTI/EXEC: the head and both ranges are read at one point in time.
        let r: redis::RedisResult<(Option<u64>, Value, Value)> = redis::pipe()
            .atomic()
            .cmd("HGET")
            .arg(self.keys.job(owner))
            .arg("seq")
            .cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .cmd("XRANGE")
            .arg(&stream)
            .arg(format!("{}-0", after.saturating_add(1).min(u64::MAX - 1)))
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut conn)
            .await;
        let (head, first, entries) = self.track(r)?;
        let head = head.unwrap_or(0);
        let start = parse_entries(first)
            .first()
            .map_or(head + 1, |(seq, _, _)| *seq);
        let frames = if limit == 0 || after >= head {
            Vec::new()
        } else {
            parse_entries(entries)
                .into_iter()
                .filter(|(seq, _, _)| *seq > after && *seq <= head)
                .map(|(seq, _, json)| (seq, json))
                .collect()
        };
        Ok(NotificationPage {
            frames,
            head,
            start,
        })
    }

    async fn read_snapshot(&self, job_id: &str) -> Result<Job, HubError> {
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("HGET")
            .arg(self.keys.job(job_id))
            .arg("snap")
            .query_async(&mut conn)
            .await;
        let snap = self.track(r)?.ok_or(HubError::NotFound)?;
        serde_json::from_slice(&snap).map_err(storage)
    }

    async fn read_list(&self, q: ListQuery) -> Result<ListPage, HubError> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        // A tenant's keys are `<tenant>/<id>`: one lexical range of the index.
        let prefix = q
            .tenant
            .as_ref()
            .map(|t| format!("{t}/"))
            .unwrap_or_default();
        let mut cursor = match &q.after {
            Some(a) => format!("({prefix}{a}"),
            None if prefix.is_empty() => "-".to_owned(),
            None => format!("[{prefix}"),
        };
        // The end of the tenant's range: `<tenant>0` is the first string after every
        // `<tenant>/…` (`0` follows `/`), so Redis stops at the tenant's last key.
        let end = match &q.tenant {
            Some(t) => format!("({t}0"),
            None => "+".to_owned(),
        };
        loop {
            let r: redis::RedisResult<Vec<String>> = redis::cmd("ZRANGEBYLEX")
                .arg(self.keys.index())
                .arg(&cursor)
                .arg(&end)
                .arg("LIMIT")
                .arg(0)
                .arg(RANGE_PAGE)
                .query_async(&mut conn)
                .await;
            let mut ids = self.track(r)?;
            let scanned = ids.len();
            let last_scanned = ids.last().cloned();
            // The index holds every tenant's keys; the range ends at this tenant's,
            // and without a tenant only keys without one are ours.
            ids.retain(|k| in_namespace(k, &prefix));
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HGET").arg(self.keys.job(id)).arg("snap");
            }
            let snaps: Vec<Option<Vec<u8>>> = if ids.is_empty() {
                Vec::new()
            } else {
                let r = pipe.query_async(&mut conn).await;
                self.track(r)?
            };
            for snap in snaps.into_iter().flatten() {
                let job: Job = serde_json::from_slice(&snap).map_err(storage)?;
                if q.status.is_some_and(|s| s != job.status) {
                    continue;
                }
                if q.project.is_some() && q.project != job.project {
                    continue;
                }
                if out.len() == q.limit {
                    let next = out.last().map(|j: &Job| j.id.clone());
                    return Ok(ListPage { jobs: out, next });
                }
                out.push(job);
            }
            match last_scanned {
                Some(last) if scanned == RANGE_PAGE => cursor = format!("({last}"),
                _ => {
                    return Ok(ListPage {
                        jobs: out,
                        next: None,
                    })
                }
            }
        }
    }
}

/// Whether index entry `key` belongs to the namespace whose keys start with `prefix`
/// (`<tenant>/`; empty: the default namespace, whose keys have no `/`).
fn in_namespace(key: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        !key.contains('/')
    } else {
        key.starts_with(prefix)
    }
}

/// API keys: a hash per key (`rec` = record JSON, `revoked` = `0`/`1`, so revoking
/// is one `HSET`) and a set of ids per tenant.
impl RedisEngine {
    async fn store_key(&self, key: ApiKey) -> Result<(), HubError> {
        self.writable()?;
        let rec = serde_json::to_vec(&key).map_err(storage)?;
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(self.keys.api_key(&key.id))
            .arg("rec")
            .arg(rec)
            .arg("revoked")
            .arg(if key.revoked { "1" } else { "0" })
            .ignore()
            .cmd("SADD")
            .arg(self.keys.tenant_keys(&key.tenant))
            .arg(&key.id)
            .ignore()
            .query_async(&mut conn)
            .await;
        self.track(r)
    }

    async fn load_key(&self, id: &str) -> Result<Option<ApiKey>, HubError> {
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<(Option<Vec<u8>>, Option<String>)> = redis::cmd("HMGET")
            .arg(self.keys.api_key(id))
            .arg("rec")
            .arg("revoked")
            .query_async(&mut conn)
            .await;
        let (rec, revoked) = self.track(r)?;
        let Some(rec) = rec else { return Ok(None) };
        let mut key: ApiKey = serde_json::from_slice(&rec).map_err(storage)?;
        key.revoked = revoked.as_deref() == Some("1");
        Ok(Some(key))
    }

    async fn tenant_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, HubError> {
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<Vec<String>> = redis::cmd("SMEMBERS")
            .arg(self.keys.tenant_keys(tenant))
            .query_async(&mut conn)
            .await;
        let mut ids = self.track(r)?;
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(k) = self.load_key(&id).await?.filter(|k| k.tenant == tenant) {
                out.push(k);
            }
        }
        Ok(out)
    }

    async fn revoke(&self, tenant: &str, id: &str) -> Result<bool, HubError> {
        self.writable()?;
        let mut conn = self.conn.clone();
        // A key never changes tenant, so membership then HSET needs no transaction.
        let r: redis::RedisResult<bool> = redis::cmd("SISMEMBER")
            .arg(self.keys.tenant_keys(tenant))
            .arg(id)
            .query_async(&mut conn)
            .await;
        if !self.track(r)? {
            return Ok(false);
        }
        let r: redis::RedisResult<()> = redis::cmd("HSET")
            .arg(self.keys.api_key(id))
            .arg("revoked")
            .arg("1")
            .query_async(&mut conn)
            .await;
        self.track(r)?;
        Ok(true)
    }
}

impl Engine for RedisEngine {
    fn create(&self, job: NewJob) -> BoxFuture<'_, Result<Created, HubError>> {
        Box::pin(self.create_job(job))
    }

    fn publish<'a>(
        &'a self,
        job_id: &'a str,
        events: Vec<EventInput>,
    ) -> BoxFuture<'a, Result<Outcome, HubError>> {
        Box::pin(self.publish_events(job_id, events))
    }

    fn set_deadline<'a>(
        &'a self,
        member: &'a str,
        at: Option<Timestamp>,
    ) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(self.put_deadline(member, at))
    }

    fn due_deadlines(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>, HubError>> {
        Box::pin(self.read_due(now, limit))
    }

    fn history<'a>(
        &'a self,
        job_id: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, HubError>> {
        Box::pin(self.read_history(job_id, after, limit))
    }

    fn snapshot<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<Job, HubError>> {
        Box::pin(self.read_snapshot(job_id))
    }

    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<ListPage, HubError>> {
        Box::pin(self.read_list(query))
    }

    fn notifications<'a>(
        &'a self,
        owner: &'a str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<NotificationPage, HubError>> {
        Box::pin(self.read_notifications(owner, after, limit))
    }

    fn watch<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(self.watcher.watch(job_id))
    }

    fn unwatch(&self, job_id: &str) {
        self.watcher.unwatch(job_id)
    }

    fn put_key(&self, key: ApiKey) -> BoxFuture<'_, Result<(), HubError>> {
        Box::pin(self.store_key(key))
    }

    fn key_by_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<ApiKey>, HubError>> {
        Box::pin(self.load_key(id))
    }

    fn list_keys<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<Vec<ApiKey>, HubError>> {
        Box::pin(self.tenant_keys(tenant))
    }

    fn revoke_key<'a>(
        &'a self,
        tenant: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, HubError>> {
        Box::pin(self.revoke(tenant, id))
    }

    fn is_ready(&self) -> bool {
        !self.closing.load(Ordering::Acquire)
            && self.commands_ok.load(Ordering::Acquire)
            && self.watcher.is_healthy()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.closing.store(true, Ordering::Release);
            self.watcher.stop();
        })
    }
}
