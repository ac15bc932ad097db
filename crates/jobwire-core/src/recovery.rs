//! Recovery: how a (re)subscribing client gets a whole, gap-free, duplicate-free
//! stream. The order is what makes it safe:
//! 1. register the outbox in the registry, so live events start queueing;
//! 2. read the snapshot and the first history page after `since` in one read;
//! 3. the transport sends the snapshot, then history pages up to the snapshot's seq;
//! 4. live frames are then drained through [`Positions::admit`], which drops any seq
//!    already sent. Engines fan out only after commit, so every event is either in
//!    the history read or queued live (or both, deduplicated here).
//!
//! If `since` is older than the kept history, the transport sends a
//! `history_truncated` notice before the events that remain: never a silent gap.

use crate::engine::{Engine, HistoryPage};
use crate::error::HubError;
use bytes::Bytes;
use jobwire_proto::Job;
use std::collections::HashMap;
use std::sync::Arc;

/// Events fetched per history read during a replay.
pub const REPLAY_PAGE: usize = 512;

/// Where a resuming client is: the last seq it has, and the epoch it was given
/// with it (the snapshot's or the last `rewound` notice's; see [`Engine::epoch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    pub seq: u64,
    pub epoch: Option<u64>,
}

impl Since {
    /// A position without an epoch (clients from before epochs, dialects).
    pub fn seq(seq: u64) -> Since {
        Since { seq, epoch: None }
    }
}

/// One page of a replay.
#[derive(Debug)]
pub struct ReplayPage {
    /// Set when the client held events a crash or a failed flush took back:
    /// `(the client's since, first seq it must drop)`; those seqs follow.
    pub rewound: Option<(u64, u64)>,
    /// Set when events between `since` and the page were trimmed by retention:
    /// `(since, first seq still kept)`.
    pub truncated: Option<(u64, u64)>,
    /// `(seq, event JSON text)` in seq order.
    pub events: Vec<(u64, Bytes)>,
}

/// The first history page of a resume, read the way every resume must be: the
/// engine's epoch first (one read after it cannot miss the start of a later
/// epoch), then the page after `since`, read again from the rewind point when the
/// client holds events a crash took back.
pub struct Resumed {
    pub page: HistoryPage,
    /// The engine's epoch at the read (`None`: the engine has none).
    pub epoch: Option<u64>,
    /// `(the client's since, first seq it must drop)` when it must rewind.
    pub rewound: Option<(u64, u64)>,
    /// Where the page starts: `since`, or the seq before the rewind point.
    pub after: u64,
}

impl Resumed {
    pub async fn read(
        engine: &dyn Engine,
        key: &str,
        since: Since,
        limit: usize,
    ) -> Result<Resumed, HubError> {
        let epoch = engine.epoch();
        let mut after = since.seq;
        let mut page = engine.history(key, after, limit).await?;
        let mut rewound = None;
        if let Some(current) = epoch {
            if let Some(from) = page.job.rewind_point(since.seq, since.epoch, current) {
                rewound = Some((since.seq, from));
                after = from - 1;
                page = engine.history(key, after, limit).await?;
            }
        }
        Ok(Resumed {
            page,
            epoch,
            rewound,
            after,
        })
    }
}

/// A subscription's catch-up: the snapshot, then history pages up to its seq.
pub struct Replay {
    engine: Arc<dyn Engine>,
    job_id: Arc<str>,
    /// The job as of subscribe time.
    pub job: Job,
    /// The engine's epoch at subscribe time (send it with the snapshot).
    pub epoch: Option<u64>,
    since: Option<u64>,
    /// Last seq covered so far (snapshot or history).
    cursor: u64,
    first: Option<ReplayPage>,
}

impl Replay {
    pub(crate) async fn start(
        engine: Arc<dyn Engine>,
        job_id: Arc<str>,
        since: Option<Since>,
    ) -> Result<Replay, HubError> {
        // Without `since` nothing is replayed (and nothing can need a rewind).
        let Resumed {
            page,
            epoch,
            rewound,
            after,
        } = match since {
            Some(s) => Resumed::read(engine.as_ref(), &job_id, s, REPLAY_PAGE).await?,
            None => Resumed {
                page: engine.history(&job_id, u64::MAX, REPLAY_PAGE).await?,
                epoch: engine.epoch(),
                rewound: None,
                after: u64::MAX,
            },
        };
        let since = since.map(|_| after);
        let truncated = page.truncated.then_some((after, page.job.history_start));
        let cursor = match since {
            Some(s) if s < page.job.seq => page.last_seq,
            _ => page.job.seq,
        };
        Ok(Replay {
            engine,
            job_id,
            job: page.job,
            epoch,
            since,
            cursor,
            first: Some(ReplayPage {
                rewound,
                truncated,
                events: page.events,
            }),
        })
    }

