//! The tables the writer changes, and the one way it changes them: [`Tables::put`]
//! applies an [`Op`] and records it for the group's journal record;
//! [`Tables::apply`] replays a recorded op (at open, and after a failed group,
//! from the records since the last checkpoint).
//!
//! Usually they are the tables of the writer's open write transaction. While a
//! checkpoint commits that transaction in the background (see `durable`), no
//! write transaction can be open: groups are then applied to an [`Overlay`], which
//! keeps only what the writer itself looks up again (snapshots, create
//! fingerprints, idempotency keys, notification heads) on top of the store's last
//! committed state; their records are replayed into the next transaction once the
//! commit is done.

use super::journal::{BadRecord, Op, Ops};
use super::read::read_job;
use super::{
    db_err, storage, API_KEYS, CREATES, EPOCH_KEY, EVENTS, EXPIRY, IDEMPOTENCY, JOBS, META, NOTIFY,
    NOTIFY_HEAD,
};
use crate::error::HubError;
use jobwire_proto::Job;
use redb::{Database, ReadOnlyTable, ReadableTable, Table, WriteTransaction};
use std::collections::HashMap;

/// The open write transaction's tables, each opened when a group first uses it (a
/// group of publishes needs two or three of the nine; opening all of them cost 4 %
/// of the server's CPU with single-event publishes).
pub(super) struct TxnTables<'t> {
    txn: &'t WriteTransaction,
    jobs: Option<Table<'t, &'static str, &'static [u8]>>,
    events: Option<Table<'t, (&'static str, u64), &'static [u8]>>,
    idem: Option<Table<'t, (&'static str, &'static str), u64>>,
    creates: Option<Table<'t, &'static str, &'static [u8]>>,
    expiry: Option<Table<'t, (u64, &'static str), ()>>,
    notify: Option<Table<'t, (&'static str, u64), &'static [u8]>>,
    notify_head: Option<Table<'t, &'static str, u64>>,
    api_keys: Option<Table<'t, &'static str, &'static [u8]>>,
    meta: Option<Table<'t, &'static str, u64>>,
}

/// A table that cannot be opened as jobwire's: damage, or not jobwire's store.
fn table_err(e: redb::TableError) -> redb::StorageError {
    match e {
        redb::TableError::Storage(e) => e,
        other => redb::StorageError::Corrupted(other.to_string()),
    }
}

