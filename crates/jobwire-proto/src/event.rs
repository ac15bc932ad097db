//! Events. Workers send [`EventInput`]s (an event without the server-assigned fields);
//! the server turns each accepted input into an [`Event`] with a per-job `seq`, a
//! `timestamp` and the job's `status` after the event, serializes it once, stores
//! those bytes and sends the same bytes to every watcher.

use crate::codes::ErrorCode;
use crate::job::JobStatus;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Longest accepted `event_id` idempotency key.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// A refused input: a code from the table and a message for the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct InputError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
}

impl InputError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        InputError {
            code,
            message: message.into(),
        }
    }
}

/// What a publisher sends for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    pub body: InputBody,
    /// Idempotency key: a retry with the same key returns the original `seq`.
    pub event_id: Option<String>,
    /// Shallow-merged into the job's metadata.
    pub metadata: Option<Map<String, Value>>,
}

impl EventInput {
    /// An input the hub itself emits (liveness, cancel requests, timeouts): types a
    /// publisher may not send, and never mistaken for a sign of life from the worker.
    pub fn server(body: InputBody, event_id: Option<String>) -> EventInput {
        EventInput {
            body,
            event_id,
            metadata: None,
        }
    }

    /// Whether this input comes from the job's worker (anything but the hub's own
    /// liveness and cancel bookkeeping), so it proves the worker is alive.
    pub fn is_from_worker(&self) -> bool {
        !matches!(
            self.body,
            InputBody::Stalled { .. }
                | InputBody::Recovered
                | InputBody::CancelRequested { .. }
                | InputBody::Child(_)
                | InputBody::Cancelled { error: Some(_), .. }
                | InputBody::Failed { lost: true, .. }
        )
    }
}

/// The type-specific part of an [`EventInput`].
#[derive(Debug, Clone, PartialEq)]
pub enum InputBody {
    Status {
        status: JobStatus,
        message: Option<String>,
    },
    Progress {
        progress: f64,
        stage: Option<String>,
        message: Option<String>,
        /// Kept in the snapshot as the job's last checkpoint.
        checkpoint: Option<Value>,
    },
    Step {
        step: String,
        label: Option<String>,
        message: Option<String>,
    },
    Log {
        line: String,
        level: Option<String>,
    },
    Completed {
        result: Option<Value>,
        message: Option<String>,
    },
    Failed {
        error: String,
        message: Option<String>,
        /// Emitted by the hub when a stalled worker is given up on (`worker_lost`).
        lost: bool,
    },
    Cancelled {
        reason: Option<String>,
        /// Set by the hub only (`cancel_timeout`).
        error: Option<String>,
    },
    Custom {
        name: String,
        data: Option<Value>,
    },
    /// Hub only: no heartbeat or publish within the job's `heartbeat_timeout`.
    Stalled {
        heartbeat_timeout: f64,
    },
    /// Hub only: the first sign of life after `stalled`.
    Recovered,
    /// Hub only: someone asked the worker to stop.
    CancelRequested {
        by: Option<String>,
        reason: Option<String>,
    },
    /// Hub only: a child job changed (sent to its parent).
    Child(ChildUpdate),
}

/// What a parent learns about one child: its state as of the child's `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildUpdate {
    /// The child's public id.
    pub child: String,
    pub child_status: JobStatus,
    pub child_seq: u64,
    pub progress: f64,
    pub weight: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
}

