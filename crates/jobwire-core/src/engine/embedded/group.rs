//! One group of the writer: what its requests changed (snapshots, events to fan
//! out, the journal record) and the replies held back until it is durable.

use super::inflight::Pending;
use super::store::db_err;
use super::Request;
use crate::engine::tail::Snapshot;
use crate::engine::{Created, Outcome};
use crate::error::HubError;
use crate::session::Published;
use jobwire_proto::Job;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Outcome of one request inside a group: refused (reply now, nothing changed) or a
/// storage failure (abort the whole group).
pub(super) enum Fail {
    Refuse(HubError),
    Abort(HubError),
}

impl From<redb::StorageError> for Fail {
    fn from(e: redb::StorageError) -> Self {
        Fail::Abort(db_err(e))
    }
}

/// A reply held back until the group commits: a refusal too, since it may depend
/// on an earlier request of the same group that might not commit.
pub(super) enum Ack {
    Create(
        oneshot::Sender<Result<Created, HubError>>,
        Result<Box<Created>, HubError>,
    ),
    Publish(
        oneshot::Sender<Result<Outcome, HubError>>,
        Result<Outcome, HubError>,
    ),
    PutKey(oneshot::Sender<Result<(), HubError>>),
    RevokeKey(oneshot::Sender<Result<bool, HubError>>, bool),
    Shutdown(oneshot::Sender<()>),
}

impl Ack {
    pub(super) fn fail(self, e: &HubError) {
        let err = || e.duplicate();
        match self {
            Ack::Create(r, _) => drop(r.send(Err(err()))),
            Ack::Publish(r, _) => drop(r.send(Err(err()))),
            Ack::PutKey(r) => drop(r.send(Err(err()))),
            Ack::RevokeKey(r, _) => drop(r.send(Err(err()))),
            Ack::Shutdown(r) => drop(r.send(())),
        }
    }
    pub(super) fn succeed(self) {
        match self {
            Ack::Create(r, v) => drop(r.send(v.map(|c| *c))),
            Ack::Publish(r, v) => drop(r.send(v)),
            Ack::PutKey(r) => drop(r.send(Ok(()))),
            Ack::RevokeKey(r, found) => drop(r.send(Ok(found))),
            Ack::Shutdown(r) => drop(r.send(())),
        }
    }
}

/// Answers every request of `batch` with `e` (nothing is written). Returns true
/// when one of them asked to stop.
pub(super) fn refuse_all(batch: &mut Vec<Request>, e: &HubError) -> bool {
    let mut stop = false;
    for req in batch.drain(..) {
        let ack = match req {
            Request::Create { reply, .. } => Ack::Create(reply, Err(HubError::NotFound)),
            Request::Publish { reply, .. } => Ack::Publish(reply, Err(HubError::NotFound)),
            Request::PutKey { reply, .. } => Ack::PutKey(reply),
            Request::RevokeKey { reply, .. } => Ack::RevokeKey(reply, false),
            Request::Sweep | Request::Probe | Request::Checkpoint => continue,
            Request::Shutdown { reply } => {
                stop = true;
                Ack::Shutdown(reply)
            }
        };
        ack.fail(e);
    }
    stop
}

/// Per-group scratch state: snapshots changed in this group, events to fan out and
/// replies to send once the commit is durable.
#[derive(Default)]
pub(super) struct Group {
    /// Jobs changed by the requests being applied, as they now are.
    pub(super) dirty: HashMap<String, Job>,
    /// Jobs changed by the requests applied before (one snapshot per job, the
    /// newest), and where each one is.
    pub(super) snapshots: Vec<Snapshot>,
    pub(super) at: HashMap<Arc<str>, usize>,
    /// Requests taken into this group.
    pub(super) requests: usize,
    /// The group's journal record so far.
    pub(super) record: Vec<u8>,
    /// Its events were pushed ahead of the flush (`fanout[..pushed]` so far).
    pub(super) pushes_ahead: bool,
    pub(super) pushed: usize,
    /// Jobs created in this group: their events wait for the flush (a channel
    /// listing reads the store, so a job must be in it before it is announced).
    pub(super) created: HashSet<String>,
    /// Job events, in order.
    pub(super) fanout: Vec<Published>,
    /// Notifications of the owners of jobs that ended (pushed after the flush).
    pub(super) notices: Vec<Published>,
    pub(super) acks: Vec<Ack>,
    pub(super) stop: bool,
    /// A sweep deleted jobs, or an API key was written (neither is journaled: the
    /// group checkpoints).
    pub(super) must_checkpoint: bool,
}

impl Group {
    /// Whether `p` may be pushed before the flush: an event of a job that existed
    /// before this group (notifications and new jobs wait for the commit).
    pub(super) fn ahead(&self, p: &Published) -> bool {
        !self.created.contains(&*p.job_id)
    }

    /// The newest snapshot of a job an earlier part of this group changed.
    pub(super) fn snapshot(&self, id: &str) -> Option<&Arc<Job>> {
        self.at.get(id).map(|&i| &self.snapshots[i].job)
    }

    /// Keeps `s` as the job's newest snapshot in this group.
    pub(super) fn keep(&mut self, s: Snapshot) {
        match self.at.get(&s.key) {
            Some(&i) => self.snapshots[i] = s,
            None => {
                self.at.insert(s.key.clone(), self.snapshots.len());
                self.snapshots.push(s);
            }
        }
    }

    /// Every job this group changed (created ones too), with its events: what
    /// readers must see until the next checkpoint.
    pub(super) fn changes(&self) -> HashMap<Arc<str>, Pending> {
        let mut out: HashMap<Arc<str>, Pending> = self
            .snapshots
            .iter()
            .map(|s| {
                let p = Pending {
                    job: s.job.clone(),
                    events: Vec::new(),
                };
                (s.key.clone(), p)
            })
            .collect();
        for ev in &self.fanout {
            if let Some(p) = out.get_mut(&ev.job_id) {
                p.events.push((ev.seq, ev.bytes.clone()));
            }
        }
        out
    }
}
