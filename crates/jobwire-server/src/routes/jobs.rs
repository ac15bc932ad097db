//! The job endpoints: create, get, list, publish, history (JSON), cancel, heartbeat
//! and the worker's control stream. The SSE stream shares the history path and is
//! chosen by `Accept: text/event-stream`.

use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::extract::{json_body, ApiPath, ApiQuery};
use crate::limits::PeerIp;
use crate::transport::sse;
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{BufMut, Bytes, BytesMut};
use jobwire_core::engine::ListQuery;
use jobwire_core::CreateJob;
use jobwire_proto::event::{CompleteWhen, OnChildFailure};
use jobwire_proto::{ErrorCode, EventInput, JobId, JobOptions, JobStatus};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Default and largest page sizes for list and history.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: Option<String>,
    project: Option<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
    heartbeat_timeout: Option<f64>,
    stall_fail_after: Option<f64>,
    cancel_timeout: Option<f64>,
    parent: Option<String>,
    weight: Option<f64>,
    complete_when: Option<CompleteWhen>,
    on_child_failure: Option<OnChildFailure>,
}

fn invalid_request(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, e.to_string())
}

/// `POST /v1/jobs`
pub(super) async fn create(
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Publish)?;
    st.publish_limiter.charge(&caller, ip, 1)?;
    let value = json_body(body)?;
    let body: CreateBody = if value.is_null() {
        CreateBody::default()
    } else {
        serde_json::from_value(value).map_err(invalid_request)?
    };
    if let Some(p) = &body.project {
        JobId::validate(p)
            .map_err(|_| invalid_request("project must be 1-128 characters of [A-Za-z0-9._:-]"))?;
    }
    let created = st
        .hub
        .create_job(
            &caller.access,
            CreateJob {
                id: body.id,
                project: body.project,
                metadata: body.metadata,
                created_by: caller.sub.clone(),
                options: JobOptions {
                    heartbeat_timeout: body.heartbeat_timeout,
                    stall_fail_after: body.stall_fail_after,
                    cancel_timeout: body.cancel_timeout,
                    complete_when: body.complete_when,
                    on_child_failure: body.on_child_failure,
                },
                parent: body.parent,
                weight: body.weight,
            },
        )
        .await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let urls = job_urls(&headers, &created.job.id);
    let out = json!({"job": created.job, "created": created.created, "urls": urls});
    Ok((status, Json(out)).into_response())
}

/// Absolute URLs of a job's endpoints, from the request's Host (and
/// X-Forwarded-Proto when a TLS proxy sits in front).
fn job_urls(headers: &HeaderMap, id: &str) -> Value {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let (http, ws) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    json!({
        "self": format!("{http}://{host}/v1/jobs/{id}"),
        "events": format!("{http}://{host}/v1/jobs/{id}/events"),
        "sse": format!("{http}://{host}/v1/jobs/{id}/events"),
        "ws": format!("{ws}://{host}/v1/jobs/{id}/ws"),
    })
}

/// `GET /v1/jobs/{id}`
pub(super) async fn get(
    State(st): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Watch)?;
    let job = st.hub.snapshot(&caller.access, &id).await?;
    Ok(Json(job).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    status: Option<String>,
    project: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    /// The token may come as `?token=` (read by the auth layer).
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// A `?status=` filter: a status name, or `400 bad_request`.
fn status_param(s: Option<&str>) -> Result<Option<JobStatus>, ApiError> {
    s.map(|s| {
        JobStatus::parse(s)
            .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, format!("unknown status `{s}`")))
    })
    .transpose()
}

/// `GET /v1/jobs?status=&project=&limit=&after=`
pub(super) async fn list(
    State(st): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Watch)?;
    let status = status_param(p.status.as_deref())?;
    let page = st
        .hub
        .list(
            &caller.access,
            ListQuery {
                tenant: None,
                status,
                project: p.project,
                after: p.after,
                limit: p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
            },
        )
        .await?;
    Ok(Json(json!({"jobs": page.jobs, "next": page.next})).into_response())
}

/// Parses a publish body: one event object or an array of them.
pub(crate) fn parse_events(value: Value) -> Result<Vec<EventInput>, ApiError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                EventInput::from_value(v)
                    .map_err(|e| ApiError::new(e.code, format!("event {i}: {}", e.message)))
            })
            .collect(),
        v @ Value::Object(_) => Ok(vec![EventInput::from_value(v)?]),
        _ => Err(ApiError::new(
            ErrorCode::InvalidEvent,
            "body must be an event object or an array of events",
        )),
    }
}

/// `POST /v1/jobs/{id}/events`
pub(super) async fn publish(
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Publish)?;
    let events = parse_events(json_body(body)?)?;
    st.publish_limiter.charge(&caller, ip, events.len())?;
    let out = st.hub.publish(&caller.access, &id, events).await?;
    let reply = json!({
        "job_id": id,
        "seqs": out.seqs,
        "cancel_requested": out.live.cancel_requested,
    });
    Ok(Json(reply).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
    event_id: Option<String>,
    /// End the job now instead of asking its worker.
    #[serde(default)]
    force: bool,
}

