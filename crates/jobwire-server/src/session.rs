//! The session: one client connection's subscribe → replay → live → close logic,
//! written once for every transport. It takes [`Command`]s from its [`Wire`] and
//! asks the wire to send [`Output`]s; the wire (v1 WebSocket, SSE, a dialect's
//! WebSocket) only decodes and encodes. One task per connection runs a `select!`
//! over: shutdown, token expiry, the outbox (live events), the client, and the
//! heartbeat tick. A subscribe replays history straight to the wire while live
//! events queue in the outbox; [`Positions`] then drops what the replay already sent.
//!
//! # Layout
//! - `wire`: the seam: [`Command`], [`Incoming`], [`Output`], [`CloseReason`] (the
//!   one table of WebSocket close codes and SSE endings) and the [`Wire`] trait.
//! - `channel`: the channel sessions' handshake and catch-up (project, every
//!   project, notifications).

mod channel;
pub(crate) mod wire;

pub(crate) use channel::Channel;
pub(crate) use wire::{CloseReason, Command, Incoming, Output, Wire, WireError};

use crate::auth::Principal;
use crate::limits::Permit;
use crate::AppState;
use jobwire_core::recovery::{Positions, Replay, Since};
use jobwire_core::session::{Closed, EventKind, Outbox, Published};
use jobwire_core::HubError;
use jobwire_proto::frame::ServerFrame;
use jobwire_proto::{ErrorCode, Timestamp};
use std::sync::Arc;
use std::time::Instant;

/// What the loop does next.
pub(crate) enum Next {
    Continue,
    /// End the connection the transport's way for this reason, then stop.
    Close(CloseReason),
    /// The peer is gone or closed; stop without sending.
    Stop,
}

pub(crate) type Step = Result<Next, WireError>;

/// How a single-job session treats a job that does not exist (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Refuse: error, then close (`job_not_found`).
    Refuse,
    /// Wait for it: stay registered and stream it from its first event (a worker
    /// that creates jobs by reporting on them).
    Wait,
}

/// What a session is opened for.
pub(crate) struct Spec {
    pub(crate) caller: Principal,
    pub(crate) permit: Permit,
    /// A single-job session's job (public id); its end ends the session.
    pub(crate) main_job: Option<String>,
    pub(crate) missing: Missing,
    pub(crate) channel: Option<Channel>,
}

pub(crate) struct Session<W: Wire> {
    pub(crate) st: AppState,
    pub(crate) wire: W,
    /// Who is connected; replaced by a fresh `auth` frame.
    pub(crate) caller: Principal,
    /// When the caller's token expires (the session ends with `TokenExpired` then).
    expires: Option<tokio::time::Instant>,
    pub(crate) outbox: Arc<Outbox>,
    /// Last seq sent per watched job, keyed by storage key (on a notifications
    /// session: the last notification seq, under the channel key).
    pub(crate) positions: Positions,
    /// Set on a channel session (project or notifications; see `channel.rs`).
    pub(crate) channel: Option<Channel>,
    /// The channel's registry key once registered: the one thing to unsubscribe
    /// (a project session's positions are jobs it never registered itself).
    pub(crate) channel_key: Option<Arc<str>>,
    /// The public id of a single-job session's job.
    main_job: Option<String>,
    /// Its storage key: its terminal event ends the session.
    main_key: Option<Arc<str>>,
    missing: Missing,
    /// Reused drain buffer.
    buf: Vec<Published>,
    _permit: Permit,
}

/// The tokio instant at which a token with `exp` (Unix seconds) expires.
pub(crate) fn deadline(exp: Option<u64>) -> Option<tokio::time::Instant> {
    let exp = exp?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Some(tokio::time::Instant::now() + std::time::Duration::from_secs(exp.saturating_sub(now)))
}

impl<W: Wire> Drop for Session<W> {
    fn drop(&mut self) {
        if let Some(key) = &self.channel_key {
            self.st.hub.unsubscribe(key, &self.outbox);
        } else if self.channel.is_none() {
            for job in self.positions.jobs() {
                self.st.hub.unsubscribe(job, &self.outbox);
            }
        }
        self.st.hub.metrics().connections.dec();
    }
}

