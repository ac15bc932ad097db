//! `titan`: `GET /ws/jobs/{job_id}`, `GET /health`, `POST /jobs/create`. The socket
//! greets with `{"type":"connected","job_id","message","timestamp"}`, then sends
//! `{"job_id","status":"processing","stage","progress" (0.0–1.0),"message",
//! "timestamp","metadata"}` per update, a completion (`status: completed`, `stage:
//! complete`, `progress: 1.0`, `result`) or a failure (`status: failed`, `error`,
//! `message: "Error: …"`), and `{"type":"ping","message":"keepalive",…}` as
//! keepalive. titan's workers create jobs by reporting on them, so a socket on a job
//! that does not exist yet waits for its first event instead of being refused.

use super::state::{Changed, JobState};
use super::{json, now, Dialect, DialectCodec};
use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::limits::PeerIp;
use crate::session::{Incoming, Missing};
use crate::transport::ws::{accept, Open};
use crate::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use jobwire_core::hub::CreateJob;
use jobwire_proto::event::InputBody;
use jobwire_proto::frame::ServerFrame;
use jobwire_proto::{Event, EventBody, EventInput, Job, JobStatus, Timestamp};
use serde_json::{json, Map, Value};

pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/ws/jobs/{job_id}", get(socket))
        .route("/health", get(health))
        .route("/jobs/create", post(create))
}

async fn socket(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let mut open = Open::new(caller, ip);
    open.main_job = Some(id.clone());
    open.missing = Missing::Wait;
    accept(ws, st, open, DialectCodec::new(Titan::for_job(&id)))
}

/// `GET /health`: titan's liveness probe.
async fn health(State(st): State<AppState>) -> Response {
    if st.hub.is_ready() {
        Json(json!({"status": "healthy"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy"})),
        )
            .into_response()
    }
}

/// `POST /jobs/create`: a new queued job with a generated id.
async fn create(State(st): State<AppState>, Caller(caller): Caller) -> Result<Response, ApiError> {
    caller.require(Scope::Publish)?;
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    st.hub
        .create_job(
            &caller.access,
            CreateJob {
                id: Some(id.clone()),
                project: None,
                metadata: Map::new(),
                created_by: caller.sub.clone(),
                options: Default::default(),
                parent: None,
                weight: None,
            },
        )
        .await?;
    let queued = EventInput {
        body: InputBody::Status {
            status: JobStatus::Queued,
            message: None,
        },
        event_id: Some("titan-create-queued".into()),
        metadata: None,
    };
    st.hub.publish(&caller.access, &id, vec![queued]).await?;
    Ok(Json(json!({
        "job_id": id,
        "websocket_url": format!("/ws/jobs/{id}"),
        "status": "queued",
    }))
    .into_response())
}

pub(crate) struct Titan {
    job_id: String,
}

impl Titan {
    pub(crate) fn for_job(job_id: &str) -> Titan {
        Titan {
            job_id: job_id.to_owned(),
        }
    }
}

fn progress_frame(job_id: &str, state: &JobState, metadata: Value, t: Timestamp) -> Value {
    json!({
        "job_id": job_id,
        "status": "processing",
        "stage": state.stage.clone().or_else(|| state.step.as_ref().map(|s| s.0.clone())),
        "progress": state.progress / 100.0,
        "message": state.message,
        "timestamp": t.to_rfc3339(),
        "metadata": metadata,
    })
}

fn completion(job_id: &str, result: Option<&Value>, message: Option<&str>, t: Timestamp) -> Value {
    json!({
        "job_id": job_id,
        "status": "completed",
        "stage": "complete",
        "progress": 1.0,
        "message": message.unwrap_or("Job completed"),
        "result": result,
        "timestamp": t.to_rfc3339(),
    })
}

fn failure(job_id: &str, state: &JobState, error: &str, t: Timestamp) -> Value {
    json!({
        "job_id": job_id,
        "status": "failed",
        "stage": state.stage,
        "progress": state.progress / 100.0,
        "message": format!("Error: {error}"),
        "error": error,
        "timestamp": t.to_rfc3339(),
    })
}

impl Dialect for Titan {
    const SLOT: usize = 2;

    /// titan's clients only listen.
    fn decode(&mut self, _text: &str) -> Incoming {
        Incoming::Noise
    }

    fn greeting(&mut self) -> Option<Bytes> {
        Some(json(&json!({
            "type": "connected",
            "job_id": self.job_id,
            "message": "Connected to job progress stream",
            "timestamp": now(),
        })))
    }

    fn snapshot(&mut self, job: &Job, state: &JobState) -> Option<Bytes> {
        let t = job.updated_at;
        let v = match job.status {
            JobStatus::InProgress => progress_frame(&job.id, state, Value::Object(Map::new()), t),
            JobStatus::Completed => {
                completion(&job.id, job.result.as_ref(), job.message.as_deref(), t)
            }
            JobStatus::Failed => {
                failure(&job.id, state, job.error.as_deref().unwrap_or("failed"), t)
            }
            JobStatus::Cancelled => failure(&job.id, state, "cancelled", t),
            JobStatus::Pending | JobStatus::Queued => return None,
        };
        Some(json(&v))
    }

    fn event(ev: &Event, changed: Changed, state: &JobState) -> Option<Bytes> {
        let (id, t) = (ev.job_id.as_str(), ev.timestamp);
        let meta = || Value::Object(ev.metadata.clone().unwrap_or_default());
        let v = match &ev.body {
            EventBody::Progress { .. } | EventBody::Step { .. } => {
                progress_frame(id, state, meta(), t)
            }
            EventBody::Status { .. } if changed.status && state.status == JobStatus::InProgress => {
                progress_frame(id, state, meta(), t)
            }
            EventBody::Completed { result, message } => {
                completion(id, result.as_ref(), message.as_deref(), t)
            }
            EventBody::Failed { error, .. } => failure(id, state, error, t),
            EventBody::Cancelled { .. } => failure(id, state, "cancelled", t),
            _ => return None,
        };
        Some(json(&v))
    }

    fn frame(&mut self, _f: &ServerFrame) -> Option<Bytes> {
        None
    }

    fn heartbeat(&mut self) -> Option<Bytes> {
        Some(json(&json!({
            "type": "ping",
            "message": "keepalive",
            "job_id": self.job_id,
            "timestamp": now(),
        })))
    }
}
