//! The per-session outbound queue ([`Outbox`]): the only thing a publisher touches on
//! a watcher's behalf. Pushing never waits: when the queue is full, pending `progress`
//! events are coalesced (latest per job wins, order kept); if that frees no room the
//! session is marked slow and its transport closes it with
//! [`jobwire_proto::CloseCode::SlowConsumer`] so the client reconnects with `since`.

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// What kind of event a queued frame is; only progress may be coalesced, terminal
/// events end single-job watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Progress,
    Terminal,
    Other,
}

/// How many encodings other than v1's (the compatibility dialects) can keep their
/// bytes on a [`Published`] event.
pub const ENCODINGS: usize = 4;

/// One event's bytes in each other encoding, made by the first watcher that needs
/// them and shared by every other watcher of that encoding: an event is serialized
/// once per encoding, never once per watcher.
#[derive(Debug, Default)]
pub struct Encodings([std::sync::OnceLock<Option<Bytes>>; ENCODINGS]);

impl Encodings {
    /// The bytes of encoding `slot` (`None`: that encoding has no frame for this
    /// event), made by `make` the first time.
    pub fn get_or_init(&self, slot: usize, make: impl FnOnce() -> Option<Bytes>) -> Option<Bytes> {
        match self.0.get(slot) {
            Some(cell) => cell.get_or_init(make).clone(),
            None => make(),
        }
    }
}

/// One committed event, serialized once and shared by every watcher.
#[derive(Debug, Clone)]
pub struct Published {
    pub job_id: Arc<str>,
    pub seq: u64,
    pub kind: EventKind,
    /// The event's JSON text, exactly as stored.
    pub bytes: Bytes,
    /// The project channel key ([`crate::channel::project_key`]) this event also
    /// fans out to, when the engine delivers it by project in the same push.
    pub project: Option<Arc<str>>,
    /// The event in other encodings, filled on first use.
    pub encodings: Arc<Encodings>,
}

/// Result of [`Outbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Queued after dropping this many older progress frames.
    Coalesced(usize),
    /// No room even after coalescing: the session is now marked slow.
    Overflow,
    /// The session was already closed; the frame was dropped.
    Closed,
}

/// Why an outbox stopped accepting frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    SlowConsumer,
    /// The engine lost events of a watched job that it can no longer deliver (trimmed
    /// while it was cut off): the client must resume with `since`.
    Resync,
}

struct Inner {
    frames: VecDeque<Published>,
    closed: Option<Closed>,
}

/// A bounded queue of frames waiting to be written to one client connection.
///
/// One task (the connection's) waits on it. A push wakes that task only when the
/// queue goes from empty to non-empty, so a burst costs one wake-up and one drain.
pub struct Outbox {
    inner: Mutex<Inner>,
    /// The waiting session task.
    waker: AtomicWaker,
    /// Set by a waking push or close, cleared by the poll that reports it.
    ready: AtomicBool,
    capacity: usize,
}

