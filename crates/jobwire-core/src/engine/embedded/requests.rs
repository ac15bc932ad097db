//! How the writer applies each request of a group to the tables ([`Tables`]):
//! creates, publishes (checked whole against the job before anything is written),
//! API key writes and the retention sweep. The group loop that calls it, and what
//! happens to the group after, are in `writer`.

use super::group::{Ack, Fail, Group};
use super::journal::Op;
use super::read::read_key;
use super::tables::{trim, Tables};
use super::writer::Writer;
use super::{db_err, storage, Request};
use crate::channel;
use crate::engine::apply::{self, ApplyError};
use crate::engine::tail::Snapshot;
use crate::engine::{Created, Live, NewJob, Outcome};
use crate::error::HubError;
use crate::session::{EventKind, Published};
use jobwire_proto::{EventInput, Job, Timestamp};
use redb::ReadableTable;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Writer {
    pub(super) fn apply_to(
        &mut self,
        t: &mut Tables<'_>,
        batch: &mut Vec<Request>,
        group: &mut Group,
    ) -> Result<(), HubError> {
        {
            let now = Timestamp::now();
            let mut queue = batch.drain(..);
            while let Some(req) = queue.next() {
                if let Err(e) = self.apply_one(t, group, req, now) {
                    // The requests after it fail with the group's error (see
                    // `refuse_all`), not as if the writer were gone.
                    let unreached: Vec<Request> = queue.collect();
                    batch.extend(unreached);
                    return Err(e);
                }
            }
            if !self.epoch_durable {
                let epoch = self.epoch.load(Ordering::Acquire);
                t.put(Op::Epoch(epoch)).map_err(db_err)?;
            }
            for (id, job) in std::mem::take(&mut group.dirty) {
                let bytes = serde_json::to_vec(&job).map_err(storage)?;
                t.put(Op::Job {
                    id: id.as_str(),
                    snapshot: &bytes,
                })
                .map_err(db_err)?;
                group.keep(Snapshot {
                    key: Arc::from(id.as_str()),
                    job: Arc::new(job),
                    size: bytes.len(),
                });
            }
        }
        if group.record.is_empty() {
            group.record = std::mem::take(&mut t.record);
        } else {
            group.record.extend_from_slice(&t.record);
        }
        Ok(())
    }

    /// Applies one request of the group; an error aborts the whole group.
    fn apply_one(
        &mut self,
        t: &mut Tables<'_>,
        group: &mut Group,
        req: Request,
        now: Timestamp,
    ) -> Result<(), HubError> {
        match req {
            Request::Create { job, reply } => match self.create(t, group, job, now) {
                Ok(c) => group.acks.push(Ack::Create(reply, Ok(Box::new(c)))),
                Err(Fail::Refuse(e)) => group.acks.push(Ack::Create(reply, Err(e))),
                Err(Fail::Abort(e)) => {
                    group.acks.push(Ack::Create(reply, Err(HubError::NotFound)));
                    return Err(e);
                }
            },
            Request::Publish {
                job_id,
                events,
                reply,
            } => match self.publish(t, group, &job_id, events, now) {
                Ok(seqs) => group.acks.push(Ack::Publish(reply, Ok(seqs))),
                Err(Fail::Refuse(e)) => group.acks.push(Ack::Publish(reply, Err(e))),
                Err(Fail::Abort(e)) => {
                    group
                        .acks
                        .push(Ack::Publish(reply, Err(HubError::NotFound)));
                    return Err(e);
                }
            },
            Request::Sweep => {
                group.must_checkpoint |= self.sweep(t, now)?;
            }
            Request::PutKey { key, reply } => {
                let bytes = serde_json::to_vec(&key).map_err(storage)?;
                group.acks.push(Ack::PutKey(reply));
                t.txn()?
                    .api_keys()
                    .and_then(|k| k.insert(key.id.as_str(), bytes.as_slice()).map(drop))
                    .map_err(db_err)?;
                group.must_checkpoint = true;
            }
            Request::RevokeKey { tenant, id, reply } => {
                let keys = t.txn()?.api_keys().map_err(db_err)?;
                let found = read_key(keys, &id)?.filter(|k| k.tenant == tenant);
                let revoked = found.is_some();
                if let Some(mut key) = found {
                    key.revoked = true;
                    let bytes = serde_json::to_vec(&key).map_err(storage)?;
                    t.txn()?
                        .api_keys()
                        .and_then(|k| k.insert(id.as_str(), bytes.as_slice()).map(drop))
                        .map_err(db_err)?;
                    group.must_checkpoint = true;
                }
                group.acks.push(Ack::RevokeKey(reply, revoked));
            }
            Request::Probe | Request::Checkpoint => {}
            Request::Shutdown { reply } => {
                group.acks.push(Ack::Shutdown(reply));
                group.stop = true;
            }
        }
        Ok(())
    }

    /// The job as this group sees it: changed in this group, cached, or stored.
    fn load(&self, t: &mut Tables<'_>, group: &Group, id: &str) -> Result<Option<Job>, Fail> {
        if let Some(j) = group.dirty.get(id) {
            return Ok(Some(j.clone()));
        }
        if let Some(j) = group.snapshot(id) {
            return Ok(Some((**j).clone()));
        }
        if let Some(j) = self.cache.get(id) {
            return Ok(Some((**j).clone()));
        }
        t.job(id).map_err(Fail::Abort)
    }

    fn create(
        &mut self,
        t: &mut Tables<'_>,
        group: &mut Group,
        new: NewJob,
        now: Timestamp,
    ) -> Result<Created, Fail> {
        let fingerprint = apply::create_fingerprint(&new);
        if let Some(existing) = self.load(t, group, &new.key)? {
            let same = t.same_create(&new.key, &fingerprint).map_err(Fail::Abort)?;
            return if same {
                Ok(Created {
                    job: existing,
                    created: false,
                })
            } else {
                Err(Fail::Refuse(HubError::JobExists))
            };
        }
        let (mut job, created) = apply::create_job(&new, now).map_err(Fail::Abort)?;
        job.epochs = vec![[self.epoch.load(Ordering::Relaxed), 1]];
        t.put(Op::Event {
            id: &new.key,
            seq: 1,
            bytes: &created.bytes,
        })?;
        t.put(Op::Create {
            id: &new.key,
            fingerprint: &fingerprint,
        })?;
        group.fanout.push(created);
        group.created.insert(new.key.clone());
        group.dirty.insert(new.key, job.clone());
        Ok(Created { job, created: true })
    }

    fn publish(
        &mut self,
        t: &mut Tables<'_>,
        group: &mut Group,
        job_id: &str,
        inputs: Vec<EventInput>,
        now: Timestamp,
    ) -> Result<Outcome, Fail> {
        if let Some(p) = self.panic_on.as_deref().filter(|p| job_id.ends_with(p)) {
            panic!("JOBWIRE_TEST_WRITER_PANIC_ON={p}: a publish to {job_id}");
        }
        if let Some(p) = self.abort_on.as_deref().filter(|p| job_id.ends_with(p)) {
            return Err(Fail::Abort(HubError::Storage(format!(
                "JOBWIRE_TEST_ABORT_ON={p}: a publish to {job_id}"
            ))));
        }
        let mut job = self
            .load(t, group, job_id)?
            .ok_or(Fail::Refuse(HubError::NotFound))?;
        job.enter_epoch(self.epoch.load(Ordering::Relaxed));
        let lookup = &mut *t;
        let applied = apply::apply_inputs(&mut job, job_id, inputs, now, |eid| {
            lookup.idem(job_id, eid)
        })
        .map_err(|e| match e {
            ApplyError::Refuse(e) => Fail::Refuse(e),
            ApplyError::Lookup(e) => Fail::Abort(storage(e)),
        })?;
        for e in &applied.events {
            let seq = e.published.seq;
            t.put(Op::Event {
                id: job_id,
                seq,
                bytes: &e.published.bytes,
            })?;
            if let Some(eid) = &e.event_id {
                t.put(Op::Idem {
                    id: job_id,
                    event_id: eid,
                    seq,
                })?;
            }
        }
        if let Some((from, to)) = apply::trim_history(&mut job, self.retention.max_events_per_job) {
            t.put(Op::Trim {
                id: job_id,
                from,
                to,
            })?;
        }
        let mut notification = None;
        if job.status.is_terminal() && !applied.events.is_empty() {
            let at = now.plus(self.retention.terminal_ttl).as_millis();
            t.put(Op::Expiry { at, id: job_id })?;
            // The terminal event is the last one; its creator is notified in the
            // same transaction, so a notification exists iff the event does.
            if let Some(last) = applied.events.last() {
                let owner = apply::owner_route(&job);
                let head = t.notify_head(owner.as_str())?;
                let seq = head + 1;
                let frame = channel::notification_frame(seq, &last.published.bytes);
                t.put(Op::Notify {
                    owner: &owner,
                    seq,
                    frame: &frame,
                })?;
                t.put(Op::NotifyHead { owner: &owner, seq })?;
                if seq > channel::NOTIFICATIONS_KEPT {
                    t.put(Op::Unnotify {
                        owner: &owner,
                        seq: seq - channel::NOTIFICATIONS_KEPT,
                    })?;
                }
                notification = Some(Published {
                    job_id: Arc::from(owner.as_str()),
                    seq,
                    kind: EventKind::Terminal,
                    bytes: frame,
                    project: None,
                    encodings: Default::default(),
                });
            }
        }
        group
            .fanout
            .extend(applied.events.into_iter().map(|e| e.published));
        group.notices.extend(notification);
        let live = Live::of(&job);
        group.dirty.insert(job_id.to_owned(), job);
        Ok(Outcome {
            seqs: applied.seqs,
            live,
        })
    }

    /// Deletes terminal jobs whose expiry time has passed (not journaled: returns
    /// whether it deleted any, and then the group checkpoints).
    fn sweep(&mut self, t: &mut Tables<'_>, now: Timestamp) -> Result<bool, HubError> {
        let t = t.txn()?;
        let mut expired: Vec<(u64, String)> = Vec::new();
        for item in t
            .expiry()
            .and_then(|e| e.range((0, "")..(now.as_millis(), "")))
            .map_err(db_err)?
        {
            let (k, _) = item.map_err(db_err)?;
            let (at, id) = k.value();
            expired.push((at, id.to_owned()));
        }
        for (at, id) in &expired {
            let deleted = (|| -> Result<(), redb::StorageError> {
                t.expiry()?.remove((*at, id.as_str()))?;
                t.jobs()?.remove(id.as_str())?;
                t.creates()?.remove(id.as_str())?;
                trim(t.events()?, id, 0, u64::MAX)?;
                t.idem()?
                    .retain_in((id.as_str(), "")..(id.as_str(), "\u{7f}"), |_, _| false)?;
                Ok(())
            })();
            deleted.map_err(db_err)?;
            self.cache.remove(id);
            self.tail.remove(id);
        }
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "expired terminal jobs deleted");
        }
        Ok(!expired.is_empty())
    }
}
