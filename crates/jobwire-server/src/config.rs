//! Server settings with their defaults; the binary fills them from flags/env.

use crate::ratelimit::PublishLimit;
use std::path::PathBuf;
use std::time::Duration;

/// Transport settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How often sessions get a heartbeat frame and a WebSocket ping.
    pub heartbeat_interval: Duration,
    /// A WebSocket that sends nothing (not even a pong) for this long is closed (4000).
    pub idle_timeout: Duration,
    /// Largest client WebSocket frame handled; bigger ones get `payload_too_large`.
    pub max_frame_bytes: usize,
    /// Hard WebSocket message limit; beyond it the connection is closed with 1009.
    pub max_message_bytes: usize,
    /// Largest HTTP request body (`payload_too_large`, 413).
    pub max_body_bytes: usize,
    /// Jobs one WebSocket may watch at once (`too_many_subscriptions`).
    pub max_subscriptions: usize,
    /// SSE keep-alive comment interval.
    pub sse_keepalive: Duration,
    /// How long shutdown waits for sessions to drain.
    pub shutdown_grace: Duration,
    /// A connection that has not sent a complete request head (for a WebSocket: the
    /// upgrade request) within this time is closed; zero turns it off.
    pub handshake_timeout: Duration,
    /// Publish rate limit per API key / tenant / IP (off by default).
    pub publish_limit: PublishLimit,
    /// A WebSocket write that makes no progress for this long ends the session (the
    /// peer stopped reading); its connection slot is freed.
    pub write_timeout: Duration,
    /// A request body that has not fully arrived this long after the request head
    /// is refused with 408 `request_timeout` and its connection closed.
    pub body_timeout: Duration,
    /// The compatibility dialects to serve (`--compat`); none by default.
    pub compat: Vec<crate::compat::DialectName>,
    /// Serve the dashboard from this directory instead of the embedded bundle.
    pub dashboard_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            heartbeat_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_frame_bytes: 64 * 1024,
            max_message_bytes: 1024 * 1024,
            max_body_bytes: 1024 * 1024,
            max_subscriptions: 1000,
            sse_keepalive: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            publish_limit: PublishLimit::default(),
            write_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            compat: Vec::new(),
            dashboard_dir: None,
        }
    }
}