impl Outbox {
    /// A queue holding at most `capacity` frames (see `HubConfig::outbox_capacity`).
    pub fn new(capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            inner: Mutex::new(Inner {
                // Grows on demand: most connections are idle, and idle memory per
                // connection is what limits how many one process can hold.
                frames: VecDeque::new(),
                closed: None,
            }),
            waker: AtomicWaker::new(),
            ready: AtomicBool::new(false),
            capacity: capacity.max(1),
        })
    }

    // The lock is held for a few pointer moves only and never across an await; a
    // poisoned lock only means another pusher panicked mid-push, the deque is intact.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame without waiting.
    pub fn push(&self, ev: &Published) -> Push {
        let (result, was_empty) = {
            let mut inner = self.lock();
            if inner.closed.is_some() {
                return Push::Closed;
            }
            let was_empty = inner.frames.is_empty();
            let result = if inner.frames.len() < self.capacity {
                inner.frames.push_back(ev.clone());
                Push::Queued
            } else {
                let dropped = coalesce(&mut inner.frames, ev);
                if inner.frames.len() < self.capacity {
                    inner.frames.push_back(ev.clone());
                    Push::Coalesced(dropped)
                } else {
                    inner.closed = Some(Closed::SlowConsumer);
                    inner.frames.clear();
                    Push::Overflow
                }
            };
            (result, was_empty)
        };
        // A non-empty queue already has a wake-up pending (cleared only by a poll
        // that is followed by a drain).
        if was_empty || result == Push::Overflow {
            self.wake();
        }
        result
    }

    fn wake(&self) {
        self.ready.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready once something was pushed (or the outbox closed) since the last time
    /// it returned ready. One task at a time may wait.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.ready.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.ready.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Stops accepting frames; the transport closes the session with `reason`.
    pub fn close(&self, reason: Closed) {
        {
            let mut inner = self.lock();
            inner.closed.get_or_insert(reason);
        }
        self.wake();
    }

    /// Moves every queued frame into `out` (which it clears first) and returns the
    /// close reason if the session was marked slow.
    pub fn drain(&self, out: &mut Vec<Published>) -> Option<Closed> {
        out.clear();
        let mut inner = self.lock();
        out.extend(inner.frames.drain(..));
        inner.closed
    }

    /// Waits until something was pushed (or the outbox was closed).
    pub fn notified(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_ready(cx))
    }

    /// Frames waiting now.
    pub fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops every queued progress frame that a later progress frame of the same job
/// (queued, or the incoming `next`) supersedes. Returns how many were dropped.
fn coalesce(frames: &mut VecDeque<Published>, next: &Published) -> usize {
    let before = frames.len();
    let mut seen: Vec<Arc<str>> = Vec::new();
    if next.kind == EventKind::Progress {
        seen.push(next.job_id.clone());
    }
    // Walk newest to oldest; keep only the newest progress frame per job.
    let mut kept: VecDeque<Published> = VecDeque::with_capacity(frames.len());
    while let Some(f) = frames.pop_back() {
        if f.kind == EventKind::Progress {
            if seen.contains(&f.job_id) {
                continue;
            }
            seen.push(f.job_id.clone());
        }
        kept.push_front(f);
    }
    *frames = kept;
    before - frames.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(job: &str, seq: u64, kind: EventKind) -> Published {
        Published {
            job_id: Arc::from(job),
            seq,
            kind,
            bytes: Bytes::from(format!("{job}:{seq}")),
            project: None,
            encodings: Default::default(),
        }
    }

    fn seqs(o: &Outbox) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        o.drain(&mut out);
        out.iter().map(|p| (p.job_id.to_string(), p.seq)).collect()
    }

    #[test]
    fn full_queue_coalesces_progress_and_keeps_order() {
        let o = Outbox::new(4);
        assert_eq!(o.push(&ev("a", 1, EventKind::Progress)), Push::Queued);
        assert_eq!(o.push(&ev("a", 2, EventKind::Other)), Push::Queued);
        assert_eq!(o.push(&ev("a", 3, EventKind::Progress)), Push::Queued);
        assert_eq!(o.push(&ev("b", 1, EventKind::Progress)), Push::Queued);
        // Full: a:1 and a:3 are superseded by a:4.
        assert_eq!(o.push(&ev("a", 4, EventKind::Progress)), Push::Coalesced(2));
        assert_eq!(
            seqs(&o),
            vec![("a".into(), 2), ("b".into(), 1), ("a".into(), 4)]
        );
    }

    #[test]
    fn never_drops_non_progress_and_overflows_instead() {
        let o = Outbox::new(2);
        o.push(&ev("a", 1, EventKind::Other));
        o.push(&ev("a", 2, EventKind::Other));
        assert_eq!(o.push(&ev("a", 3, EventKind::Terminal)), Push::Overflow);
        let mut out = Vec::new();
        assert_eq!(o.drain(&mut out), Some(Closed::SlowConsumer));
        assert!(out.is_empty());
        assert_eq!(o.push(&ev("a", 4, EventKind::Other)), Push::Closed);
    }
}