/// The token-expiry timer, boxed: most sessions (no auth, or tokens without `exp`)
/// never have one, and idle memory per connection matters.
struct Expiry {
    at: tokio::time::Instant,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Expiry {
    fn new(at: tokio::time::Instant) -> Expiry {
        Expiry {
            at,
            sleep: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// Completes at the deadline; never when there is none.
    async fn wait(e: &mut Option<Expiry>) {
        match e {
            Some(e) => e.sleep.as_mut().await,
            None => std::future::pending().await,
        }
    }
}

impl<W: Wire> Session<W> {
    pub(crate) fn new(st: AppState, wire: W, spec: Spec) -> Session<W> {
        st.hub.metrics().connections.inc();
        let outbox = st.hub.outbox();
        let main_key = spec
            .main_job
            .as_deref()
            .map(|j| Arc::from(spec.caller.access.key(j).as_str()));
        Session {
            st,
            wire,
            expires: deadline(spec.caller.expires_at),
            caller: spec.caller,
            outbox,
            positions: Positions::default(),
            channel: spec.channel,
            channel_key: None,
            main_job: spec.main_job,
            main_key,
            missing: spec.missing,
            buf: Vec::new(),
            _permit: spec.permit,
        }
    }

    /// Runs the session to its end.
    pub(crate) async fn run(mut self: Box<Self>, since: Option<Since>) {
        if let Ok(Next::Close(reason)) = self.serve(since).await {
            self.wire.close(reason).await;
        }
    }

    async fn serve(&mut self, since: Option<Since>) -> Step {
        self.wire.start().await?;
        if let Some(job) = self.main_job.clone() {
            // Boxed: the subscribe (history replay) future is large and runs once; kept
            // inline it would size every idle connection's task for its worst case.
            match Box::pin(self.subscribe(&job, since)).await? {
                Next::Continue => {}
                other => return Ok(other),
            }
        }
        if self.channel.is_some() {
            // Boxed like `subscribe`: a one-off catch-up must not size the idle task.
            match Box::pin(self.start_channel()).await? {
                Next::Continue => {}
                other => return Ok(other),
            }
        }
        let every = self.wire.heartbeat_every();
        let idle = self.wire.idle_timeout();
        let shutdown = self.st.shutdown.clone();
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut last_heard = Instant::now();
        // Long-lived futures are made once, not once per wake-up: the loop runs for
        // every delivery.
        let mut shutdown = std::pin::pin!(shutdown.cancelled());
        let mut expiry: Option<Expiry> = None;
        loop {
            if self.expires != expiry.as_ref().map(|e| e.at) {
                expiry = self.expires.map(Expiry::new);
            }
            let next = tokio::select! {
                _ = &mut shutdown => Next::Close(CloseReason::ServerRestarting),
                _ = Expiry::wait(&mut expiry) => Next::Close(CloseReason::TokenExpired),
                _ = self.outbox.notified() => self.flush().await?,
                incoming = self.wire.recv() => {
                    last_heard = Instant::now();
                    match incoming {
                        Incoming::Gone => Next::Stop,
                        Incoming::TooBig => Next::Close(CloseReason::MessageTooBig),
                        Incoming::Noise => Next::Continue,
                        // Boxed for the same reason: commands are rare, the handler's
                        // future is large.
                        Incoming::Command(c) => Box::pin(self.on_command(c)).await?,
                    }
                }
                _ = heartbeat.tick() => {
                    if idle.is_some_and(|d| last_heard.elapsed() > d) {
                        Next::Close(CloseReason::IdleTimeout)
                    } else {
                        self.wire.heartbeat().await?;
                        Next::Continue
                    }
                }
            };
            if !matches!(next, Next::Continue) {
                return Ok(next);
            }
        }
    }

    /// Writes every queued live frame (one flush for the lot).
    async fn flush(&mut self) -> Step {
        let mut buf = std::mem::take(&mut self.buf);
        let closed = self.outbox.drain(&mut buf);
        let mut delivered = 0;
        let mut finished = false;
        let mut failed = None;
        for p in &buf {
            if !self.positions.admit(&p.job_id, p.seq) && !self.admit_new_project_job(p) {
                continue;
            }
            match self.wire.feed(Output::Live(p)).await {
                Ok(true) => delivered += 1,
                Ok(false) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if p.kind == EventKind::Terminal && self.main_key.as_deref() == Some(&*p.job_id) {
                finished = true;
                break;
            }
        }
        buf.clear();
        self.buf = buf;
        if let Some(e) = failed {
            return Err(e);
        }
        self.wire.flush().await?;
        self.st.hub.metrics().events_delivered.add(delivered);
        if finished {
            return Ok(Next::Close(CloseReason::JobFinished));
        }
        match closed {
            Some(Closed::SlowConsumer) => Ok(Next::Close(CloseReason::SlowConsumer)),
            Some(Closed::Resync) => Ok(Next::Close(CloseReason::Resync)),
            None => Ok(Next::Continue),
        }
    }

    async fn on_command(&mut self, c: Command) -> Step {
        match c {
            Command::Invalid(code, msg) => self.error(code, msg, None).await,
            Command::Subscribe { .. } | Command::Unsubscribe { .. } if self.channel.is_some() => {
                let msg = "a channel socket takes only `ping` and `auth` frames";
                self.error(ErrorCode::BadRequest, msg, None).await
            }
            Command::Resume { .. } => {
                let msg = "`resume` is only valid as the first frame of a channel socket";
                self.error(ErrorCode::BadRequest, msg, None).await
            }
            Command::Subscribe {
                job_id,
                since,
                epoch,
            } => {
                let since = since.map(|seq| Since { seq, epoch });
                self.subscribe(&job_id, since).await
            }
            Command::Unsubscribe { job_id } => {
                let key = self.caller.access.key(&job_id);
                if !self.positions.contains(&key) {
                    return self
                        .error(
                            ErrorCode::NotSubscribed,
                            "not subscribed to this job",
                            Some(&job_id),
                        )
                        .await;
                }
                self.positions.forget(&key);
                self.st.hub.unsubscribe(&key, &self.outbox);
                self.send_frame(&ServerFrame::Unsubscribed { job_id })
                    .await?;
                Ok(Next::Continue)
            }
            Command::Auth { token } => self.reauthenticate(&token).await,
            Command::Ping => {
                self.send_frame(&ServerFrame::Pong {
                    timestamp: Timestamp::now(),
                })
                .await?;
                Ok(Next::Continue)
            }
        }
    }

    /// Subscribes and replays: snapshot, then history after `since`, then live.
    async fn subscribe(&mut self, job: &str, since: Option<Since>) -> Step {
        let single = self.main_job.as_deref() == Some(job);
        if self.positions.contains(&self.caller.access.key(job)) {
            return self
                .error(
                    ErrorCode::AlreadySubscribed,
                    "already subscribed to this job",
                    Some(job),
                )
                .await;
        }
        if self.positions.len() >= self.st.config.max_subscriptions {
            let msg = format!(
                "at most {} subscriptions per connection",
                self.st.config.max_subscriptions
            );
            return self
                .error(ErrorCode::TooManySubscriptions, msg, Some(job))
                .await;
        }
        let hub = self.st.hub.clone();
        let result = if single && self.missing == Missing::Wait {
            hub.subscribe_or_wait(&self.caller.access, job, &self.outbox, since)
                .await
        } else {
            hub.subscribe(&self.caller.access, job, &self.outbox, since)
                .await
                .map(Some)
        };
        let mut replay = match result {
            Ok(Some(r)) => r,
            // Registered for a job that does not exist yet: its events arrive live
            // from its first one.
            Ok(None) => {
                let key: Arc<str> = Arc::from(self.caller.access.key(job).as_str());
                self.positions.track(key, 0);
                return Ok(Next::Continue);
            }
            Err(e) => {
                let code = e.code();
                self.error(code, e.client_message(), Some(job)).await?;
                return Ok(match (single, &e) {
                    (true, HubError::NotFound) => Next::Close(CloseReason::JobNotFound),
                    (true, _) => Next::Close(CloseReason::SubscribeFailed),
                    (false, _) => Next::Continue,
                });
            }
        };
        let job_id: Arc<str> = replay.key().clone();
        // Tracked before replaying so cleanup unsubscribes even if the socket fails;
        // u64::MAX admits no live frame until the replay is done.
        self.positions.track(job_id.clone(), u64::MAX);
        if let Some(next) = self.send_replay(job, &mut replay).await? {
            return Ok(next);
        }
        self.positions.track(job_id, replay.position());
        if single && replay.job.status.is_terminal() {
            return Ok(Next::Close(CloseReason::JobFinished));
        }
        Ok(Next::Continue)
    }

    /// Sends a subscription's catch-up: snapshot, `history_truncated` when needed,
    /// history pages. `Some(close)` when the history read failed.
    pub(crate) async fn send_replay(
        &mut self,
        job: &str,
        replay: &mut Replay,
    ) -> Result<Option<Next>, WireError> {
        self.wire
            .feed(Output::Snapshot {
                job: &replay.job,
                epoch: replay.epoch,
            })
            .await?;
        self.wire.flush().await?;
        loop {
            match replay.next_page().await {
                Ok(Some(page)) => {
                    if let (Some((since, from)), Some(epoch)) = (page.rewound, replay.epoch) {
                        let notice = ServerFrame::Rewound {
                            job_id: job.to_owned(),
                            since,
                            from,
                            epoch,
                        };
                        self.wire.feed(Output::Frame(&notice)).await?;
                    }
                    if let Some((since, history_start)) = page.truncated {
                        let notice = ServerFrame::HistoryTruncated {
                            job_id: job.to_owned(),
                            since,
                            history_start,
                        };
                        self.wire.feed(Output::Frame(&notice)).await?;
                    }
                    let mut n = 0;
                    for (seq, bytes) in &page.events {
                        let out = Output::Replayed { seq: *seq, bytes };
                        if self.wire.feed(out).await? {
                            n += 1;
                        }
                    }
                    self.wire.flush().await?;
                    self.st.hub.metrics().events_delivered.add(n);
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    tracing::error!(error = %e, job, "history read failed during replay");
                    return Ok(Some(Next::Close(CloseReason::HistoryReadFailed)));
                }
            }
        }
    }

    /// `auth`: a fresh token for the same tenant extends the session.
    async fn reauthenticate(&mut self, token: &str) -> Step {
        match self.st.auth.reauthenticate(token) {
            Ok(p) if self.channel.is_some() && p.sub != self.caller.sub => {
                self.error(
                    ErrorCode::Forbidden,
                    "the new token is for another user",
                    None,
                )
                .await
            }
            Ok(p) if p.access.tenant != self.caller.access.tenant => {
                self.error(
                    ErrorCode::Forbidden,
                    "the new token is for another tenant",
                    None,
                )
                .await
            }
            Ok(p) => {
                self.expires = deadline(p.expires_at);
                let expires_at = p.expires_at;
                self.caller = p;
                self.send_frame(&ServerFrame::Authenticated { expires_at })
                    .await?;
                Ok(Next::Continue)
            }
            Err(e) => self.error(e.code, e.message, None).await,
        }
    }

    /// Sends one control frame and flushes.
    pub(crate) async fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), WireError> {
        self.wire.feed(Output::Frame(frame)).await?;
        self.wire.flush().await
    }

    pub(crate) async fn error(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
        job: Option<&str>,
    ) -> Step {
        self.st.hub.metrics().client_errors.inc();
        let frame = ServerFrame::Error {
            code,
            number: code.number(),
            message: message.into(),
            job_id: job.map(str::to_owned),
        };
        self.send_frame(&frame).await?;
        Ok(Next::Continue)
    }
}
