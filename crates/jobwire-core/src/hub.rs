//! The hub: the one entry point transports call. It validates ids, times publishes,
//! and runs the subscribe protocol (registry first, then history; see
//! [`crate::recovery`]). Job state lives in the [`Engine`]; fan-out in the
//! [`Registry`].

use crate::access::Access;
use crate::apikey::ApiKey;
use crate::channel::{self, ProjectCatchUp};
use crate::children::{self, Offer, ParentFeed};
use crate::engine::embedded::{Durability, Embedded, Retention};
use crate::engine::{
    Created, Engine, HistoryPage, ListPage, ListQuery, Live, NewJob, NotificationPage, Outcome,
};
use crate::error::HubError;
use crate::liveness;
use crate::metrics::Metrics;
use crate::recovery::{Replay, Resumed, Since};
use crate::registry::Registry;
use crate::session::Outbox;
use jobwire_proto::codes::ErrorCode;
use jobwire_proto::event::InputBody;
use jobwire_proto::job::{ChildState, MAX_CHILDREN, MAX_DEPTH};
use jobwire_proto::{
    ChildUpdate, EventInput, InputError, Job, JobId, JobOptions, JobStatus, Timestamp,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Most events accepted in one publish call.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Hub settings.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Frames a connection may have queued before progress is coalesced and, failing
    /// that, the connection is closed as a slow consumer.
    pub outbox_capacity: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            outbox_capacity: 4096,
        }
    }
}

/// A create request as a transport received it.
#[derive(Debug, Clone, Default)]
pub struct CreateJob {
    /// Client-chosen id; generated when absent.
    pub id: Option<String>,
    pub project: Option<String>,
    pub metadata: Map<String, Value>,
    /// The creator's token subject; its notifications channel gets the job's end.
    pub created_by: Option<String>,
    /// Liveness and cancel settings.
    pub options: JobOptions,
    /// A parent job (same tenant) and this job's weight in the parent's progress.
    pub parent: Option<String>,
    pub weight: Option<f64>,
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelOutcome {
    /// The seq of the `cancel_requested` or `cancelled` event (for a repeated
    /// request: the first request's seq).
    pub seqs: Vec<u64>,
    pub live: Live,
}

fn terminal(status: JobStatus) -> InputError {
    InputError::new(
        ErrorCode::JobTerminal,
        format!("job is {}; it accepts no more events", status.as_str()),
    )
}

/// Queues a `child` update for a parent and, unless this instance already has a
/// writer for that parent, writes the queue until it is empty (see
/// [`ParentFeed::enqueue`]).
async fn child_to_parent(
    engine: &dyn Engine,
    feed: &ParentFeed,
    parent_key: &str,
    up: ChildUpdate,
) {
    if !feed.enqueue(parent_key, up) {
        return;
    }
    while let Some(batch) = feed.next_batch(parent_key) {
        let inputs: Vec<EventInput> = batch
            .into_iter()
            .map(|up| EventInput::server(InputBody::Child(up), None))
            .collect();
        write_to_parent(engine, parent_key, inputs).await;
    }
}

/// Writes child updates to a parent; a parent that ended or is gone is skipped.
/// Other instances may write the same parent at once (on Redis its optimistic write
/// retries can run out), so a refused write is tried again a few times.
async fn write_to_parent(engine: &dyn Engine, parent_key: &str, inputs: Vec<EventInput>) {
    const TRIES: u32 = 20;
    for attempt in 1..=TRIES {
        match engine.publish(parent_key, inputs.clone()).await {
            Ok(_) | Err(HubError::NotFound) | Err(HubError::ShuttingDown) => return,
            // The parent ended (its policy, or a cancel): later updates are moot.
            Err(HubError::Input(_)) => return,
            Err(e) if attempt == TRIES => {
                tracing::warn!(parent = %parent_key, error = %e, "a child update did not reach its parent");
            }
            Err(_) => {
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 20;
                let wait = 5 + jitter + 5 * u64::from(attempt);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
        }
    }
}

/// The job-progress hub.
pub struct Hub {
    engine: Arc<dyn Engine>,
    parents: Arc<ParentFeed>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    config: HubConfig,
}

impl Hub {
    /// A hub over an engine that fans out into `registry`.
    pub fn new(
        engine: Arc<dyn Engine>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        config: HubConfig,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            engine,
            parents: Arc::default(),
            registry,
            metrics,
            config,
        })
    }

