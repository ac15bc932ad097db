//! Server-Sent Events: the same stream as a single-job WebSocket, one job per
//! request. `id:` is the event's seq, so a browser's `EventSource` resumes by itself
//! with `Last-Event-ID`; `?since=` does the same for other clients. The stream ends
//! after the job's terminal event; reconnecting to a finished job you have fully seen
//! answers 204, which tells `EventSource` to stop.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::limits::Permit;
use crate::transport::control;
use crate::AppState;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use jobwire_core::recovery::{Positions, Replay};
use jobwire_core::session::{Closed, EventKind, Outbox};
use jobwire_core::Hub;
use jobwire_proto::frame::ServerFrame;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks buffered between the session task and the HTTP body.
const CHUNK_BUFFER: usize = 64;
/// Reconnect delay suggested to `EventSource`, in ms.
const RETRY_MS: u32 = 2000;

/// Unsubscribes and counts the connection closed when the stream task ends.
struct Guard {
    hub: Arc<Hub>,
    /// The job's storage key.
    job: Arc<str>,
    outbox: Arc<Outbox>,
    _permit: Permit,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.job, &self.outbox);
        self.hub.metrics().connections.dec();
    }
}

fn event_chunk(seq: u64, json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 32);
    b.put_slice(b"id: ");
    b.put_slice(seq.to_string().as_bytes());
    b.put_slice(b"\ndata: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

fn data_chunk(json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 16);
    b.put_slice(b"data: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// Starts an SSE stream for `id` from `since` (or the `Last-Event-ID` header).
pub(crate) async fn stream(
    st: AppState,
    caller: Principal,
    permit: Permit,
    id: String,
    headers: &HeaderMap,
    since: Option<u64>,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let since = last_event_id.or(since);
    let outbox = st.hub.outbox();
    let replay = st
        .hub
        .subscribe(&caller.access, &id, &outbox, since)
        .await?;
    if replay.job.status.is_terminal() && since.is_some_and(|s| s >= replay.job.seq) {
        st.hub.unsubscribe(replay.key(), &outbox);
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    st.hub.metrics().connections.inc();
    let guard = Guard {
        hub: st.hub.clone(),
        job: replay.key().clone(),
        outbox,
        _permit: permit,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNK_BUFFER);
    tokio::spawn(pump(st, guard, replay, tx));
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

/// Feeds the body: snapshot, history, then live events until the job ends, the client
/// leaves, the client falls too far behind, or the server shuts down.
async fn pump(st: AppState, guard: Guard, mut replay: Replay, tx: mpsc::Sender<Bytes>) {
    let metrics = st.hub.metrics().clone();
    let job = guard.job.clone();
    let send = |b: Bytes| {
        let tx = tx.clone();
        async move { tx.send(b).await.is_ok() }
    };
    if !send(Bytes::from(format!("retry: {RETRY_MS}\n\n"))).await {
        return;
    }
    let snapshot = control(&ServerFrame::Snapshot {
        job_id: replay.job.id.clone(),
        seq: replay.job.seq,
        job: Box::new(replay.job.clone()),
    });
    // No `id:` on the snapshot: Last-Event-ID must only advance with events actually
    // sent, or a drop during the replay would skip the rest of it.
    if !send(data_chunk(&snapshot)).await {
        return;
    }
    loop {
        match replay.next_page().await {
            Ok(Some(page)) => {
                if let Some((since, history_start)) = page.truncated {
                    let notice = control(&ServerFrame::HistoryTruncated {
                        job_id: replay.job.id.clone(),
                        since,
                        history_start,
                    });
                    if !send(data_chunk(&notice)).await {
                        return;
                    }
                }
                for (seq, bytes) in page.events {
                    if !send(event_chunk(seq, &bytes)).await {
                        return;
                    }
                    metrics.events_delivered.inc();
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, job = &*job, "history read failed during SSE replay");
                return;
            }
        }
    }
    if replay.job.status.is_terminal() {
        return;
    }
    let mut positions = Positions::default();
    positions.track(job.clone(), replay.position());
    let mut keepalive = tokio::time::interval(st.config.sse_keepalive);
    keepalive.tick().await;
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            _ = st.shutdown.cancelled() => {
                let _ = send(Bytes::from_static(b": server restarting\n\n")).await;
                return;
            }
            _ = tx.closed() => return,
            _ = keepalive.tick() => {
                if !send(Bytes::from_static(b": keep-alive\n\n")).await {
                    return;
                }
            }
            _ = guard.outbox.notified() => {
                let closed = guard.outbox.drain(&mut buf);
                for p in &buf {
                    if !positions.admit(&p.job_id, p.seq) {
                        continue;
                    }
                    if !send(event_chunk(p.seq, &p.bytes)).await {
                        return;
                    }
                    metrics.events_delivered.inc();
                    if p.kind == EventKind::Terminal {
                        return;
                    }
                }
                match closed {
                    Some(Closed::SlowConsumer) => {
                        let _ = send(Bytes::from_static(b": slow consumer, reconnect\n\n")).await;
                        return;
                    }
                    Some(Closed::Resync) => {
                        let _ = send(Bytes::from_static(b": live stream interrupted, reconnect\n\n")).await;
                        return;
                    }
                    None => {}
                }
            }
        }
    }
}