macro_rules! lazy_tables {
    ($($(#[$doc:meta])* $name:ident: $def:ident, $k:ty, $v:ty;)*) => {
        impl<'t> TxnTables<'t> {
            fn new(txn: &'t WriteTransaction) -> TxnTables<'t> {
                TxnTables { txn, $($name: None,)* }
            }

            /// Opens every table: at open, so that all exist for readers and a
            /// foreign or damaged store is refused before anything is written.
            pub(super) fn open_all(&mut self) -> Result<(), redb::StorageError> {
                $(self.$name()?;)*
                Ok(())
            }

            $(
                $(#[$doc])*
                pub(super) fn $name(&mut self) -> Result<&mut Table<'t, $k, $v>, redb::StorageError> {
                    let table = match self.$name.take() {
                        Some(table) => table,
                        None => self.txn.open_table($def).map_err(table_err)?,
                    };
                    Ok(self.$name.insert(table))
                }
            )*
        }
    };
}

lazy_tables! {
    jobs: JOBS, &'static str, &'static [u8];
    events: EVENTS, (&'static str, u64), &'static [u8];
    idem: IDEMPOTENCY, (&'static str, &'static str), u64;
    creates: CREATES, &'static str, &'static [u8];
    expiry: EXPIRY, (u64, &'static str), ();
    notify: NOTIFY, (&'static str, u64), &'static [u8];
    notify_head: NOTIFY_HEAD, &'static str, u64;
    /// API keys: written by the writer without a journal op (the group checkpoints).
    api_keys: API_KEYS, &'static str, &'static [u8];
    meta: META, &'static str, u64;
}

/// The tables the writer looks up, as of the store's last committed checkpoint
/// (read while a newer one commits).
pub(super) struct Committed {
    jobs: ReadOnlyTable<&'static str, &'static [u8]>,
    idem: ReadOnlyTable<(&'static str, &'static str), u64>,
    creates: ReadOnlyTable<&'static str, &'static [u8]>,
    notify_head: ReadOnlyTable<&'static str, u64>,
}

impl Committed {
    pub(super) fn open(db: &Database) -> Result<Committed, HubError> {
        let txn = db.begin_read().map_err(db_err)?;
        Ok(Committed {
            jobs: txn.open_table(JOBS).map_err(db_err)?,
            idem: txn.open_table(IDEMPOTENCY).map_err(db_err)?,
            creates: txn.open_table(CREATES).map_err(db_err)?,
            notify_head: txn.open_table(NOTIFY_HEAD).map_err(db_err)?,
        })
    }
}

/// What the ops since the last *completed* checkpoint set, of what the writer
/// looks up: the newest value per key.
#[derive(Default)]
pub(super) struct Overlay {
    jobs: HashMap<String, Vec<u8>>,
    creates: HashMap<String, Vec<u8>>,
    idem: HashMap<String, HashMap<String, u64>>,
    heads: HashMap<String, u64>,
}

impl Overlay {
    fn note(&mut self, op: &Op<'_>) {
        match *op {
            Op::Job { id, snapshot } => drop(self.jobs.insert(id.into(), snapshot.into())),
            Op::Create { id, fingerprint } => {
                drop(self.creates.insert(id.into(), fingerprint.into()))
            }
            Op::Idem { id, event_id, seq } => drop(
                self.idem
                    .entry(id.into())
                    .or_default()
                    .insert(event_id.into(), seq),
            ),
            Op::NotifyHead { owner, seq } => drop(self.heads.insert(owner.into(), seq)),
            // Not looked up by the writer (a sweep waits for the commit).
            Op::Event { .. }
            | Op::Trim { .. }
            | Op::Expiry { .. }
            | Op::Notify { .. }
            | Op::Unnotify { .. }
            | Op::Epoch(_) => {}
        }
    }
}

/// Deletes `id`'s events `from..to` with one `remove` per stored key. (redb's
/// `retain_in` copies the path to every key it deletes, even pages this
/// transaction already wrote: a trim of one event cost twice its insert.)
pub(super) fn trim(
    events: &mut Table<'_, (&'static str, u64), &'static [u8]>,
    id: &str,
    from: u64,
    to: u64,
) -> Result<(), redb::StorageError> {
    let seqs = events
        .range((id, from)..(id, to))?
        .map(|e| e.map(|(k, _)| k.value().1))
        .collect::<Result<Vec<u64>, _>>()?;
    for seq in seqs {
        events.remove((id, seq))?;
    }
    Ok(())
}

enum Backing<'t> {
    Txn(Box<TxnTables<'t>>),
    Overlay(&'t mut Overlay, &'t Committed),
}

pub(super) struct Tables<'t> {
    backing: Backing<'t>,
    /// The ops put since [`Tables::open`], encoded: the group's journal record.
    pub(super) record: Vec<u8>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, HubError> {
        Ok(Tables {
            backing: Backing::Txn(Box::new(TxnTables::new(txn))),
            record: Vec::new(),
        })
    }

    /// Tables over `overlay` and `committed` while a checkpoint commits.
    pub(super) fn overlay(overlay: &'t mut Overlay, committed: &'t Committed) -> Tables<'t> {
        Tables {
            backing: Backing::Overlay(overlay, committed),
            record: Vec::new(),
        }
    }

    /// The write transaction's tables, for what only runs with one open (sweeps
    /// and API keys: the writer waits for a background commit before those).
    pub(super) fn txn(&mut self) -> Result<&mut TxnTables<'t>, HubError> {
        match &mut self.backing {
            Backing::Txn(t) => Ok(t),
            Backing::Overlay(..) => Err(HubError::Storage(
                "internal: a write that needs the store ran during a checkpoint".into(),
            )),
        }
    }

    /// Applies `op` and records it in this group's journal record.
    pub(super) fn put(&mut self, op: Op<'_>) -> Result<(), redb::StorageError> {
        self.apply(&op)?;
        op.encode(&mut self.record);
        Ok(())
    }

    /// Applies `op` without recording it.
    pub(super) fn apply(&mut self, op: &Op<'_>) -> Result<(), redb::StorageError> {
        let t = match &mut self.backing {
            Backing::Txn(t) => t,
            Backing::Overlay(o, _) => {
                o.note(op);
                return Ok(());
            }
        };
        match *op {
            Op::Job { id, snapshot } => drop(t.jobs()?.insert(id, snapshot)?),
            Op::Event { id, seq, bytes } => drop(t.events()?.insert((id, seq), bytes)?),
            Op::Trim { id, from, to } => trim(t.events()?, id, from, to)?,
            Op::Idem { id, event_id, seq } => drop(t.idem()?.insert((id, event_id), seq)?),
            Op::Create { id, fingerprint } => drop(t.creates()?.insert(id, fingerprint)?),
            Op::Expiry { at, id } => drop(t.expiry()?.insert((at, id), ())?),
            Op::Notify { owner, seq, frame } => drop(t.notify()?.insert((owner, seq), frame)?),
            Op::NotifyHead { owner, seq } => drop(t.notify_head()?.insert(owner, seq)?),
            Op::Unnotify { owner, seq } => drop(t.notify()?.remove((owner, seq))?),
            Op::Epoch(e) => drop(t.meta()?.insert(EPOCH_KEY, e)?),
        }
        Ok(())
    }

    /// Replays journal records in order.
    pub(super) fn replay_all(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), HubError> {
        records
            .iter()
            .try_for_each(|(number, payload)| self.replay(*number, payload))
    }

    /// Replays one journal record.
    pub(super) fn replay(&mut self, number: u64, payload: &[u8]) -> Result<(), HubError> {
        for op in Ops::new(number, payload) {
            let op = op.map_err(|e: BadRecord| HubError::Damaged(e.to_string()))?;
            self.apply(&op).map_err(db_err)?;
        }
        Ok(())
    }

    /// The job's stored snapshot.
    pub(super) fn job(&mut self, id: &str) -> Result<Option<Job>, HubError> {
        match &mut self.backing {
            Backing::Txn(t) => read_job(t.jobs().map_err(db_err)?, id),
            Backing::Overlay(o, c) => match o.jobs.get(id) {
                Some(raw) => serde_json::from_slice(raw).map(Some).map_err(storage),
                None => read_job(&c.jobs, id),
            },
        }
    }

    /// Whether the job was created with `fingerprint`.
    pub(super) fn same_create(&mut self, id: &str, fingerprint: &[u8]) -> Result<bool, HubError> {
        let stored = |v: Option<redb::AccessGuard<'_, &'static [u8]>>| {
            v.is_some_and(|v| v.value() == fingerprint)
        };
        match &mut self.backing {
            Backing::Txn(t) => t
                .creates()
                .and_then(|c| c.get(id).map(stored))
                .map_err(db_err),
            Backing::Overlay(o, c) => match o.creates.get(id) {
                Some(f) => Ok(f.as_slice() == fingerprint),
                None => c.creates.get(id).map(stored).map_err(db_err),
            },
        }
    }

    /// The seq an idempotency key was published at.
    pub(super) fn idem(
        &mut self,
        id: &str,
        event_id: &str,
    ) -> Result<Option<u64>, redb::StorageError> {
        let value = |v: Option<redb::AccessGuard<'_, u64>>| v.map(|v| v.value());
        match &mut self.backing {
            Backing::Txn(t) => t.idem()?.get((id, event_id)).map(value),
            Backing::Overlay(o, c) => match o.idem.get(id).and_then(|m| m.get(event_id)) {
                Some(seq) => Ok(Some(*seq)),
                None => c.idem.get((id, event_id)).map(value),
            },
        }
    }

    /// The owner's notification head (0: none yet).
    pub(super) fn notify_head(&mut self, owner: &str) -> Result<u64, redb::StorageError> {
        let value = |v: Option<redb::AccessGuard<'_, u64>>| v.map_or(0, |v| v.value());
        match &mut self.backing {
            Backing::Txn(t) => t.notify_head()?.get(owner).map(value),
            Backing::Overlay(o, c) => match o.heads.get(owner) {
                Some(seq) => Ok(*seq),
                None => c.notify_head.get(owner).map(value),
            },
        }
    }

    /// `meta[key]`.
    pub(super) fn meta(&mut self, key: &str) -> Result<Option<u64>, HubError> {
        let t = self.txn()?;
        Ok(t.meta()
            .map_err(db_err)?
            .get(key)
            .map_err(db_err)?
            .map(|v| v.value()))
    }

    /// `meta[key] = value`, not recorded (checkpoint bookkeeping).
    pub(super) fn set_meta(&mut self, key: &str, value: u64) -> Result<(), HubError> {
        self.txn()?
            .meta()
            .map_err(db_err)?
            .insert(key, value)
            .map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::EVENTS;
    use super::trim;
    use redb::ReadableTable;

    #[test]
    fn a_trim_removes_exactly_the_job_s_range() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = redb::Database::create(dir.path().join("t.redb"))?;
        let txn = db.begin_write()?;
        {
            let mut events = txn.open_table(EVENTS)?;
            for seq in 1..=20u64 {
                if seq != 5 {
                    // A gap inside the range: absent keys are skipped.
                    events.insert(("a", seq), b"x".as_slice())?;
                }
                events.insert(("ab", seq), b"y".as_slice())?;
            }
            trim(&mut events, "a", 1, 9)?;
            let left: Vec<(String, u64)> = events
                .iter()?
                .map(|e| e.map(|(k, _)| (k.value().0.to_owned(), k.value().1)))
                .collect::<Result<_, _>>()?;
            let a: Vec<u64> = left.iter().filter(|k| k.0 == "a").map(|k| k.1).collect();
            assert_eq!(a, (9..=20).collect::<Vec<u64>>());
            assert_eq!(left.iter().filter(|k| k.0 == "ab").count(), 20);
        }
        txn.commit()?;
        Ok(())
    }
}
