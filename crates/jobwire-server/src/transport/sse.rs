//! Server-Sent Events: the same session as a single-job WebSocket, one job per
//! request, spoken as an event stream. `id:` is the event's seq, so a browser's
//! `EventSource` resumes by itself with `Last-Event-ID`; `?since=` does the same for
//! other clients. The stream ends after the job's terminal event (and, like a
//! WebSocket, on token expiry, slow consumption or shutdown, with a last comment
//! saying why); reconnecting to a finished job you have fully seen answers 204, which
//! tells `EventSource` to stop.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::limits::Permit;
use crate::session::{CloseReason, Incoming, Missing, Output, Session, Spec, Wire, WireError};
use crate::transport::control;
use crate::AppState;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use jobwire_core::recovery::Since;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks buffered between the session task and the HTTP body.
const CHUNK_BUFFER: usize = 64;
/// Reconnect delay suggested to `EventSource`, in ms.
const RETRY_MS: u32 = 2000;

/// An event with its `id:`: `<seq>`, or `<seq>:<epoch>` on engines with epochs, so
/// that a browser's automatic reconnect (`Last-Event-ID`) carries both.
fn event_chunk(seq: u64, epoch: Option<u64>, json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 40);
    b.put_slice(b"id: ");
    b.put_slice(seq.to_string().as_bytes());
    if let Some(e) = epoch {
        b.put_u8(b':');
        b.put_slice(e.to_string().as_bytes());
    }
    b.put_slice(b"\ndata: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// A `Last-Event-ID`: `<seq>` or `<seq>:<epoch>` (what [`event_chunk`] sends).
fn parse_event_id(s: &str) -> Option<Since> {
    let s = s.trim();
    match s.split_once(':') {
        Some((seq, epoch)) => Some(Since {
            seq: seq.parse().ok()?,
            epoch: Some(epoch.parse().ok()?),
        }),
        None => s.parse().ok().map(Since::seq),
    }
}

fn data_chunk(json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 16);
    b.put_slice(b"data: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// Which frames an SSE stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// Every event (`GET /v1/jobs/{id}/events`).
    Events,
    /// The worker's control stream (`GET /v1/jobs/{id}/control`): the job's state
    /// once, then only what a worker must act on (`cancel_requested`, the end).
    Control,
}

/// Starts an SSE stream for `id` from `since` (or the `Last-Event-ID` header).
pub(crate) async fn stream(
    st: AppState,
    caller: Principal,
    permit: Permit,
    id: String,
    headers: &HeaderMap,
    since: Option<Since>,
) -> Result<Response, ApiError> {
    start(st, caller, permit, id, headers, since, Feed::Events).await
}

/// Starts the control stream of job `id` for its worker.
pub(crate) async fn control_stream(
    st: AppState,
    caller: Principal,
    permit: Permit,
    id: String,
) -> Result<Response, ApiError> {
    start(
        st,
        caller,
        permit,
        id,
        &HeaderMap::new(),
        None,
        Feed::Control,
    )
    .await
}

async fn start(
    st: AppState,
    caller: Principal,
    permit: Permit,
    id: String,
    headers: &HeaderMap,
    since: Option<Since>,
    feed: Feed,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .and_then(parse_event_id);
    let since = last_event_id.or(since);
    // Unknown jobs are refused before the stream starts (404), and a client that has
    // seen a finished job to its end is told to stop (204), unless what it saw was
    // taken back (then it is told to rewind).
    let job = st.hub.snapshot(&caller.access, &id).await?;
    let rewind = since.and_then(|s| {
        st.hub
            .epoch()
            .and_then(|now| job.rewind_point(s.seq, s.epoch, now))
    });
    if job.status.is_terminal() && rewind.is_none() && since.is_some_and(|s| s.seq >= job.seq) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if feed == Feed::Control && job.status.is_terminal() {
        return Err(ApiError::new(
            jobwire_proto::ErrorCode::JobTerminal,
            format!(
                "job is {}; there is nothing left to control",
                job.status.as_str()
            ),
        ));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNK_BUFFER);
    let wire = SseWire {
        tx,
        write_timeout: st.config.write_timeout,
        keepalive: st.config.sse_keepalive,
        metrics: st.hub.metrics().clone(),
        feed,
        cancel_sent: false,
        epoch: None,
    };
    let spec = Spec {
        caller,
        permit,
        main_job: Some(id),
        missing: Missing::Refuse,
        channel: None,
    };
    let sessions = st.sessions.clone();
    let session = Box::new(Session::new(st, wire, spec));
    tokio::spawn(sessions.track_future(session.run(since)));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// An SSE stream as the session's wire: chunks go to the HTTP body through a
/// bounded channel (a body nobody reads fills it, and the write deadline ends the
/// session); the client never sends, so `recv` only notices it leaving.
struct SseWire {
    tx: mpsc::Sender<Bytes>,
    write_timeout: Duration,
    keepalive: Duration,
    metrics: std::sync::Arc<jobwire_core::metrics::Metrics>,
    feed: Feed,
    /// Control stream: `cancel_requested` went out (it is sent once).
    cancel_sent: bool,
    /// The epoch of the snapshot sent (goes into every event id).
    epoch: Option<u64>,
}

impl SseWire {
    async fn send(&mut self, chunk: Bytes) -> Result<(), WireError> {
        let gone = || axum::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        match self.tx.try_send(chunk) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(gone()),
            Err(mpsc::error::TrySendError::Full(chunk)) => {
                match tokio::time::timeout(self.write_timeout, self.tx.send(chunk)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(gone()),
                    Err(_) => {
                        self.metrics.write_timeouts.inc();
                        Err(axum::Error::new(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "write deadline passed: the client is not reading",
                        )))
                    }
                }
            }
        }
    }
}

