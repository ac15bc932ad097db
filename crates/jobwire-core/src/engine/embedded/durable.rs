//! How the writer makes groups durable and heals: a journal record per group,
//! checkpoints (commits of the open transaction), and after a failed flush the
//! reopen, the space probe and the replay of the acknowledged records.
//!
//! # Checkpoints in the background
//! A due checkpoint does not hold the writer: the writer stores the number of the
//! last journal record in the transaction, switches the journal to its other
//! segment and hands the transaction to a thread of its own to commit
//! ([`Writer::checkpoint_if_due`]). Meanwhile no write transaction can be open
//! (redb has one writer), so groups are applied to an overlay of what the
//! committing transaction holds plus what came since, over the store's last
//! committed state (see `tables`), journaled and acknowledged as usual; readers
//! see both generations in `inflight`. When the commit is done
//! ([`Writer::finish_commit`]), the records since are replayed into a new
//! transaction. If it fails, nothing acknowledged is lost: every record is in one
//! of the journal's segments, and both generations are replayed once the store
//! takes writes again. API keys and shutdown wait for the commit; a sweep (a
//! timer's tick, which nobody waits for) is put off until the commit is done.

use super::tables::{Committed, Overlay, Tables};
use super::writer::Writer;
use super::{db_err, io_err, JOURNAL_KEY, JOURNAL_LIMIT, PROBE_BYTES, PROBE_INTERVAL};
use crate::error::HubError;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A checkpoint committing on its own thread.
pub(super) struct Committing {
    /// The commit's outcome (and how long the commit took).
    done: mpsc::Receiver<Result<Duration, HubError>>,
    /// The journal records the committing transaction holds: replayed if it fails.
    records: Vec<(u64, Vec<u8>)>,
    /// What the writer looks up, since the last completed checkpoint.
    pub(super) overlay: Overlay,
    /// The store as of the last completed checkpoint.
    pub(super) committed: Committed,
}

/// Writes, fsyncs and deletes [`PROBE_BYTES`] in `dir`: Ok when the disk has room.
fn probe_space(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".jobwire-space-probe");
    let result = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    result.and(removed)
}

impl Writer {
    /// Makes the group durable: as one journal record (appended and synced), or
    /// for `force` (shutdown; a sweep or an API key, which are not journaled) by a
    /// checkpoint on this thread, which commits the open transaction with this
    /// group in it. Returns whether it checkpointed (then everything is in the
    /// store). Other checkpoints begin after the group ([`Self::checkpoint_if_due`]).
    pub(super) fn make_durable(&mut self, record: Vec<u8>, force: bool) -> Result<bool, HubError> {
        if force && self.committing.is_some() {
            // Requests that force wait for the commit before they apply
            // (`apply_group`): refused before anything is journaled, so a group
            // reported as failed is never replayed.
            return Err(HubError::Storage(
                "internal: a forced checkpoint while one commits in the background".into(),
            ));
        }
        if force {
            self.checkpoint()?;
            return Ok(true);
        }
        if self.committing.is_none() && record.is_empty() && self.records.is_empty() {
            // Nothing changed since the last checkpoint: let the transaction go.
            self.txn = None;
            return Ok(true);
        }
        if !record.is_empty() {
            let started = Instant::now();
            let number = self.journal.append(&record).map_err(io_err)?;
            self.metrics.flush_duration.observe(started.elapsed());
            self.records.push((number, record));
        }
        Ok(false)
    }

    /// After a group: begins a background checkpoint when one is due (every
    /// [`super::CHECKPOINT_EVERY`], or when the journal's segment passes
    /// [`JOURNAL_LIMIT`], then after the one committing, if any, is done).
    pub(super) fn checkpoint_if_due(&mut self) {
        let full = self.journal.len() > JOURNAL_LIMIT;
        if !full && self.last_checkpoint.elapsed() < self.checkpoint_every {
            return;
        }
        if self.committing.is_some() {
            if !full {
                return;
            }
            if let Err(e) = self.finish_commit(true) {
                return self.checkpoint_failed(e);
            }
        }
        if let Err(e) = self.begin_checkpoint() {
            self.checkpoint_failed(e);
        }
    }

