//! The instance's one pub/sub connection. It subscribes to a job's channel while the
//! instance has local watchers of that job (reference-counted), pushes each message
//! into the registry, and keeps delivery whole:
//! - a message whose seq skips ahead triggers a read of the missing seqs from the
//!   stream before it is delivered;
//! - after a reconnect, every watched job is read back from the stream from the last
//!   seq delivered, so events published while the connection was down still arrive.
//!
//! - project channels (`jobwire_core::channel`) are subscribed once per project with
//!   local watchers; after a reconnect their sessions are closed with `Resync` so
//!   clients resume with per-job positions.
//!
//! While disconnected, new watches fail (`storage_unavailable`) and existing sessions
//! stay open; they catch up when the connection returns.

use crate::feed;
use crate::keys::Keys;
use crate::tail::Tails;
use crate::{kind_from, parse_entries, RANGE_PAGE};
use bytes::Bytes;
use jobwire_core::channel;
use jobwire_core::registry::Registry;
use jobwire_core::session::{Closed, Published};
use jobwire_core::HubError;
use redis::aio::ConnectionManager;
use redis::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How often the idle pub/sub connection is pinged to detect a dead peer.
const PING_EVERY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

enum Cmd {
    Watch(String, oneshot::Sender<Result<(), HubError>>),
    Unwatch(String),
    Stop,
}

/// The engine's side of the subscriber task.
pub(crate) struct Handle {
    tx: mpsc::UnboundedSender<Cmd>,
    healthy: Arc<AtomicBool>,
}

impl Handle {
    pub(crate) async fn watch(&self, job: &str) -> Result<(), HubError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Watch(job.to_owned(), reply))
            .map_err(|_| HubError::ShuttingDown)?;
        rx.await.map_err(|_| HubError::ShuttingDown)?
    }

    pub(crate) fn unwatch(&self, job: &str) {
        let _ = self.tx.send(Cmd::Unwatch(job.to_owned()));
    }

    pub(crate) fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Waits (up to `limit`) for the first pub/sub connection, so a new instance
    /// reports ready only once it can deliver.
    pub(crate) async fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.is_healthy() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

struct Watched {
    /// Local watchers (sessions) of this job.
    refs: usize,
    /// Highest seq pushed into the registry.
    last: u64,
}

struct Subscriber {
    /// Speaks RESP3 when `sharded`.
    client: redis::Client,
    /// `SSUBSCRIBE` instead of `SUBSCRIBE` (the scripts `SPUBLISH`).
    sharded: bool,
    conn: ConnectionManager,
    keys: Keys,
    registry: Arc<Registry>,
    timeout: Duration,
    watched: HashMap<String, Watched>,
    /// Project channel keys with local watchers -> how many (one Redis subscription
    /// per project per instance, never per client).
    projects: HashMap<String, usize>,
    healthy: Arc<AtomicBool>,
    rx: mpsc::UnboundedReceiver<Cmd>,
    /// The replay tails this task feeds (see `tail`).
    tails: Arc<Tails>,
}

/// Why a connected session ended.
enum Exit {
    Stop,
    Lost(String),
}

pub(crate) fn spawn(
    client: redis::Client,
    sharded: bool,
    conn: ConnectionManager,
    keys: Keys,
    registry: Arc<Registry>,
    timeout: Duration,
    tails: Arc<Tails>,
) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let healthy = Arc::new(AtomicBool::new(false));
    let sub = Subscriber {
        client,
        sharded,
        conn,
        keys,
        registry,
        timeout,
        watched: HashMap::new(),
        projects: HashMap::new(),
        healthy: healthy.clone(),
        rx,
        tails,
    };
    tokio::spawn(sub.run());
    Handle { tx, healthy }
}

/// Subscribes within `timeout`; on failure, why the connection counts as lost.
async fn subscribe(
    sink: &mut feed::Sink,
    timeout: Duration,
    channels: &[String],
) -> Result<(), String> {
    match tokio::time::timeout(timeout, sink.subscribe(channels)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("subscribe timed out".into()),
    }
}

fn unavailable() -> HubError {
    HubError::Storage("redis pub/sub is reconnecting".into())
}

