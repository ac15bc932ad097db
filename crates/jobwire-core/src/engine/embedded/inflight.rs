//! What readers must see that the store's committed state does not show yet: the
//! group between its fan-out and its flush (*current*), every group made durable
//! by the journal since the last checkpoint (*settled*; see `journal`), and while
//! a checkpoint commits in the background, the groups it holds (*committing*).
//!
//! Watchers see an event as soon as the writer has ordered it; readers must then
//! see it too, or a subscriber registering right after the fan-out would read the
//! store (still without the event) and never get it live. So the writer publishes
//! a group's snapshots and events here *before* the fan-out, settles them after
//! their journal record is durable, and clears everything after a checkpoint put
//! it in the store (or drops the current group when its flush failed). A reader
//! looks here *first* and keeps the newer of this and what it then reads:
//! whichever order the two race in, it never misses an event it was not sent live.

use crate::engine::{history_window, HistoryPage, NotificationPage};
use bytes::Bytes;
use jobwire_proto::Job;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One job's changes not in the store yet: its newest snapshot, and its events
/// since the store's (contiguous, ending at the snapshot's seq).
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) job: Arc<Job>,
    pub(crate) events: Vec<(u64, Bytes)>,
}

#[derive(Default)]
struct Layers {
    current: HashMap<Arc<str>, Pending>,
    settled: HashMap<Arc<str>, Pending>,
    /// What the checkpoint committing in the background holds (see `durable`).
    committing: HashMap<Arc<str>, Pending>,
    /// Notifications since the last checkpoint, per owner, in seq order.
    notices: HashMap<Arc<str>, Vec<(u64, Bytes)>>,
    /// The notifications the committing checkpoint holds.
    committing_notices: HashMap<Arc<str>, Vec<(u64, Bytes)>>,
}

impl Layers {
    fn is_empty(&self) -> bool {
        self.current.is_empty() && self.settled.is_empty() && self.committing.is_empty()
    }
}

/// `p` on top of what `layer` has for `key`: its newer events and its snapshot.
fn merge(layer: &mut HashMap<Arc<str>, Pending>, key: Arc<str>, p: Pending) {
    match layer.get_mut(&key) {
        Some(old) => old.stack(&p),
        None => drop(layer.insert(key, p)),
    }
}

#[derive(Default)]
pub(crate) struct InFlight {
    layers: Mutex<Layers>,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, Layers> {
        self.layers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer: the group about to be fanned out ahead of its flush.
    pub(crate) fn set(&self, group: HashMap<Arc<str>, Pending>) {
        self.lock().current = group;
    }

    /// The writer: the current group's flush failed; it never happened.
    pub(crate) fn drop_current(&self) {
        self.lock().current.clear();
    }

    /// The writer: a group is durable in the journal (`changes`: every job it
    /// changed, created ones too; `notices`: `(owner, seq, frame)`).
    pub(crate) fn settle(
        &self,
        changes: HashMap<Arc<str>, Pending>,
        notices: impl Iterator<Item = (Arc<str>, u64, Bytes)>,
    ) {
        let mut l = self.lock();
        l.current.clear();
        for (key, p) in changes {
            merge(&mut l.settled, key, p);
        }
        for (owner, seq, frame) in notices {
            l.notices.entry(owner).or_default().push((seq, frame));
        }
    }

    /// The writer: a checkpoint put everything in the store.
    pub(crate) fn clear(&self) {
        let mut l = self.lock();
        l.current.clear();
        l.settled.clear();
        l.notices.clear();
        l.committing.clear();
        l.committing_notices.clear();
    }

    /// The writer: a checkpoint of everything settled begins committing in the
    /// background; what settles from now on is newer than what it holds.
    pub(crate) fn begin_checkpoint(&self) {
        let mut l = self.lock();
        let layers = &mut *l;
        for (key, p) in layers.settled.drain() {
            merge(&mut layers.committing, key, p);
        }
        for (owner, mut frames) in layers.notices.drain() {
            layers
                .committing_notices
                .entry(owner)
                .or_default()
                .append(&mut frames);
        }
    }

    /// The writer: the background checkpoint is in the store (readers see it).
    pub(crate) fn checkpoint_done(&self) {
        let mut l = self.lock();
        l.committing.clear();
        l.committing_notices.clear();
    }

    /// A reader, before it reads the store or the tail: the job's changes not in
    /// the store (settled, then current).
    pub(crate) fn get(&self, key: &str) -> Option<Pending> {
        let l = self.lock();
        if l.is_empty() {
            return None;
        }
        let mut out: Option<Pending> = None;
        for layer in [&l.committing, &l.settled, &l.current] {
            if let Some(p) = layer.get(key) {
                match &mut out {
                    Some(o) => o.stack(p),
                    None => out = Some(p.clone()),
                }
            }
        }
        out
    }

    /// A reader: the snapshots not in the store whose keys start with `prefix`.
    pub(crate) fn jobs(&self, prefix: &str) -> Vec<(Arc<str>, Arc<Job>)> {
        let l = self.lock();
        let mut out: HashMap<Arc<str>, Arc<Job>> = HashMap::new();
        for layer in [&l.committing, &l.settled, &l.current] {
            for (k, p) in layer.iter().filter(|(k, _)| k.starts_with(prefix)) {
                out.insert(k.clone(), p.job.clone());
            }
        }
        out.into_iter().collect()
    }

    /// A reader: the owner's notifications not in the store.
    pub(crate) fn notices(&self, owner: &str) -> Vec<(u64, Bytes)> {
        let l = self.lock();
        let mut out = l.committing_notices.get(owner).cloned().unwrap_or_default();
        out.extend(l.notices.get(owner).into_iter().flatten().cloned());
        out
    }
}

impl Pending {
    /// `newer` on top of this: its events after this one's last, and its snapshot.
    fn stack(&mut self, newer: &Pending) {
        let last = self.events.last().map_or(0, |e| e.0);
        self.events
            .extend(newer.events.iter().filter(|e| e.0 > last).cloned());
        self.job = newer.job.clone();
    }

