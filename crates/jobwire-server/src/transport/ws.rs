//! WebSocket transports: the v1 endpoints (`GET /v1/jobs/{id}/ws`, `GET /v1/ws`) and
//! the [`WsWire`] every WebSocket session (v1, channels, dialects) writes through.
//! A [`Codec`] turns client text into [`Command`]s and session [`Output`]s into
//! text frames; [`V1`] is protocol v1's, the dialects in `crate::compat` bring
//! their own. Everything else (subscribe, replay, live, close) is the session's.

use crate::auth::{Caller, Principal, Scope, WS_PROTOCOL};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::limits::PeerIp;
use crate::session::{
    Channel, CloseReason, Command, Incoming, Missing, Output, Session, Spec, Wire, WireError,
};
use crate::transport::control;
use crate::transport::socket::Socket;
use crate::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use jobwire_core::recovery::Since;
use jobwire_proto::frame::{ClientFrame, ServerFrame, CLIENT_FRAME_TYPES};
use jobwire_proto::{ErrorCode, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinceParams {
    since: Option<u64>,
    epoch: Option<u64>,
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

/// What a WebSocket session is opened for, besides its codec.
pub(crate) struct Open {
    pub(crate) caller: Principal,
    pub(crate) ip: Option<std::net::IpAddr>,
    pub(crate) main_job: Option<String>,
    pub(crate) since: Option<Since>,
    pub(crate) missing: Missing,
    pub(crate) channel: Option<Channel>,
}

impl Open {
    pub(crate) fn new(caller: Principal, ip: Option<std::net::IpAddr>) -> Open {
        Open {
            caller,
            ip,
            main_job: None,
            since: None,
            missing: Missing::Refuse,
            channel: None,
        }
    }
}

/// Checks scope and limits, then upgrades into a [`Session`] speaking `codec`.
pub(crate) fn accept<C: Codec>(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    st: AppState,
    open: Open,
    codec: C,
) -> Result<Response, ApiError> {
    let ws = upgrade(ws)?;
    open.caller.require(Scope::Watch)?;
    let permit = st
        .limiter
        .acquire(open.ip, open.caller.access.tenant.as_deref())?;
    let max = st.config.max_message_bytes;
    let sessions = st.sessions.clone();
    // Idle memory per connection is mostly the size of this task (measured with
    // `-Zprint-type-sizes`, see docs/perf.md): axum keeps the callback's captures for
    // the connection's whole life, so they go in one box that the callback empties,
    // and the session itself lives behind a box so `run` does not hold it twice.
    let since = open.since;
    let spec = Spec {
        caller: open.caller,
        permit,
        main_job: open.main_job,
        missing: open.missing,
        channel: open.channel,
    };
    let parts = Box::new((st, spec, codec));
    Ok(ws
        .protocols([WS_PROTOCOL])
        .max_message_size(max)
        .read_buffer_size(WS_READ_BUFFER)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let (st, spec, codec) = *parts;
            let wire = WsWire {
                socket: Socket::new(socket, st.config.write_timeout, st.hub.metrics().clone()),
                codec,
                max_frame_bytes: st.config.max_frame_bytes,
                heartbeat_every: st.config.heartbeat_interval,
                idle_timeout: st.config.idle_timeout,
            };
            let session = Box::new(Session::new(st, wire, spec));
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
    let mut open = Open::new(caller, ip);
    open.main_job = Some(id);
    open.since = q.since.map(|seq| Since {
        seq,
        epoch: q.epoch,
    });
    accept(ws, st, open, V1)
}

/// `GET /v1/ws`
pub(crate) async fn multiplexed(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiQuery(_): ApiQuery<SinceParams>,
) -> Result<Response, ApiError> {
    accept(ws, st, Open::new(caller, ip), V1)
}

/// WebSocket read buffer per connection (and the most one read syscall takes).
/// Client frames are small (subscribe, ping, a JWT in an `auth` frame); tungstenite's
/// 128 KiB default would dominate idle memory, and the whole buffer is zeroed on every
/// poll of the read side. A bigger frame grows the buffer for its own length.
const WS_READ_BUFFER: usize = 256;

/// A wire protocol spoken over a WebSocket: v1, or a dialect.
pub(crate) trait Codec: Send + 'static {
    /// Decodes one client text message (already within the frame size limit).
    fn decode(&mut self, text: &str) -> Incoming;
    /// The text frame for `out`; `None` when this protocol has no frame for it.
    fn encode(&mut self, out: &Output<'_>) -> Option<Bytes>;
    /// The heartbeat frame, if this protocol has one.
    fn heartbeat(&mut self) -> Option<Bytes>;
    /// The first frame of a connection, if this protocol has one.
    fn greeting(&mut self) -> Option<Bytes> {
        None
    }
    /// Whether a channel session waits for this protocol's `resume` first.
    fn waits_for_resume(&self) -> bool {
        true
    }
    /// How this protocol closes for `reason`. v1 uses the close-code table.
    fn close(&self, reason: CloseReason) -> Option<CloseFrame> {
        let (code, text) = reason.websocket();
        Some(CloseFrame {
            code: code.number(),
            reason: Utf8Bytes::from_static(text),
        })
    }
}

/// A WebSocket session's wire: a [`Socket`] (with its write deadline) and a codec.
pub(crate) struct WsWire<C> {
    socket: Socket,
    codec: C,
    max_frame_bytes: usize,
    heartbeat_every: Duration,
    idle_timeout: Duration,
}

pub(super) fn text(bytes: Bytes) -> Option<Message> {
    Utf8Bytes::try_from(bytes).ok().map(Message::Text)
}

impl<C: Codec> WsWire<C> {
    fn decode(&mut self, s: &str) -> Incoming {
        if s.len() > self.max_frame_bytes {
            let msg = format!("frame exceeds {} bytes", self.max_frame_bytes);
            return Incoming::Command(Command::Invalid(ErrorCode::PayloadTooLarge, msg));
        }
        self.codec.decode(s)
    }
}

impl<C: Codec> Wire for WsWire<C> {
    async fn start(&mut self) -> Result<(), WireError> {
        match self.codec.greeting().and_then(text) {
            Some(m) => self.socket.send(m).await,
            None => Ok(()),
        }
    }

    async fn recv(&mut self) -> Incoming {
        match self.socket.recv().await {
            None => Incoming::Gone,
            Some(Ok(Message::Text(t))) => self.decode(t.as_str()),
            Some(Ok(Message::Binary(b))) => match std::str::from_utf8(&b) {
                Ok(s) => self.decode(s),
                Err(_) => Incoming::Command(Command::Invalid(
                    ErrorCode::MalformedJson,
                    "frame is not UTF-8 JSON".into(),
                )),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Noise,
            // The WebSocket layer queued the reply to the peer's close; write it.
            Some(Ok(Message::Close(_))) => {
                let _ = self.socket.flush().await;
                Incoming::Gone
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket read error");
                if e.to_string().contains("Space limit exceeded") {
                    Incoming::TooBig
                } else {
                    Incoming::Gone
                }
            }
        }
    }

    async fn feed(&mut self, out: Output<'_>) -> Result<bool, WireError> {
        match self.codec.encode(&out).and_then(text) {
            Some(m) => self.socket.feed(m).await.map(|()| true),
            None => Ok(false),
        }
    }

    async fn flush(&mut self) -> Result<(), WireError> {
        self.socket.flush().await
    }

    async fn heartbeat(&mut self) -> Result<(), WireError> {
        if let Some(m) = self.codec.heartbeat().and_then(text) {
            self.socket.feed(m).await?;
        }
        self.socket.send(Message::Ping(Bytes::new())).await
    }

    async fn close(&mut self, reason: CloseReason) {
        let frame = self.codec.close(reason);
        let _ = self.socket.send(Message::Close(frame)).await;
    }

    fn heartbeat_every(&self) -> Duration {
        self.heartbeat_every
    }

    fn idle_timeout(&self) -> Option<Duration> {
        Some(self.idle_timeout)
    }

    fn waits_for_resume(&self) -> bool {
        self.codec.waits_for_resume()
    }
}

/// Protocol v1 (docs/protocol.md): JSON client frames; events go out as their
/// stored bytes, untouched.
pub(crate) struct V1;

impl Codec for V1 {
    fn decode(&mut self, s: &str) -> Incoming {
        Incoming::Command(decode_v1(s))
    }

    fn encode(&mut self, out: &Output<'_>) -> Option<Bytes> {
        Some(match out {
            Output::Snapshot { job, epoch } => control(&ServerFrame::Snapshot {
                job_id: job.id.clone(),
                seq: job.seq,
                epoch: *epoch,
                job: Box::new((*job).clone()),
            }),
            Output::Live(p) => p.bytes.clone(),
            Output::Replayed { bytes, .. } | Output::Notification { bytes, .. } => (*bytes).clone(),
            Output::Frame(f) => control(f),
        })
    }

    fn heartbeat(&mut self) -> Option<Bytes> {
        Some(control(&ServerFrame::Heartbeat {
            timestamp: Timestamp::now(),
        }))
    }
}

/// A v1 client frame, or the error it earns.
pub(crate) fn decode_v1(s: &str) -> Command {
    let value: Value = match serde_json::from_str(s) {
        Ok(v) => v,
        Err(e) => return Command::Invalid(ErrorCode::MalformedJson, format!("invalid JSON: {e}")),
    };
    match value.get("type").and_then(Value::as_str) {
        Some(t) if CLIENT_FRAME_TYPES.contains(&t) => {}
        Some(t) => {
            let msg = format!("unknown message type `{t}`; expected one of {CLIENT_FRAME_TYPES:?}");
            return Command::Invalid(ErrorCode::UnknownMessageType, msg);
        }
        None => {
            return Command::Invalid(
                ErrorCode::UnknownMessageType,
                "frame has no string `type`".into(),
            )
        }
    }
    match serde_json::from_value(value) {
        Ok(ClientFrame::Subscribe {
            job_id,
            since,
            epoch,
        }) => Command::Subscribe {
            job_id,
            since,
            epoch,
        },
        Ok(ClientFrame::Unsubscribe { job_id }) => Command::Unsubscribe { job_id },
        Ok(ClientFrame::Ping {}) => Command::Ping,
        Ok(ClientFrame::Auth { token }) => Command::Auth { token },
        Ok(ClientFrame::Resume {
            positions,
            since,
            epoch,
        }) => Command::Resume {
            positions: positions.unwrap_or_default(),
            since,
            epoch,
        },
        Err(e) => Command::Invalid(ErrorCode::BadRequest, e.to_string()),
    }
}
