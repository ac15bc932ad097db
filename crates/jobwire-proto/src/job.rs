//! Jobs: id rules, the status state machine and the job snapshot, which is the fold
//! of a job's events ([`Job::apply`]). [`Job::check`] says whether an input event may
//! be applied, without changing anything.

use crate::codes::ErrorCode;
use crate::event::{
    ChildUpdate, CompleteWhen, Event, EventBody, EventInput, InputBody, InputError, JobOptions,
    OnChildFailure,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Longest accepted job id.
pub const MAX_JOB_ID_LEN: usize = 128;
/// Log lines kept inline in a snapshot; older lines stay in the event history.
pub const SNAPSHOT_LOG_LINES: usize = 50;
/// Longest inline copy of a log line in a snapshot (the full line stays in the
/// event history). Keeps snapshots small: they are rewritten on every commit.
pub const SNAPSHOT_LOG_LINE_BYTES: usize = 2048;

/// Job ids are 1-128 characters of `[A-Za-z0-9._:-]`.
pub struct JobId;

impl JobId {
    /// Checks a client-chosen job id.
    pub fn validate(id: &str) -> Result<(), InputError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_JOB_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(())
        } else {
            Err(InputError::new(
                ErrorCode::InvalidJobId,
                "job id must be 1-128 characters of [A-Za-z0-9._:-]",
            ))
        }
    }
}

/// The status of a job. `pending -> queued -> in_progress -> completed | failed |
/// cancelled`; `pending` may go straight to `in_progress`; any non-terminal status may
/// go to `failed` or `cancelled`; terminal statuses are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    #[default]
    Pending,
    Queued,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// Completed, failed and cancelled are final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Whether the state machine allows `self -> to`.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        match (self, to) {
            (Pending, Queued) | (Pending, InProgress) | (Queued, InProgress) => true,
            (InProgress, Completed) => true,
            (from, Failed | Cancelled) => !from.is_terminal(),
            _ => false,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Queued => "queued",
            JobStatus::InProgress => "in_progress",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// The step a job is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One log line kept inline in the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub timestamp: Timestamp,
    pub line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// A cancel someone asked for and the worker has not confirmed yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub at: Timestamp,
    /// The `cancel_requested` event's seq.
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Most children one parent may have (the parent's snapshot lists them).
pub const MAX_CHILDREN: usize = 1000;
/// Deepest nesting of parents (a top-level job is depth 0).
pub const MAX_DEPTH: u32 = 8;

/// A parent's counts of its children by status (`stalled` counts running children
/// that are stalled, also counted under their status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChildCounts {
    pub total: u32,
    pub pending: u32,
    pub queued: u32,
    pub in_progress: u32,
    pub completed: u32,
    pub failed: u32,
    pub cancelled: u32,
    pub stalled: u32,
}

/// What a parent keeps of one child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildState {
    pub status: JobStatus,
    pub seq: u64,
    pub progress: f64,
    pub weight: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
}

/// Weight of the newest rate sample in the smoothed `rate`.
const RATE_SMOOTHING: f64 = 0.3;

/// A job's current state: the fold of its events up to `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Owner tenant; set by the auth layer (a later protocol addition), absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The `sub` of the token that created the job (its owner for notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    pub status: JobStatus,
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepInfo>,
    #[serde(default)]
    pub completed_steps: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last [`SNAPSHOT_LOG_LINES`] log lines.
    #[serde(default)]
    pub logs: Vec<LogLine>,
    /// How many log lines the job has had in all.
    #[serde(default)]
    pub log_count: u64,
    /// Sequence number of the last event folded into this snapshot.
    pub seq: u64,
    /// Oldest sequence number still kept in history (1 until retention trims it).
    pub history_start: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Liveness and cancel settings (seconds), flattened into the snapshot.
    #[serde(flatten)]
    pub options: JobOptions,
    /// When the job was found stalled; absent unless it is stalled now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<CancelRequest>,
    /// The last checkpoint a worker sent (with a progress event or heartbeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Value>,
    /// Percent per second, smoothed over the progress events; absent while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Seconds left at `rate`; absent while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// When the last progress event was applied (the base of the next rate sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_at: Option<Timestamp>,
    /// The parent job's public id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// This job's share of its parent's aggregate progress (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// How many parents are above this job.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
    /// Counts of this job's children, once it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<ChildCounts>,
    /// Each child's last known state, by public id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub child_jobs: BTreeMap<String, ChildState>,
    /// True once the job published progress of its own (then children do not move it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_progress: bool,
    /// Where each store incarnation (epoch) began writing this job: `[epoch, first
    /// seq]`, oldest first, at most [`EPOCHS_KEPT`]. Engines that never fan out
    /// ahead of their flush leave it empty. See [`Job::rewind_point`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<[u64; 2]>,
}

