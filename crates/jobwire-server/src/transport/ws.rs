//! WebSocket sessions. One task per connection runs a `select!` over: shutdown, the
//! outbox (live events), client frames, and the heartbeat tick. Client frames are
//! handled in order; a subscribe replays history straight to the socket while live
//! events queue in the outbox, then [`Positions`] drops what the replay already sent.

use crate::auth::{Caller, Principal, Scope, WS_PROTOCOL};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::limits::{PeerIp, Permit};
use crate::transport::channel::Channel;
use crate::transport::control;
use crate::transport::socket::Socket;
use crate::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use jobwire_core::recovery::{Positions, Replay};
use jobwire_core::session::{Closed, EventKind, Outbox, Published};
use jobwire_core::HubError;
use jobwire_proto::frame::{ClientFrame, ServerFrame, CLIENT_FRAME_TYPES};
use jobwire_proto::{CloseCode, ErrorCode, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinceParams {
    since: Option<u64>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// A plain GET on a WebSocket endpoint gets a JSON `bad_request`, not axum's text.
fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, ApiError> {
    ws.map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("WebSocket upgrade required: {}", e.body_text()),
        )
    })
}

/// Checks scope and limits, then upgrades into a [`Session`].
pub(super) fn accept(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    st: AppState,
    caller: Principal,
    ip: Option<std::net::IpAddr>,
    main_job: Option<String>,
    since: Option<u64>,
    channel: Option<Channel>,
) -> Result<Response, ApiError> {
    let ws = upgrade(ws)?;
    caller.require(Scope::Watch)?;
    let permit = st.limiter.acquire(ip, caller.access.tenant.as_deref())?;
    let max = st.config.max_message_bytes;
    // Idle memory per connection is mostly the size of this task (measured with
    // `-Zprint-type-sizes`, see docs/perf.md): axum keeps the callback's captures for
    // the connection's whole life, so they go in one box that the callback empties,
    // and the session itself lives behind a box so `run` does not hold it twice.
    let sessions = st.sessions.clone();
    let parts = Box::new((st, caller, permit, main_job, channel));
    Ok(ws
        .protocols([WS_PROTOCOL])
        .max_message_size(max)
        .read_buffer_size(WS_READ_BUFFER)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let (st, caller, permit, main_job, channel) = *parts;
            let session = Box::new(Session::new(st, socket, caller, permit, main_job, channel));
            sessions.track_future(session.run(since))
        }))
}

/// `GET /v1/jobs/{id}/ws?since=N`
pub(crate) async fn single(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SinceParams>,
) -> Result<Response, ApiError> {
    accept(ws, st, caller, ip, Some(id), q.since, None)
}

/// `GET /v1/ws`
pub(crate) async fn multiplexed(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiQuery(_): ApiQuery<SinceParams>,
) -> Result<Response, ApiError> {
    accept(ws, st, caller, ip, None, None, None)
}

/// WebSocket read buffer per connection (and the most one read syscall takes).
/// Client frames are small (subscribe, ping, a JWT in an `auth` frame); tungstenite's
/// 128 KiB default would dominate idle memory, and the whole buffer is zeroed on every
/// poll of the read side. A bigger frame grows the buffer for its own length.
const WS_READ_BUFFER: usize = 256;

/// What the loop does next.
pub(super) enum Next {
    Continue,
    /// Send a close frame with this code, then stop.
    Close(CloseCode, &'static str),
    /// The peer is gone or closed; stop without sending.
    Stop,
}

pub(super) type Step = Result<Next, axum::Error>;

pub(super) struct Session {
    pub(super) st: AppState,
    pub(super) socket: Socket,
    /// Who is connected; replaced by a fresh `auth` frame.
    pub(super) caller: Principal,
    /// When the caller's token expires (the session closes with 4501 then).
    expires: Option<tokio::time::Instant>,
    pub(super) outbox: Arc<Outbox>,
    /// Last seq sent per watched job, keyed by storage key (on a notifications
    /// socket: the last notification seq, under the channel key).
    pub(super) positions: Positions,
    /// Set on a channel socket (project or notifications; see `channel.rs`).
    pub(super) channel: Option<Channel>,
    /// The channel's registry key once registered: the one thing to unsubscribe
    /// (a project socket's positions are jobs it never registered itself).
    pub(super) channel_key: Option<Arc<str>>,
    /// The public id of a single-job socket's job.
    main_job: Option<String>,
    /// Its storage key: its terminal event closes the socket.
    main_key: Option<Arc<str>>,
    /// Reused drain buffer.
    buf: Vec<Published>,
    _permit: Permit,
}

/// The tokio instant at which a token with `exp` (Unix seconds) expires.
fn deadline(exp: Option<u64>) -> Option<tokio::time::Instant> {
    let exp = exp?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Some(tokio::time::Instant::now() + std::time::Duration::from_secs(exp.saturating_sub(now)))
}

impl Drop for Session {
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

pub(super) fn text(bytes: Bytes) -> Option<Message> {
    Utf8Bytes::try_from(bytes).ok().map(Message::Text)
}

impl Session {
    fn new(
        st: AppState,
        socket: WebSocket,
        caller: Principal,
        permit: Permit,
        main_job: Option<String>,
        channel: Option<Channel>,
    ) -> Session {
        st.hub.metrics().connections.inc();
        let outbox = st.hub.outbox();
        let main_key = main_job
            .as_deref()
            .map(|j| Arc::from(caller.access.key(j).as_str()));
        let socket = Socket::new(socket, st.config.write_timeout, st.hub.metrics().clone());
        Session {
            st,
            socket,
            expires: deadline(caller.expires_at),
            caller,
            outbox,
            positions: Positions::default(),
            channel,
            channel_key: None,
            main_job,
            main_key,
            buf: Vec::new(),
            _permit: permit,
        }
    }

