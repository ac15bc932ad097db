//! `project-updates`: `GET /ws/projects/{project_id}?token=JWT` (every event of every
//! job of the project) and `GET /ws/notifications?token=JWT` (the end of each of the
//! caller's jobs). A `custom` event named N goes out flat, `{"type":N, …its data
//! fields, "timestamp"}`; a failed job is `{"type":"error","operation","error",
//! "timestamp"}`, a completed one `{"type":"completion","operation","result",
//! "timestamp"}`; other events go out as their v1 JSON plus `operation`. `operation`
//! is the job's `metadata.operation` when it is a string, else the job id. Text
//! `ping` gets text `pong`. A missing, invalid or expired token closes with 1008
//! after the upgrade, as the system did; another tenant's project looks exactly like
//! an empty project of one's own.

use super::state::{Changed, JobState};
use super::{json, now, Dialect, DialectCodec};
use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::limits::PeerIp;
use crate::session::{Channel, CloseReason, Command, Incoming};
use crate::transport::ws::{accept, Open};
use crate::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use jobwire_proto::frame::ServerFrame;
use jobwire_proto::{Event, EventBody, Job, JobId};
use serde_json::{json, Map, Value};

/// RFC 6455 "policy violation": how the system refused tokens.
const POLICY_VIOLATION: u16 = 1008;

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/ws/projects/{project_id}", get(project))
        .route("/ws/notifications", get(notifications))
}

/// Upgrades, then closes with 1008 and `reason`: the system's answer to a bad token.
fn refuse(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    reason: String,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| {
        ApiError::new(
            jobwire_proto::ErrorCode::BadRequest,
            format!("WebSocket upgrade required: {}", e.body_text()),
        )
    })?;
    // A close reason is at most 123 bytes; cut at a character boundary.
    let mut reason = reason;
    if reason.len() > 120 {
        let mut cut = 120;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    Ok(ws.on_upgrade(move |mut socket| async move {
        let frame = CloseFrame {
            code: POLICY_VIOLATION,
            reason: Utf8Bytes::from(reason),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }))
}

async fn project(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(st): State<AppState>,
    caller: Result<Caller, ApiError>,
    PeerIp(ip): PeerIp,
    ApiPath(project): ApiPath<String>,
) -> Result<Response, ApiError> {
    let caller = match caller.and_then(|Caller(c)| c.require(Scope::Watch).map(|()| c)) {
        Ok(c) => c,
        Err(e) => return refuse(ws, e.message),
    };
    // A project name jobwire cannot hold, or one outside the token's allow-list,
    // has no jobs: the same empty stream as a project with none.
    if JobId::validate(&project).is_err() || !caller.access.may_use_project(Some(&project)) {
        return refuse(ws, "Access denied".into());
    }
    let mut open = Open::new(caller, ip);
    open.channel = Some(Channel::Project(project));
    accept(ws, st, open, DialectCodec::new(ProjectUpdates))
}

async fn notifications(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(st): State<AppState>,
    caller: Result<Caller, ApiError>,
    PeerIp(ip): PeerIp,
) -> Result<Response, ApiError> {
    let caller = match caller.and_then(|Caller(c)| c.require(Scope::Watch).map(|()| c)) {
        Ok(c) => c,
        Err(e) => return refuse(ws, e.message),
    };
    if caller.sub.is_none() && caller.access.tenant.is_some() {
        return refuse(ws, "Invalid user".into());
    }
    let mut open = Open::new(caller, ip);
    open.channel = Some(Channel::Notifications);
    accept(ws, st, open, DialectCodec::new(ProjectUpdates))
}

pub(crate) struct ProjectUpdates;

impl Dialect for ProjectUpdates {
    const SLOT: usize = 3;

    fn decode(&mut self, text: &str) -> Incoming {
        if text.trim() == "ping" {
            Incoming::Command(Command::Ping)
        } else {
            Incoming::Noise
        }
    }

    /// The system sent no state on connect; the snapshot only seeds the fold.
    fn snapshot(&mut self, _job: &Job, _state: &JobState) -> Option<Bytes> {
        None
    }

    fn event(ev: &Event, _changed: Changed, state: &JobState) -> Option<Bytes> {
        let operation = state.operation.clone().unwrap_or_else(|| ev.job_id.clone());
        let t = ev.timestamp.to_rfc3339();
        let v = match &ev.body {
            EventBody::Created { .. } => return None,
            EventBody::Custom { name, data } => {
                let mut out = Map::new();
                out.insert("type".into(), Value::String(name.clone()));
                match data {
                    Some(Value::Object(fields)) => {
                        for (k, v) in fields {
                            if k != "type" {
                                out.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    Some(other) => {
                        out.insert("data".into(), other.clone());
                    }
                    None => {}
                }
                out.entry("timestamp").or_insert(Value::String(t));
                Value::Object(out)
            }
            EventBody::Failed { error, .. } => json!({
                "type": "error", "operation": operation, "error": error, "timestamp": t,
            }),
            EventBody::Completed { result, .. } => json!({
                "type": "completion",
                "operation": operation,
                "result": result.clone().unwrap_or_else(|| Value::Object(Map::new())),
                "timestamp": t,
            }),
            _ => {
                let mut v = serde_json::to_value(ev).ok()?;
                if let Value::Object(m) = &mut v {
                    m.insert("operation".into(), Value::String(operation));
                }
                v
            }
        };
        Some(json(&v))
    }

    fn frame(&mut self, f: &ServerFrame) -> Option<Bytes> {
        match f {
            ServerFrame::Pong { .. } => Some(Bytes::from_static(b"pong")),
            ServerFrame::Error { message, .. } => Some(json(&json!({
                "type": "error", "operation": Value::Null, "error": message, "timestamp": now(),
            }))),
            _ => None,
        }
    }

    fn heartbeat(&mut self) -> Option<Bytes> {
        None
    }

    fn close(&self, reason: CloseReason) -> Option<CloseFrame> {
        let (code, text) = match reason {
            CloseReason::TokenExpired => (POLICY_VIOLATION, "Token expired"),
            other => {
                let (c, t) = other.websocket();
                (c.number(), t)
            }
        };
        Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(text),
        })
    }
}
