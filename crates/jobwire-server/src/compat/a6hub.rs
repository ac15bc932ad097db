//! `a6hub`: `GET /api/v1/ws/jobs/{id}/updates?token=JWT`. Frames are
//! `{"type","data","timestamp"}`: `connected` (job_id, status, current_step,
//! progress) on connect, then `status`, `progress` (progress, current_step,
//! completed_steps), `log` (log_line), `step` (step_name, step_label), `complete`
//! (status, message) and `error` (error_message). Status words are a6hub's
//! (`running` for `in_progress`); a job id of decimal digits is a JSON number, as
//! a6hub's ids are. `{"type":"ping"}` gets a `pong`.

use super::state::{Changed, JobState};
use super::{json, now, Dialect, DialectCodec};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::limits::PeerIp;
use crate::session::{Command, Incoming};
use crate::transport::ws::{accept, Open};
use crate::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use jobwire_proto::frame::ServerFrame;
use jobwire_proto::{ErrorCode, Event, EventBody, Job, JobStatus, Timestamp};
use serde_json::{json, Value};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/api/v1/ws/jobs/{id}/updates", get(socket))
}

async fn socket(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let mut open = Open::new(caller, ip);
    open.main_job = Some(id);
    accept(ws, st, open, DialectCodec::new(A6hub))
}

pub(crate) struct A6hub;

/// a6hub's word for a status.
pub(crate) fn status_word(s: JobStatus) -> &'static str {
    match s {
        JobStatus::InProgress => "running",
        other => other.as_str(),
    }
}

/// A job id as a6hub shows it: a number when it is one.
pub(crate) fn job_id(id: &str) -> Value {
    // Only canonical numbers: "007" stays a string (as a number it would read 7).
    let canonical = id == "0" || !id.starts_with('0');
    if canonical && !id.is_empty() && id.len() <= 15 && id.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = id.parse::<u64>() {
            return Value::from(n);
        }
    }
    Value::String(id.to_owned())
}

/// A percentage as a6hub sends it: an integer when it is whole.
fn percent(p: f64) -> Value {
    if p.fract() == 0.0 && (0.0..=100.0).contains(&p) {
        Value::from(p as u64)
    } else {
        Value::from(p)
    }
}

fn current_step(state: &JobState) -> Value {
    match (&state.step, &state.stage) {
        (Some((step, _)), _) => Value::String(step.clone()),
        (None, Some(stage)) => Value::String(stage.clone()),
        (None, None) => Value::Null,
    }
}

fn msg(kind: &str, data: Value, timestamp: Timestamp) -> Option<Bytes> {
    Some(json(&json!({
        "type": kind, "data": data, "timestamp": timestamp.to_rfc3339(),
    })))
}

impl Dialect for A6hub {
    const SLOT: usize = 1;

    fn decode(&mut self, text: &str) -> Incoming {
        match serde_json::from_str::<Value>(text) {
            Ok(v) if v.get("type").and_then(Value::as_str) == Some("ping") => {
                Incoming::Command(Command::Ping)
            }
            Ok(_) => Incoming::Noise,
            Err(e) => Incoming::Command(Command::Invalid(
                ErrorCode::MalformedJson,
                format!("invalid JSON: {e}"),
            )),
        }
    }

    fn snapshot(&mut self, job: &Job, state: &JobState) -> Option<Bytes> {
        let data = json!({
            "job_id": job_id(&job.id),
            "status": status_word(state.status),
            "current_step": current_step(state),
            "progress": percent(state.progress),
        });
        msg("connected", data, job.updated_at)
    }

    fn event(ev: &Event, changed: Changed, state: &JobState) -> Option<Bytes> {
        let t = ev.timestamp;
        match &ev.body {
            EventBody::Status { .. } if changed.status => {
                msg("status", json!({"status": status_word(state.status)}), t)
            }
            EventBody::Progress { .. } => msg(
                "progress",
                json!({
                    "progress": percent(state.progress),
                    "current_step": current_step(state),
                    "completed_steps": state.completed_steps,
                }),
                t,
            ),
            EventBody::Log { line, .. } => msg("log", json!({"log_line": line}), t),
            EventBody::Step { step, label, .. } => msg(
                "step",
                json!({"step_name": step, "step_label": label.as_deref().unwrap_or(step)}),
                t,
            ),
            EventBody::Completed { message, .. } => msg(
                "complete",
                json!({
                    "status": "completed",
                    "message": message.as_deref().unwrap_or("Build completed successfully"),
                }),
                t,
            ),
            EventBody::Cancelled { reason, .. } => msg(
                "complete",
                json!({"status": "cancelled", "message": reason.as_deref().unwrap_or("Build cancelled")}),
                t,
            ),
            EventBody::Failed { error, .. } => msg("error", json!({"error_message": error}), t),
            // a6hub has no words for liveness: its build page shows them as log lines.
            EventBody::Stalled { heartbeat_timeout } => msg(
                "log",
                json!({"log_line": format!("[jobwire] worker stalled: no heartbeat for {heartbeat_timeout} s")}),
                t,
            ),
            EventBody::Recovered { stalled_for } => msg(
                "log",
                json!({"log_line": format!("[jobwire] worker recovered after {stalled_for} s")}),
                t,
            ),
            EventBody::CancelRequested { reason, .. } => msg(
                "log",
                json!({"log_line": format!("[jobwire] cancel requested{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())}),
                t,
            ),
            _ => None,
        }
    }

    fn frame(&mut self, f: &ServerFrame) -> Option<Bytes> {
        match f {
            ServerFrame::Pong { timestamp } => msg("pong", json!({}), *timestamp),
            ServerFrame::Error { message, .. } => Some(json(&json!({
                "type": "error", "data": {"error_message": message}, "timestamp": now(),
            }))),
            _ => None,
        }
    }

    fn heartbeat(&mut self) -> Option<Bytes> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::job_id;
    use serde_json::json;

    #[test]
    fn decimal_ids_are_numbers_only_when_canonical() {
        assert_eq!(job_id("123"), json!(123));
        assert_eq!(job_id("0"), json!(0));
        assert_eq!(job_id("007"), json!("007"));
        assert_eq!(job_id("build-7"), json!("build-7"));
        assert_eq!(
            job_id("12345678901234567890"),
            json!("12345678901234567890")
        );
    }
}