    /// A hub on the embedded engine in `data_dir`.
    pub fn open_embedded(
        data_dir: PathBuf,
        retention: Retention,
        durability: Durability,
        config: HubConfig,
    ) -> Result<Arc<Hub>, HubError> {
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(Registry::new(metrics.clone()));
        let engine = Embedded::open(
            data_dir,
            retention,
            durability,
            registry.clone(),
            metrics.clone(),
        )?;
        Ok(Hub::new(engine, registry, metrics, config))
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn is_ready(&self) -> bool {
        self.engine.is_ready()
    }

    /// Creates a job in the caller's namespace, or returns the existing one for an
    /// identical retry.
    pub async fn create_job(&self, access: &Access, req: CreateJob) -> Result<Created, HubError> {
        let id = match req.id {
            Some(id) => {
                JobId::validate(&id)?;
                id
            }
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        if !access.may_use_id(&id) || !access.may_use_project(req.project.as_deref()) {
            return Err(HubError::Forbidden);
        }
        req.options.validate()?;
        let depth = match &req.parent {
            Some(parent) => self.check_parent(access, &id, parent, req.weight).await?,
            None => 0,
        };
        let key = access.key(&id);
        let created = self
            .engine
            .create(NewJob {
                key: key.clone(),
                id,
                tenant: access.tenant.clone(),
                project: req.project,
                metadata: req.metadata,
                created_by: req.created_by,
                options: req.options,
                parent: req.parent,
                weight: req.weight,
                depth,
            })
            .await?;
        if created.created {
            let live = Live::of(&created.job);
            self.renew(&key, &live).await?;
            self.tell_parent(access, &key, &live).await;
        }
        Ok(created)
    }

    /// Checks the parent of a new job; returns the new job's depth.
    async fn check_parent(
        &self,
        access: &Access,
        id: &str,
        parent: &str,
        weight: Option<f64>,
    ) -> Result<u32, HubError> {
        let refuse = |m: String| HubError::from(InputError::new(ErrorCode::InvalidParent, m));
        if let Some(w) = weight {
            if !(w.is_finite() && w > 0.0 && w <= 1e6) {
                return Err(InputError::new(
                    ErrorCode::InvalidRequest,
                    "`weight` must be a number above 0 and at most 1000000",
                )
                .into());
            }
        }
        if parent == id {
            return Err(refuse("a job cannot be its own parent".into()));
        }
        let job = match self.snapshot(access, parent).await {
            Ok(j) => j,
            Err(HubError::NotFound) => return Err(refuse(format!("parent `{parent}` not found"))),
            Err(e) => return Err(e),
        };
        if job.status.is_terminal() {
            return Err(refuse(format!(
                "parent `{parent}` is {}",
                job.status.as_str()
            )));
        }
        if job.depth + 1 > MAX_DEPTH {
            return Err(refuse(format!("jobs nest at most {MAX_DEPTH} levels deep")));
        }
        if job.child_jobs.len() >= MAX_CHILDREN && !job.child_jobs.contains_key(id) {
            return Err(refuse(format!(
                "parent `{parent}` has {MAX_CHILDREN} children"
            )));
        }
        Ok(job.depth + 1)
    }

    /// Tells a child job's parent about the child's state after a write (see
    /// [`crate::children`]). Best effort: a parent that ended or vanished is skipped.
    async fn tell_parent(&self, access: &Access, child_key: &str, live: &Live) {
        if let Some((parent, _)) = &live.child {
            self.tell_parent_at(&access.key(parent), child_key, live)
                .await;
        }
    }

    /// [`Hub::tell_parent`] for a write without a caller (the liveness scanner): the
    /// parent lives in the child's tenant namespace.
    async fn tell_parent_of(&self, child_key: &str, live: &Live) {
        if let Some((parent, _)) = &live.child {
            let parent_key = match child_key.rsplit_once('/') {
                Some((tenant, _)) => format!("{tenant}/{parent}"),
                None => parent.clone(),
            };
            self.tell_parent_at(&parent_key, child_key, live).await;
        }
    }

    async fn tell_parent_at(&self, parent_key: &str, child_key: &str, live: &Live) {
        let Some((_, up)) = &live.child else {
            return;
        };
        let parent_key = parent_key.to_owned();
        match self.parents.offer(child_key, up.clone()) {
            Offer::Now(up) => {
                child_to_parent(self.engine.as_ref(), &self.parents, &parent_key, up).await
            }
            Offer::Held => {}
            Offer::Later => {
                let (engine, feed) = (self.engine.clone(), self.parents.clone());
                let child_key = child_key.to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(children::PROGRESS_EVERY).await;
                    if let Some(up) = feed.take(&child_key) {
                        child_to_parent(engine.as_ref(), &feed, &parent_key, up).await;
                    }
                });
            }
        }
    }

