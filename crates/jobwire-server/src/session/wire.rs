//! The seam between the session and its transports: what a transport hands the
//! session ([`Incoming`], [`Command`]), what the session asks it to send
//! ([`Output`]), and how each session end is told on every transport
//! ([`CloseReason`], the one table of close codes and SSE endings).

use bytes::Bytes;
use jobwire_core::session::Published;
use jobwire_proto::frame::ServerFrame;
use jobwire_proto::{CloseCode, ErrorCode, Job};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// A client request, decoded from whatever the transport or dialect speaks.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        job_id: String,
        since: Option<u64>,
        /// The epoch `since` came with (protocol v1 only).
        epoch: Option<u64>,
    },
    Unsubscribe {
        job_id: String,
    },
    Ping,
    /// A fresh token for the same tenant (and, on channels, the same user).
    Auth {
        token: String,
    },
    /// The channel handshake (only valid as a channel socket's first frame).
    Resume {
        positions: BTreeMap<String, u64>,
        since: Option<u64>,
        /// The epoch the `positions` came with.
        epoch: Option<u64>,
    },
    /// A frame the decoder refused: answered with an `error` frame, the session goes on.
    Invalid(ErrorCode, String),
}

/// What a transport's `recv` yields.
#[derive(Debug)]
pub(crate) enum Incoming {
    Command(Command),
    /// Proof of life without a request (a WebSocket pong, a ping the transport
    /// answered itself): it only resets the idle timer.
    Noise,
    /// A message over the hard size limit: the session closes with [`CloseReason::MessageTooBig`].
    TooBig,
    /// The peer is gone (or closed); the session stops without a close of its own.
    Gone,
}

/// Something the session sends. Transports (and dialects) encode it, or skip what
/// their protocol has no word for.
pub(crate) enum Output<'a> {
    /// A subscription's first frame: the job as of its seq, and the store's epoch.
    Snapshot { job: &'a Job, epoch: Option<u64> },
    /// A live event (shared bytes, with the per-encoding cache).
    Live(&'a Published),
    /// A replayed (history) event.
    Replayed { seq: u64, bytes: &'a Bytes },
    /// A notification frame (already in v1 form: `{"type":"notification",…}`).
    Notification { bytes: &'a Bytes },
    /// A control frame (pong, error, history_truncated, ready, unsubscribed, …).
    Frame(&'a ServerFrame),
}

/// Why a session ends, and how each transport says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The single job watched reached its end (after its last event).
    JobFinished,
    MessageTooBig,
    SubscribeFailed,
    HistoryReadFailed,
    ServerRestarting,
    IdleTimeout,
    SlowConsumer,
    Resync,
    TokenExpired,
    JobNotFound,
}

impl CloseReason {
    /// The WebSocket close code and reason text.
    pub(crate) fn websocket(self) -> (CloseCode, &'static str) {
        match self {
            CloseReason::JobFinished => (CloseCode::Normal, "job finished"),
            CloseReason::MessageTooBig => (CloseCode::MessageTooBig, "message too big"),
            CloseReason::SubscribeFailed => (CloseCode::InternalError, "subscribe failed"),
            CloseReason::HistoryReadFailed => (CloseCode::InternalError, "history read failed"),
            CloseReason::ServerRestarting => (CloseCode::ServiceRestart, "server restarting"),
            CloseReason::IdleTimeout => (CloseCode::IdleTimeout, "idle timeout"),
            CloseReason::SlowConsumer => (
                CloseCode::SlowConsumer,
                "slow consumer: reconnect with since",
            ),
            CloseReason::Resync => (
                CloseCode::Resync,
                "live stream interrupted: reconnect with since",
            ),
            CloseReason::TokenExpired => (CloseCode::TokenExpired, "token expired"),
            CloseReason::JobNotFound => (CloseCode::JobNotFound, "job not found"),
        }
    }

    /// The last SSE chunk (a comment) before the stream ends; `None`: it just ends.
    pub(crate) fn sse(self) -> Option<&'static [u8]> {
        match self {
            CloseReason::ServerRestarting => Some(b": server restarting\n\n"),
            CloseReason::SlowConsumer => Some(b": slow consumer, reconnect\n\n"),
            CloseReason::Resync => Some(b": live stream interrupted, reconnect\n\n"),
            CloseReason::TokenExpired => Some(b": token expired, reconnect with a fresh token\n\n"),
            CloseReason::HistoryReadFailed | CloseReason::SubscribeFailed => {
                Some(b": internal error, reconnect\n\n")
            }
            CloseReason::JobFinished
            | CloseReason::MessageTooBig
            | CloseReason::IdleTimeout
            | CloseReason::JobNotFound => None,
        }
    }
}

/// A failed write (peer gone, or the write deadline passed).
pub(crate) type WireError = axum::Error;

/// One client connection as the session sees it. Implemented by the v1 WebSocket,
/// SSE, and each dialect's WebSocket.
pub(crate) trait Wire: Send {
    /// Sent once before anything else (SSE: the `retry:` hint).
    fn start(&mut self) -> impl Future<Output = Result<(), WireError>> + Send {
        async { Ok(()) }
    }
    /// The next thing the peer did.
    fn recv(&mut self) -> impl Future<Output = Incoming> + Send;
    /// Encodes `out` and queues it; `Ok(true)` when something was queued (a dialect
    /// may have no frame for it).
    fn feed(&mut self, out: Output<'_>) -> impl Future<Output = Result<bool, WireError>> + Send;
    /// Writes everything queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), WireError>> + Send;
    /// Queues and writes a heartbeat (and, on WebSockets, a ping).
    fn heartbeat(&mut self) -> impl Future<Output = Result<(), WireError>> + Send;
    /// Ends the connection the way this transport says `reason`.
    fn close(&mut self, reason: CloseReason) -> impl Future<Output = ()> + Send;
    /// How often [`Wire::heartbeat`] runs.
    fn heartbeat_every(&self) -> Duration;
    /// Close when the peer sent nothing for this long (`None`: it never sends).
    fn idle_timeout(&self) -> Option<Duration>;
    /// Whether a channel session waits for a `resume` command first (v1 clients
    /// send one; the dialects' clients do not).
    fn waits_for_resume(&self) -> bool {
        true
    }
}
