//! Worker liveness and cancel timers: the deadlines the hub keeps per job and the
//! scanner that acts on them.
//!
//! Two deadlines per job, stored by the engine ([`Engine::set_deadline`]) so every
//! instance on one store sees the same ones:
//! - `b:<key>`: the heartbeat deadline, moved to `now + heartbeat_timeout` by every
//!   publish and heartbeat. When it passes on a non-terminal job that is not stalled
//!   yet, the scanner appends `stalled`.
//! - `t:<key>`: the next timer read off the snapshot: `stalled_since +
//!   stall_fail_after` (then the job fails with `worker_lost`) or `cancel_requested.at
//!   + cancel_timeout` (then it ends `cancelled` with `error: "cancel_timeout"`).
//!
//! Several instances may scan the same due deadline; every event the scanner writes
//! carries an event id derived from the snapshot it decided on (`stalled:<seq>`,
//! `worker_lost`, `cancel_timeout`), so the engine's idempotency turns a second
//! writer's event into a no-op: exactly one `stalled` per stall.

use crate::engine::{Engine, Live};
use crate::error::HubError;
use jobwire_proto::event::InputBody;
use jobwire_proto::{EventInput, Job, Timestamp};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// How often the scanner looks for due deadlines (and so how late a stall may be
/// noticed, at most).
pub const SCAN_INTERVAL: Duration = Duration::from_millis(200);
/// Due deadlines handled per scan.
const SCAN_BATCH: usize = 1000;

/// The heartbeat deadline member of storage key `key`.
pub fn beat_member(key: &str) -> String {
    format!("b:{key}")
}

/// The timer member of storage key `key`.
pub fn timer_member(key: &str) -> String {
    format!("t:{key}")
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, jobwire_proto::JobOptions::MAX_SECONDS))
}

/// When the job's two timers fire, if set: `(give up on the stall, cancel timeout)`.
fn timers(job: &Job) -> (Option<Timestamp>, Option<Timestamp>) {
    let lost = job
        .stalled_since
        .zip(job.options.stall_fail_after)
        .map(|(since, after)| since.plus(secs(after)));
    let cancel = job
        .cancel_requested
        .as_ref()
        .zip(job.options.cancel_timeout)
        .map(|(c, after)| c.at.plus(secs(after)));
    (lost, cancel)
}

