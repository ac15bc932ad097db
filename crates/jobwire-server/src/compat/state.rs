//! What a dialect needs to know about a job between events: the few fields the
//! systems' frames repeat on every message (status, progress, stage, message, step),
//! folded from the snapshot and then from each event exactly as `Job::apply` folds
//! them. Every session folds the same events from the same snapshot, so two sessions
//! of one dialect encode an event to the same bytes, which is what lets the first
//! one's bytes be shared (`Published::encodings`).

use jobwire_proto::{Event, EventBody, Job, JobStatus};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobState {
    pub(crate) status: JobStatus,
    pub(crate) progress: f64,
    pub(crate) stage: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) step: Option<(String, Option<String>)>,
    pub(crate) completed_steps: Vec<String>,
    /// `metadata.operation` of the job when it is a string (project-updates).
    pub(crate) operation: Option<String>,
    /// The last seq folded in.
    pub(crate) seq: u64,
    /// Set once this session skipped an event of the job (a slow session's progress
    /// is coalesced): its state may differ from other sessions', so its frames must
    /// not be shared through the cache any more.
    pub(crate) diverged: bool,
}

/// Which of the repeated fields an event changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    pub(crate) status: bool,
    pub(crate) progress: bool,
    pub(crate) stage: bool,
    pub(crate) message: bool,
}

impl Changed {
    pub(crate) fn any(self) -> bool {
        self.status || self.progress || self.stage || self.message
    }
}

fn operation_of(meta: &Map<String, Value>) -> Option<String> {
    meta.get("operation")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl JobState {
    pub(crate) fn of(job: &Job) -> JobState {
        JobState {
            status: job.status,
            progress: job.progress,
            stage: job.stage.clone(),
            message: job.message.clone(),
            step: job.step.as_ref().map(|s| (s.step.clone(), s.label.clone())),
            completed_steps: job.completed_steps.clone(),
            operation: operation_of(&job.metadata),
            seq: job.seq,
            diverged: false,
        }
    }

    /// A job seen first through an event (its snapshot was not sent).
    pub(crate) fn fresh() -> JobState {
        JobState {
            status: JobStatus::Pending,
            progress: 0.0,
            stage: None,
            message: None,
            step: None,
            completed_steps: Vec::new(),
            operation: None,
            seq: 0,
            diverged: false,
        }
    }

    /// Folds `ev` as `Job::apply` does (for these fields) and says what changed.
    pub(crate) fn apply(&mut self, ev: &Event) -> Changed {
        let before = (
            self.status,
            self.progress,
            self.stage.clone(),
            self.message.clone(),
        );
        if ev.seq != self.seq + 1 {
            self.diverged = true;
        }
        self.seq = ev.seq;
        self.status = ev.status;
        if let Some(op) = ev.metadata.as_ref().and_then(operation_of) {
            self.operation = Some(op);
        }
        let set = |slot: &mut Option<String>, v: &Option<String>| {
            if v.is_some() {
                slot.clone_from(v);
            }
        };
        match &ev.body {
            EventBody::Created { .. }
            | EventBody::Log { .. }
            | EventBody::Custom { .. }
            | EventBody::Stalled { .. }
            | EventBody::Recovered { .. }
            | EventBody::CancelRequested { .. }
            | EventBody::Child(_) => {}
            EventBody::Status { message } => set(&mut self.message, message),
            EventBody::Progress {
                progress,
                stage,
                message,
                ..
            } => {
                self.progress = *progress;
                set(&mut self.stage, stage);
                set(&mut self.message, message);
            }
            EventBody::Step {
                step,
                label,
                message,
            } => {
                if let Some((prev, _)) = self.step.take() {
                    if prev != *step && !self.completed_steps.contains(&prev) {
                        self.completed_steps.push(prev);
                    }
                }
                self.step = Some((step.clone(), label.clone()));
                set(&mut self.message, message);
            }
            EventBody::Completed { message, .. } => {
                self.progress = 100.0;
                if let Some((step, _)) = &self.step {
                    if !self.completed_steps.contains(step) {
                        self.completed_steps.push(step.clone());
                    }
                }
                set(&mut self.message, message);
            }
            EventBody::Failed { error, message } => {
                self.message = Some(message.clone().unwrap_or_else(|| error.clone()));
            }
            EventBody::Cancelled { reason, .. } => set(&mut self.message, reason),
        }
        Changed {
            status: before.0 != self.status,
            progress: before.1 != self.progress,
            stage: before.2 != self.stage,
            message: before.3 != self.message,
        }
    }
}

/// The jobs a dialect session has seen, by public id.
#[derive(Debug, Default)]
pub(crate) struct States(std::collections::HashMap<String, JobState>);

impl States {
    /// Starts (or restarts) a job at its snapshot.
    pub(crate) fn set(&mut self, job: &Job) -> &JobState {
        let slot = self.0.entry(job.id.clone()).or_insert_with(JobState::fresh);
        *slot = JobState::of(job);
        slot
    }

    /// Folds an event into its job's state (a job not seen yet starts fresh).
    pub(crate) fn apply(&mut self, ev: &Event) -> (Changed, &JobState) {
        let slot = self
            .0
            .entry(ev.job_id.clone())
            .or_insert_with(JobState::fresh);
        let changed = slot.apply(ev);
        (changed, slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, body: &str) -> Event {
        let json = format!(
            r#"{{{body},"job_id":"j","seq":{seq},"timestamp":"2026-12-02T00:00:00.000Z","status":"in_progress"}}"#
        );
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    #[test]
    fn a_skipped_event_marks_the_state_as_diverged() {
        let mut s = JobState::fresh();
        s.apply(&ev(1, r#""type":"created""#));
        let changed = s.apply(&ev(2, r#""type":"progress","progress":10.0,"stage":"a""#));
        assert!(changed.progress && changed.stage && !s.diverged);
        // Seq 3 was coalesced away: this session no longer folds what others fold.
        s.apply(&ev(4, r#""type":"progress","progress":30.0"#));
        assert!(s.diverged);
        assert_eq!((s.progress, s.stage.as_deref()), (30.0, Some("a")));
    }
}
