//! WebSocket frames. Event frames are [`crate::Event`]s (they carry `seq`); everything
//! else the server sends is a [`ServerFrame`]; clients send [`ClientFrame`]s.

use crate::codes::ErrorCode;
use crate::job::Job;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Watch a job; `since` = the last seq the client has (absent: snapshot then live).
    Subscribe {
        job_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// The `epoch` of the snapshot (or `rewound` notice) `since` came with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
    /// Stop watching a job.
    Unsubscribe { job_id: String },
    /// Answered with `pong`.
    Ping {},
    /// A fresh token for the same tenant, before the current one expires.
    Auth { token: String },
    /// First frame of a channel socket (project or notifications): where the client
    /// was. `positions` = last seq per job id (project channel); `since` = last
    /// notification seq (notifications channel). Both absent: start fresh.
    Resume {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        positions: Option<std::collections::BTreeMap<String, u64>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// The `epoch` of the snapshots `positions` came with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
    },
}

/// The client frame types the server understands.
pub const CLIENT_FRAME_TYPES: &[&str] = &["subscribe", "unsubscribe", "ping", "auth", "resume"];

/// Control frames the server sends (events are sent as [`crate::Event`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame of every subscription: the job as of `seq`.
    Snapshot {
        job_id: String,
        seq: u64,
        /// The store's epoch: send it back with `since` when resuming (absent on
        /// engines that never fan out ahead of their flush).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<u64>,
        job: Box<Job>,
    },
    /// The server's store lost events this client had seen (a crash or a failed
    /// flush took them back before they were durable) and wrote others under the
    /// same seqs: drop everything from `from` on; those seqs follow again.
    Rewound {
        job_id: String,
        since: u64,
        from: u64,
        epoch: u64,
    },
    /// The requested `since` is older than the kept history: events from
    /// `history_start` follow; the ones before it are gone (the snapshot is whole).
    HistoryTruncated {
        job_id: String,
        since: u64,
        history_start: u64,
    },
    /// A channel socket finished its catch-up: `jobs` jobs were replayed and
    /// `omitted` were left out by the replay bound; live frames follow.
    Ready { jobs: u64, omitted: u64 },
    /// Notifications after `since` were trimmed (only the newest are kept); the
    /// ones from `start` follow.
    NotificationsTruncated { since: u64, start: u64 },
    /// Reply to `unsubscribe`.
    Unsubscribed { job_id: String },
    /// Reply to `auth`: the new token is in force until `expires_at` (Unix seconds).
    Authenticated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    /// Reply to `ping`.
    Pong { timestamp: Timestamp },
    /// Sent every heartbeat interval.
    Heartbeat { timestamp: Timestamp },
    /// A refused request; the connection stays open unless a close follows.
    Error {
        code: ErrorCode,
        /// The code's stable number (see [`ErrorCode::number`]).
        number: u16,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
    },
}
