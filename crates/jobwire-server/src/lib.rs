//! jobwire's HTTP face: axum routes for the `/v1` API, WebSocket and SSE transports,
//! health and metrics. No business logic: everything goes through
//! [`jobwire_core::Hub`].
//!
//! # Layout
//! - [`app`] builds the router; [`run`] serves it on a given listener until a given
//!   shutdown future resolves, then drains.
//! - `config`: [`ServerConfig`] (timeouts, sizes, limits, dialects).
//! - [`compat`]: the wire dialects of the systems our users run today
//!   (`--compat`), each a codec over the same session.
//! - [`auth`]: JWT verification, scopes, tenant, allow-lists, Origin check.
//! - [`apikeys`]: worker API keys: format, hashing, checking presented keys.
//! - [`limits`]: connection limits (total, per IP, per tenant).
//! - [`ratelimit`]: publish rate limits (token bucket per key, tenant or IP).
//! - `serve`: the accept loop, handshake timeout, connection draining.
//! - `error`: [`ApiError`], the single mapping from errors to HTTP responses.
//! - `routes/`: `jobs` (create, get, list, publish, history, cancel), `keys` (API
//!   key management), `health` (healthz, readyz, metrics, openapi).
//! - `session`: one connection's subscribe → replay → live → close, for every
//!   transport (the `Wire` seam; the close-reason table; channel catch-ups).
//! - `transport/`: `ws` (the v1 WebSocket endpoints and the codec-driven WebSocket
//!   wire), `channel` (channel endpoints), `sse`, `socket` (write deadlines).

pub mod apikeys;
pub mod auth;
pub mod compat;
mod config;
mod error;
mod extract;
#[cfg(test)]
mod fuzz;
pub mod limits;
pub mod ratelimit;
mod routes;
mod serve;
mod session;
mod transport;

pub use auth::{AuthConfig, KeySource, Verifier};
pub use config::ServerConfig;
pub use error::ApiError;
pub use limits::ConnLimits;
pub use ratelimit::PublishLimit;

use axum::Router;
use jobwire_core::Hub;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every handler shares: cloned per request by axum's `State`, so it is one
/// `Arc` (one reference count) around [`Shared`], whose fields it derefs to.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct Shared {
    pub hub: Arc<Hub>,
    pub config: Arc<ServerConfig>,
    /// Token verification and the Origin allow-list (development mode by default).
    pub auth: Arc<AuthConfig>,
    /// Streaming connection limits.
    pub limiter: Arc<limits::Limiter>,
    /// API key checks (with their short record cache).
    pub keys: Arc<apikeys::KeyVerifier>,
    /// Publish rate limits (`config.publish_limit`).
    pub publish_limiter: Arc<ratelimit::PublishLimiter>,
    /// Cancelled when shutdown starts; sessions close themselves (WS 1012, SSE end).
    pub shutdown: CancellationToken,
    /// Every WebSocket session task: shutdown waits for them (with the grace
    /// deadline), since an upgraded connection has left the HTTP server.
    pub sessions: TaskTracker,
}

impl AppState {
    /// A server without auth (development mode) and without connection limits.
    pub fn new(hub: Arc<Hub>, config: ServerConfig) -> AppState {
        let limiter = limits::Limiter::new(ConnLimits::default(), hub.metrics().clone());
        let publish_limiter = Arc::new(ratelimit::PublishLimiter::new(
            config.publish_limit,
            hub.metrics().clone(),
        ));
        AppState(Arc::new(Shared {
            keys: Arc::default(),
            publish_limiter,
            hub,
            config: Arc::new(config),
            auth: Arc::new(AuthConfig::default()),
            limiter,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
        }))
    }

    /// Sets authentication.
    pub fn with_auth(mut self, auth: AuthConfig) -> AppState {
        Arc::make_mut(&mut self.0).auth = Arc::new(auth);
        self
    }

    /// Sets connection limits.
    pub fn with_limits(mut self, limits: ConnLimits) -> AppState {
        let limiter = limits::Limiter::new(limits, self.hub.metrics().clone());
        Arc::make_mut(&mut self.0).limiter = limiter;
        self
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves; then tells every
/// session to close (WebSocket 1012, SSE final comment), answers new requests with
/// `503 shutting_down`, waits up to `config.shutdown_grace` for connections and
/// WebSocket sessions to drain, and finishes the store's queued writes. Never binds
/// or installs signal handlers itself.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let grace = state.config.shutdown_grace;
    let handshake_timeout = state.config.handshake_timeout;
    let hub = state.hub.clone();
    let metrics = hub.metrics().clone();
    let sessions = state.sessions.clone();
    // Stalls, stall give-ups and cancel timeouts (see jobwire_core::liveness).
    let scanner = hub.start_liveness();
    let serve = serve::serve(
        listener,
        app(state),
        handshake_timeout,
        metrics,
        token.clone(),
        sessions,
    );
    let drained = tokio::select! {
        () = serve => true,
        _ = async {
            shutdown.await;
            tracing::info!("shutdown: closing sessions and draining");
            token.cancel();
            tokio::time::sleep(grace).await;
        } => false,
    };
    if !drained {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; dropping remaining connections"
        );
    }
    scanner.abort();
    hub.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}