impl Subscriber {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.connected().await {
                Exit::Stop => return,
                Exit::Lost(why) => {
                    if self.healthy.swap(false, Ordering::AcqRel) {
                        tracing::warn!(%why, "redis pub/sub connection lost; reconnecting");
                        backoff = Duration::from_millis(50);
                    }
                }
            }
            // Disconnected: refuse new watches, keep counting releases, then retry.
            let pause = tokio::time::sleep(backoff);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    cmd = self.rx.recv() => match cmd {
                        None | Some(Cmd::Stop) => return,
                        Some(Cmd::Watch(_, reply)) => drop(reply.send(Err(unavailable()))),
                        Some(Cmd::Unwatch(job)) => {
                            self.release(&job);
                        }
                    },
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Drops one reference; true when the job has no local watcher left.
    fn release(&mut self, job: &str) -> bool {
        if channel::is_project_key(job) {
            return match self.projects.get_mut(job) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    self.projects.remove(job);
                    true
                }
                None => false,
            };
        }
        match self.watched.get_mut(job) {
            Some(w) if w.refs > 1 => {
                w.refs -= 1;
                false
            }
            Some(_) => {
                self.watched.remove(job);
                self.tails.drop_job(job);
                true
            }
            None => false,
        }
    }

    /// The job's current seq, read after its channel is subscribed; with tails on,
    /// read as the newest events of its stream, which seed its replay tail.
    async fn start_watch(&mut self, job: &str) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        if !self.tails.enabled() {
            let seq: Option<u64> = redis::cmd("HGET")
                .arg(self.keys.job(job))
                .arg("seq")
                .query_async(&mut conn)
                .await?;
            return Ok(seq.unwrap_or(0));
        }
        let v: Value = redis::cmd("XREVRANGE")
            .arg(self.keys.events(job))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(self.tails.per_job())
            .query_async(&mut conn)
            .await?;
        let mut events: Vec<(u64, Bytes)> = parse_entries(v)
            .into_iter()
            .map(|(s, _, b)| (s, b))
            .collect();
        events.reverse();
        let last = events.last().map_or(0, |(s, _)| *s);
        self.tails.seed(job, events, last);
        Ok(last)
    }

    async fn connected(&mut self) -> Exit {
        let opened = feed::open(&self.client, self.sharded, self.timeout);
        let (mut sink, mut stream) = match tokio::time::timeout(self.timeout, opened).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Exit::Lost(e.to_string()),
            Err(_) => return Exit::Lost("connect timed out".into()),
        };
        let mut channels: Vec<String> = self.watched.keys().map(|j| self.keys.channel(j)).collect();
        channels.extend(self.projects.keys().map(|p| self.keys.project_channel(p)));
        if !channels.is_empty() {
            if let Err(lost) = subscribe(&mut sink, self.timeout, &channels).await {
                return Exit::Lost(lost);
            }
        }
        // Whatever was published while we were away is in the streams.
        let jobs: Vec<String> = self.watched.keys().cloned().collect();
        for job in jobs {
            if let Err(e) = self.catch_up(&job, None).await {
                return Exit::Lost(e.to_string());
            }
        }
        // A project channel has no stream of its own to catch up from: its sessions
        // reconnect with their per-job positions (close 4002) and replay from history.
        for project in self.projects.keys() {
            self.registry.close_watchers(project, Closed::Resync);
        }
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(jobs = self.watched.len(), "redis pub/sub connected");
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    None | Some(Cmd::Stop) => return Exit::Stop,
                    Some(Cmd::Watch(project, reply)) if channel::is_project_key(&project) => {
                        if let Some(n) = self.projects.get_mut(&project) {
                            *n += 1;
                            let _ = reply.send(Ok(()));
                            continue;
                        }
                        let ch = self.keys.project_channel(&project);
                        if let Err(lost) = subscribe(&mut sink, self.timeout, std::slice::from_ref(&ch)).await {
                            let _ = reply.send(Err(unavailable()));
                            return Exit::Lost(lost);
                        }
                        self.projects.insert(project, 1);
                        let _ = reply.send(Ok(()));
                    }
                    Some(Cmd::Watch(job, reply)) => {
                        if let Some(w) = self.watched.get_mut(&job) {
                            w.refs += 1;
                            let _ = reply.send(Ok(()));
                            continue;
                        }
                        let ch = self.keys.channel(&job);
                        if let Err(lost) = subscribe(&mut sink, self.timeout, std::slice::from_ref(&ch)).await {
                            let _ = reply.send(Err(unavailable()));
                            return Exit::Lost(lost);
                        }
                        // Events after the current seq arrive on the channel; the
                        // session reads everything up to it from history.
                        let seq = self.start_watch(&job).await;
                        match seq {
                            Ok(seq) => {
                                self.watched.insert(job, Watched { refs: 1, last: seq });
                                let _ = reply.send(Ok(()));
                            }
                            Err(e) => {
                                let _ = sink.unsubscribe(&ch).await;
                                let _ = reply.send(Err(HubError::Storage(e.to_string())));
                            }
                        }
                    }
                    Some(Cmd::Unwatch(job)) => {
                        if self.release(&job) {
                            let ch = if channel::is_project_key(&job) {
                                self.keys.project_channel(&job)
                            } else {
                                self.keys.channel(&job)
                            };
                            if let Ok(Err(e)) = tokio::time::timeout(self.timeout, sink.unsubscribe(&ch)).await {
                                return Exit::Lost(e.to_string());
                            }
                        }
                    }
                },
                msg = stream.next() => match msg {
                    None => return Exit::Lost("connection closed".into()),
                    Some(msg) => {
                        if let Err(e) = self.on_message(msg.get_channel_name(), msg.get_payload_bytes()).await {
                            return Exit::Lost(e.to_string());
                        }
                    }
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(self.timeout, sink.ping()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Exit::Lost(e.to_string()),
                        Err(_) => return Exit::Lost("ping timed out".into()),
                    }
                }
            }
        }
    }

    /// One channel message: `<seq> <kind> <event JSON>`.
    async fn on_message(&mut self, channel: &str, payload: &[u8]) -> redis::RedisResult<()> {
        if let Some(project) = self.keys.project_of_channel(channel) {
            self.on_project_message(project, payload);
            return Ok(());
        }
        let Some(job) = self.keys.job_of_channel(channel) else {
            return Ok(());
        };
        let mut parts = payload.splitn(3, |b| *b == b' ');
        let (Some(seq), Some(kind), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
            tracing::warn!(channel, "malformed channel message ignored");
            return Ok(());
        };
        let Some(seq) = std::str::from_utf8(seq)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return Ok(());
        };
        let Some(last) = self.watched.get(job).map(|w| w.last) else {
            return Ok(()); // a late message after the last local watcher left
        };
        if seq <= last {
            return Ok(());
        }
        let job = job.to_owned();
        if seq > last + 1 {
            self.catch_up(&job, Some(seq - 1)).await?;
        }
        self.deliver(&job, seq, kind_from(kind), Bytes::copy_from_slice(json));
        Ok(())
    }

    /// One project channel message: `<seq> <kind> <job storage key> <event JSON>`.
    /// Redis delivers a healthy connection's messages in order and without loss, so
    /// there is nothing to fill; a reconnect closes the project's sessions instead.
    fn on_project_message(&self, project: &str, payload: &[u8]) {
        if !self.projects.contains_key(project) {
            return; // a late message after the last local watcher left
        }
        let mut parts = payload.splitn(4, |b| *b == b' ');
        let (Some(seq), Some(kind), Some(job), Some(json)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            tracing::warn!(project, "malformed project channel message ignored");
            return;
        };
        let (Some(seq), Ok(job)) = (
            std::str::from_utf8(seq)
                .ok()
                .and_then(|s| s.parse::<u64>().ok()),
            std::str::from_utf8(job),
        ) else {
            return;
        };
        self.registry.broadcast_to(
            project,
            &Published {
                job_id: Arc::from(job),
                seq,
                kind: kind_from(kind),
                bytes: Bytes::copy_from_slice(json),
                project: None,
                encodings: Default::default(),
            },
        );
    }

    fn deliver(
        &mut self,
        job: &str,
        seq: u64,
        kind: jobwire_core::session::EventKind,
        bytes: Bytes,
    ) {
        if let Some(w) = self.watched.get_mut(job) {
            if seq <= w.last {
                return;
            }
            w.last = seq;
        }
        self.tails.push(job, seq, &bytes);
        self.registry.broadcast(&Published {
            job_id: Arc::from(job),
            seq,
            kind,
            bytes,
            project: None,
            encodings: Default::default(),
        });
    }

    /// Reads `job`'s events after the last delivered seq (up to `upto`) from its
    /// stream and delivers them.
    async fn catch_up(&mut self, job: &str, upto: Option<u64>) -> redis::RedisResult<()> {
        let key = self.keys.events(job);
        let end = upto.map_or_else(|| "+".to_owned(), |u| format!("{u}-0"));
        loop {
            let Some(last) = self.watched.get(job).map(|w| w.last) else {
                return Ok(());
            };
            if upto.is_some_and(|u| last >= u) {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            let v: Value = redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("{}-0", last + 1))
                .arg(&end)
                .arg("COUNT")
                .arg(RANGE_PAGE)
                .query_async(&mut conn)
                .await?;
            let entries = parse_entries(v);
            let n = entries.len();
            if let Some((first, _, _)) = entries.first() {
                if *first > last + 1 {
                    tracing::warn!(
                        job,
                        from = last + 1,
                        to = first - 1,
                        "events trimmed before they could be delivered; closing watchers"
                    );
                    // Never deliver a silent gap: watchers reconnect with `since`
                    // and get `history_truncated`.
                    self.registry.close_watchers(job, Closed::Resync);
                    self.tails.drop_job(job);
                }
            }
            for (seq, kind, json) in entries {
                self.deliver(job, seq, kind, json);
            }
            if n < RANGE_PAGE {
                return Ok(());
            }
        }
    }
}
