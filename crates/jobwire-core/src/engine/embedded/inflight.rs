//! Events fanned out ahead of their flush: the writer's current group between the
//! moment watchers get its events and the moment its commit is durable.
//!
//! Watchers see an event as soon as the writer has ordered it; readers must then
//! see it too, or a subscriber registering right after the fan-out would read the
//! store (still without the event) and never get it live. So the writer publishes
//! the group's snapshots and events here *before* the fan-out, and clears them
//! after the tail cache and the store hold them (or after the commit failed). A
//! reader looks here *first* and keeps the newer of this and what it then reads:
//! whichever order the two race in, it never misses an event it was not sent live.

use crate::engine::HistoryPage;
use bytes::Bytes;
use jobwire_proto::Job;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One job of the group in flight: its snapshot after the group, and the group's
/// events of it (contiguous, ending at the snapshot's seq).
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) job: Arc<Job>,
    pub(crate) events: Vec<(u64, Bytes)>,
}

#[derive(Default)]
pub(crate) struct InFlight {
    jobs: Mutex<HashMap<Arc<str>, Pending>>,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Pending>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer: the group about to be fanned out.
    pub(crate) fn set(&self, group: HashMap<Arc<str>, Pending>) {
        *self.lock() = group;
    }

    /// The writer: the group is durable (and in the tail) or failed.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// A reader, before it reads the store or the tail.
    pub(crate) fn get(&self, key: &str) -> Option<Pending> {
        let jobs = self.lock();
        if jobs.is_empty() {
            return None;
        }
        jobs.get(key).cloned()
    }
}

impl Pending {
    /// The newer of `job` (read after this was taken) and the snapshot in flight.
    pub(crate) fn newer(self, job: Job) -> Job {
        if self.job.seq > job.seq {
            Arc::unwrap_or_clone(self.job)
        } else {
            job
        }
    }

    /// Extends a history page read after this was taken: when the page reached the
    /// end of what the store had, the events in flight follow (up to `limit`), and
    /// the page's snapshot is the one in flight.
    pub(crate) fn extend(self, mut page: HistoryPage, after: u64, limit: usize) -> HistoryPage {
        if self.job.seq <= page.job.seq {
            return page;
        }
        let reached_end = page.events.len() < limit || page.last_seq >= page.job.seq;
        if reached_end {
            let mut next = page.last_seq.max(after).saturating_add(1);
            for (seq, bytes) in self.events {
                if page.events.len() >= limit || seq > next {
                    break;
                }
                // Only the events right after what the page has: never a gap.
                if seq == next {
                    page.events.push((seq, bytes));
                    page.last_seq = seq;
                    next += 1;
                }
            }
        }
        page.job = Arc::unwrap_or_clone(self.job);
        page
    }
}
