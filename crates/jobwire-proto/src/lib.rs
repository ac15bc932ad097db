//! Wire types of jobwire protocol v1: events, job snapshots, client/server frames,
//! numbered error and close codes. No runtime, no I/O: every other crate (and the
//! client libraries) speak through these types.
//!
//! # Layout
//! - [`codes`]: the numbered table of error codes and WebSocket close codes.
//! - [`time`]: the millisecond timestamp type, RFC 3339 on the wire.
//! - [`job`]: job id rules, the status state machine, the job snapshot.
//! - [`event`]: publish inputs (what workers send) and stored/wire events.
//! - [`frame`]: WebSocket frames in both directions.

pub mod codes;
pub mod event;
pub mod frame;
pub mod job;
pub mod time;

pub use codes::{CloseCode, ErrorCode};
pub use event::{ChildUpdate, Event, EventBody, EventInput, InputError, JobOptions};
pub use job::{Job, JobId, JobStatus};
pub use time::Timestamp;

/// Protocol version spoken by this crate; the HTTP API lives under `/v1`.
pub const PROTOCOL_VERSION: u32 = 1;
