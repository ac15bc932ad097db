//! Channels beyond one job: the project channel (every event of every job of one
//! project) and the notifications channel (the terminal events of one user's jobs).
//! This module owns their registry keys and the notification frame; the hub
//! ([`crate::hub::Hub::subscribe_project`], [`crate::hub::Hub::subscribe_notifications`])
//! runs their gap-free subscribe, the engines fan out into these keys after commit.
//!
//! Keys live in the same registry as job storage keys and cannot collide with them:
//! a job key is `<id>` or `<tenant>/<id>` (one `/` at most, ids never start with
//! `~`), a channel key has two `/`.

use bytes::Bytes;
use jobwire_proto::Job;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Notifications kept per user; older ones are trimmed (a resume from before them
/// gets `notifications_truncated`).
pub const NOTIFICATIONS_KEPT: u64 = 1000;

/// Most jobs a project channel replays on (re)connect; the rest are counted in the
/// `ready` frame's `omitted`. Jobs the client resumes and unfinished jobs come first,
/// then finished ones, newest first.
pub const PROJECT_REPLAY_MAX: usize = 1000;

/// Notifications read per page while a notifications channel catches up.
pub const NOTIFICATION_PAGE: usize = 256;

/// The catch-up plan of a project channel, made after it was registered.
#[derive(Debug)]
pub struct ProjectCatchUp {
    /// The project channel's registry key (pass to `Hub::unsubscribe` at the end).
    pub key: Arc<str>,
    /// The jobs to replay, each with the client's position (public id, since).
    pub jobs: Vec<(Job, Option<u64>)>,
    /// Jobs of the project left out by [`PROJECT_REPLAY_MAX`].
    pub omitted: u64,
}

/// Orders a project's jobs for replay and applies [`PROJECT_REPLAY_MAX`].
pub fn plan_replay(
    mut jobs: Vec<Job>,
    positions: &BTreeMap<String, u64>,
    max: usize,
) -> (Vec<(Job, Option<u64>)>, u64) {
    // Resumed or unfinished first; then the most recently updated.
    jobs.sort_by(|a, b| {
        let rank = |j: &Job| !positions.contains_key(&j.id) && j.status.is_terminal();
        rank(a)
            .cmp(&rank(b))
            .then_with(|| b.updated_at.cmp(&a.updated_at))
            .then_with(|| a.id.cmp(&b.id))
    });
    let omitted = jobs.len().saturating_sub(max) as u64;
    jobs.truncate(max);
    let planned = jobs
        .into_iter()
        .map(|j| {
            let since = positions.get(&j.id).copied();
            (j, since)
        })
        .collect();
    (planned, omitted)
}

/// The project name that stands for every project of the tenant (and jobs without
/// one): `GET /v1/projects/*/ws`. It is not a valid project name, so no real project
/// can take it.
pub const ALL_PROJECTS: &str = "*";

/// Registry key of the project channel of `project` in `tenant`'s namespace.
pub fn project_key(tenant: Option<&str>, project: &str) -> String {
    format!("~p/{}/{project}", tenant.unwrap_or(""))
}

/// Registry key of the every-project channel of the tenant of the job stored under
/// `job_key` (`<tenant>/<id>` or `<id>`).
pub fn all_projects_key_of_job(job_key: &str) -> String {
    let tenant = job_key.split_once('/').map(|(t, _)| t);
    project_key(tenant, ALL_PROJECTS)
}

/// Whether a registry key is an every-project channel.
pub fn is_all_projects_key(key: &str) -> bool {
    is_project_key(key) && key.ends_with("/*")
}

/// The project name in a project channel key (`~p/<tenant>/<project>`).
pub fn project_of_key(key: &str) -> Option<&str> {
    key.strip_prefix("~p/")?.split_once('/').map(|(_, p)| p)
}

/// Registry key (and store key) of the notification stream of user `sub` in
/// `tenant`'s namespace. `sub` is hex-encoded: a token's subject may hold any
/// character, keys may not.
pub fn owner_key(tenant: Option<&str>, sub: Option<&str>) -> String {
    let mut hex = String::with_capacity(sub.map_or(0, str::len) * 2);
    for b in sub.unwrap_or("").bytes() {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("~n/{}/{hex}", tenant.unwrap_or(""))
}

/// Whether a registry key is a project channel (engines route these differently).
pub fn is_project_key(key: &str) -> bool {
    key.starts_with("~p/")
}

/// The notification frame for the terminal event `event` (its stored JSON), as
/// notification `seq` of its owner. Both engines build exactly these bytes (the
/// Redis script concatenates the same strings).
pub fn notification_frame(seq: u64, event: &[u8]) -> Bytes {
    let head = format!("{{\"type\":\"notification\",\"seq\":{seq},\"event\":");
    let mut out = Vec::with_capacity(head.len() + event.len() + 1);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(event);
    out.push(b'}');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_collide_with_job_keys() {
        assert_eq!(project_key(Some("acme"), "video"), "~p/acme/video");
        assert_eq!(project_key(None, "video"), "~p//video");
        assert_eq!(owner_key(Some("acme"), Some("u/1")), "~n/acme/752f31");
        assert!(is_project_key("~p/acme/video"));
        assert!(!is_project_key("acme/~p"));
        assert_eq!(all_projects_key_of_job("acme/j1"), "~p/acme/*");
        assert_eq!(all_projects_key_of_job("j1"), "~p//*");
        assert!(is_all_projects_key("~p/acme/*"));
        assert!(!is_all_projects_key("~p/acme/video"));
        assert_eq!(project_of_key("~p/acme/video"), Some("video"));
        assert_eq!(project_of_key("~p//video"), Some("video"));
        let f = notification_frame(3, br#"{"type":"completed"}"#);
        let v: serde_json::Value = serde_json::from_slice(&f).unwrap_or_default();
        assert_eq!(v["seq"], 3);
        assert_eq!(v["event"]["type"], "completed");
    }
}
