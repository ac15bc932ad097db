//! Channel endpoints: `GET /v1/projects/{project}/ws` (every job of one project, or of
//! every project with `*`) and `GET /v1/notifications/ws` (the end of each of the
//! caller's own jobs): the checks before the upgrade. The session
//! (`crate::session::channel`) runs the handshake, catch-up and live stream.

use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::limits::PeerIp;
use crate::session::Channel;
use crate::transport::ws::{accept, Open, V1};
use crate::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;
use jobwire_core::channel::ALL_PROJECTS;
use jobwire_proto::{ErrorCode, JobId};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelParams {
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// `GET /v1/projects/{project}/ws`
pub(crate) async fn project(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiPath(project): ApiPath<String>,
    ApiQuery(_): ApiQuery<ChannelParams>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Watch)?;
    // `*`: every project of the tenant, and jobs without one (narrowed, like any
    // listing, by the token's allow-lists).
    let all = project == ALL_PROJECTS;
    if !all && JobId::validate(&project).is_err() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "project must be 1-128 characters of [A-Za-z0-9._:-], or * for every project",
        ));
    }
    if all && caller.access.projects.is_some() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the token has a `projects` allow-list: watch each of its projects' channels instead of *",
        ));
    }
    if !all && !caller.access.may_use_project(Some(&project)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the token's `projects` allow-list does not include this project",
        ));
    }
    let mut open = Open::new(caller, ip);
    open.channel = Some(Channel::Project(project));
    accept(ws, st, open, V1)
}

/// `GET /v1/notifications/ws`
pub(crate) async fn notifications(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(st): State<AppState>,
    Caller(caller): Caller,
    PeerIp(ip): PeerIp,
    ApiQuery(_): ApiQuery<ChannelParams>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Watch)?;
    // Development mode (no tenant) is one anonymous user; with auth, a user is a
    // token subject.
    if caller.sub.is_none() && caller.access.tenant.is_some() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the token has no `sub` claim: notifications belong to a user",
        ));
    }
    let mut open = Open::new(caller, ip);
    open.channel = Some(Channel::Notifications);
    accept(ws, st, open, V1)
}