/// Serde's view of an input: strict (unknown fields are refused) so typos surface.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawInput {
    Status {
        status: JobStatus,
        message: Option<String>,
        event_id: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
    Progress {
        progress: f64,
        stage: Option<String>,
        message: Option<String>,
        checkpoint: Option<Value>,
        event_id: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
    Step {
        step: String,
        label: Option<String>,
        message: Option<String>,
        event_id: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
    Log {
        line: String,
        level: Option<String>,
        event_id: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
    Completed {
        result: Option<Value>,
        message: Option<String>,
        event_id: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
    Failed {
        error: String,
        message: Option<String>,
        event_id: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
    Cancelled {
        reason: Option<String>,
        event_id: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
    Custom {
        name: String,
        data: Option<Value>,
        event_id: Option<String>,
        metadata: Option<Map<String, Value>>,
    },
}

impl EventInput {
    /// Parses and checks one input event (types, ranges, lengths). State-machine
    /// checks happen later, against the job ([`crate::Job::check`]).
    pub fn from_value(value: Value) -> Result<EventInput, InputError> {
        if let Some(t) = value.get("type").and_then(Value::as_str) {
            if t == "created" {
                return Err(InputError::new(
                    ErrorCode::InvalidEvent,
                    "`created` is emitted by the server; create jobs with POST /v1/jobs",
                ));
            }
        }
        let raw: RawInput = serde_json::from_value(value)
            .map_err(|e| InputError::new(ErrorCode::InvalidEvent, e.to_string()))?;
        let (body, event_id, metadata) = match raw {
            RawInput::Status {
                status,
                message,
                event_id,
                metadata,
            } => (InputBody::Status { status, message }, event_id, metadata),
            RawInput::Progress {
                progress,
                stage,
                message,
                checkpoint,
                event_id,
                metadata,
            } => {
                if !(0.0..=100.0).contains(&progress) {
                    return Err(InputError::new(
                        ErrorCode::InvalidEvent,
                        "progress must be a number from 0 to 100",
                    ));
                }
                let body = InputBody::Progress {
                    progress,
                    stage,
                    message,
                    checkpoint,
                };
                (body, event_id, metadata)
            }
            RawInput::Step {
                step,
                label,
                message,
                event_id,
                metadata,
            } => {
                non_empty("step", &step)?;
                let body = InputBody::Step {
                    step,
                    label,
                    message,
                };
                (body, event_id, metadata)
            }
            RawInput::Log {
                line,
                level,
                event_id,
                metadata,
            } => (InputBody::Log { line, level }, event_id, metadata),
            RawInput::Completed {
                result,
                message,
                event_id,
                metadata,
            } => (InputBody::Completed { result, message }, event_id, metadata),
            RawInput::Failed {
                error,
                message,
                event_id,
                metadata,
            } => {
                non_empty("error", &error)?;
                let body = InputBody::Failed {
                    error,
                    message,
                    lost: false,
                };
                (body, event_id, metadata)
            }
            RawInput::Cancelled {
                reason,
                event_id,
                metadata,
            } => {
                let body = InputBody::Cancelled {
                    reason,
                    error: None,
                };
                (body, event_id, metadata)
            }
            RawInput::Custom {
                name,
                data,
                event_id,
                metadata,
            } => {
                non_empty("name", &name)?;
                (InputBody::Custom { name, data }, event_id, metadata)
            }
        };
        if let Some(id) = &event_id {
            let printable = id.bytes().all(|b| b.is_ascii_graphic());
            if id.is_empty() || id.len() > MAX_EVENT_ID_LEN || !printable {
                return Err(InputError::new(
                    ErrorCode::InvalidEvent,
                    "event_id must be 1-128 printable ASCII characters",
                ));
            }
        }
        Ok(EventInput {
            body,
            event_id,
            metadata,
        })
    }

    /// The wire body this input becomes once accepted.
    pub fn into_body(self) -> (EventBody, Option<String>, Option<Map<String, Value>>) {
        let body = match self.body {
            InputBody::Status { message, .. } => EventBody::Status { message },
            InputBody::Progress {
                progress,
                stage,
                message,
                checkpoint,
            } => EventBody::Progress {
                progress,
                stage,
                message,
                checkpoint,
                rate: None,
                eta_seconds: None,
            },
            InputBody::Step {
                step,
                label,
                message,
            } => EventBody::Step {
                step,
                label,
                message,
            },
            InputBody::Log { line, level } => EventBody::Log { line, level },
            InputBody::Completed { result, message } => EventBody::Completed { result, message },
            InputBody::Failed { error, message, .. } => EventBody::Failed { error, message },
            InputBody::Cancelled { reason, error } => EventBody::Cancelled { reason, error },
            InputBody::Custom { name, data } => EventBody::Custom { name, data },
            InputBody::Stalled { heartbeat_timeout } => EventBody::Stalled { heartbeat_timeout },
            // Filled in by the hub's apply step, which knows when the stall began.
            InputBody::Recovered => EventBody::Recovered { stalled_for: 0.0 },
            InputBody::CancelRequested { by, reason } => EventBody::CancelRequested { by, reason },
            InputBody::Child(c) => EventBody::Child(c),
        };
        (body, self.event_id, self.metadata)
    }
}

fn non_empty(field: &'static str, v: &str) -> Result<(), InputError> {
    if v.is_empty() {
        Err(InputError::new(
            ErrorCode::InvalidEvent,
            format!("`{field}` must not be empty"),
        ))
    } else {
        Ok(())
    }
}

/// The type-specific fields of a stored/wire event. A `status` event's new status is
/// the event's common `status` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    Created {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project: Option<String>,
        /// Liveness and cancel settings chosen at create.
        #[serde(flatten)]
        options: JobOptions,
        /// The parent job's public id, for a child job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<f64>,
        #[serde(default, skip_serializing_if = "is_zero")]
        depth: u32,
    },
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Progress {
        progress: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint: Option<Value>,
        /// Percent per second, smoothed (server-computed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<f64>,
        /// Seconds left at `rate` (server-computed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eta_seconds: Option<f64>,
    },
    Step {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Log {
        line: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level: Option<String>,
    },
    Completed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Failed {
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Cancelled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Custom {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
    },
    Stalled {
        heartbeat_timeout: f64,
    },
    Recovered {
        /// Seconds the job was stalled.
        stalled_for: f64,
    },
    CancelRequested {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A child of this job changed.
    Child(ChildUpdate),
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// When a parent job ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompleteWhen {
    /// Completes once every child has ended (and none failed, under `on_child_failure: "fail"`).
    AllChildren,
}

/// What a parent does when a child fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnChildFailure {
    /// The parent fails with `error: "child_failed"`.
    Fail,
    /// The parent goes on; the child counts as ended.
    Continue,
}

/// Per-job liveness and cancel settings, in seconds (all off by default).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct JobOptions {
    /// A job not heard from for this long is `stalled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout: Option<f64>,
    /// A job stalled for this long fails with `worker_lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_fail_after: Option<f64>,
    /// A cancel request not confirmed by the worker within this long ends the job
    /// `cancelled` with `error: "cancel_timeout"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_timeout: Option<f64>,
    /// Parent policy: end by itself when its children have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_when: Option<CompleteWhen>,
    /// Parent policy for a failed child (default `continue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_child_failure: Option<OnChildFailure>,
}

impl JobOptions {
    /// Longest accepted duration: a day.
    pub const MAX_SECONDS: f64 = 86_400.0;

    /// Checks every duration is a number of seconds in (0, a day].
    pub fn validate(&self) -> Result<(), InputError> {
        for (name, v) in [
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("stall_fail_after", self.stall_fail_after),
            ("cancel_timeout", self.cancel_timeout),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0 && v <= Self::MAX_SECONDS) {
                    return Err(InputError::new(
                        ErrorCode::InvalidRequest,
                        format!("`{name}` must be a number of seconds from 0 (exclusive) to 86400"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        *self == JobOptions::default()
    }

    /// Whether the job has a liveness or cancel timer.
    pub fn has_timers(&self) -> bool {
        self.heartbeat_timeout.is_some()
            || self.stall_fail_after.is_some()
            || self.cancel_timeout.is_some()
    }
}

impl EventBody {
    /// The wire `type` of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::Created { .. } => "created",
            EventBody::Status { .. } => "status",
            EventBody::Progress { .. } => "progress",
            EventBody::Step { .. } => "step",
            EventBody::Log { .. } => "log",
            EventBody::Completed { .. } => "completed",
            EventBody::Failed { .. } => "failed",
            EventBody::Cancelled { .. } => "cancelled",
            EventBody::Custom { .. } => "custom",
            EventBody::Stalled { .. } => "stalled",
            EventBody::Recovered { .. } => "recovered",
            EventBody::CancelRequested { .. } => "cancel_requested",
            EventBody::Child(_) => "child",
        }
    }

    /// Progress events are the only ones a slow consumer may have coalesced.
    pub fn is_progress(&self) -> bool {
        matches!(self, EventBody::Progress { .. })
    }
}

/// One event as stored and sent: `{"type":…,"job_id":…,"seq":…,"timestamp":…,
/// "status":…, …type fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(flatten)]
    pub body: EventBody,
    pub job_id: String,
    pub seq: u64,
    pub timestamp: Timestamp,
    /// The job's status after this event.
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<EventInput, InputError> {
        EventInput::from_value(v)
    }

    #[test]
    fn accepts_every_documented_type() {
        for v in [
            json!({"type":"status","status":"queued"}),
            json!({"type":"progress","progress":45.5,"stage":"render","message":"frame 900/2000","metadata":{"fps":30}}),
            json!({"type":"step","step":"synthesis","label":"Synthesis"}),
            json!({"type":"log","line":"hello"}),
            json!({"type":"completed","result":{"url":"x"}}),
            json!({"type":"failed","error":"boom"}),
            json!({"type":"cancelled"}),
            json!({"type":"custom","name":"rc_analysis_progress","data":{"a":1},"event_id":"k1"}),
        ] {
            assert!(parse(v.clone()).is_ok(), "{v}");
        }
    }

    #[test]
    fn refuses_bad_inputs_with_invalid_event() {
        for v in [
            json!({"type":"progress","progress":101}),
            json!({"type":"progress","progress":-1}),
            json!({"type":"progress","progress":"50"}),
            json!({"type":"teleport"}),
            json!({"progress":5}),
            json!({"type":"log"}),
            json!({"type":"log","line":"x","colour":"red"}),
            json!({"type":"created"}),
            json!({"type":"failed","error":""}),
            json!({"type":"status","status":"sleeping"}),
            json!({"type":"custom","name":"x","event_id":""}),
        ] {
            let err = parse(v.clone()).err();
            assert_eq!(err.map(|e| e.code), Some(ErrorCode::InvalidEvent), "{v}");
        }
    }

    #[test]
    fn wire_event_round_trips_and_carries_common_fields() {
        let ev = Event {
            body: EventBody::Status {
                message: Some("m".into()),
            },
            job_id: "j".into(),
            seq: 3,
            timestamp: Timestamp(1_790_000_000_000),
            status: JobStatus::Queued,
            event_id: None,
            metadata: None,
        };
        let text = serde_json::to_string(&ev).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(v["type"], "status");
        assert_eq!(v["status"], "queued");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["job_id"], "j");
        let back: Event = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, ev);
    }
}
