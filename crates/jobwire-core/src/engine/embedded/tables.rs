//! The tables of the writer's open write transaction, and the one way the writer
//! changes them: [`Tables::put`] applies an [`Op`] and records it for the group's
//! journal record; [`Tables::apply`] replays a recorded op (at open, and after a
//! failed group, from the records since the last checkpoint).

use super::journal::{BadRecord, Op, Ops};
use super::{
    db_err, API_KEYS, CREATES, EPOCH_KEY, EVENTS, EXPIRY, IDEMPOTENCY, JOBS, META, NOTIFY,
    NOTIFY_HEAD,
};
use crate::error::HubError;
use redb::{Table, WriteTransaction};

pub(super) struct Tables<'t> {
    pub(super) jobs: Table<'t, &'static str, &'static [u8]>,
    pub(super) events: Table<'t, (&'static str, u64), &'static [u8]>,
    pub(super) idem: Table<'t, (&'static str, &'static str), u64>,
    pub(super) creates: Table<'t, &'static str, &'static [u8]>,
    pub(super) expiry: Table<'t, (u64, &'static str), ()>,
    pub(super) notify: Table<'t, (&'static str, u64), &'static [u8]>,
    pub(super) notify_head: Table<'t, &'static str, u64>,
    /// API keys: written by the writer without a journal op (the group checkpoints).
    pub(super) api_keys: Table<'t, &'static str, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    /// The ops put since [`Tables::open`], encoded: the group's journal record.
    pub(super) record: Vec<u8>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, HubError> {
        Ok(Tables {
            jobs: txn.open_table(JOBS).map_err(db_err)?,
            events: txn.open_table(EVENTS).map_err(db_err)?,
            idem: txn.open_table(IDEMPOTENCY).map_err(db_err)?,
            creates: txn.open_table(CREATES).map_err(db_err)?,
            expiry: txn.open_table(EXPIRY).map_err(db_err)?,
            notify: txn.open_table(NOTIFY).map_err(db_err)?,
            notify_head: txn.open_table(NOTIFY_HEAD).map_err(db_err)?,
            api_keys: txn.open_table(API_KEYS).map_err(db_err)?,
            meta: txn.open_table(META).map_err(db_err)?,
            record: Vec::new(),
        })
    }

    /// Applies `op` and records it in this group's journal record.
    pub(super) fn put(&mut self, op: Op<'_>) -> Result<(), redb::StorageError> {
        self.apply(&op)?;
        op.encode(&mut self.record);
        Ok(())
    }

    /// Applies `op` without recording it.
    pub(super) fn apply(&mut self, op: &Op<'_>) -> Result<(), redb::StorageError> {
        match *op {
            Op::Job { id, snapshot } => drop(self.jobs.insert(id, snapshot)?),
            Op::Event { id, seq, bytes } => drop(self.events.insert((id, seq), bytes)?),
            Op::Trim { id, from, to } => {
                self.events.retain_in((id, from)..(id, to), |_, _| false)?
            }
            Op::Idem { id, event_id, seq } => drop(self.idem.insert((id, event_id), seq)?),
            Op::Create { id, fingerprint } => drop(self.creates.insert(id, fingerprint)?),
            Op::Expiry { at, id } => drop(self.expiry.insert((at, id), ())?),
            Op::Notify { owner, seq, frame } => drop(self.notify.insert((owner, seq), frame)?),
            Op::NotifyHead { owner, seq } => drop(self.notify_head.insert(owner, seq)?),
            Op::Unnotify { owner, seq } => drop(self.notify.remove((owner, seq))?),
            Op::Epoch(e) => drop(self.meta.insert(EPOCH_KEY, e)?),
        }
        Ok(())
    }

    /// Replays one journal record.
    pub(super) fn replay(&mut self, number: u64, payload: &[u8]) -> Result<(), HubError> {
        for op in Ops::new(number, payload) {
            let op = op.map_err(|e: BadRecord| HubError::Damaged(e.to_string()))?;
            self.apply(&op).map_err(db_err)?;
        }
        Ok(())
    }

    /// `meta[key]`.
    pub(super) fn meta(&self, key: &str) -> Result<Option<u64>, HubError> {
        use redb::ReadableTable;
        Ok(self.meta.get(key).map_err(db_err)?.map(|v| v.value()))
    }

    /// `meta[key] = value`, not recorded (checkpoint bookkeeping).
    pub(super) fn set_meta(&mut self, key: &str, value: u64) -> Result<(), HubError> {
        self.meta.insert(key, value).map_err(db_err)?;
        Ok(())
    }
}
