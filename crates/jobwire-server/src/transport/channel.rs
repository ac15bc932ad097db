//! Channel sockets: `GET /v1/projects/{project}/ws` (every job of one project) and
//! `GET /v1/notifications/ws` (the end of each of the caller's own jobs). They run the
//! same [`Session`] loop as `/v1/ws` (auth, expiry, heartbeats, limits, slow
//! consumers); this module owns what differs: the `resume` handshake, the catch-up
//! (registered first through the hub, then replayed from the engine) and which live
//! frames a channel admits. Data flows transport -> hub -> engine -> fan-out by
//! channel key -> this session's outbox -> socket.

use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::limits::PeerIp;
use crate::transport::ws::{accept, text, Next, Session, Step};
use crate::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use jobwire_core::channel::{ALL_PROJECTS, NOTIFICATION_PAGE};
use jobwire_core::session::Published;
use jobwire_proto::frame::{ClientFrame, ServerFrame};
use jobwire_proto::{CloseCode, ErrorCode, JobId};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a channel socket waits for its first frame (`resume`) before it starts
/// the catch-up without one. Clients send `resume` on open and never wait this out.
pub(crate) const RESUME_WAIT: Duration = Duration::from_secs(2);

/// Which channel a socket streams.
#[derive(Debug, Clone)]
pub(crate) enum Channel {
    /// Every job of this project (public name) in the caller's namespace.
    Project(String),
    /// The caller's own jobs' terminal events.
    Notifications,
}

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
    accept(
        ws,
        st,
        caller,
        ip,
        None,
        None,
        Some(Channel::Project(project)),
    )
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
    accept(ws, st, caller, ip, None, None, Some(Channel::Notifications))
}

/// The public id in a job storage key (`<tenant>/<id>` or `<id>`).
fn public_id(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, id)| id)
}

impl Session {
    /// The `resume` handshake, then the channel's catch-up. A first frame that is
    /// not `resume` is handled normally after the catch-up.
    pub(super) async fn start_channel(&mut self) -> Step {
        let Some(channel) = self.channel.clone() else {
            return Ok(Next::Continue);
        };
        let mut positions = BTreeMap::new();
        let mut since = None;
        let mut pending = None;
        match tokio::time::timeout(RESUME_WAIT, self.socket.recv()).await {
            Err(_) => {}
            Ok(None) | Ok(Some(Err(_))) => return Ok(Next::Stop),
            Ok(Some(Ok(m))) => {
                let frame = match &m {
                    Message::Text(t) => serde_json::from_str::<ClientFrame>(t.as_str()).ok(),
                    Message::Binary(b) => serde_json::from_slice::<ClientFrame>(b).ok(),
                    _ => None,
                };
                match frame {
                    Some(ClientFrame::Resume {
                        positions: p,
                        since: s,
                    }) => {
                        positions = p.unwrap_or_default();
                        since = s;
                    }
                    _ => pending = Some(m),
                }
            }
        }
        let next = match channel {
            Channel::Project(project) => self.start_project(&project, &positions).await?,
            Channel::Notifications => self.start_notifications(since).await?,
        };
        match (next, pending) {
            (Next::Continue, Some(m)) => self.on_message(m).await,
            (next, _) => Ok(next),
        }
    }