    /// The newer of `job` (read after this was taken) and the snapshot here.
    pub(crate) fn newer(self, job: Job) -> Job {
        if self.job.seq > job.seq {
            Arc::unwrap_or_clone(self.job)
        } else {
            job
        }
    }

    /// Extends a history page read after this was taken: when the page reached the
    /// end of what the store had, the events here follow (up to `limit`), and the
    /// page's snapshot is the one here.
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

    /// The page of a job the store does not hold yet (created since the last
    /// checkpoint: every event it has is here).
    pub(crate) fn page(self, after: u64, limit: usize) -> HistoryPage {
        let job = Arc::unwrap_or_clone(self.job);
        let (truncated, start) = history_window(&job, after);
        let events: Vec<(u64, Bytes)> = self
            .events
            .into_iter()
            .filter(|e| e.0 >= start && e.0 <= job.seq)
            .take(limit)
            .collect();
        let last_seq = events.last().map_or(after, |e| e.0);
        HistoryPage {
            job,
            events,
            last_seq,
            truncated,
        }
    }
}

/// A notification page read from the store, completed with `extra` (the
/// notifications since the last checkpoint, taken before the read).
pub(crate) fn with_notices(
    mut page: NotificationPage,
    extra: Vec<(u64, Bytes)>,
    after: u64,
    limit: usize,
) -> NotificationPage {
    for (seq, frame) in extra {
        if seq <= page.head {
            continue;
        }
        // `start` stays: the store's oldest (or head + 1, this one's, when none).
        if page.frames.len() < limit && seq > after {
            page.frames.push((seq, frame));
        }
        page.head = seq;
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(p: &NotificationPage) -> Vec<u64> {
        p.frames.iter().map(|f| f.0).collect()
    }

    #[test]
    fn notifications_since_the_checkpoint_follow_the_stored_ones() {
        let b = |s: u64| (s, Bytes::from(format!("{{\"seq\":{s}}}")));
        let stored = NotificationPage {
            frames: vec![b(2), b(3)],
            head: 3,
            start: 2,
        };
        // 3 is in both (the reader raced a checkpoint): taken once.
        let page = with_notices(stored.clone(), vec![b(3), b(4), b(5)], 1, 10);
        assert_eq!(
            (frames(&page), page.head, page.start),
            (vec![2, 3, 4, 5], 5, 2)
        );
        let page = with_notices(stored, vec![b(4), b(5)], 1, 3);
        assert_eq!(
            (frames(&page), page.head),
            (vec![2, 3, 4], 5),
            "limit, head"
        );
        let empty = NotificationPage {
            frames: vec![],
            head: 0,
            start: 1,
        };
        let page = with_notices(empty, vec![b(1), b(2)], 1, 10);
        assert_eq!((frames(&page), page.head, page.start), (vec![2], 2, 1));
    }

    #[test]
    fn the_current_group_follows_the_settled_ones() {
        let f = InFlight::default();
        let ev = |s: u64| (s, Bytes::from(format!("{s}")));
        let pend = |seq: u64, events: Vec<(u64, Bytes)>| {
            let mut job = Job::new("j".into(), None, jobwire_proto::Timestamp::now());
            job.seq = seq;
            Pending {
                job: Arc::new(job),
                events,
            }
        };
        let key: Arc<str> = Arc::from("j");
        f.settle(
            HashMap::from([(key.clone(), pend(2, vec![ev(1), ev(2)]))]),
            std::iter::empty(),
        );
        f.settle(
            HashMap::from([(key.clone(), pend(3, vec![ev(3)]))]),
            std::iter::empty(),
        );
        f.set(HashMap::from([(key.clone(), pend(4, vec![ev(4)]))]));
        let p = f.get("j").expect("pending");
        assert_eq!(p.job.seq, 4);
        assert_eq!(
            p.events.iter().map(|e| e.0).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        f.drop_current();
        assert_eq!(f.get("j").expect("settled").job.seq, 3);
        f.clear();
        assert!(f.get("j").is_none());
    }
}
