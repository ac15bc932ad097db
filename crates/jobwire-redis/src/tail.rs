//! The Redis engine's replay tail: the newest events of each job this instance
//! watches, in memory, so a replay reads one small snapshot from Redis instead of
//! parsing its whole event range again for every client.
//!
//! The subscriber owns the writes: when a job's first local watcher arrives it
//! subscribes, then seeds the job's tail from the stream (`XREVRANGE`, the newest
//! [`Tails::per_job`] events), and from then on appends every event it delivers, which
//! it only ever does in seq order without gaps (it fills gaps from the stream first).
//! A tail that would break that rule (a jump, a trimmed range) is dropped, and so is
//! a job's tail when its last local watcher leaves.
//!
//! A history read takes the job's snapshot from Redis (the point in time of the
//! read) and answers from the tail only when the tail holds every event the page
//! needs, up to the snapshot's seq; otherwise it reads Redis as before. So a tail that
//! lags the pub/sub stream costs a Redis read, never a wrong page.

use bytes::Bytes;
use jobwire_core::engine::{pack_segment, SEGMENT};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

struct Tail {
    /// Events in seq order, contiguous.
    events: VecDeque<(u64, Bytes)>,
    /// The seq the next appended event must have.
    next: u64,
    bytes: usize,
    /// How many of the newest events are not packed into a segment yet.
    loose: usize,
}

impl Tail {
    /// Packs the loose events in segments of [`SEGMENT`] once there are that many
    /// (all of them with `all`).
    fn pack(&mut self, all: bool) {
        while self.loose >= SEGMENT || (all && self.loose > 0) {
            let n = self.loose.min(SEGMENT);
            let start = self.events.len() - self.loose;
            let mut loose: Vec<&mut Bytes> = self
                .events
                .range_mut(start..start + n)
                .map(|(_, b)| b)
                .collect();
            pack_segment(&mut loose);
            self.loose -= n;
        }
    }
}

/// Per-job tails shared by the subscriber (writes) and history reads.
pub(crate) struct Tails {
    jobs: RwLock<HashMap<String, Tail>>,
    bytes: AtomicUsize,
    budget: usize,
    per_job: usize,
}

impl Tails {
    /// Tails of at most `per_job` events each, `budget` bytes in all (0: off).
    pub(crate) fn new(budget: usize, per_job: usize) -> Tails {
        Tails {
            jobs: RwLock::new(HashMap::new()),
            bytes: AtomicUsize::new(0),
            budget,
            per_job: per_job.max(1),
        }
    }

    pub(crate) fn per_job(&self) -> usize {
        self.per_job
    }

    pub(crate) fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// Starts `job`'s tail with `events` (ascending, contiguous, the newest the
    /// stream had) and the job's current seq `last`. Refused (no tail) when the
    /// events are not contiguous up to `last` or the budget is spent.
    pub(crate) fn seed(&self, job: &str, events: Vec<(u64, Bytes)>, last: u64) {
        if !self.enabled() {
            return;
        }
        let contiguous = events.windows(2).all(|w| w[1].0 == w[0].0 + 1)
            && events.last().map_or(last == 0, |(s, _)| *s == last);
        let size: usize = events.iter().map(|(_, b)| b.len()).sum();
        if !contiguous || self.bytes.load(Ordering::Relaxed) + size > self.budget {
            return;
        }
        let Ok(mut jobs) = self.jobs.write() else {
            return;
        };
        let mut tail = Tail {
            loose: events.len(),
            events: events.into(),
            next: last + 1,
            bytes: size,
        };
        tail.pack(true);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        if let Some(old) = jobs.insert(job.to_owned(), tail) {
            self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
        }
    }

    /// Appends one delivered event; a seq out of line drops the job's tail.
    pub(crate) fn push(&self, job: &str, seq: u64, bytes: &Bytes) {
        let Ok(mut jobs) = self.jobs.write() else {
            return;
        };
        let Some(tail) = jobs.get_mut(job) else {
            return;
        };
        if seq != tail.next || self.bytes.load(Ordering::Relaxed) + bytes.len() > self.budget {
            if let Some(old) = jobs.remove(job) {
                self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
            }
            return;
        }
        tail.events.push_back((seq, bytes.clone()));
        tail.loose += 1;
        tail.pack(false);
        tail.next = seq + 1;
        tail.bytes += bytes.len();
        self.bytes.fetch_add(bytes.len(), Ordering::Relaxed);
        while tail.events.len() > self.per_job {
            if let Some((_, b)) = tail.events.pop_front() {
                tail.loose = tail.loose.min(tail.events.len());
                tail.bytes -= b.len();
                self.bytes.fetch_sub(b.len(), Ordering::Relaxed);
            }
        }
    }