    /// A parent's children as it knows them, in id order after `after`, optionally
    /// of one status: `(id, state)` pages of at most `limit`, and the next cursor.
    pub async fn children(
        &self,
        access: &Access,
        job_id: &str,
        status: Option<JobStatus>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Job, Vec<(String, ChildState)>, Option<String>), HubError> {
        let mut job = self.snapshot(access, job_id).await?;
        let all = std::mem::take(&mut job.child_jobs);
        let mut page: Vec<(String, ChildState)> = all
            .into_iter()
            .filter(|(id, s)| {
                after.is_none_or(|a| id.as_str() > a) && status.is_none_or(|st| s.status == st)
            })
            .take(limit.max(1) + 1)
            .collect();
        let next = if page.len() > limit.max(1) {
            page.truncate(limit.max(1));
            page.last().map(|(id, _)| id.clone())
        } else {
            None
        };
        Ok((job, page, next))
    }

    /// Moves the job's heartbeat deadline after a sign of life (or clears its
    /// deadlines once it has ended). Free for jobs without liveness settings.
    async fn renew(&self, key: &str, live: &Live) -> Result<(), HubError> {
        if !live.has_timers() {
            return Ok(());
        }
        if live.status.is_terminal() {
            self.engine
                .set_deadline(&liveness::beat_member(key), None)
                .await?;
            return self
                .engine
                .set_deadline(&liveness::timer_member(key), None)
                .await;
        }
        let at = liveness::beat_deadline(live, Timestamp::now());
        self.engine
            .set_deadline(&liveness::beat_member(key), at)
            .await
    }

    /// A heartbeat: renews the job's deadline (ending a stall), optionally with
    /// progress and a checkpoint (stored as one `progress` event, idempotent by
    /// `event_id` like a publish). Returns the job's
    /// liveness facts (the worker reads `cancel_requested` from them).
    pub async fn heartbeat(
        &self,
        access: &Access,
        job_id: &str,
        progress: Option<f64>,
        checkpoint: Option<Value>,
        event_id: Option<String>,
    ) -> Result<Live, HubError> {
        let key = self.visible_key(access, job_id).await?;
        let job = self.engine.snapshot(&key).await?;
        if job.status.is_terminal() {
            return Err(terminal(job.status).into());
        }
        let live = if progress.is_some() || checkpoint.is_some() {
            let input = EventInput {
                body: InputBody::Progress {
                    progress: progress.unwrap_or(job.progress),
                    stage: None,
                    message: None,
                    checkpoint,
                },
                event_id,
                metadata: None,
            };
            if !(0.0..=100.0).contains(&progress.unwrap_or(0.0)) {
                return Err(InputError::new(
                    ErrorCode::InvalidRequest,
                    "progress must be a number from 0 to 100",
                )
                .into());
            }
            self.engine.publish(&key, vec![input]).await?.live
        } else if job.stalled_since.is_some() {
            let recovered =
                EventInput::server(InputBody::Recovered, Some(format!("recovered:{}", job.seq)));
            match self.engine.publish(&key, vec![recovered]).await {
                Ok(out) => out.live,
                // Another heartbeat (maybe on another instance) ended the stall first.
                Err(HubError::Input(_)) => Live::of(&self.engine.snapshot(&key).await?),
                Err(e) => return Err(e),
            }
        } else {
            Live::of(&job)
        };
        self.metrics.heartbeats.inc();
        self.renew(&key, &live).await?;
        Ok(live)
    }

