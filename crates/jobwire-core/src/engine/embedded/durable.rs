//! How the writer makes groups durable and heals: a journal record per group or a
//! checkpoint (a commit of the open transaction), and after a failed flush the
//! reopen, the space probe and the replay of the acknowledged records.

use super::tables::Tables;
use super::writer::Writer;
use super::{db_err, io_err, JOURNAL_KEY, JOURNAL_LIMIT, PROBE_BYTES, PROBE_INTERVAL};
use crate::error::HubError;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

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
    /// Makes the group durable: as one journal record (appended and synced), or by
    /// a checkpoint, which commits the open transaction with this group in it.
    /// Checkpoints come every [`super::CHECKPOINT_EVERY`], when the journal passes
    /// [`JOURNAL_LIMIT`], and for `force` (shutdown; a sweep, which is not
    /// journaled). Returns whether it checkpointed.
    pub(super) fn make_durable(&mut self, record: Vec<u8>, force: bool) -> Result<bool, HubError> {
        if record.is_empty() && self.records.is_empty() && !force {
            // Nothing changed since the last checkpoint: let the transaction go.
            self.txn = None;
            return Ok(true);
        }
        let full = self.journal.len() + record.len() as u64 > JOURNAL_LIMIT;
        if force || full || self.last_checkpoint.elapsed() >= self.checkpoint_every {
            self.checkpoint()?;
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

    /// Commits the open transaction (durably) with the number of the last journal
    /// record it holds; the journal starts over.
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
            let mut t = Tables::open(&txn)?;
            for (number, payload) in &self.records {
                t.replay(*number, payload)?;
            }
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
