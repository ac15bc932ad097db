//! `progress-channel`: `GET /progress/ws/{job_id}`. On connect, the job's state as one
//! progress frame; then one frame per event that changes status, progress, stage or
//! message: `{"job_id","status","progress","message","timestamp","metadata":{"stage"}}`
//! (progress 0–100, jobwire's status names). `{"type":"ping"}` gets
//! `{"type":"pong","timestamp"}`, `{"type":"subscribe","job_id"}` adds a job,
//! `{"type":"heartbeat","timestamp"}` comes every heartbeat interval. Errors are
//! `{"type":"error","error":…}`; an unknown job is an error, then a close. When the
//! job ends its last frame is sent and the socket closes with 1000.

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
use jobwire_proto::{ErrorCode, Event, Job, Timestamp};
use serde_json::{json, Value};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/progress/ws/{job_id}", get(socket))
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
    accept(ws, st, open, DialectCodec::new(ProgressChannel))
}

pub(crate) struct ProgressChannel;

/// The progress frame of a job in `state` at `timestamp`.
pub(crate) fn frame(job_id: &str, state: &JobState, timestamp: Timestamp) -> Value {
    let mut metadata = serde_json::Map::new();
    if let Some(stage) = &state.stage {
        metadata.insert("stage".into(), Value::String(stage.clone()));
    }
    json!({
        "job_id": job_id,
        "status": state.status.as_str(),
        "progress": state.progress,
        "message": state.message,
        "timestamp": timestamp.to_rfc3339(),
        "metadata": metadata,
    })
}

impl Dialect for ProgressChannel {
    const SLOT: usize = 0;

    fn decode(&mut self, text: &str) -> Incoming {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Incoming::Command(Command::Invalid(
                    ErrorCode::MalformedJson,
                    format!("Invalid JSON: {e}"),
                ))
            }
        };
        Incoming::Command(match v.get("type").and_then(Value::as_str) {
            Some("ping") => Command::Ping,
            Some("subscribe") => match v.get("job_id").and_then(Value::as_str) {
                Some(id) => Command::Subscribe {
                    job_id: id.to_owned(),
                    since: None,
                    epoch: None,
                },
                None => Command::Invalid(
                    ErrorCode::BadRequest,
                    "subscribe needs a string job_id".into(),
                ),
            },
            Some(t) => Command::Invalid(
                ErrorCode::UnknownMessageType,
                format!("Unknown message type: {t}"),
            ),
            None => Command::Invalid(ErrorCode::UnknownMessageType, "Message has no type".into()),
        })
    }

    fn snapshot(&mut self, job: &Job, state: &JobState) -> Option<Bytes> {
        Some(json(&frame(&job.id, state, job.updated_at)))
    }

    fn event(ev: &Event, changed: Changed, state: &JobState) -> Option<Bytes> {
        changed
            .any()
            .then(|| json(&frame(&ev.job_id, state, ev.timestamp)))
    }

    fn frame(&mut self, f: &ServerFrame) -> Option<Bytes> {
        match f {
            ServerFrame::Pong { timestamp } => Some(json(&json!({
                "type": "pong", "timestamp": timestamp.to_rfc3339(),
            }))),
            ServerFrame::Error { code, message, .. } => {
                let error = if *code == ErrorCode::JobNotFound {
                    "Job not found".to_owned()
                } else {
                    message.clone()
                };
                Some(json(&json!({"type": "error", "error": error})))
            }
            // Subscription bookkeeping and channel frames have no word here.
            _ => None,
        }
    }

    fn heartbeat(&mut self) -> Option<Bytes> {
        Some(json(&json!({"type": "heartbeat", "timestamp": now()})))
    }
}
