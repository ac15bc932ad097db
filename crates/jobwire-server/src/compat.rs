//! Wire dialects: the URLs and message shapes of the systems our users run today,
//! served from jobwire's event log so their browser code and clients keep working
//! unchanged (`jobwire serve --compat NAME[,NAME…]`, docs/compat.md).
//!
//! Each dialect is a [`Dialect`]: it decodes its clients' frames into session
//! commands and turns snapshots, events and control frames into its own frames. The
//! generic [`DialectCodec`] does the rest for all of them: it folds each job's
//! [`state::JobState`] and keeps each event's frame on the event itself
//! (`Published::encodings`), so an event is encoded once per dialect, not once per
//! watcher. The session, auth, limits, heartbeats and shutdown are the v1 ones.
//!
//! # Layout
//! - `state`: the per-job fields the dialects' frames repeat.
//! - `progress_channel`, `a6hub`, `titan`, `project_updates`: one dialect each,
//!   with its routes.
//! - [`ingest`]: the Redis bridge's decoders (workers publishing into Redis).

mod a6hub;
pub mod ingest;
mod progress_channel;
mod project_updates;
mod state;
mod titan;

use crate::session::{CloseReason, Incoming, Output};
use crate::transport::ws::Codec;
use crate::AppState;
use axum::extract::ws::{CloseFrame, Utf8Bytes};
use axum::Router;
use bytes::Bytes;
use jobwire_proto::frame::ServerFrame;
use jobwire_proto::{Event, Job, Timestamp};
use serde_json::Value;
use state::{Changed, JobState, States};
use std::fmt;
use std::str::FromStr;

/// A dialect that `--compat` can enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialectName {
    /// `GET /progress/ws/{job_id}`.
    ProgressChannel,
    /// `GET /api/v1/ws/jobs/{id}/updates`.
    A6hub,
    /// `GET /ws/jobs/{job_id}`, `GET /health`, `POST /jobs/create`.
    Titan,
    /// `GET /ws/projects/{project_id}`, `GET /ws/notifications`.
    ProjectUpdates,
}

impl DialectName {
    pub const ALL: [DialectName; 4] = [
        DialectName::ProgressChannel,
        DialectName::A6hub,
        DialectName::Titan,
        DialectName::ProjectUpdates,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DialectName::ProgressChannel => "progress-channel",
            DialectName::A6hub => "a6hub",
            DialectName::Titan => "titan",
            DialectName::ProjectUpdates => "project-updates",
        }
    }

    /// Parses `--compat`: names separated by commas, or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<DialectName>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                return Ok(DialectName::ALL.to_vec());
            }
            let d = part.parse::<DialectName>()?;
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for DialectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DialectName {
    type Err = String;
    fn from_str(s: &str) -> Result<DialectName, String> {
        DialectName::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = DialectName::ALL.iter().map(|d| d.as_str()).collect();
                format!(
                    "unknown dialect `{s}`; expected {} or all",
                    names.join(", ")
                )
            })
    }
}

/// The routes of the enabled dialects.
pub(crate) fn routes(router: Router<AppState>, enabled: &[DialectName]) -> Router<AppState> {
    let mut r = router;
    for d in enabled {
        r = match d {
            DialectName::ProgressChannel => progress_channel::routes(r),
            DialectName::A6hub => a6hub::routes(r),
            DialectName::Titan => titan::routes(r),
            DialectName::ProjectUpdates => project_updates::routes(r),
        };
    }
    r
}

/// One system's frames, as pure functions of jobwire's data.
pub(crate) trait Dialect: Send + 'static {
    /// The slot of this dialect's bytes in `Published::encodings`.
    const SLOT: usize;
    /// A client text message.
    fn decode(&mut self, text: &str) -> Incoming;
    /// The first frame of a connection, before any snapshot (titan's `connected`).
    fn greeting(&mut self) -> Option<Bytes> {
        None
    }
    /// The frame (if any) for a subscription's snapshot.
    fn snapshot(&mut self, job: &Job, state: &JobState) -> Option<Bytes>;
    /// The frame (if any) for an event, given what it changed and the state after it.
    fn event(ev: &Event, changed: Changed, state: &JobState) -> Option<Bytes>;
    /// The frame (if any) for a control frame (pong, error, …).
    fn frame(&mut self, frame: &ServerFrame) -> Option<Bytes>;
    /// The heartbeat frame, if the system has one.
    fn heartbeat(&mut self) -> Option<Bytes>;
    /// How the system closes for `reason` (default: the v1 close-code table).
    fn close(&self, reason: CloseReason) -> Option<CloseFrame> {
        let (code, text) = reason.websocket();
        Some(CloseFrame {
            code: code.number(),
            reason: Utf8Bytes::from_static(text),
        })
    }
    /// Whether its clients send a `resume` first (only v1 clients do).
    fn waits_for_resume(&self) -> bool {
        false
    }
}

