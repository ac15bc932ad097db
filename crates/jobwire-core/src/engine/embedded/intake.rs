//! The writer's intake: takes requests off the queue, and for the flush window
//! (see `writer`) waits for more until a deadline.
//!
//! The wait runs on a current-thread tokio runtime of the writer's own, whose
//! timer ticks in milliseconds: a window of 1 ms lasts 1-2 ms. A precise wait
//! (parking the thread with a deadline in microseconds, closing the window after a
//! few average gaps without an arrival) was measured and cost more CPU than it
//! saved: 44-45 % of a core against 37 % at 2,000 publishes/s
//! (docs/perf-experiments.md, "A flush window").

use super::{Request, MAX_BATCH};
use std::time::Instant;
use tokio::sync::mpsc;

pub(super) struct Intake {
    rx: mpsc::Receiver<Request>,
    /// For the timed waits; `None` (no timer could be made): no waiting.
    rt: Option<tokio::runtime::Runtime>,
}

impl Intake {
    pub(super) fn new(rx: mpsc::Receiver<Request>) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no timer for the flush window; it is off"))
            .ok();
        Intake { rx, rt }
    }

    /// Blocks until the next request (`None`: every sender is gone).
    pub(super) fn next(&mut self) -> Option<Request> {
        self.rx.blocking_recv()
    }

    /// Appends what is queued to `batch`, up to [`MAX_BATCH`] requests in a group
    /// that already holds `taken`.
    pub(super) fn take_queued(&mut self, batch: &mut Vec<Request>, taken: usize) {
        while taken + batch.len() < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
    }

    /// The next request if one comes before `until` (`None`: none did, or every
    /// sender is gone).
    pub(super) fn next_before(&mut self, until: Instant) -> Option<Request> {
        let (rt, rx) = (self.rt.as_ref()?, &mut self.rx);
        // The timer is made inside the runtime (it needs its time driver).
        rt.block_on(async { tokio::time::timeout_at(until.into(), rx.recv()).await })
            .ok()
            .flatten()
    }
}
