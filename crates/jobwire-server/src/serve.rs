//! The accept loop: one HTTP/1 connection task per socket (with upgrades, for
//! WebSockets), a handshake timeout against slow-loris clients, and the connection
//! side of graceful shutdown (stop accepting, ask each connection to finish its
//! current request, wait for all of them).
//!
//! The handshake timeout is hyper's request-head read timeout: a connection that
//! has not delivered a complete request head (request line and headers, which for a
//! WebSocket include the upgrade request) within it is closed. The timer restarts
//! after each response, so an idle keep-alive connection is closed after the same
//! time. Only timeouts before a connection's first request count in
//! `jobwire_handshake_timeouts_total`.

use crate::error::ApiError;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use jobwire_core::metrics::Metrics;
use jobwire_proto::ErrorCode;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Layer, ServiceExt};

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `stop` is cancelled, then waits for open HTTP
/// connections and for the WebSocket sessions in `sessions` (an upgraded connection
/// is no longer an HTTP connection) to finish. While it waits, new connections are
/// still accepted and every request on them is answered `503 shutting_down`, so a
/// client racing the shutdown is told to go elsewhere instead of being refused. A
/// zero `handshake_timeout` turns the timeout off.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    handshake_timeout: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    sessions: TaskTracker,
) {
    // Every connection task holds a receiver; `closed()` resolves when all are gone.
    let (all_closed, conn_alive) = watch::channel(());
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let served = Arc::new(AtomicBool::new(false));
        let mark = served.clone();
        let svc = Extension(ConnectInfo(peer)).layer(app.clone()).map_request(
            move |req: axum::http::Request<hyper::body::Incoming>| {
                mark.store(true, Ordering::Relaxed);
                req
            },
        );
        let svc = TowerToHyperService::new(svc);
        let stop = stop.clone();
        let metrics = metrics.clone();
        let alive = conn_alive.clone();
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new());
            builder
                .header_read_timeout((!handshake_timeout.is_zero()).then_some(handshake_timeout));
            let mut conn = pin!(builder
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades());
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() && !served.load(Ordering::Relaxed) {
                    metrics.handshake_timeouts.inc();
                    tracing::debug!(%peer, "handshake timeout: connection closed");
                } else {
                    tracing::trace!(%peer, error = %e, "connection ended with an error");
                }
            }
            drop(alive);
        });
    }
    drop(conn_alive);
    sessions.close();
    let mut drained = pin!(async {
        all_closed.closed().await;
        sessions.wait().await;
    });
    loop {
        tokio::select! {
            () = &mut drained => break,
            r = listener.accept() => {
                if let Ok((tcp, _)) = r {
                    tokio::spawn(refuse(tcp, handshake_timeout));
                }
            }
        }
    }
}

/// Answers every request of a connection accepted during shutdown with
/// `503 shutting_down`, then closes it.
async fn refuse(tcp: tokio::net::TcpStream, handshake_timeout: Duration) {
    let svc = hyper::service::service_fn(|_req| async {
        let mut resp = ApiError::new(
            ErrorCode::ShuttingDown,
            "the server is shutting down; retry against another instance or later",
        )
        .into_response();
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        Ok::<_, std::convert::Infallible>(resp)
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(false);
    builder.header_read_timeout((!handshake_timeout.is_zero()).then_some(handshake_timeout));
    let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
}
