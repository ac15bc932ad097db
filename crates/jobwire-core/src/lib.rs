//! The jobwire hub, without HTTP: job state behind an [`engine::Engine`], gap-free
//! subscriptions ([`recovery`]) and fan-out into bounded per-session queues.
//!
//! Data flows one way: transport -> [`hub::Hub`] -> engine (store) -> [`registry`]
//! fan-out -> [`session::Outbox`] -> transport.
//!
//! # Layout
//! - [`hub`]: the entry point transports call.
//! - [`channel`]: project and notification channels (keys, notification frames).
//! - [`access`]: tenant namespaces and allow-lists ([`access::Access`]).
//! - [`apikey`]: the stored record of a worker API key ([`apikey::ApiKey`]).
//! - [`engine`]: the engine trait and its contract; [`engine::embedded`] is the
//!   durable default (redb + group commit).
//! - [`registry`]: sharded job -> watchers map; fan-out.
//! - [`session`]: per-connection bounded outbound queue with progress coalescing.
//! - [`recovery`]: snapshot + history + live merge without gaps or duplicates.
//! - [`metrics`]: counters and histograms, Prometheus text.
//! - [`error`]: the [`HubError`] type.

pub mod access;
pub mod apikey;
pub mod channel;
pub mod children;
pub mod engine;
pub mod error;
pub mod hub;
pub mod liveness;
pub mod metrics;
pub mod recovery;
pub mod registry;
pub mod session;

pub use access::Access;
pub use error::HubError;
pub use hub::{CreateJob, Hub, HubConfig};
