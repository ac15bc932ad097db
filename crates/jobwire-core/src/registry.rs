//! The subscription registry: which outboxes watch which job, sharded so that
//! publishes to different jobs and (un)subscribes rarely meet on one lock. Fan-out
//! happens here: each committed event is pushed (a refcount bump of shared bytes)
//! into every watcher's [`Outbox`]; nothing here ever waits on a client.

use crate::metrics::Metrics;
use crate::session::{Closed, Outbox, Published, Push};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

const SHARDS: usize = 64;

type Shard = HashMap<Arc<str>, Vec<Arc<Outbox>>>;

/// Job id -> the outboxes watching it.
pub struct Registry {
    shards: Box<[Mutex<Shard>]>,
    metrics: Arc<Metrics>,
    /// Outboxes on every-project channels (`~p/<tenant>/*`): while zero, a broadcast
    /// skips building that key (the common case costs one atomic load).
    all_projects: AtomicUsize,
}

impl Registry {
    pub fn new(metrics: Arc<Metrics>) -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            metrics,
            all_projects: AtomicUsize::new(0),
        }
    }

    // Critical sections are short and synchronous (no await inside), so a std Mutex
    // is the right tool; a poisoned shard still holds a consistent map.
    fn shard(&self, job: &str) -> MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        job.hash(&mut h);
        let i = (h.finish() as usize) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts delivering `job`'s events to `outbox`.
    pub fn add(&self, job: &str, outbox: &Arc<Outbox>) {
        let mut shard = self.shard(job);
        match shard.get_mut(job) {
            Some(list) => list.push(outbox.clone()),
            None => {
                shard.insert(Arc::from(job), vec![outbox.clone()]);
            }
        }
        self.metrics.subscriptions.inc();
        if crate::channel::is_all_projects_key(job) {
            self.all_projects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops delivering `job`'s events to `outbox`.
    pub fn remove(&self, job: &str, outbox: &Arc<Outbox>) {
        let mut shard = self.shard(job);
        if let Some(list) = shard.get_mut(job) {
            if let Some(i) = list.iter().position(|o| Arc::ptr_eq(o, outbox)) {
                list.swap_remove(i);
                self.metrics.subscriptions.dec();
                if crate::channel::is_all_projects_key(job) {
                    self.all_projects.fetch_sub(1, Ordering::Relaxed);
                }
            }
            if list.is_empty() {
                shard.remove(job);
            }
        }
    }

    /// Number of outboxes watching `job`.
    pub fn watchers(&self, job: &str) -> usize {
        self.shard(job).get(job).map_or(0, Vec::len)
    }

    /// Closes every watcher of `job` with `reason` (they reconnect and recover).
    pub fn close_watchers(&self, job: &str, reason: Closed) {
        if let Some(list) = self.shard(job).get(job) {
            for outbox in list {
                outbox.close(reason);
            }
        }
    }

    /// Pushes one committed event to every watcher of its job, of its project
    /// channel when [`Published::project`] is set, and of its tenant's every-project
    /// channel (the same shared bytes).
    pub fn broadcast(&self, ev: &Published) {
        self.broadcast_to(&ev.job_id, ev);
        if let Some(project) = &ev.project {
            self.broadcast_to(project, ev);
        }
        if self.all_projects.load(Ordering::Relaxed) > 0 {
            self.broadcast_to(&crate::channel::all_projects_key_of_job(&ev.job_id), ev);
        }
    }

    /// Pushes `ev` to every watcher registered under `key` (a job or channel key).
    pub fn broadcast_to(&self, key: &str, ev: &Published) {
        let shard = self.shard(key);
        let Some(list) = shard.get(key) else {
            return;
        };
        for outbox in list {
            match outbox.push(ev) {
                Push::Queued | Push::Closed => {}
                Push::Coalesced(n) => self.metrics.coalesced.add(n as u64),
                Push::Overflow => self.metrics.slow_consumers.inc(),
            }
        }
    }
}