    async fn run(mut self: Box<Self>, since: Option<u64>) {
        let next = self.serve(since).await;
        if let Ok(Next::Close(code, reason)) = next {
            let frame = CloseFrame {
                code: code.number(),
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = self.socket.send(Message::Close(Some(frame))).await;
        }
    }

    async fn serve(&mut self, since: Option<u64>) -> Step {
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
        let cfg = self.st.config.clone();
        let shutdown = self.st.shutdown.clone();
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + cfg.heartbeat_interval,
            cfg.heartbeat_interval,
        );
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
                _ = &mut shutdown => Next::Close(CloseCode::ServiceRestart, "server restarting"),
                _ = Expiry::wait(&mut expiry) => Next::Close(CloseCode::TokenExpired, "token expired"),
                _ = self.outbox.notified() => self.flush().await?,
                msg = self.socket.recv() => {
                    last_heard = Instant::now();
                    match msg {
                        None => Next::Stop,
                        // Boxed for the same reason: client frames are rare, the
                        // handler's future is large.
                        Some(Ok(m)) => Box::pin(self.on_message(m)).await?,
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "websocket read error");
                            if e.to_string().contains("Space limit exceeded") {
                                Next::Close(CloseCode::MessageTooBig, "message too big")
                            } else {
                                Next::Stop
                            }
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > cfg.idle_timeout {
                        Next::Close(CloseCode::IdleTimeout, "idle timeout")
                    } else {
                        let hb = control(&ServerFrame::Heartbeat { timestamp: Timestamp::now() });
                        if let Some(m) = text(hb) {
                            self.socket.feed(m).await?;
                        }
                        self.socket.send(Message::Ping(Bytes::new())).await?;
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
        for p in &buf {
            if !self.positions.admit(&p.job_id, p.seq) && !self.admit_new_project_job(p) {
                continue;
            }
            if let Some(m) = text(p.bytes.clone()) {
                self.socket.feed(m).await?;
                delivered += 1;
            }
            if p.kind == EventKind::Terminal && self.main_key.as_deref() == Some(&*p.job_id) {
                finished = true;
                break;
            }
        }
        buf.clear();
        self.buf = buf;
        self.socket.flush().await?;
        self.st.hub.metrics().events_delivered.add(delivered);
        if finished {
            return Ok(Next::Close(CloseCode::Normal, "job finished"));
        }
        match closed {
            Some(Closed::SlowConsumer) => Ok(Next::Close(
                CloseCode::SlowConsumer,
                "slow consumer: reconnect with since",
            )),
            Some(Closed::Resync) => Ok(Next::Close(
                CloseCode::Resync,
                "live stream interrupted: reconnect with since",
            )),
            None => Ok(Next::Continue),
        }
    }

    pub(super) async fn on_message(&mut self, m: Message) -> Step {
        match m {
            Message::Text(t) => self.on_text(t.as_str()).await,
            Message::Binary(b) => match std::str::from_utf8(&b) {
                Ok(s) => self.on_text(s).await,
                Err(_) => {
                    self.error(ErrorCode::MalformedJson, "frame is not UTF-8 JSON", None)
                        .await
                }
            },
            Message::Ping(_) | Message::Pong(_) => Ok(Next::Continue),
            // The WebSocket layer queued the reply to the peer's close; write it.
            Message::Close(_) => {
                let _ = self.socket.flush().await;
                Ok(Next::Stop)
            }
        }
    }

    async fn on_text(&mut self, s: &str) -> Step {
        if s.len() > self.st.config.max_frame_bytes {
            let msg = format!("frame exceeds {} bytes", self.st.config.max_frame_bytes);
            return self.error(ErrorCode::PayloadTooLarge, msg, None).await;
        }
        let value: Value = match serde_json::from_str(s) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .error(ErrorCode::MalformedJson, format!("invalid JSON: {e}"), None)
                    .await
            }
        };
        match value.get("type").and_then(Value::as_str) {
            Some(t) if CLIENT_FRAME_TYPES.contains(&t) => {}
            Some(t) => {
                let msg =
                    format!("unknown message type `{t}`; expected one of {CLIENT_FRAME_TYPES:?}");
                return self.error(ErrorCode::UnknownMessageType, msg, None).await;
            }
            None => {
                return self
                    .error(
                        ErrorCode::UnknownMessageType,
                        "frame has no string `type`",
                        None,
                    )
                    .await
            }
        }
        let frame: ClientFrame = match serde_json::from_value(value) {
            Ok(f) => f,
            Err(e) => return self.error(ErrorCode::BadRequest, e.to_string(), None).await,
        };
        match frame {
            ClientFrame::Subscribe { .. } | ClientFrame::Unsubscribe { .. }
                if self.channel.is_some() =>
            {
                let msg = "a channel socket takes only `ping` and `auth` frames";
                self.error(ErrorCode::BadRequest, msg, None).await
            }
            ClientFrame::Resume { .. } => {
                let msg = "`resume` is only valid as the first frame of a channel socket";
                self.error(ErrorCode::BadRequest, msg, None).await
            }
            ClientFrame::Subscribe { job_id, since } => self.subscribe(&job_id, since).await,
            ClientFrame::Unsubscribe { job_id } => {
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
            ClientFrame::Auth { token } => self.reauthenticate(&token).await,
            ClientFrame::Ping {} => {
                self.send_frame(&ServerFrame::Pong {
                    timestamp: Timestamp::now(),
                })
                .await?;
                Ok(Next::Continue)
            }
        }
    }

    /// Subscribes and replays: snapshot, then history after `since`, then live.
    async fn subscribe(&mut self, job: &str, since: Option<u64>) -> Step {
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
        let mut replay = match self
            .st
            .hub
            .subscribe(&self.caller.access, job, &self.outbox, since)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let code = e.code();
                self.error(code, e.client_message(), Some(job)).await?;
                return Ok(match (single, &e) {
                    (true, HubError::NotFound) => {
                        Next::Close(CloseCode::JobNotFound, "job not found")
                    }
                    (true, _) => Next::Close(CloseCode::InternalError, "subscribe failed"),
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
            return Ok(Next::Close(CloseCode::Normal, "job finished"));
        }
        Ok(Next::Continue)
    }

    /// Sends a subscription's catch-up: snapshot, `history_truncated` when needed,
    /// history pages. `Some(close)` when the history read failed.
    pub(super) async fn send_replay(
        &mut self,
        job: &str,
        replay: &mut Replay,
    ) -> Result<Option<Next>, axum::Error> {
        let snapshot = ServerFrame::Snapshot {
            job_id: job.to_owned(),
            seq: replay.job.seq,
            job: Box::new(replay.job.clone()),
        };
        self.send_frame(&snapshot).await?;
        loop {
            match replay.next_page().await {
                Ok(Some(page)) => {
                    if let Some((since, history_start)) = page.truncated {
                        let notice = ServerFrame::HistoryTruncated {
                            job_id: job.to_owned(),
                            since,
                            history_start,
                        };
                        if let Some(m) = text(control(&notice)) {
                            self.socket.feed(m).await?;
                        }
                    }
                    let n = page.events.len() as u64;
                    for (_, bytes) in page.events {
                        if let Some(m) = text(bytes) {
                            self.socket.feed(m).await?;
                        }
                    }
                    self.socket.flush().await?;
                    self.st.hub.metrics().events_delivered.add(n);
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    tracing::error!(error = %e, job, "history read failed during replay");
                    return Ok(Some(Next::Close(
                        CloseCode::InternalError,
                        "history read failed",
                    )));
                }
            }
        }
    }

    /// `{"type":"auth"}`: a fresh token for the same tenant extends the session.
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

    pub(super) async fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), axum::Error> {
        match text(control(frame)) {
            Some(m) => self.socket.send(m).await,
            None => Ok(()),
        }
    }

    pub(super) async fn error(
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