    /// Registers on the project channel, then replays each listed job (snapshot, or
    /// history after the client's position), then `ready`.
    async fn start_project(&mut self, project: &str, positions: &BTreeMap<String, u64>) -> Step {
        let hub = self.st.hub.clone();
        let plan = match hub
            .subscribe_project(&self.caller.access, project, &self.outbox, positions)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.error(e.code(), e.client_message(), None).await?;
                return Ok(Next::Close(CloseCode::InternalError, "subscribe failed"));
            }
        };
        self.channel_key = Some(plan.key.clone());
        // No live frame of a listed job is admitted until its replay is done.
        let keys: Vec<Arc<str>> = plan
            .jobs
            .iter()
            .map(|(j, _)| Arc::from(self.caller.access.key(&j.id).as_str()))
            .collect();
        for key in &keys {
            self.positions.track(key.clone(), u64::MAX);
        }
        let mut replayed = 0;
        for ((job, since), key) in plan.jobs.iter().zip(keys) {
            let mut replay = match hub
                .project_job_replay(&self.caller.access, job, *since)
                .await
            {
                Ok(r) => r,
                // Expired since the listing: nothing left to send.
                Err(jobwire_core::HubError::NotFound) => {
                    self.positions.track(key, job.seq);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "project replay failed");
                    return Ok(Next::Close(CloseCode::InternalError, "history read failed"));
                }
            };
            if let Some(next) = self.send_replay(&job.id, &mut replay).await? {
                return Ok(next);
            }
            self.positions.track(key, replay.position());
            replayed += 1;
        }
        self.send_frame(&ServerFrame::Ready {
            jobs: replayed,
            omitted: plan.omitted,
        })
        .await?;
        Ok(Next::Continue)
    }

    /// Registers on the caller's notification stream, then replays the
    /// notifications after `since` (none without it), then `ready`.
    async fn start_notifications(&mut self, since: Option<u64>) -> Step {
        let hub = self.st.hub.clone();
        let key = match hub
            .subscribe_notifications(
                &self.caller.access,
                self.caller.sub.as_deref(),
                &self.outbox,
            )
            .await
        {
            Ok(k) => k,
            Err(e) => {
                self.error(e.code(), e.client_message(), None).await?;
                return Ok(Next::Close(CloseCode::InternalError, "subscribe failed"));
            }
        };
        self.channel_key = Some(key.clone());
        self.positions.track(key.clone(), u64::MAX);
        let read_failed = |e: jobwire_core::HubError| {
            tracing::error!(error = %e, "notification replay failed");
            Ok(Next::Close(CloseCode::InternalError, "history read failed"))
        };
        let first = match hub
            .notifications(&key, since.unwrap_or(u64::MAX), NOTIFICATION_PAGE)
            .await
        {
            Ok(p) => p,
            Err(e) => return read_failed(e),
        };
        let head = first.head;
        let mut cursor = since.unwrap_or(head);
        let mut replayed = 0;
        if cursor < head && cursor.saturating_add(1) < first.start {
            let notice = ServerFrame::NotificationsTruncated {
                since: cursor,
                start: first.start,
            };
            self.send_frame(&notice).await?;
        }
        let mut page = first.frames;
        while cursor < head {
            if page.is_empty() {
                match hub.notifications(&key, cursor, NOTIFICATION_PAGE).await {
                    Ok(p) if p.frames.is_empty() => break, // trimmed meanwhile
                    Ok(p) => page = p.frames,
                    Err(e) => return read_failed(e),
                }
            }
            for (seq, bytes) in page.drain(..) {
                if seq > head {
                    break;
                }
                if let Some(m) = text(bytes) {
                    self.socket.feed(m).await?;
                }
                cursor = seq;
                replayed += 1;
            }
            self.socket.flush().await?;
        }
        self.positions.track(key, cursor.max(head));
        self.st.hub.metrics().events_delivered.add(replayed);
        self.send_frame(&ServerFrame::Ready {
            jobs: replayed,
            omitted: 0,
        })
        .await?;
        Ok(Next::Continue)
    }

    /// A project socket admits the first live frame of a job it has not seen (one
    /// created after the listing) if the caller's job allow-list admits it. (`*` is
    /// refused to tokens with a `projects` allow-list, so it needs no project check.)
    pub(super) fn admit_new_project_job(&mut self, p: &Published) -> bool {
        if !matches!(self.channel, Some(Channel::Project(_)))
            || self.positions.contains(&p.job_id)
            || !self.caller.access.may_use_id(public_id(&p.job_id))
        {
            return false;
        }
        self.positions.track(p.job_id.clone(), p.seq);
        true
    }
}
