//! The engine-independent part of a write: turning accepted inputs into events with
//! seqs, folding them into the snapshot, serializing each event once, and trimming
//! history. Every engine calls these so the state machine lives in one place.

use crate::channel;
use crate::engine::NewJob;
use crate::error::HubError;
use crate::session::{EventKind, Published};
use bytes::Bytes;
use jobwire_proto::event::{EventBody, InputBody};
use jobwire_proto::{Event, EventInput, Job, JobStatus, Timestamp};
use std::sync::Arc;

/// One new event ready to store and fan out.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub published: Published,
    pub event_id: Option<String>,
}

/// The result of applying a publish to a job.
#[derive(Debug, Default)]
pub struct Applied {
    /// One seq per input, in input order (original seqs for idempotent retries).
    /// A `recovered` event the hub put in front of a stalled job's first input has
    /// a seq too but no entry here.
    pub seqs: Vec<u64>,
    /// The events to store, in seq order (retries excluded).
    pub events: Vec<NewEvent>,
}

/// Why applying failed: a refusal (nothing changes) or the idempotency lookup failed.
#[derive(Debug)]
pub enum ApplyError<E> {
    Refuse(HubError),
    Lookup(E),
}

fn serialize(ev: &Event) -> Result<Bytes, HubError> {
    serde_json::to_vec(ev)
        .map(Bytes::from)
        .map_err(|e| HubError::Storage(format!("serializing an event: {e}")))
}

/// The kind a registry needs to know about an event.
pub fn kind_of(body: &EventBody, status: JobStatus) -> EventKind {
    if body.is_progress() {
        EventKind::Progress
    } else if status.is_terminal() {
        EventKind::Terminal
    } else {
        EventKind::Other
    }
}

/// Applies `inputs` to `job` (a working copy: on error the caller drops it), stored
/// under `key`. `stored_seq(event_id)` says whether an event id is already stored.
pub fn apply_inputs<E>(
    job: &mut Job,
    key: &str,
    inputs: Vec<EventInput>,
    now: Timestamp,
    mut stored_seq: impl FnMut(&str) -> Result<Option<u64>, E>,
) -> Result<Applied, ApplyError<E>> {
    // Fan-out is routed by storage key; the event itself carries the public id.
    let shared_id: Arc<str> = Arc::from(key);
    let project = project_route(job);
    let mut out = Applied {
        seqs: Vec::with_capacity(inputs.len()),
        events: Vec::with_capacity(inputs.len()),
    };
    for input in inputs {
        if let Some(eid) = &input.event_id {
            let earlier = out
                .events
                .iter()
                .find(|e| e.event_id.as_deref() == Some(eid.as_str()))
                .map(|e| e.published.seq);
            let stored = match earlier {
                Some(s) => Some(s),
                None => stored_seq(eid).map_err(ApplyError::Lookup)?,
            };
            if let Some(seq) = stored {
                out.seqs.push(seq);
                continue;
            }
        }
        // The first word from a stalled job's worker ends the stall, in the same
        // atomic publish (so watchers see `recovered` right before it).
        if job.stalled_since.is_some() && input.is_from_worker() {
            let recovered = EventInput::server(InputBody::Recovered, None);
            push_event(job, &shared_id, &project, recovered, now, &mut out)
                .map_err(ApplyError::Refuse)?;
        }
        let is_child = matches!(input.body, InputBody::Child(_));
        if is_child && job.status.is_terminal() {
            // A batch of child updates whose parent ended part way (its policy): the
            // rest are moot, not a reason to refuse the ones before.
            continue;
        }
        let seq = push_event(job, &shared_id, &project, input, now, &mut out)
            .map_err(ApplyError::Refuse)?;
        out.seqs.push(seq);
        // A parent whose policy ends it with this child update ends in the same
        // publish.
        if is_child {
            if let Some(body) = job.parent_follow_up() {
                push_event(
                    job,
                    &shared_id,
                    &project,
                    EventInput::server(body, None),
                    now,
                    &mut out,
                )
                .map_err(ApplyError::Refuse)?;
            }
        }
    }
    Ok(out)
}