    /// Forgets `job`'s tail.
    pub(crate) fn drop_job(&self, job: &str) {
        if let Ok(mut jobs) = self.jobs.write() {
            if let Some(old) = jobs.remove(job) {
                self.bytes.fetch_sub(old.bytes, Ordering::Relaxed);
            }
        }
    }

    /// Whether `job` has a tail (a cheap check before reading its snapshot).
    pub(crate) fn has(&self, job: &str) -> bool {
        self.jobs.read().is_ok_and(|j| j.contains_key(job))
    }

    /// Events `start ..= upto` (at most `limit`) when the tail holds all of them.
    pub(crate) fn page(
        &self,
        job: &str,
        start: u64,
        upto: u64,
        limit: usize,
    ) -> Option<Vec<(u64, Bytes)>> {
        let jobs = self.jobs.read().ok()?;
        let tail = jobs.get(job)?;
        if upto >= tail.next {
            return None; // the tail lags the snapshot: read Redis
        }
        if start > upto || limit == 0 {
            return Some(Vec::new());
        }
        let first = tail.events.front().map_or(tail.next, |(s, _)| *s);
        if start < first {
            return None; // older than the tail holds
        }
        let skip = usize::try_from(start - first).ok()?;
        let take = usize::try_from(upto - start + 1).ok()?.min(limit);
        let end = skip.saturating_add(take).min(tail.events.len());
        Some(tail.events.range(skip.min(end)..end).cloned().collect())
    }

    /// Bytes held in all tails.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> (u64, Bytes) {
        (seq, Bytes::from(format!("{{\"seq\":{seq}}}")))
    }

    #[test]
    fn pages_come_from_the_tail_only_when_it_holds_them_all() {
        let t = Tails::new(1 << 20, 4);
        t.seed("j", (3..=5).map(ev).collect(), 5);
        assert_eq!(t.page("j", 3, 5, 10).map(|p| p.len()), Some(3));
        assert_eq!(t.page("j", 4, 5, 1).map(|p| p[0].0), Some(4));
        assert!(
            t.page("j", 2, 5, 10).is_none(),
            "seq 2 is older than the tail"
        );
        assert!(
            t.page("j", 3, 6, 10).is_none(),
            "the tail lags the snapshot"
        );
        t.push("j", 6, &ev(6).1);
        t.push("j", 7, &ev(7).1);
        assert!(t.page("j", 3, 7, 10).is_none(), "trimmed to 4 events");
        assert_eq!(t.page("j", 4, 7, 10).map(|p| p.len()), Some(4));
        // A jump drops the tail rather than serve a gap.
        t.push("j", 9, &ev(9).1);
        assert!(!t.has("j"));
        assert_eq!(t.bytes(), 0);
        // Not contiguous up to the job's seq: no tail at all.
        t.seed("k", vec![ev(1), ev(3)], 3);
        assert!(!t.has("k"));
        t.seed("empty", Vec::new(), 0);
        assert_eq!(t.page("empty", 1, 0, 10).map(|p| p.len()), Some(0));
    }

    #[test]
    fn packed_events_keep_their_bytes() {
        let t = Tails::new(1 << 20, 200);
        t.seed("j", (1..=100).map(ev).collect(), 100);
        for seq in 101..=170 {
            t.push("j", seq, &ev(seq).1);
        }
        let page = t.page("j", 1, 170, 500).unwrap_or_default();
        assert_eq!(page, (1..=170).map(ev).collect::<Vec<_>>());
        // The first 64 seeded events share one buffer.
        let (a, b) = (&page[0].1, &page[63].1);
        assert_eq!(
            b.as_ptr() as usize - a.as_ptr() as usize,
            (1..64).map(|s| ev(s).1.len()).sum::<usize>()
        );
    }
}