    /// The next page to send, or `None` when caught up with the snapshot.
    pub async fn next_page(&mut self) -> Result<Option<ReplayPage>, HubError> {
        if let Some(first) = self.first.take() {
            if first.rewound.is_some() || first.truncated.is_some() || !first.events.is_empty() {
                return Ok(Some(first));
            }
        }
        if self.since.is_none() || self.cursor >= self.job.seq {
            return Ok(None);
        }
        let page = self
            .engine
            .history(&self.job_id, self.cursor, REPLAY_PAGE)
            .await?;
        let truncated = page
            .truncated
            .then_some((self.cursor, page.job.history_start));
        if page.events.is_empty() {
            // Trimmed away or expired meanwhile; the snapshot still stands.
            self.cursor = self.job.seq;
            return Ok(truncated.map(|t| ReplayPage {
                rewound: None,
                truncated: Some(t),
                events: Vec::new(),
            }));
        }
        self.cursor = page.last_seq;
        Ok(Some(ReplayPage {
            rewound: None,
            truncated,
            events: page.events,
        }))
    }

    /// The storage key of the job (routes its live frames; pass to `Hub::unsubscribe`).
    pub fn key(&self) -> &Arc<str> {
        &self.job_id
    }

    /// The highest seq this replay has covered (always >= the snapshot's seq once
    /// `next_page` returned `None`).
    pub fn position(&self) -> u64 {
        self.cursor.max(self.job.seq)
    }
}

/// Per-connection record of the last seq sent for each watched job.
///
/// Most connections watch one job or a handful: those live in a small vector
/// (one 32-byte allocation, a scan that compares the shared `Arc` pointer first);
/// past [`Positions::SMALL`] jobs it switches to a hash map.
#[derive(Default)]
pub struct Positions {
    few: Vec<(Arc<str>, u64)>,
    many: HashMap<Arc<str>, u64>,
}

impl Positions {
    /// Most jobs kept in the vector.
    pub const SMALL: usize = 8;

    fn slot(&mut self, job: &str) -> Option<&mut u64> {
        if self.many.is_empty() {
            self.few
                .iter_mut()
                .find(|(j, _)| std::ptr::eq(j.as_ptr(), job.as_ptr()) || &**j == job)
                .map(|(_, s)| s)
        } else {
            self.many.get_mut(job)
        }
    }

    /// Starts tracking a job at `seq`.
    pub fn track(&mut self, job: Arc<str>, seq: u64) {
        if let Some(s) = self.slot(&job) {
            *s = seq;
        } else if self.many.is_empty() && self.few.len() < Self::SMALL {
            // Exact: the common single-job connection keeps one slot, not four.
            self.few.reserve_exact(1);
            self.few.push((job, seq));
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(job, seq);
        }
    }

    /// Stops tracking a job; its late frames are dropped.
    pub fn forget(&mut self, job: &str) {
        self.few.retain(|(j, _)| &**j != job);
        self.many.remove(job);
    }

    /// Whether a job is tracked.
    pub fn contains(&self, job: &str) -> bool {
        self.few.iter().any(|(j, _)| &**j == job) || self.many.contains_key(job)
    }

    /// The tracked jobs.
    pub fn jobs(&self) -> impl Iterator<Item = &Arc<str>> {
        self.few.iter().map(|(j, _)| j).chain(self.many.keys())
    }

    /// Number of tracked jobs.
    pub fn len(&self) -> usize {
        self.few.len() + self.many.len()
    }

    /// Whether no job is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True (and advances) when `seq` is new for `job`; false for duplicates and for
    /// jobs no longer watched.
    pub fn admit(&mut self, job: &str, seq: u64) -> bool {
        match self.slot(job) {
            Some(last) if seq > *last => {
                *last = seq;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Positions;
    use std::sync::Arc;

    #[test]
    fn positions_admit_only_newer_seqs_in_both_representations() {
        let mut p = Positions::default();
        let n = Positions::SMALL * 2;
        for i in 0..n {
            p.track(Arc::from(format!("job-{i}")), 5);
            assert_eq!(p.len(), i + 1);
            // Every job tracked so far, on either side of the switch to the map.
            for k in 0..=i {
                let job = format!("job-{k}");
                assert!(p.contains(&job));
                assert!(!p.admit(&job, 5), "a duplicate is refused");
            }
        }
        assert!(p.admit("job-3", 6));
        assert!(!p.admit("job-3", 6));
        assert!(!p.admit("unknown", 1));
        p.forget("job-3");
        assert!(!p.contains("job-3") && !p.admit("job-3", 7));
        assert_eq!(p.jobs().count(), n - 1);
        p.track(Arc::from("job-3"), 0);
        assert!(p.admit("job-3", 1));
    }
}