/// Epoch boundaries kept per job (older ones are dropped; a client from before them
/// replays the whole kept history).
pub const EPOCHS_KEPT: usize = 16;

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Job {
    /// A new job in `pending`, before its `created` event is applied.
    pub fn new(id: String, project: Option<String>, now: Timestamp) -> Job {
        Job {
            id,
            project,
            tenant: None,
            created_by: None,
            status: JobStatus::Pending,
            progress: 0.0,
            stage: None,
            step: None,
            completed_steps: Vec::new(),
            message: None,
            metadata: Map::new(),
            result: None,
            error: None,
            logs: Vec::new(),
            log_count: 0,
            seq: 0,
            history_start: 1,
            created_at: now,
            updated_at: now,
            finished_at: None,
            options: JobOptions::default(),
            stalled_since: None,
            cancel_requested: None,
            checkpoint: None,
            rate: None,
            eta_seconds: None,
            progress_at: None,
            parent: None,
            weight: None,
            depth: 0,
            children: None,
            child_jobs: BTreeMap::new(),
            own_progress: false,
            epochs: Vec::new(),
        }
    }

    /// Records that epoch `epoch` writes this job from its next seq on (no-op when
    /// it already did).
    pub fn enter_epoch(&mut self, epoch: u64) {
        if self.epochs.last().is_some_and(|e| e[0] == epoch) {
            return;
        }
        self.epochs.push([epoch, self.seq + 1]);
        if self.epochs.len() > EPOCHS_KEPT {
            self.epochs.remove(0);
        }
    }

    /// For a client resuming after `since`, whose events were fanned out in epoch
    /// `client_epoch`, while the store is now in epoch `current`: the first seq the
    /// client holds that a crash may have taken back and rewritten, when there is
    /// one (the client must drop its events from there on and take them again).
    ///
    /// Events written in an epoch are fanned out before they are durable; an
    /// epoch ends at a crash or a failed flush, and the next epoch may write other
    /// events under the lost seqs. So whatever the client got at or after the seq
    /// where a later epoch began writing this job is suspect, and so is anything
    /// past the job's current seq.
    pub fn rewind_point(&self, since: u64, client_epoch: Option<u64>, current: u64) -> Option<u64> {
        let client = client_epoch?;
        if client == current || self.epochs.is_empty() {
            return None;
        }
        let later = self.epochs.iter().find(|e| e[0] > client).map(|e| e[1]);
        // Boundaries older than the kept ones were dropped: the client may be from
        // before any of them.
        let dropped = self
            .epochs
            .first()
            .is_some_and(|e| e[1] > 1 && e[0] > client);
        let first_suspect = if dropped {
            self.history_start
        } else {
            later.unwrap_or(u64::MAX).min(self.seq + 1)
        };
        (since >= first_suspect).then_some(first_suspect)
    }

    /// What this job tells its parent now.
    pub fn child_update(&self) -> ChildUpdate {
        ChildUpdate {
            child: self.id.clone(),
            child_status: self.status,
            child_seq: self.seq,
            progress: self.progress,
            weight: self.weight.unwrap_or(1.0),
            stalled: self.stalled_since.is_some(),
        }
    }

    /// The event a parent ends with after a child update, if its policy says so.
    pub fn parent_follow_up(&self) -> Option<InputBody> {
        let c = self.children?;
        if self.status.is_terminal() {
            return None;
        }
        if c.failed > 0 && self.options.on_child_failure == Some(OnChildFailure::Fail) {
            let failed = self
                .child_jobs
                .iter()
                .find(|(_, s)| s.status == JobStatus::Failed)
                .map(|(id, _)| id.clone())
                .unwrap_or_default();
            return Some(InputBody::Failed {
                error: "child_failed".into(),
                message: Some(format!("child {failed} failed")),
                lost: false,
            });
        }
        let ended = c.completed + c.failed + c.cancelled;
        if self.options.complete_when == Some(CompleteWhen::AllChildren)
            && c.total > 0
            && ended == c.total
            && self.status == JobStatus::InProgress
        {
            return Some(InputBody::Completed {
                result: Some(serde_json::json!({"children": c})),
                message: Some(format!("all {} children ended", c.total)),
            });
        }
        None
    }

    /// `(rate, eta_seconds)` for a progress event reaching `progress` at `now`:
    /// the rate is an exponentially smoothed percent per second; both are unknown
    /// for the first progress event and after progress went backwards.
    pub fn estimate(&self, progress: f64, now: Timestamp) -> (Option<f64>, Option<f64>) {
        if progress < self.progress {
            return (None, None);
        }
        let Some(at) = self.progress_at else {
            return (None, None);
        };
        let dt = now.as_millis().saturating_sub(at.as_millis()) as f64 / 1000.0;
        let rate = if dt <= 0.0 {
            self.rate
        } else {
            let sample = (progress - self.progress) / dt;
            Some(match self.rate {
                Some(r) => RATE_SMOOTHING * sample + (1.0 - RATE_SMOOTHING) * r,
                None => sample,
            })
        };
        let eta = match rate {
            _ if progress >= 100.0 => Some(0.0),
            Some(r) if r > 0.0 => Some(((100.0 - progress) / r * 10.0).round() / 10.0),
            _ => None,
        };
        (rate.map(|r| (r * 1000.0).round() / 1000.0), eta)
    }

    /// Checks `input` against the state machine and returns the status the job has
    /// after it. Changes nothing.
    pub fn check(&self, input: &EventInput) -> Result<JobStatus, InputError> {
        let from = self.status;
        if from.is_terminal() {
            return Err(InputError::new(
                ErrorCode::JobTerminal,
                format!("job is {}; it accepts no more events", from.as_str()),
            ));
        }
        let to = match &input.body {
            InputBody::Status { status, .. } => {
                if status.is_terminal() {
                    return Err(InputError::new(
                        ErrorCode::InvalidEvent,
                        format!(
                            "status `{}` is set by a `{}` event, not a `status` event",
                            status.as_str(),
                            status.as_str()
                        ),
                    ));
                }
                *status
            }
            // Progress and steps imply the job has started.
            InputBody::Progress { .. } | InputBody::Step { .. } => match from {
                JobStatus::Pending | JobStatus::Queued => JobStatus::InProgress,
                other => other,
            },
            InputBody::Log { .. } | InputBody::Custom { .. } => from,
            InputBody::Stalled { .. } => {
                if self.stalled_since.is_some() {
                    return Err(InputError::new(
                        ErrorCode::InvalidTransition,
                        "job is already stalled",
                    ));
                }
                from
            }
            InputBody::Recovered => {
                if self.stalled_since.is_none() {
                    return Err(InputError::new(
                        ErrorCode::InvalidTransition,
                        "job is not stalled",
                    ));
                }
                from
            }
            // A child that started (or ended) means its parent is running.
            InputBody::Child(c) => match (from, c.child_status) {
                (_, JobStatus::Pending | JobStatus::Queued) => from,
                (JobStatus::Pending | JobStatus::Queued, _) => JobStatus::InProgress,
                _ => from,
            },
            InputBody::CancelRequested { .. } => {
                if self.cancel_requested.is_some() {
                    return Err(InputError::new(
                        ErrorCode::InvalidTransition,
                        "cancel was already requested",
                    ));
                }
                from
            }
            InputBody::Completed { .. } => JobStatus::Completed,
            InputBody::Failed { .. } => JobStatus::Failed,
            InputBody::Cancelled { .. } => JobStatus::Cancelled,
        };
        if to != from && !from.can_become(to) {
            return Err(InputError::new(
                ErrorCode::InvalidTransition,
                format!("cannot go from {} to {}", from.as_str(), to.as_str()),
            ));
        }
        if to == from && matches!(input.body, InputBody::Status { .. }) {
            return Err(InputError::new(
                ErrorCode::InvalidTransition,
                format!("job is already {}", from.as_str()),
            ));
        }
        Ok(to)
    }

    /// Folds one event into the snapshot.
    pub fn apply(&mut self, ev: &Event) {
        self.seq = ev.seq;
        self.updated_at = ev.timestamp;
        self.status = ev.status;
        if let Some(meta) = &ev.metadata {
            for (k, v) in meta {
                self.metadata.insert(k.clone(), v.clone());
            }
        }
        match &ev.body {
            EventBody::Created {
                project,
                options,
                parent,
                weight,
                depth,
            } => {
                self.project.clone_from(project);
                self.options = *options;
                self.parent.clone_from(parent);
                self.weight = *weight;
                self.depth = *depth;
                self.created_at = ev.timestamp;
            }
            EventBody::Status { message } => set_if(&mut self.message, message),
            EventBody::Progress {
                progress,
                stage,
                message,
                checkpoint,
                rate,
                eta_seconds,
            } => {
                self.progress = *progress;
                set_if(&mut self.stage, stage);
                set_if(&mut self.message, message);
                if checkpoint.is_some() {
                    self.checkpoint.clone_from(checkpoint);
                }
                self.rate = *rate;
                self.eta_seconds = *eta_seconds;
                self.progress_at = Some(ev.timestamp);
                self.own_progress = true;
            }
            EventBody::Step {
                step,
                label,
                message,
            } => {
                if let Some(prev) = self.step.take() {
                    if prev.step != *step && !self.completed_steps.contains(&prev.step) {
                        self.completed_steps.push(prev.step);
                    }
                }
                self.step = Some(StepInfo {
                    step: step.clone(),
                    label: label.clone(),
                });
                set_if(&mut self.message, message);
            }
            EventBody::Log { line, level } => {
                self.log_count += 1;
                if self.logs.len() >= SNAPSHOT_LOG_LINES {
                    self.logs.remove(0);
                }
                self.logs.push(LogLine {
                    seq: ev.seq,
                    timestamp: ev.timestamp,
                    line: clip(line, SNAPSHOT_LOG_LINE_BYTES),
                    level: level.clone(),
                });
            }
            EventBody::Completed { result, message } => {
                self.progress = 100.0;
                if let Some(step) = &self.step {
                    if !self.completed_steps.contains(&step.step) {
                        self.completed_steps.push(step.step.clone());
                    }
                }
                self.result.clone_from(result);
                set_if(&mut self.message, message);
                self.finished_at = Some(ev.timestamp);
            }
            EventBody::Failed { error, message } => {
                self.error = Some(error.clone());
                set_if(&mut self.message, message);
                self.finished_at = Some(ev.timestamp);
            }
            EventBody::Cancelled { reason, error } => {
                set_if(&mut self.message, reason);
                set_if(&mut self.error, error);
                self.finished_at = Some(ev.timestamp);
            }
            EventBody::Custom { .. } => {}
            EventBody::Stalled { .. } => self.stalled_since = Some(ev.timestamp),
            EventBody::Recovered { .. } => self.stalled_since = None,
            EventBody::CancelRequested { by, reason } => {
                self.cancel_requested = Some(CancelRequest {
                    at: ev.timestamp,
                    seq: ev.seq,
                    by: by.clone(),
                    reason: reason.clone(),
                });
            }
            EventBody::Child(c) => self.fold_child(c),
        }
        if self.status.is_terminal() {
            // A finished job is neither stalled nor running out of time.
            self.stalled_since = None;
            self.eta_seconds = None;
        }
    }
}

