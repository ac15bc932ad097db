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

use crate::engine::Engine;
use crate::error::HubError;
use bytes::Bytes;
use jobwire_proto::Job;
use std::collections::HashMap;
use std::sync::Arc;

/// Events fetched per history read during a replay.
pub const REPLAY_PAGE: usize = 512;

/// One page of a replay.
#[derive(Debug)]
pub struct ReplayPage {
    /// Set when events between `since` and the page were trimmed by retention:
    /// `(since, first seq still kept)`.
    pub truncated: Option<(u64, u64)>,
    /// `(seq, event JSON text)` in seq order.
    pub events: Vec<(u64, Bytes)>,
}

/// A subscription's catch-up: the snapshot, then history pages up to its seq.
pub struct Replay {
    engine: Arc<dyn Engine>,
    job_id: Arc<str>,
    /// The job as of subscribe time.
    pub job: Job,
    since: Option<u64>,
    /// Last seq covered so far (snapshot or history).
    cursor: u64,
    first: Option<ReplayPage>,
}

impl Replay {
    pub(crate) async fn start(
        engine: Arc<dyn Engine>,
        job_id: Arc<str>,
        since: Option<u64>,
    ) -> Result<Replay, HubError> {
        let after = since.unwrap_or(u64::MAX);
        let page = engine.history(&job_id, after, REPLAY_PAGE).await?;
        let truncated = page.truncated.then_some((after, page.job.history_start));
        let cursor = match since {
            Some(s) if s < page.job.seq => page.last_seq,
            _ => page.job.seq,
        };
        Ok(Replay {
            engine,
            job_id,
            job: page.job,
            since,
            cursor,
            first: Some(ReplayPage {
                truncated,
                events: page.events,
            }),
        })
    }

    /// The next page to send, or `None` when caught up with the snapshot.
    pub async fn next_page(&mut self) -> Result<Option<ReplayPage>, HubError> {
        if let Some(first) = self.first.take() {
            if first.truncated.is_some() || !first.events.is_empty() {
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
                truncated: Some(t),
                events: Vec::new(),
            }));
        }
        self.cursor = page.last_seq;
        Ok(Some(ReplayPage {
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
#[derive(Default)]
pub struct Positions {
    last: HashMap<Arc<str>, u64>,
}

impl Positions {
    /// Starts tracking a job at `seq`.
    pub fn track(&mut self, job: Arc<str>, seq: u64) {
        self.last.insert(job, seq);
    }

    /// Stops tracking a job; its late frames are dropped.
    pub fn forget(&mut self, job: &str) {
        self.last.remove(job);
    }

    /// Whether a job is tracked.
    pub fn contains(&self, job: &str) -> bool {
        self.last.contains_key(job)
    }

    /// The tracked jobs.
    pub fn jobs(&self) -> impl Iterator<Item = &Arc<str>> {
        self.last.keys()
    }

    /// Number of tracked jobs.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether no job is tracked.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// True (and advances) when `seq` is new for `job`; false for duplicates and for
    /// jobs no longer watched.
    pub fn admit(&mut self, job: &str, seq: u64) -> bool {
        match self.last.get_mut(job) {
            Some(last) if seq > *last => {
                *last = seq;
                true
            }
            _ => false,
        }
    }
}
