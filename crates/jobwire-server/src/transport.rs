//! Client transports. Each connection owns one [`jobwire_core::session::Outbox`] that
//! the hub fans out into, and drains it to its socket; nothing here blocks a publisher.
//!
//! - [`ws`]: `GET /v1/jobs/{id}/ws` (one job, closes when it ends) and `GET /v1/ws`
//!   (multiplexed subscribe/unsubscribe).
//! - [`channel`]: `GET /v1/projects/{project}/ws` and `GET /v1/notifications/ws`,
//!   channel sockets on the same session loop.
//! - [`socket`]: the WebSocket with a write deadline that every session writes to.
//! - [`sse`]: `GET /v1/jobs/{id}/events` with `Accept: text/event-stream`.

pub(crate) mod channel;
pub(crate) mod socket;
pub(crate) mod sse;
pub(crate) mod ws;

use bytes::Bytes;
use jobwire_proto::frame::ServerFrame;

/// Serializes a control frame (events are already bytes).
pub(crate) fn control(frame: &ServerFrame) -> Bytes {
    // Serializing these plain structs cannot fail; an empty frame would be visible.
    Bytes::from(serde_json::to_vec(frame).unwrap_or_default())
}