impl Job {
    /// Folds a child's update (older updates than the known one are ignored) and
    /// recomputes the counts and, unless the job reports its own, its progress: the
    /// weighted mean of its children's (an ended child counts as 100).
    fn fold_child(&mut self, c: &ChildUpdate) {
        let newer = self
            .child_jobs
            .get(&c.child)
            .is_none_or(|known| c.child_seq > known.seq);
        if newer {
            self.child_jobs.insert(
                c.child.clone(),
                ChildState {
                    status: c.child_status,
                    seq: c.child_seq,
                    progress: c.progress,
                    weight: c.weight,
                    stalled: c.stalled,
                },
            );
        }
        let mut counts = ChildCounts::default();
        let (mut sum, mut weights) = (0.0, 0.0);
        for s in self.child_jobs.values() {
            counts.total += 1;
            match s.status {
                JobStatus::Pending => counts.pending += 1,
                JobStatus::Queued => counts.queued += 1,
                JobStatus::InProgress => counts.in_progress += 1,
                JobStatus::Completed => counts.completed += 1,
                JobStatus::Failed => counts.failed += 1,
                JobStatus::Cancelled => counts.cancelled += 1,
            }
            if s.stalled && !s.status.is_terminal() {
                counts.stalled += 1;
            }
            let p = if s.status.is_terminal() {
                100.0
            } else {
                s.progress
            };
            sum += p * s.weight;
            weights += s.weight;
        }
        self.children = Some(counts);
        if !self.own_progress && weights > 0.0 {
            self.progress = ((sum / weights) * 10.0).round() / 10.0;
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn set_if(slot: &mut Option<String>, value: &Option<String>) {
    if let Some(v) = value {
        *slot = Some(v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;

    #[test]
    fn state_machine_allows_exactly_the_documented_edges() {
        let allowed = [
            (Pending, Queued),
            (Pending, InProgress),
            (Queued, InProgress),
            (InProgress, Completed),
            (Pending, Failed),
            (Queued, Failed),
            (InProgress, Failed),
            (Pending, Cancelled),
            (Queued, Cancelled),
            (InProgress, Cancelled),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn snapshot_logs_are_bounded_in_count_and_size() {
        let mut job = Job::new("j".into(), None, Timestamp(0));
        for seq in 1..=(SNAPSHOT_LOG_LINES as u64 + 5) {
            let ev = Event {
                body: EventBody::Log {
                    line: "é".repeat(SNAPSHOT_LOG_LINE_BYTES),
                    level: None,
                },
                job_id: "j".into(),
                seq,
                timestamp: Timestamp(seq),
                status: JobStatus::Pending,
                event_id: None,
                metadata: None,
            };
            job.apply(&ev);
        }
        assert_eq!(job.logs.len(), SNAPSHOT_LOG_LINES);
        assert_eq!(job.log_count, SNAPSHOT_LOG_LINES as u64 + 5);
        assert_eq!(job.logs[0].seq, 6);
        assert!(job.logs[0].line.len() <= SNAPSHOT_LOG_LINE_BYTES + '…'.len_utf8());
        assert!(job.logs[0].line.ends_with('…'));
    }

    #[test]
    fn job_ids_are_checked() {
        assert!(JobId::validate("render-42:a.b_c").is_ok());
        assert!(JobId::validate("").is_err());
        assert!(JobId::validate("has space").is_err());
        assert!(JobId::validate("slash/no").is_err());
        assert!(JobId::validate(&"x".repeat(129)).is_err());
        assert!(JobId::validate(&"x".repeat(128)).is_ok());
    }

    fn job_at(seq: u64, epochs: &[[u64; 2]]) -> Job {
        let mut j = Job::new("j".into(), None, crate::Timestamp::now());
        j.seq = seq;
        j.epochs = epochs.to_vec();
        j
    }

    #[test]
    fn rewind_point_finds_the_first_seq_a_later_epoch_rewrote() {
        // Created in epoch 3; epoch 4 (after a crash) wrote from seq 6 on.
        let j = job_at(9, &[[3, 1], [4, 6]]);
        // Same epoch, or no epoch from the client: nothing to rewind.
        assert_eq!(j.rewind_point(8, Some(4), 4), None);
        assert_eq!(j.rewind_point(8, None, 4), None);
        // The client saw up to 8 in epoch 3: seqs from 6 were rewritten.
        assert_eq!(j.rewind_point(8, Some(3), 4), Some(6));
        assert_eq!(j.rewind_point(6, Some(3), 5), Some(6));
        // It only had up to 5, all written in epoch 3 and kept.
        assert_eq!(j.rewind_point(5, Some(3), 4), None);
        // No later epoch wrote the job, but the client has seqs the store lost.
        let j = job_at(4, &[[3, 1]]);
        assert_eq!(j.rewind_point(6, Some(3), 4), Some(5));
        assert_eq!(j.rewind_point(4, Some(3), 4), None);
    }

    #[test]
    fn enter_epoch_records_each_epoch_once_and_keeps_the_newest() {
        let mut j = job_at(0, &[]);
        j.enter_epoch(1);
        j.seq = 3;
        j.enter_epoch(1);
        assert_eq!(j.epochs, vec![[1, 1]]);
        for e in 2..=(EPOCHS_KEPT as u64 + 5) {
            j.enter_epoch(e);
            j.seq += 1;
        }
        assert_eq!(j.epochs.len(), EPOCHS_KEPT);
        // A client from before the oldest kept boundary replays the kept history.
        assert_eq!(j.rewind_point(j.seq, Some(1), 99), Some(j.history_start));
    }
}
