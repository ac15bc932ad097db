//! Channel sessions: the project channel (every job of one project, or of every
//! project with `*`) and the notifications channel (the end of each of the caller's
//! own jobs). They run the same session loop as a job session; this module owns what
//! differs: the `resume` handshake, the catch-up (registered first through the hub,
//! then replayed from the engine) and which live frames a channel admits.

use super::{Command, Incoming, Next, Output, Session, Step, Wire};
use crate::session::CloseReason;
use jobwire_core::channel::NOTIFICATION_PAGE;
use jobwire_core::recovery::Since;
use jobwire_core::session::Published;
use jobwire_proto::frame::ServerFrame;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a channel session waits for its first frame (`resume`) before it starts
/// the catch-up without one. Clients send `resume` on open and never wait this out.
pub(crate) const RESUME_WAIT: Duration = Duration::from_secs(2);

/// Which channel a session streams.
#[derive(Debug, Clone)]
pub(crate) enum Channel {
    /// Every job of this project (public name, or `*` for every project) in the
    /// caller's namespace.
    Project(String),
    /// The caller's own jobs' terminal events.
    Notifications,
}

/// The public id in a job storage key (`<tenant>/<id>` or `<id>`).
fn public_id(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, id)| id)
}

impl<W: Wire> Session<W> {
    /// The `resume` handshake, then the channel's catch-up. A first command that is
    /// not `resume` is handled normally after the catch-up.
    pub(super) async fn start_channel(&mut self) -> Step {
        let Some(channel) = self.channel.clone() else {
            return Ok(Next::Continue);
        };
        let mut positions = BTreeMap::new();
        let mut since = None;
        let mut epoch = None;
        let mut pending = None;
        let wait = if self.wire.waits_for_resume() {
            RESUME_WAIT
        } else {
            Duration::ZERO
        };
        match tokio::time::timeout(wait, self.wire.recv()).await {
            Err(_) | Ok(Incoming::Noise) => {}
            Ok(Incoming::Gone) => return Ok(Next::Stop),
            Ok(Incoming::TooBig) => return Ok(Next::Close(CloseReason::MessageTooBig)),
            Ok(Incoming::Command(Command::Resume {
                positions: p,
                since: s,
                epoch: e,
            })) => {
                positions = p;
                since = s;
                epoch = e;
            }
            Ok(Incoming::Command(c)) => pending = Some(c),
        }
        let next = match channel {
            Channel::Project(project) => self.start_project(&project, &positions, epoch).await?,
            Channel::Notifications => self.start_notifications(since).await?,
        };
        match (next, pending) {
            (Next::Continue, Some(c)) => self.on_command(c).await,
            (next, _) => Ok(next),
        }
    }

    /// Registers on the project channel, then replays each listed job (snapshot, or
    /// history after the client's position), then `ready`.
    async fn start_project(
        &mut self,
        project: &str,
        positions: &BTreeMap<String, u64>,
        epoch: Option<u64>,
    ) -> Step {
        let hub = self.st.hub.clone();
        let plan = match hub
            .subscribe_project(&self.caller.access, project, &self.outbox, positions)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                self.error(e.code(), e.client_message(), None).await?;
                return Ok(Next::Close(CloseReason::SubscribeFailed));
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
                .project_job_replay(
                    &self.caller.access,
                    job,
                    since.map(|seq| Since { seq, epoch }),
                )
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
                    return Ok(Next::Close(CloseReason::HistoryReadFailed));
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
                return Ok(Next::Close(CloseReason::SubscribeFailed));
            }
        };
        self.channel_key = Some(key.clone());
        self.positions.track(key.clone(), u64::MAX);
        let read_failed = |e: jobwire_core::HubError| {
            tracing::error!(error = %e, "notification replay failed");
            Ok(Next::Close(CloseReason::HistoryReadFailed))
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
                if self
                    .wire
                    .feed(Output::Notification { bytes: &bytes })
                    .await?
                {
                    replayed += 1;
                }
                cursor = seq;
            }
            self.wire.flush().await?;
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

    /// A project session admits the first live frame of a job it has not seen (one
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
