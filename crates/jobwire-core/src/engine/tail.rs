//! The replay tail: each job's most recent events and snapshot, in memory, so that
//! clients catching up (reconnects with `since`, new subscribers) are served without
//! reading the store.
//!
//! The writer thread updates the tail after every commit and *before* fanning the
//! group out, the same order as the store: a subscriber that registered before the
//! fan-out either reads the event here or receives it live (both: deduplicated by
//! seq). For every job it holds, the tail keeps the invariant
//! `first + events.len() == job.seq + 1`: the events it has are exactly the newest
//! ones, gap-free, up to the snapshot. A read it cannot answer whole (older events,
//! a job it does not hold) returns `None` and the engine reads the store.
//!
//! Memory is bounded by a byte budget over event bytes and snapshot sizes: the
//! oldest events across all jobs are evicted first (a FIFO of `(job, seq)`), and a
//! job whose last event is evicted leaves the tail (so does one with no event to
//! hold). Each job also keeps at most `per_job` events.

use crate::engine::{history_window, HistoryPage};
use bytes::{Bytes, BytesMut};
use jobwire_proto::Job;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Events kept per job, at most.
pub(crate) const PER_JOB_EVENTS: usize = 2048;

/// Events of a job packed into one buffer (see [`pack_segment`]).
pub const SEGMENT: usize = 64;

/// Bookkeeping cost counted for each cached event besides its bytes.
const EVENT_OVERHEAD: usize = 48;

/// A committed change to one job: its new snapshot and the size of its stored JSON.
pub(crate) struct Snapshot {
    pub(crate) key: Arc<str>,
    pub(crate) job: Arc<Job>,
    pub(crate) size: usize,
}

pub(crate) struct TailCache {
    inner: Mutex<Inner>,
    budget: usize,
    per_job: usize,
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<Arc<str>, Tail>,
    /// Every cached event in insertion order; entries whose event already left
    /// (per-job cap, trim, removal) are skipped when they reach the front.
    fifo: VecDeque<(Arc<str>, u64)>,
    /// Live events across all tails (to know when the FIFO needs compacting).
    live: usize,
    bytes: usize,
}

struct Tail {
    job: Arc<Job>,
    job_size: usize,
    /// Seq of `events[0]` (or `job.seq + 1` when empty).
    first: u64,
    events: VecDeque<Bytes>,
    /// How many of the newest events are not packed into a segment yet.
    loose: usize,
}

impl Tail {
    fn push(&mut self, b: Bytes) {
        self.events.push_back(b);
        self.loose += 1;
        if self.loose >= SEGMENT {
            self.pack();
        }
    }

    /// Packs the loose events into one segment (see [`pack_segment`]).
    fn pack(&mut self) {
        let start = self.events.len() - self.loose.min(self.events.len());
        let mut loose: Vec<&mut Bytes> = self.events.range_mut(start..).collect();
        pack_segment(&mut loose);
        self.loose = 0;
    }

    fn pop_front(&mut self) -> Option<Bytes> {
        let b = self.events.pop_front()?;
        self.first += 1;
        self.loose = self.loose.min(self.events.len());
        Some(b)
    }

    /// Drops every event; the next one held will be `first`.
    fn reset(&mut self, first: u64) -> (usize, usize) {
        let dropped = (self.events.len(), self.events.iter().map(cost).sum());
        self.events.clear();
        self.loose = 0;
        self.first = first;
        dropped
    }
}

/// Copies `events` into one buffer and points each at its slice of it. Replays
/// clone every event they send; slices of one segment share one reference count (a
/// hot cache line) and sit next to each other in memory, where separately allocated
/// events each had their own count and their own place in the heap: those clones,
/// drops and cache misses were a fifth of the server's CPU in the replay benchmark.
/// Both engines' replay tails pack their events in segments of [`SEGMENT`].
pub fn pack_segment(events: &mut [&mut Bytes]) {
    let total = events.iter().map(|b| b.len()).sum();
    let mut buf = BytesMut::with_capacity(total);
    for b in events.iter() {
        buf.extend_from_slice(b);
    }
    let segment = buf.freeze();
    let mut at = 0;
    for b in events.iter_mut() {
        let len = b.len();
        **b = segment.slice(at..at + len);
        at += len;
    }
}

impl TailCache {
    /// A tail holding at most `budget` bytes and `per_job` events per job. A zero
    /// budget disables it (every read goes to the store).
    pub(crate) fn new(budget: usize, per_job: usize) -> TailCache {
        TailCache {
            inner: Mutex::new(Inner::default()),
            budget,
            per_job: per_job.max(1),
        }
    }