    /// Asks the job's worker to stop: a `cancel_requested` event on a running job
    /// (the worker confirms with `cancelled`), or `cancelled` right away for a job no
    /// worker has started (`pending`, `queued`) or with `force`.
    ///
    /// A parent's cancel reaches its running children (and theirs) the same way.
    pub async fn cancel(
        &self,
        access: &Access,
        job_id: &str,
        by: Option<String>,
        reason: Option<String>,
        event_id: Option<String>,
        force: bool,
    ) -> Result<CancelOutcome, HubError> {
        let (out, mut stack) = self
            .cancel_one(access, job_id, by.clone(), reason.clone(), event_id, force)
            .await?;
        let reason = reason.or_else(|| Some(format!("parent {job_id} was cancelled")));
        while let Some(child) = stack.pop() {
            match self
                .cancel_one(access, &child, by.clone(), reason.clone(), None, force)
                .await
            {
                Ok((_, more)) => stack.extend(more),
                // Ended or gone meanwhile: nothing to cancel.
                Err(HubError::Input(_) | HubError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Cancels one job; also returns its running children's ids.
    async fn cancel_one(
        &self,
        access: &Access,
        job_id: &str,
        by: Option<String>,
        reason: Option<String>,
        event_id: Option<String>,
        force: bool,
    ) -> Result<(CancelOutcome, Vec<String>), HubError> {
        let key = self.visible_key(access, job_id).await?;
        let job = self.engine.snapshot(&key).await?;
        let children: Vec<String> = job
            .child_jobs
            .iter()
            .filter(|(_, s)| !s.status.is_terminal())
            .map(|(id, _)| id.clone())
            .collect();
        if job.status.is_terminal() {
            return Err(terminal(job.status).into());
        }
        let now = force || matches!(job.status, JobStatus::Pending | JobStatus::Queued);
        if !now {
            if let Some(c) = &job.cancel_requested {
                let out = CancelOutcome {
                    seqs: vec![c.seq],
                    live: Live::of(&job),
                };
                return Ok((out, children));
            }
        }
        let input = if now {
            EventInput {
                body: InputBody::Cancelled {
                    reason,
                    error: None,
                },
                event_id,
                metadata: None,
            }
        } else {
            EventInput::server(
                InputBody::CancelRequested { by, reason },
                Some(event_id.unwrap_or_else(|| "cancel_requested".into())),
            )
        };
        let out = match self.engine.publish(&key, vec![input]).await {
            Ok(out) => out,
            // Requested meanwhile by someone else: answer with theirs.
            Err(HubError::Input(e)) if e.code == ErrorCode::InvalidTransition => {
                let job = self.engine.snapshot(&key).await?;
                let seqs = job
                    .cancel_requested
                    .as_ref()
                    .map(|c| c.seq)
                    .into_iter()
                    .collect();
                let out = CancelOutcome {
                    seqs,
                    live: Live::of(&job),
                };
                return Ok((out, children));
            }
            Err(e) => return Err(e),
        };
        if out.live.status.is_terminal() {
            self.renew(&key, &out.live).await?;
        } else if job.options.cancel_timeout.is_some() {
            let job = self.engine.snapshot(&key).await?;
            self.engine
                .set_deadline(&liveness::timer_member(&key), liveness::next_timer(&job))
                .await?;
        }
        self.tell_parent(access, &key, &out.live).await;
        let out = CancelOutcome {
            seqs: out.seqs,
            live: out.live,
        };
        Ok((out, children))
    }

    /// Runs the liveness scanner until the engine shuts down (call once per
    /// process, inside the runtime).
    pub fn start_liveness(self: &Arc<Hub>) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(liveness::SCAN_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match liveness::scan(hub.engine.as_ref()).await {
                    Ok(wrote) => {
                        for (key, live) in wrote {
                            hub.tell_parent_of(&key, &live).await;
                        }
                    }
                    Err(HubError::ShuttingDown) => break,
                    Err(e) => tracing::warn!(error = %e, "liveness scan failed"),
                }
            }
        })
    }

    /// Checks the id and the caller's allow-lists; returns the storage key.
    async fn visible_key(&self, access: &Access, job_id: &str) -> Result<String, HubError> {
        JobId::validate(job_id).map_err(|_| HubError::NotFound)?;
        if !access.may_use_id(job_id) {
            return Err(HubError::NotFound);
        }
        let key = access.key(job_id);
        if access.projects.is_some() {
            let job = self.engine.snapshot(&key).await?;
            if !access.may_see(&job) {
                return Err(HubError::NotFound);
            }
        }
        Ok(key)
    }

    /// Publishes events to a job atomically; returns their seqs once durable.
    pub async fn publish(
        &self,
        access: &Access,
        job_id: &str,
        events: Vec<EventInput>,
    ) -> Result<Outcome, HubError> {
        JobId::validate(job_id)?;
        if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
            return Err(InputError::new(
                ErrorCode::InvalidEvent,
                format!("a publish carries 1 to {MAX_BATCH_EVENTS} events"),
            )
            .into());
        }
        let key = self.visible_key(access, job_id).await?;
        let started = Instant::now();
        let result = self.engine.publish(&key, events).await;
        self.metrics.publish_latency.observe(started.elapsed());
        let out = result?;
        self.renew(&key, &out.live).await?;
        self.tell_parent(access, &key, &out.live).await;
        Ok(out)
    }