/// A control-stream frame: `event: control` with one JSON object.
fn control_frame(v: &serde_json::Value) -> Bytes {
    let mut b = BytesMut::with_capacity(96);
    b.put_slice(b"event: control\ndata: ");
    b.put_slice(v.to_string().as_bytes());
    b.put_slice(b"\n\n");
    b.freeze()
}

impl SseWire {
    /// What the control stream sends for `out`, if anything.
    fn control_chunk(&mut self, out: Output<'_>) -> Option<Bytes> {
        use serde_json::json;
        let (seq, bytes) = match out {
            Output::Snapshot { job, .. } => {
                self.cancel_sent = job.cancel_requested.is_some();
                return Some(control_frame(&json!({
                    "type": "state",
                    "seq": job.seq,
                    "status": job.status,
                    "cancel_requested": job.cancel_requested.is_some(),
                    "cancel": job.cancel_requested,
                })));
            }
            Output::Live(p) => (p.seq, &p.bytes),
            Output::Replayed { seq, bytes, .. } => (seq, bytes),
            Output::Notification { .. } | Output::Frame(_) => return None,
        };
        // Events are serialized with their `type` first: only the two kinds a worker
        // acts on are parsed.
        if bytes.starts_with(br#"{"type":"cancel_requested""#) && !self.cancel_sent {
            self.cancel_sent = true;
            let ev: serde_json::Value = serde_json::from_slice(bytes).ok()?;
            return Some(control_frame(&json!({
                "type": "cancel_requested",
                "seq": seq,
                "by": ev.get("by"),
                "reason": ev.get("reason"),
            })));
        }
        let ev: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let status = ev.get("status").and_then(|s| s.as_str())?;
        let terminal = jobwire_proto::JobStatus::parse(status).is_some_and(|s| s.is_terminal());
        terminal.then(|| control_frame(&json!({"type": "end", "seq": seq, "status": status})))
    }
}

impl Wire for SseWire {
    async fn start(&mut self) -> Result<(), WireError> {
        self.send(Bytes::from(format!("retry: {RETRY_MS}\n\n")))
            .await
    }

    async fn recv(&mut self) -> Incoming {
        self.tx.closed().await;
        Incoming::Gone
    }

    async fn feed(&mut self, out: Output<'_>) -> Result<bool, WireError> {
        if self.feed == Feed::Control {
            return match self.control_chunk(out) {
                Some(chunk) => self.send(chunk).await.map(|()| true),
                None => Ok(false),
            };
        }
        let chunk = match out {
            // No `id:` on the snapshot: Last-Event-ID must only advance with events
            // actually sent, or a drop during the replay would skip the rest of it.
            Output::Snapshot { job, epoch } => {
                self.epoch = epoch;
                data_chunk(&control(&jobwire_proto::frame::ServerFrame::Snapshot {
                    job_id: job.id.clone(),
                    seq: job.seq,
                    epoch,
                    job: Box::new(job.clone()),
                }))
            }
            Output::Live(p) => event_chunk(p.seq, self.epoch, &p.bytes),
            Output::Replayed { seq, bytes, .. } => event_chunk(seq, self.epoch, bytes),
            Output::Notification { bytes, .. } => data_chunk(bytes),
            Output::Frame(f) => data_chunk(&control(f)),
        };
        self.send(chunk).await.map(|()| true)
    }

    async fn flush(&mut self) -> Result<(), WireError> {
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), WireError> {
        self.send(Bytes::from_static(b": keep-alive\n\n")).await
    }

    async fn close(&mut self, reason: CloseReason) {
        if let Some(last) = reason.sse() {
            let _ = self.send(Bytes::from_static(last)).await;
        }
    }

    fn heartbeat_every(&self) -> Duration {
        self.keepalive
    }

    fn idle_timeout(&self) -> Option<Duration> {
        None
    }
}