    /// Bytes held (events, their bookkeeping and snapshots), as the budget counts them.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The tail holds no invariant a panicking holder could break half-way that a
        // reader would trust: every method re-checks contiguity. Recover the guard.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one committed group: the changed jobs' snapshots and the group's
    /// events (`(job key, seq, bytes)` in commit order).
    pub(crate) fn commit<'a>(
        &self,
        snapshots: Vec<Snapshot>,
        events: impl Iterator<Item = (&'a Arc<str>, u64, &'a Bytes)>,
    ) {
        if self.budget == 0 {
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        for s in &snapshots {
            match inner.jobs.get_mut(&s.key) {
                Some(t) => {
                    inner.bytes = inner.bytes - t.job_size + s.size;
                    t.job = s.job.clone();
                    t.job_size = s.size;
                }
                None => {
                    inner.bytes += s.size;
                    inner.jobs.insert(
                        s.key.clone(),
                        Tail {
                            job: s.job.clone(),
                            job_size: s.size,
                            first: s.job.seq + 1,
                            events: VecDeque::new(),
                            loose: 0,
                        },
                    );
                }
            }
        }
        for (key, seq, bytes) in events {
            let Some(t) = inner.jobs.get_mut(&**key) else {
                continue;
            };
            if t.first + t.events.len() as u64 != seq {
                let (n, b) = t.reset(seq);
                inner.live -= n;
                inner.bytes -= b;
            }
            t.push(bytes.clone());
            inner.live += 1;
            inner.bytes += cost(bytes);
            inner.fifo.push_back((key.clone(), seq));
        }
        for s in &snapshots {
            let Some(t) = inner.jobs.get_mut(&s.key) else {
                continue;
            };
            let job = t.job.clone();
            if t.first + t.events.len() as u64 != job.seq + 1 {
                // Not the newest events (should not happen): hold none rather than
                // serve a gap.
                let (n, b) = t.reset(job.seq + 1);
                inner.live -= n;
                inner.bytes -= b;
            }
            let keep_from = job
                .history_start
                .max((job.seq + 1).saturating_sub(self.per_job as u64));
            while t.first < keep_from {
                let Some(b) = t.pop_front() else {
                    t.first = keep_from;
                    break;
                };
                inner.live -= 1;
                inner.bytes -= cost(&b);
            }
            // A held job always has an event in the FIFO, which bounds the
            // snapshots held too.
            if t.events.is_empty() {
                inner.bytes -= t.job_size;
                inner.jobs.remove(&s.key);
            }
        }
        inner.evict(self.budget);
    }

    /// Forgets `key` (the job was deleted).
    pub(crate) fn remove(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(t) = inner.jobs.remove(key) {
            inner.live -= t.events.len();
            inner.bytes -= t.job_size + t.events.iter().map(cost).sum::<usize>();
        }
    }

    /// The same page the store would return for `(key, after, limit)`, when the tail
    /// holds everything it needs.
    pub(crate) fn history(&self, key: &str, after: u64, limit: usize) -> Option<HistoryPage> {
        let (job, events, last_seq, truncated) = {
            let inner = self.lock();
            let t = inner.jobs.get(key)?;
            let job = &t.job;
            let (truncated, start) = history_window(job, after);
            let mut events = Vec::new();
            let mut last_seq = after;
            if start <= job.seq && limit > 0 {
                if start < t.first {
                    return None;
                }
                let skip = usize::try_from(start - t.first).ok()?;
                events.reserve(limit.min(t.events.len() - skip.min(t.events.len())));
                for (i, b) in t.events.iter().skip(skip).take(limit).enumerate() {
                    last_seq = start + i as u64;
                    events.push((last_seq, b.clone()));
                }
            }
            (t.job.clone(), events, last_seq, truncated)
        };
        Some(HistoryPage {
            job: (*job).clone(),
            events,
            last_seq,
            truncated,
        })
    }

    /// The job's snapshot, when held.
    pub(crate) fn snapshot(&self, key: &str) -> Option<Job> {
        let job = self.lock().jobs.get(key)?.job.clone();
        Some((*job).clone())
    }
}

impl Inner {
    /// Drops the oldest events until the budget holds, and compacts the FIFO when
    /// most of its entries are stale.
    fn evict(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some((key, seq)) = self.fifo.pop_front() else {
                break;
            };
            let Some(t) = self.jobs.get_mut(&key) else {
                continue;
            };
            if t.first != seq || t.events.is_empty() {
                continue;
            }
            if let Some(b) = t.pop_front() {
                self.live -= 1;
                self.bytes -= cost(&b);
            }
            if t.events.is_empty() {
                self.bytes -= t.job_size;
                self.jobs.remove(&key);
            }
        }
        if self.fifo.len() > 2 * self.live + 1024 {
            let jobs = &self.jobs;
            self.fifo.retain(|(key, seq)| {
                jobs.get(key)
                    .is_some_and(|t| *seq >= t.first && *seq <= t.job.seq)
            });
        }
    }
}