    /// The job's snapshot, if the caller may see it (otherwise: not found).
    pub async fn snapshot(&self, access: &Access, job_id: &str) -> Result<Job, HubError> {
        let key = self.visible_key(access, job_id).await?;
        let job = self.engine.snapshot(&key).await?;
        if access.may_see(&job) {
            Ok(job)
        } else {
            Err(HubError::NotFound)
        }
    }

    pub async fn history(
        &self,
        access: &Access,
        job_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<HistoryPage, HubError> {
        let key = self.visible_key(access, job_id).await?;
        let page = self.engine.history(&key, after, limit).await?;
        if access.may_see(&page.job) {
            Ok(page)
        } else {
            Err(HubError::NotFound)
        }
    }

    /// [`Hub::history`] for a client resuming with an epoch: rewound when it holds
    /// events a crash took back (see [`Resumed`]).
    pub async fn history_resumed(
        &self,
        access: &Access,
        job_id: &str,
        since: Since,
        limit: usize,
    ) -> Result<Resumed, HubError> {
        let key = self.visible_key(access, job_id).await?;
        let r = Resumed::read(self.engine.as_ref(), &key, since, limit).await?;
        if access.may_see(&r.page.job) {
            Ok(r)
        } else {
            Err(HubError::NotFound)
        }
    }

    /// Lists the caller's jobs (its namespace, narrowed by its allow-lists).
    ///
    /// The cursor `next` is always the id of a job on the page (so it never names a
    /// job outside the caller's allow-lists), and a page is short only when it is
    /// the last one.
    pub async fn list(&self, access: &Access, mut query: ListQuery) -> Result<ListPage, HubError> {
        query.tenant.clone_from(&access.tenant);
        let limit = query.limit.max(1);
        if let Some(ids) = &access.jobs {
            return self.list_allowed(access, ids, query, limit).await;
        }
        let mut jobs = Vec::new();
        loop {
            let page = self.engine.list(query.clone()).await?;
            jobs.extend(page.jobs.into_iter().filter(|j| access.may_see(j)));
            if jobs.len() >= limit {
                jobs.truncate(limit);
                let next = jobs.last().map(|j| j.id.clone());
                return Ok(ListPage { jobs, next });
            }
            match page.next {
                Some(after) => query.after = Some(after),
                None => return Ok(ListPage { jobs, next: None }),
            }
        }
    }

    /// `list` for a token with a `jobs` allow-list: read those jobs (in id order,
    /// after the cursor) instead of scanning the tenant.
    async fn list_allowed(
        &self,
        access: &Access,
        ids: &[String],
        query: ListQuery,
        limit: usize,
    ) -> Result<ListPage, HubError> {
        let mut ids: Vec<&String> = ids
            .iter()
            .filter(|id| query.after.as_ref().is_none_or(|a| *id > a))
            .collect();
        ids.sort();
        ids.dedup();
        let mut jobs = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if JobId::validate(id).is_err() {
                continue;
            }
            let job = match self.engine.snapshot(&access.key(id)).await {
                Ok(j) => j,
                Err(HubError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            if !access.may_see(&job)
                || query.status.is_some_and(|s| s != job.status)
                || (query.project.is_some() && query.project != job.project)
            {
                continue;
            }
            jobs.push(job);
            if jobs.len() == limit {
                let more = i + 1 < ids.len();
                let next = more.then(|| jobs.last().map(|j| j.id.clone())).flatten();
                return Ok(ListPage { jobs, next });
            }
        }
        Ok(ListPage { jobs, next: None })
    }

    /// The engine's epoch (see [`crate::engine::Engine::epoch`]).
    pub fn epoch(&self) -> Option<u64> {
        self.engine.epoch()
    }

    /// A new outbound queue for one connection.
    pub fn outbox(&self) -> Arc<Outbox> {
        Outbox::new(self.config.outbox_capacity)
    }

    /// Starts watching `job_id` into `outbox` and returns the catch-up to send first;
    /// [`Replay::key`] is what to pass to [`Hub::unsubscribe`] later. On error the
    /// outbox is not registered.
    pub async fn subscribe(
        &self,
        access: &Access,
        job_id: &str,
        outbox: &Arc<Outbox>,
        since: Option<Since>,
    ) -> Result<Replay, HubError> {
        let key = self.visible_key(access, job_id).await?;
        self.registry.add(&key, outbox);
        if let Err(e) = self.engine.watch(&key).await {
            self.registry.remove(&key, outbox);
            return Err(e);
        }
        match Replay::start(self.engine.clone(), Arc::from(key.as_str()), since).await {
            Ok(r) if access.may_see(&r.job) => Ok(r),
            Ok(_) => {
                self.unsubscribe(&key, outbox);
                Err(HubError::NotFound)
            }
            Err(e) => {
                self.unsubscribe(&key, outbox);
                Err(e)
            }
        }
    }

    /// Like [`Hub::subscribe`], but a job that does not exist yet is waited for:
    /// the outbox stays registered and `Ok(None)` is returned, so the job's events
    /// reach it from its first one (`created`, seq 1) once some worker creates it.
    /// Registering before the read leaves no gap: a job created after the read is
    /// streamed live, one created before is found by it. Tokens with a `projects`
    /// allow-list are answered like [`Hub::subscribe`] (a job not created yet has
    /// no project to check).
    pub async fn subscribe_or_wait(
        &self,
        access: &Access,
        job_id: &str,
        outbox: &Arc<Outbox>,
        since: Option<Since>,
    ) -> Result<Option<Replay>, HubError> {
        if access.projects.is_some() {
            return self
                .subscribe(access, job_id, outbox, since)
                .await
                .map(Some);
        }
        JobId::validate(job_id).map_err(|_| HubError::NotFound)?;
        if !access.may_use_id(job_id) {
            return Err(HubError::NotFound);
        }
        let key = access.key(job_id);
        self.registry.add(&key, outbox);
        if let Err(e) = self.engine.watch(&key).await {
            self.registry.remove(&key, outbox);
            return Err(e);
        }
        match Replay::start(self.engine.clone(), Arc::from(key.as_str()), since).await {
            Ok(r) if access.may_see(&r.job) => Ok(Some(r)),
            Ok(_) => {
                self.unsubscribe(&key, outbox);
                Err(HubError::NotFound)
            }
            Err(HubError::NotFound) => Ok(None),
            Err(e) => {
                self.unsubscribe(&key, outbox);
                Err(e)
            }
        }
    }

    /// Registers `outbox` on `project`'s channel, then lists the project's jobs the
    /// caller may see and plans their catch-up (`positions`: public id -> last seq
    /// the client has). Registering first makes the catch-up gap-free: an event
    /// committed after the listing is queued live; one committed before is in the
    /// replay (both: deduplicated by seq). On error the outbox is not registered.
    pub async fn subscribe_project(
        &self,
        access: &Access,
        project: &str,
        outbox: &Arc<Outbox>,
        positions: &BTreeMap<String, u64>,
    ) -> Result<ProjectCatchUp, HubError> {
        let all = project == channel::ALL_PROJECTS;
        if all && access.projects.is_some() {
            return Err(HubError::Forbidden);
        }
        if !all {
            JobId::validate(project).map_err(|_| HubError::NotFound)?;
            if !access.may_use_project(Some(project)) {
                return Err(HubError::NotFound);
            }
        }
        let key = channel::project_key(access.tenant.as_deref(), project);
        self.registry.add(&key, outbox);
        if let Err(e) = self.engine.watch(&key).await {
            self.registry.remove(&key, outbox);
            return Err(e);
        }
        let mut jobs = Vec::new();
        let mut after = None;
        loop {
            let query = ListQuery {
                project: (!all).then(|| project.to_owned()),
                after: after.take(),
                limit: 1000,
                ..ListQuery::default()
            };
            match self.list(access, query).await {
                Ok(page) => {
                    jobs.extend(page.jobs);
                    match page.next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                Err(e) => {
                    self.unsubscribe(&key, outbox);
                    return Err(e);
                }
            }
        }
        let (jobs, omitted) = channel::plan_replay(jobs, positions, channel::PROJECT_REPLAY_MAX);
        Ok(ProjectCatchUp {
            key: Arc::from(key.as_str()),
            jobs,
            omitted,
        })
    }

    /// The catch-up of one job of a project channel (already registered by
    /// [`Hub::subscribe_project`]): snapshot, then history after `since`.
    pub async fn project_job_replay(
        &self,
        access: &Access,
        job: &Job,
        since: Option<Since>,
    ) -> Result<Replay, HubError> {
        let key = access.key(&job.id);
        let replay = Replay::start(self.engine.clone(), Arc::from(key.as_str()), since).await?;
        if access.may_see(&replay.job) {
            Ok(replay)
        } else {
            Err(HubError::NotFound)
        }
    }

    /// Registers `outbox` on the notifications channel of user `sub` and returns its
    /// key. Read what was missed with [`Hub::notifications`] after this returns.
    pub async fn subscribe_notifications(
        &self,
        access: &Access,
        sub: Option<&str>,
        outbox: &Arc<Outbox>,
    ) -> Result<Arc<str>, HubError> {
        let key = channel::owner_key(access.tenant.as_deref(), sub);
        self.registry.add(&key, outbox);
        if let Err(e) = self.engine.watch(&key).await {
            self.registry.remove(&key, outbox);
            return Err(e);
        }
        Ok(Arc::from(key.as_str()))
    }

    /// A page of the notification stream `key` (from [`Hub::subscribe_notifications`]).
    pub async fn notifications(
        &self,
        key: &str,
        after: u64,
        limit: usize,
    ) -> Result<NotificationPage, HubError> {
        self.engine.notifications(key, after, limit).await
    }

    /// Stops watching the job stored under `key` (from [`Replay::key`]).
    pub fn unsubscribe(&self, key: &str, outbox: &Arc<Outbox>) {
        self.registry.remove(key, outbox);
        self.engine.unwatch(key);
    }

    /// Stores a new API key (see [`Engine::put_key`]).
    pub async fn put_key(&self, key: ApiKey) -> Result<(), HubError> {
        self.engine.put_key(key).await
    }

    /// The API key with this id, revoked or not.
    pub async fn key_by_id(&self, id: &str) -> Result<Option<ApiKey>, HubError> {
        self.engine.key_by_id(id).await
    }

    /// Every API key of `tenant`, in id order.
    pub async fn list_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, HubError> {
        self.engine.list_keys(tenant).await
    }

    /// Revokes key `id` of `tenant`; `false` when the tenant has no such key.
    pub async fn revoke_key(&self, tenant: &str, id: &str) -> Result<bool, HubError> {
        self.engine.revoke_key(tenant, id).await
    }

    /// Finishes queued writes; later writes fail with `ShuttingDown`.
    pub async fn shutdown(&self) {
        self.engine.shutdown().await
    }
}
