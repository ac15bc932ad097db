//! A WebSocket with a write deadline. Every write (`feed`, `send`, `flush`) makes
//! progress within `write_timeout` or fails: a peer that stopped reading can never pin
//! its session (and its connection slot) in a blocked write, so idle timeout, token
//! expiry, slow-consumer and shutdown closes all still happen, at most one deadline
//! late. A failed write ends the session without a close frame (the peer is not
//! reading it anyway); the slot is freed when the session drops.

use axum::extract::ws::{Message, WebSocket};
use futures_util::{FutureExt, SinkExt};
use jobwire_core::metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct Socket {
    ws: WebSocket,
    write_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Socket {
    pub(crate) fn new(ws: WebSocket, write_timeout: Duration, metrics: Arc<Metrics>) -> Socket {
        Socket {
            ws,
            write_timeout,
            metrics,
        }
    }

    /// The next message from the peer (`None` once it is gone).
    pub(crate) async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        self.ws.recv().await
    }

    /// Queues a message; written by the next `flush` (or when the buffer fills).
    pub(crate) async fn feed(&mut self, m: Message) -> Result<(), axum::Error> {
        deadline(self.write_timeout, &self.metrics, self.ws.feed(m)).await
    }

    /// Writes one message and flushes.
    pub(crate) async fn send(&mut self, m: Message) -> Result<(), axum::Error> {
        deadline(self.write_timeout, &self.metrics, self.ws.send(m)).await
    }

    /// Writes everything queued (and the reply to a peer's close frame, which the
    /// WebSocket layer queues by itself).
    pub(crate) async fn flush(&mut self) -> Result<(), axum::Error> {
        deadline(self.write_timeout, &self.metrics, self.ws.flush()).await
    }
}

/// Runs `write`, failing it when it has not completed within `limit`. A write that
/// completes on its first poll (the common case: room in the socket buffer) sets no
/// timer at all.
async fn deadline(
    limit: Duration,
    metrics: &Metrics,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), axum::Error> {
    let mut write = std::pin::pin!(write);
    if let Some(r) = write.as_mut().now_or_never() {
        return r;
    }
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r,
        Err(_) => {
            metrics.write_timeouts.inc();
            Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write deadline passed: the peer is not reading",
            )))
        }
    }
}