/// When the job's next timer fires (stall give-up or cancel timeout), if it has one.
pub fn next_timer(job: &Job) -> Option<Timestamp> {
    if job.status.is_terminal() {
        return None;
    }
    match timers(job) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The heartbeat deadline of a job heard from at `at`, if it has a timeout and is
/// running (a stalled job has no heartbeat deadline until it recovers).
pub fn beat_deadline(live: &Live, at: Timestamp) -> Option<Timestamp> {
    if live.status.is_terminal() || live.stalled {
        return None;
    }
    live.options.heartbeat_timeout.map(|t| at.plus(secs(t)))
}

/// An in-memory deadline set: what the embedded engine keeps (a single process
/// owns its store).
#[derive(Default)]
pub struct Deadlines {
    inner: Mutex<DeadlineSet>,
}

#[derive(Default)]
struct DeadlineSet {
    by_time: BTreeSet<(u64, String)>,
    by_member: HashMap<String, u64>,
}

impl Deadlines {
    /// Sets or clears one deadline.
    pub fn set(&self, member: &str, at: Option<Timestamp>) {
        let Ok(mut s) = self.inner.lock() else {
            return;
        };
        if let Some(old) = s.by_member.remove(member) {
            s.by_time.remove(&(old, member.to_owned()));
        }
        if let Some(at) = at {
            let ms = at.as_millis();
            s.by_member.insert(member.to_owned(), ms);
            s.by_time.insert((ms, member.to_owned()));
        }
    }

    /// Up to `limit` members due at `now`, earliest first.
    pub fn due(&self, now: Timestamp, limit: usize) -> Vec<String> {
        let Ok(s) = self.inner.lock() else {
            return Vec::new();
        };
        s.by_time
            .iter()
            .take_while(|(at, _)| *at <= now.as_millis())
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// How many deadlines are set.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |s| s.by_member.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The deadlines a job's stored snapshot implies after a restart: heartbeats
    /// from its last event (a job whose deadline passed while the server was down
    /// is stalled at the first scan), timers as the snapshot says.
    pub fn restore(&self, key: &str, job: &Job) {
        let live = Live::of(job);
        if let Some(at) = beat_deadline(&live, job.updated_at) {
            self.set(&beat_member(key), Some(at));
        }
        if let Some(at) = next_timer(job) {
            self.set(&timer_member(key), Some(at));
        }
    }
}

/// One pass of the scanner: acts on every due deadline. Returns the jobs it wrote
/// to, as `(storage key, what the job now says)`, so the hub can tell their
/// parents (a stalled or lost child moves its parent like any other write).
pub async fn scan(engine: &dyn Engine) -> Result<Vec<(String, Live)>, HubError> {
    let now = Timestamp::now();
    let due = engine.due_deadlines(now, SCAN_BATCH).await?;
    let mut wrote = Vec::new();
    for member in &due {
        match handle(engine, member, now).await {
            Ok(Some(live)) => wrote.push((member[member.len().min(2)..].to_owned(), live)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(deadline = %member, error = %e, "liveness deadline not handled; retrying at the next scan");
            }
        }
    }
    Ok(wrote)
}

async fn handle(
    engine: &dyn Engine,
    member: &str,
    now: Timestamp,
) -> Result<Option<Live>, HubError> {
    let (kind, key) = member.split_at(member.len().min(2));
    let job = match engine.snapshot(key).await {
        Ok(j) => j,
        Err(HubError::NotFound) => return engine.set_deadline(member, None).await.map(|()| None),
        Err(e) => return Err(e),
    };
    if job.status.is_terminal() {
        return engine.set_deadline(member, None).await.map(|()| None);
    }
    match kind {
        "b:" => {
            let mut wrote = None;
            if job.stalled_since.is_none() {
                if let Some(timeout) = job.options.heartbeat_timeout {
                    let stalled = EventInput::server(
                        InputBody::Stalled {
                            heartbeat_timeout: timeout,
                        },
                        Some(format!("stalled:{}", job.seq)),
                    );
                    wrote = write(engine, key, stalled).await?;
                    if wrote.is_some() {
                        tracing::info!(job = %job.id, "job stalled: no heartbeat within its timeout");
                    }
                }
            }
            engine.set_deadline(member, None).await?;
            // The stall may have started a give-up timer.
            let job = engine.snapshot(key).await?;
            engine
                .set_deadline(&timer_member(key), next_timer(&job))
                .await?;
            Ok(wrote)
        }
        _ => {
            let (lost_at, cancel_at) = timers(&job);
            let input = if cancel_at.is_some_and(|t| t <= now) {
                Some(EventInput::server(
                    InputBody::Cancelled {
                        reason: Some("the worker did not confirm the cancel in time".into()),
                        error: Some("cancel_timeout".into()),
                    },
                    Some("cancel_timeout".into()),
                ))
            } else if lost_at.is_some_and(|t| t <= now) {
                Some(EventInput::server(
                    InputBody::Failed {
                        error: "worker_lost".into(),
                        message: Some("no heartbeat from the worker; given up".into()),
                        lost: true,
                    },
                    Some("worker_lost".into()),
                ))
            } else {
                None
            };
            match input {
                Some(input) => {
                    let wrote = write(engine, key, input).await?;
                    engine.set_deadline(member, None).await?;
                    engine.set_deadline(&beat_member(key), None).await?;
                    Ok(wrote)
                }
                None => engine
                    .set_deadline(member, next_timer(&job))
                    .await
                    .map(|()| None),
            }
        }
    }
}

/// Writes a scanner event; a refusal because the job moved on meanwhile (another
/// instance, the worker) is not an error.
async fn write(
    engine: &dyn Engine,
    key: &str,
    input: EventInput,
) -> Result<Option<Live>, HubError> {
    match engine.publish(key, vec![input]).await {
        Ok(out) => Ok(Some(out.live)),
        Err(HubError::Input(_)) | Err(HubError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_due_in_time_order_and_move() {
        let d = Deadlines::default();
        d.set("b:a", Some(Timestamp(300)));
        d.set("b:b", Some(Timestamp(100)));
        d.set("t:a", Some(Timestamp(200)));
        assert_eq!(d.due(Timestamp(250), 10), vec!["b:b", "t:a"]);
        d.set("b:b", Some(Timestamp(1000)));
        assert_eq!(d.due(Timestamp(250), 10), vec!["t:a"]);
        d.set("t:a", None);
        assert!(d.due(Timestamp(299), 10).is_empty());
        assert_eq!(d.due(Timestamp(999), 10), vec!["b:a"]);
        assert_eq!(
            d.due(Timestamp(5000), 1),
            vec!["b:a"],
            "the limit takes the earliest"
        );
        assert_eq!(d.len(), 2);
    }
}