/// `POST /v1/jobs/{id}/cancel`: asks a running job's worker to stop
/// (`cancel_requested`); ends a job no worker has started, or any job with `force`.
pub(super) async fn cancel(
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Cancel)?;
    st.publish_limiter.charge(&caller, ip, 1)?;
    let value = json_body(body)?;
    let body: CancelBody = if value.is_null() {
        CancelBody::default()
    } else {
        serde_json::from_value(value).map_err(invalid_request)?
    };
    if let Some(e) = &body.event_id {
        EventInput::from_value(json!({"type": "cancelled", "event_id": e}))?;
    }
    let out = st
        .hub
        .cancel(
            &caller.access,
            &id,
            caller.sub.clone(),
            body.reason,
            body.event_id,
            body.force,
        )
        .await?;
    let reply = json!({
        "job_id": id,
        "seqs": out.seqs,
        "status": out.live.status,
        "cancel_requested": out.live.cancel_requested,
    });
    Ok(Json(reply).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    progress: Option<f64>,
    checkpoint: Option<Value>,
    /// Makes a heartbeat that stores progress safe to retry.
    event_id: Option<String>,
}

/// `POST /v1/jobs/{id}/heartbeat`: the worker is alive (renews the job's
/// `heartbeat_timeout`); optionally with progress and a checkpoint.
pub(super) async fn heartbeat(
    State(st): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Publish)?;
    let value = json_body(body)?;
    let body: HeartbeatBody = if value.is_null() {
        HeartbeatBody::default()
    } else {
        serde_json::from_value(value).map_err(invalid_request)?
    };
    if let Some(e) = &body.event_id {
        EventInput::from_value(json!({"type": "log", "line": "", "event_id": e}))
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.message))?;
    }
    let live = st
        .hub
        .heartbeat(
            &caller.access,
            &id,
            body.progress,
            body.checkpoint,
            body.event_id,
        )
        .await?;
    let reply = json!({
        "job_id": id,
        "status": live.status,
        "cancel_requested": live.cancel_requested,
    });
    Ok(Json(reply).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChildrenParams {
    status: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// `GET /v1/jobs/{id}/children?status=&after=&limit=`: the parent's children as it
/// knows them (status, progress, weight), in id order, with the counts.
pub(super) async fn children(
    State(st): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(p): ApiQuery<ChildrenParams>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Watch)?;
    let status = status_param(p.status.as_deref())?;
    let limit = p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let (job, page, next) = st
        .hub
        .children(&caller.access, &id, status, p.after.as_deref(), limit)
        .await?;
    let children: Vec<Value> = page
        .into_iter()
        .map(|(id, s)| json!({"id": id, "status": s.status, "progress": s.progress, "weight": s.weight, "stalled": s.stalled, "seq": s.seq}))
        .collect();
    let counts = job.children.unwrap_or_default();
    Ok(
        Json(json!({"job_id": id, "counts": counts, "children": children, "next": next}))
            .into_response(),
    )
}

/// `GET /v1/jobs/{id}/control`: the worker's control stream (SSE): the job's state,
/// then `cancel_requested` as soon as someone asks, then `end`.
pub(super) async fn control(
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    if !caller.has(Scope::Publish) {
        caller.require(Scope::Watch)?;
    }
    let permit = st.limiter.acquire(ip, caller.access.tenant.as_deref())?;
    sse::control_stream(st, caller, permit, id).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    pub(crate) since: Option<u64>,
    pub(crate) epoch: Option<u64>,
    limit: Option<usize>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// `GET /v1/jobs/{id}/events`: SSE when the client accepts `text/event-stream`,
/// otherwise a JSON page of history.
pub(crate) async fn events(
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<HistoryParams>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Watch)?;
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if wants_sse {
        let permit = st.limiter.acquire(ip, caller.access.tenant.as_deref())?;
        let since = p.since.map(|seq| jobwire_core::recovery::Since {
            seq,
            epoch: p.epoch,
        });
        return sse::stream(st, caller, permit, id, &headers, since).await;
    }
    let limit = p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let resume = jobwire_core::recovery::Since {
        seq: p.since.unwrap_or(0),
        epoch: p.epoch,
    };
    let r = st
        .hub
        .history_resumed(&caller.access, &id, resume, limit)
        .await?;
    let (page, epoch, since) = (r.page, r.epoch, r.after);
    let rewound = r.rewound.map(|(s, from)| json!({"since": s, "from": from}));
    // The stored event bytes are spliced in as they are: no re-serialization.
    let mut out =
        BytesMut::with_capacity(128 + page.events.iter().map(|(_, e)| e.len() + 1).sum::<usize>());
    out.put_slice(b"{\"job_id\":");
    out.put_slice(&serde_json::to_vec(&id).unwrap_or_default());
    out.put_slice(b",\"events\":[");
    for (i, (_, e)) in page.events.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(e);
    }
    let mut tail = json!({
        "seq": page.job.seq,
        "next_since": page.last_seq.max(since),
        "history_start": page.job.history_start,
        "truncated": page.truncated,
        "status": page.job.status,
        "epoch": epoch,
        "rewound": rewound,
    });
    if let Some(o) = tail.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    out.put_slice(b"],");
    // Splice the tail object's fields after the array.
    let tail = tail.to_string();
    out.put_slice(&tail.as_bytes()[1..]);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(out.freeze()),
    )
        .into_response())
}