/// A [`Codec`] for any [`Dialect`]: folds job state, shares encoded events.
pub(crate) struct DialectCodec<D> {
    dialect: D,
    states: States,
}

impl<D: Dialect> DialectCodec<D> {
    pub(crate) fn new(dialect: D) -> DialectCodec<D> {
        DialectCodec {
            dialect,
            states: States::default(),
        }
    }

    /// Folds an event's JSON and encodes it (`cache`: the event's shared slots).
    fn event(
        &mut self,
        bytes: &[u8],
        cache: Option<&jobwire_core::session::Encodings>,
    ) -> Option<Bytes> {
        let ev: Event = match serde_json::from_slice(bytes) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "stored event did not parse; not sent to a dialect client");
                return None;
            }
        };
        let (changed, state) = self.states.apply(&ev);
        match cache {
            // Shared only while this session has folded every event of the job since
            // its snapshot, as every other session of the dialect has.
            Some(c) if !state.diverged => c.get_or_init(D::SLOT, || D::event(&ev, changed, state)),
            _ => D::event(&ev, changed, state),
        }
    }
}

impl<D: Dialect> Codec for DialectCodec<D> {
    fn decode(&mut self, text: &str) -> Incoming {
        self.dialect.decode(text)
    }

    fn encode(&mut self, out: &Output<'_>) -> Option<Bytes> {
        match out {
            Output::Snapshot { job, .. } => {
                let state = self.states.set(job).clone();
                self.dialect.snapshot(job, &state)
            }
            Output::Live(p) => {
                if p.job_id.starts_with("~n/") {
                    return notification_event(&p.bytes).and_then(|e| self.event(&e, None));
                }
                self.event(&p.bytes, Some(&p.encodings))
            }
            Output::Replayed { bytes, .. } => self.event(bytes, None),
            Output::Notification { bytes, .. } => {
                notification_event(bytes).and_then(|e| self.event(&e, None))
            }
            Output::Frame(f) => self.dialect.frame(f),
        }
    }

    fn heartbeat(&mut self) -> Option<Bytes> {
        self.dialect.heartbeat()
    }

    fn greeting(&mut self) -> Option<Bytes> {
        self.dialect.greeting()
    }

    fn close(&self, reason: CloseReason) -> Option<CloseFrame> {
        self.dialect.close(reason)
    }

    fn waits_for_resume(&self) -> bool {
        self.dialect.waits_for_resume()
    }
}

/// The terminal event inside a notification frame (`{"type":"notification","seq":N,"event":{…}}`).
fn notification_event(frame: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(frame).ok()?;
    serde_json::to_vec(v.get("event")?).ok()
}

/// JSON bytes of a value built by a dialect (serializing a `Value` cannot fail).
pub(crate) fn json(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// Now, as the systems' `timestamp` fields are.
pub(crate) fn now() -> Value {
    Value::String(Timestamp::now().to_rfc3339())
}

/// A client-frame decoder, boxed (the fuzz targets run every dialect's).
#[cfg(test)]
pub(crate) type Decoder = Box<dyn Fn(&str) -> Incoming>;

/// Every dialect's client-frame decoder, for the fuzz targets.
#[cfg(test)]
pub(crate) fn all_decoders() -> Vec<Decoder> {
    vec![
        Box::new(|t| progress_channel::ProgressChannel.decode(t)),
        Box::new(|t| a6hub::A6hub.decode(t)),
        Box::new(|t| titan::Titan::for_job("j").decode(t)),
        Box::new(|t| project_updates::ProjectUpdates.decode(t)),
    ]
}

/// Feeds `bytes` as a stored event and as a notification through every dialect's
/// encoder (the fuzz targets: never a panic, whatever the bytes).
#[cfg(test)]
pub(crate) fn encode_any(bytes: &[u8]) {
    let b = Bytes::copy_from_slice(bytes);
    let outs = [
        Output::Replayed { seq: 1, bytes: &b },
        Output::Notification { bytes: &b },
    ];
    for out in &outs {
        let _ = DialectCodec::new(progress_channel::ProgressChannel).encode(out);
        let _ = DialectCodec::new(a6hub::A6hub).encode(out);
        let _ = DialectCodec::new(titan::Titan::for_job("j")).encode(out);
        let _ = DialectCodec::new(project_updates::ProjectUpdates).encode(out);
    }
}