/// Checks one input against `job`, turns it into an event (with the fields only
/// the server knows: `rate`/`eta_seconds`, `stalled_for`), folds it in and queues
/// it; returns its seq.
fn push_event(
    job: &mut Job,
    shared_id: &Arc<str>,
    project: &Option<Arc<str>>,
    input: EventInput,
    now: Timestamp,
    out: &mut Applied,
) -> Result<u64, HubError> {
    let status = job.check(&input)?;
    let (mut body, event_id, metadata) = input.into_body();
    match &mut body {
        EventBody::Progress {
            progress,
            rate,
            eta_seconds,
            ..
        } => (*rate, *eta_seconds) = job.estimate(*progress, now),
        EventBody::Recovered { stalled_for } => {
            let since = job.stalled_since.map_or(now.as_millis(), |t| t.as_millis());
            *stalled_for = now.as_millis().saturating_sub(since) as f64 / 1000.0;
        }
        _ => {}
    }
    let kind = kind_of(&body, status);
    let ev = Event {
        body,
        job_id: job.id.clone(),
        seq: job.seq + 1,
        timestamp: now,
        status,
        event_id,
        metadata,
    };
    job.apply(&ev);
    let bytes = serialize(&ev)?;
    out.events.push(NewEvent {
        published: Published {
            job_id: shared_id.clone(),
            seq: ev.seq,
            kind,
            bytes,
            project: project.clone(),
            encodings: Default::default(),
        },
        event_id: ev.event_id,
    });
    Ok(ev.seq)
}

/// Moves `job.history_start` so at most `max` events are kept; returns the range of
/// seqs to delete (`start..new_start`) when something must be trimmed.
pub fn trim_history(job: &mut Job, max: u64) -> Option<(u64, u64)> {
    let max = max.max(1);
    if job.seq <= max {
        return None;
    }
    let new_start = job.seq - max + 1;
    if new_start <= job.history_start {
        return None;
    }
    let old = job.history_start;
    job.history_start = new_start;
    Some((old, new_start))
}

/// A new job and its `created` event (seq 1).
pub fn create_job(new: &NewJob, now: Timestamp) -> Result<(Job, Published), HubError> {
    let (id, project, metadata) = (new.id.as_str(), new.project.clone(), new.metadata.clone());
    let mut job = Job::new(id.to_owned(), project.clone(), now);
    job.tenant.clone_from(&new.tenant);
    job.created_by.clone_from(&new.created_by);
    let ev = Event {
        body: EventBody::Created {
            project,
            options: new.options,
            parent: new.parent.clone(),
            weight: new.weight,
            depth: new.depth,
        },
        job_id: id.to_owned(),
        seq: 1,
        timestamp: now,
        status: JobStatus::Pending,
        event_id: None,
        metadata: (!metadata.is_empty()).then_some(metadata),
    };
    job.apply(&ev);
    let bytes = serialize(&ev)?;
    let project = project_route(&job);
    Ok((
        job,
        Published {
            job_id: Arc::from(new.key.as_str()),
            seq: 1,
            kind: EventKind::Other,
            bytes,
            project,
            encodings: Default::default(),
        },
    ))
}

/// The project channel key a job's events also fan out to.
pub fn project_route(job: &Job) -> Option<Arc<str>> {
    job.project
        .as_deref()
        .map(|p| Arc::from(channel::project_key(job.tenant.as_deref(), p).as_str()))
}

/// The notification stream key of a job's creator.
pub fn owner_route(job: &Job) -> String {
    channel::owner_key(job.tenant.as_deref(), job.created_by.as_deref())
}

/// The canonical text of a create request, to tell an identical retry from a conflict.
pub fn create_fingerprint(new: &NewJob) -> Vec<u8> {
    if new.options.is_empty() && new.parent.is_none() {
        // The text jobs created before options existed were fingerprinted with.
        serde_json::to_vec(&(&new.project, &new.metadata)).unwrap_or_default()
    } else {
        let extra = (&new.options, &new.parent, new.weight);
        serde_json::to_vec(&(&new.project, &new.metadata, extra)).unwrap_or_default()
    }
}
