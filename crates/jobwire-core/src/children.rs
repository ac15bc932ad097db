//! Parent and child jobs: what a child's writes tell its parent, and how often.
//!
//! After every write to a child job, the hub offers the child's state to the
//! [`ParentFeed`]. A change of status (or of stalled-ness) goes to the parent at
//! once, as a `child` event in the parent's log; progress-only changes are
//! coalesced per child to at most one every [`PROGRESS_EVERY`], the latest one
//! always sent (a trailing flush). The parent folds each `child` event into its
//! counts and aggregate progress, and its policy (`complete_when`,
//! `on_child_failure`) may end it in the same write ([`jobwire_proto::Job::parent_follow_up`]).
//!
//! The parent's update is written after the child's write is acknowledged, not in
//! the same transaction: a crash in between leaves the parent one update behind
//! until the child's next write (each update carries the child's whole state, and
//! the parent ignores updates older than the one it has).

use jobwire_proto::{ChildUpdate, JobStatus};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Shortest interval between two progress-only updates of one child.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What to do with an offered update.
#[derive(Debug, PartialEq)]
pub enum Offer {
    /// Send it now.
    Now(ChildUpdate),
    /// Held; schedule a flush of this child after [`PROGRESS_EVERY`].
    Later,
    /// Held; a flush is already scheduled and will send the latest.
    Held,
}

#[derive(Default)]
struct Told {
    status: JobStatus,
    stalled: bool,
    /// The latest update not sent yet (a flush is scheduled when set).
    pending: Option<ChildUpdate>,
}

/// Per-child memory of what its parent was last told (by child storage key), and
/// per-parent queues of updates waiting to be written.
#[derive(Default)]
pub struct ParentFeed {
    told: Mutex<HashMap<String, Told>>,
    /// Updates for a parent whose writer is busy; present while a writer runs.
    queued: Mutex<HashMap<String, Vec<ChildUpdate>>>,
}

impl ParentFeed {
    /// Queues `up` for `parent_key`. Returns true when the caller must write the
    /// queue (no writer runs for that parent); otherwise the running writer will.
    /// One writer per parent and instance, writing what queued meanwhile as one
    /// batch: 100 children ending at once cost a few parent writes, not 100
    /// contending ones.
    pub fn enqueue(&self, parent_key: &str, up: ChildUpdate) -> bool {
        let Ok(mut q) = self.queued.lock() else {
            return true;
        };
        match q.get_mut(parent_key) {
            Some(list) => {
                list.push(up);
                false
            }
            None => {
                q.insert(parent_key.to_owned(), vec![up]);
                true
            }
        }
    }

    /// The writer's next batch for `parent_key`; `None` (and the writer stops) when
    /// nothing queued since the last one.
    pub fn next_batch(&self, parent_key: &str) -> Option<Vec<ChildUpdate>> {
        let mut q = self.queued.lock().ok()?;
        let list = q.get_mut(parent_key)?;
        if list.is_empty() {
            q.remove(parent_key);
            return None;
        }
        Some(std::mem::take(list))
    }

    pub fn offer(&self, child_key: &str, up: ChildUpdate) -> Offer {
        let Ok(mut told) = self.told.lock() else {
            return Offer::Now(up);
        };
        if up.child_status.is_terminal() {
            told.remove(child_key);
            return Offer::Now(up);
        }
        match told.get_mut(child_key) {
            Some(t) if t.status == up.child_status && t.stalled == up.stalled => {
                let scheduled = t.pending.is_some();
                t.pending = Some(up);
                if scheduled {
                    Offer::Held
                } else {
                    Offer::Later
                }
            }
            _ => {
                told.insert(
                    child_key.to_owned(),
                    Told {
                        status: up.child_status,
                        stalled: up.stalled,
                        pending: None,
                    },
                );
                Offer::Now(up)
            }
        }
    }

    /// The held update of a child, for its scheduled flush.
    pub fn take(&self, child_key: &str) -> Option<ChildUpdate> {
        let mut told = self.told.lock().ok()?;
        told.get_mut(child_key).and_then(|t| t.pending.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(status: JobStatus, progress: f64) -> ChildUpdate {
        ChildUpdate {
            child: "c".into(),
            child_status: status,
            child_seq: progress as u64,
            progress,
            weight: 1.0,
            stalled: false,
        }
    }

    #[test]
    fn status_changes_go_now_and_progress_is_coalesced_to_the_latest() {
        let f = ParentFeed::default();
        assert!(matches!(
            f.offer("c", up(JobStatus::InProgress, 1.0)),
            Offer::Now(_)
        ));
        assert_eq!(f.offer("c", up(JobStatus::InProgress, 2.0)), Offer::Later);
        assert_eq!(f.offer("c", up(JobStatus::InProgress, 3.0)), Offer::Held);
        assert_eq!(f.take("c").map(|u| u.progress), Some(3.0));
        assert_eq!(f.take("c"), None);
        assert!(matches!(
            f.offer("c", up(JobStatus::Completed, 100.0)),
            Offer::Now(_)
        ));
    }
}