fn cost(b: &Bytes) -> usize {
    b.len() + EVENT_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobwire_proto::Timestamp;

    fn job(seq: u64, history_start: u64) -> Arc<Job> {
        let mut j = Job::new("j".into(), None, Timestamp::now());
        j.seq = seq;
        j.history_start = history_start;
        Arc::new(j)
    }

    fn ev(seq: u64) -> Bytes {
        Bytes::from(format!("{{\"seq\":{seq}}}"))
    }

    fn commit(t: &TailCache, key: &Arc<str>, seqs: std::ops::RangeInclusive<u64>, start: u64) {
        let bytes: Vec<(u64, Bytes)> = seqs.clone().map(|s| (s, ev(s))).collect();
        t.commit(
            vec![Snapshot {
                key: key.clone(),
                job: job(*seqs.end(), start),
                size: 100,
            }],
            bytes.iter().map(|(s, b)| (key, *s, b)),
        );
    }

    fn seqs(p: &HistoryPage) -> Vec<u64> {
        p.events.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn serves_pages_it_holds_and_refuses_older_ones() {
        let t = TailCache::new(1 << 20, 10);
        let k: Arc<str> = Arc::from("j");
        commit(&t, &k, 1..=5, 1);
        commit(&t, &k, 6..=15, 1);
        // Holds 6..=15 (per-job cap 10).
        assert!(t.history("j", 4, 100).is_none());
        let p = t.history("j", 5, 3).expect("held");
        assert_eq!(seqs(&p), vec![6, 7, 8]);
        assert_eq!(p.last_seq, 8);
        assert_eq!(p.events[0].1, ev(6));
        let p = t.history("j", 15, 100).expect("caught up");
        assert!(p.events.is_empty());
        assert_eq!(p.last_seq, 15);
        let p = t.history("j", u64::MAX, 100).expect("no since");
        assert!(p.events.is_empty());
        assert_eq!(p.job.seq, 15);
        assert!(t.history("other", 0, 10).is_none());
    }

    #[test]
    fn a_gap_resets_the_tail_instead_of_serving_it() {
        let t = TailCache::new(1 << 20, 100);
        let k: Arc<str> = Arc::from("j");
        commit(&t, &k, 1..=3, 1);
        // Seqs 4..=6 never reached the tail (e.g. written before a restart).
        commit(&t, &k, 7..=8, 1);
        assert!(t.history("j", 3, 100).is_none());
        assert_eq!(seqs(&t.history("j", 6, 100).expect("held")), vec![7, 8]);
    }

    #[test]
    fn trimmed_history_is_reported_like_the_store_does() {
        let t = TailCache::new(1 << 20, 100);
        let k: Arc<str> = Arc::from("j");
        commit(&t, &k, 1..=10, 6);
        let p = t.history("j", 2, 100).expect("held");
        assert!(p.truncated);
        assert_eq!(seqs(&p), vec![6, 7, 8, 9, 10]);
    }

    #[test]
    fn the_budget_evicts_the_oldest_events_first_and_then_whole_jobs() {
        let per_event = ev(1).len() + EVENT_OVERHEAD;
        // Room for two snapshots and ~6 events.
        let t = TailCache::new(200 + 6 * per_event, 100);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        commit(&t, &a, 1..=4, 1);
        commit(&t, &b, 1..=4, 1);
        // a's oldest events went first; b is whole.
        assert!(t.history("a", 0, 100).is_none());
        assert_eq!(
            seqs(&t.history("b", 0, 100).expect("b whole")),
            vec![1, 2, 3, 4]
        );
        commit(&t, &b, 5..=9, 1);
        // a is gone entirely; b keeps its newest.
        assert!(t.history("a", 4, 100).is_none());
        assert!(t.history("b", 8, 100).is_some());
        t.remove("b");
        assert!(t.history("b", 9, 100).is_none());
        let inner = t.lock();
        assert_eq!(inner.bytes, 0);
        assert_eq!(inner.live, 0);
    }

    #[test]
    fn packed_segments_serve_the_same_bytes() {
        let t = TailCache::new(1 << 20, 1000);
        let k: Arc<str> = Arc::from("j");
        commit(&t, &k, 1..=100, 1);
        commit(&t, &k, 101..=150, 1);
        let p = t.history("j", 0, 1000).expect("held");
        assert_eq!(seqs(&p), (1..=150).collect::<Vec<_>>());
        for (seq, b) in &p.events {
            assert_eq!(b, &ev(*seq));
        }
    }

    #[test]
    fn a_zero_budget_holds_nothing() {
        let t = TailCache::new(0, 100);
        let k: Arc<str> = Arc::from("j");
        commit(&t, &k, 1..=3, 1);
        assert!(t.history("j", 0, 10).is_none());
    }
}