    /// Hands the open transaction to a thread that commits it (see the module docs).
    fn begin_checkpoint(&mut self) -> Result<(), HubError> {
        let Some(txn) = self.txn.take() else {
            return Ok(());
        };
        if self.records.is_empty() {
            // It holds nothing: let it go.
            self.last_checkpoint = Instant::now();
            return Ok(());
        }
        let last = self.journal.next_number() - 1;
        Tables::open(&txn)?.set_meta(JOURNAL_KEY, last)?;
        let committed = Committed::open(&*self.store.db()?)?;
        // What the committing transaction holds, for the writer's lookups.
        let mut overlay = Overlay::default();
        Tables::overlay(&mut overlay, &committed).replay_all(&self.records)?;
        let (tx, done) = mpsc::sync_channel(1);
        let delay = self.checkpoint_delay;
        std::thread::Builder::new()
            .name("jobwire-checkpoint".into())
            .spawn(move || {
                if let Some(d) = delay {
                    std::thread::sleep(d);
                }
                let started = Instant::now();
                let outcome = txn.commit().map_err(db_err).map(|()| started.elapsed());
                // The writer may be gone (shutting down): nothing to tell.
                drop(tx.send(outcome));
            })
            .map_err(db_err)?;
        self.journal.switch();
        self.inflight.begin_checkpoint();
        self.committing = Some(Committing {
            done,
            records: std::mem::take(&mut self.records),
            overlay,
            committed,
        });
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Ends the background checkpoint once its commit is done (waits for it when
    /// `wait`): readers find it in the store, and the records since go into a new
    /// transaction. On error every record since the last completed checkpoint is
    /// back in `records` and the transaction is gone.
    pub(super) fn finish_commit(&mut self, wait: bool) -> Result<(), HubError> {
        let Some(c) = &self.committing else {
            return Ok(());
        };
        let stopped = || HubError::Storage("the checkpoint thread stopped".into());
        let outcome = if wait {
            c.done.recv().unwrap_or_else(|_| Err(stopped()))
        } else {
            match c.done.try_recv() {
                Ok(outcome) => outcome,
                Err(mpsc::TryRecvError::Empty) => return Ok(()),
                Err(mpsc::TryRecvError::Disconnected) => Err(stopped()),
            }
        };
        let Some(c) = self.committing.take() else {
            return Ok(());
        };
        match outcome {
            Ok(took) => {
                self.inflight.checkpoint_done();
                self.metrics.checkpoints.inc();
                self.metrics.checkpoint_duration.observe(took);
                if !self.records.is_empty() {
                    let txn = self.begin()?;
                    let replayed = Tables::open(&txn).and_then(|mut t| t.replay_all(&self.records));
                    self.txn = Some(txn);
                    replayed?;
                }
                Ok(())
            }
            Err(e) => {
                let mut records = c.records;
                records.append(&mut self.records);
                self.records = records;
                Err(e)
            }
        }
    }

    /// A checkpoint failed after every group in it was acknowledged: nothing is
    /// lost (the journal has them), but the transaction is: replay the records once
    /// the store takes writes again.
    pub(super) fn checkpoint_failed(&mut self, e: HubError) {
        tracing::error!(error = %e, "a checkpoint failed; the journal holds every acknowledged write");
        self.healthy.store(false, Ordering::Release);
        self.txn = None;
        self.replay = !self.records.is_empty();
        self.broke(e);
    }

    /// Commits the open transaction (durably) on this thread with the number of
    /// the last journal record it holds; the journal starts over.
    fn checkpoint(&mut self) -> Result<(), HubError> {
        let Some(txn) = self.txn.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let last = self.journal.next_number() - 1;
        {
            let mut meta = Tables::open(&txn)?;
            meta.set_meta(JOURNAL_KEY, last)?;
        }
        txn.commit().map_err(db_err)?;
        self.journal.restart(last + 1);
        self.records.clear();
        self.last_checkpoint = Instant::now();
        self.metrics.checkpoints.inc();
        self.metrics.checkpoint_duration.observe(started.elapsed());
        Ok(())
    }

    /// After a failure dropped the transaction: replays the records since the last
    /// checkpoint into a new one and checkpoints it.
    fn rebuild(&mut self) -> Result<(), HubError> {
        let txn = self.store.db()?.begin_write().map_err(db_err)?;
        {
            Tables::open(&txn)?.replay_all(&self.records)?;
        }
        self.txn = Some(txn);
        self.checkpoint()?;
        self.inflight.clear();
        self.replay = false;
        tracing::info!("the records since the last checkpoint are in the store again");
        Ok(())
    }

    /// After a failed commit: redb refuses everything after an I/O error, so close
    /// and reopen the database now (reads go on), and forget the writer cache: the
    /// store is the truth again (the commit may even have reached the disk). The
    /// replay tail only ever held committed events and stays; a gap at the next
    /// commit resets a job's tail (see `tail`).
    pub(super) fn broke(&mut self, e: HubError) {
        self.cache.clear();
        if let Err(re) = self.store.reopen(&mut self.draining) {
            tracing::error!(error = %re, "reopening the store failed; retrying");
        }
        self.broken = Some(e);
        self.last_probe = Some(Instant::now());
    }

    /// Whether writes may be tried: true unless a commit failed and the disk has not
    /// shown room since. Checks at most every [`PROBE_INTERVAL`]: reopens the
    /// store if that failed before, then writes, fsyncs and deletes
    /// [`PROBE_BYTES`] next to it.
    pub(super) fn probe(&mut self) -> bool {
        if self.broken.is_none() {
            return true;
        }
        if self
            .last_probe
            .is_some_and(|t| t.elapsed() < PROBE_INTERVAL)
        {
            return false;
        }
        self.last_probe = Some(Instant::now());
        if self.store.db().is_err() {
            if let Err(e) = self.store.reopen(&mut self.draining) {
                tracing::warn!(error = %e, "reopening the store failed; retrying");
                return false;
            }
        }
        let mut rebuilt = false;
        let healed = probe_space(&self.data_dir).map_err(io_err).and_then(|()| {
            rebuilt = self.replay;
            if self.replay {
                self.rebuild()
            } else {
                Ok(())
            }
        });
        match healed {
            Ok(()) => {
                tracing::info!(file = %self.store.path.display(), "the store takes writes again");
                self.broken = None;
                self.healthy.store(true, Ordering::Release);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "the disk has no room yet");
                self.txn = None;
                if rebuilt {
                    // The replay's commit failed: redb refuses everything after an
                    // I/O error until it is reopened.
                    if let Err(re) = self.store.reopen(&mut self.draining) {
                        tracing::warn!(error = %re, "reopening the store failed; retrying");
                    }
                }
                false
            }
        }
    }
}
