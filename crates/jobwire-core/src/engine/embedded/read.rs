//! The embedded engine's reads: snapshots, history pages, notifications, listings
//! and API keys, each inside one redb read transaction (a consistent point in time).

use super::{db_err, storage, Store, EVENTS, JOBS, NOTIFY, NOTIFY_HEAD};
use crate::apikey::ApiKey;
use crate::engine::{history_window, HistoryPage, ListPage, ListQuery, NotificationPage};
use crate::error::HubError;
use crate::liveness::Deadlines;
use bytes::Bytes;
use jobwire_proto::Job;
use redb::{Database, ReadableTable};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rebuilds the liveness deadlines of every running job with liveness settings from
/// its stored snapshot (see [`Deadlines::restore`]).
pub(super) fn restore_deadlines(store: &Store, deadlines: &Deadlines) -> Result<(), HubError> {
    let db = store.db()?;
    let txn = db.begin_read().map_err(db_err)?;
    let jobs = txn.open_table(JOBS).map_err(db_err)?;
    for item in jobs.iter().map_err(db_err)? {
        let (k, v) = item.map_err(db_err)?;
        // Cheap filter first: most jobs have no liveness settings.
        let bytes = v.value();
        if may_have_timers(bytes) {
            if let Ok(job) = serde_json::from_slice::<Job>(bytes) {
                if !job.status.is_terminal() {
                    deadlines.restore(k.value(), &job);
                }
            }
        }
    }
    if !deadlines.is_empty() {
        tracing::info!(count = deadlines.len(), "liveness deadlines restored");
    }
    Ok(())
}

/// Whether a stored snapshot may carry liveness settings.
fn may_have_timers(bytes: &[u8]) -> bool {
    [
        &b"\"heartbeat_timeout\""[..],
        b"\"cancel_timeout\"",
        b"\"stall_fail_after\"",
    ]
    .iter()
    .any(|needle| bytes.windows(needle.len()).any(|w| w == *needle))
}

pub(super) fn read_job(
    jobs: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<Job>, HubError> {
    match jobs.get(id).map_err(db_err)? {
        Some(raw) => serde_json::from_slice(raw.value())
            .map(Some)
            .map_err(storage),
        None => Ok(None),
    }
}

pub(super) fn read_key(
    keys: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<ApiKey>, HubError> {
    match keys.get(id).map_err(db_err)? {
        Some(raw) => serde_json::from_slice(raw.value())
            .map(Some)
            .map_err(storage),
        None => Ok(None),
    }
}

pub(super) fn read_history(
    db: &Database,
    id: &str,
    after: u64,
    limit: usize,
) -> Result<HistoryPage, HubError> {
    let txn = db.begin_read().map_err(db_err)?;
    let jobs = txn.open_table(JOBS).map_err(db_err)?;
    let job = read_job(&jobs, id)?.ok_or(HubError::NotFound)?;
    let (truncated, start) = history_window(&job, after);
    let mut events = Vec::new();
    let mut last_seq = after;
    if start <= job.seq && limit > 0 {
        let table = txn.open_table(EVENTS).map_err(db_err)?;
        for item in table
            .range((id, start)..=(id, job.seq))
            .map_err(db_err)?
            .take(limit)
        {
            let (k, v) = item.map_err(db_err)?;
            last_seq = k.value().1;
            events.push((last_seq, Bytes::copy_from_slice(v.value())));
        }
    }
    Ok(HistoryPage {
        job,
        events,
        last_seq,
        truncated,
    })
}

pub(super) fn read_notifications(
    db: &Database,
    owner: &str,
    after: u64,
    limit: usize,
) -> Result<NotificationPage, HubError> {
    let txn = db.begin_read().map_err(db_err)?;
    let heads = txn.open_table(NOTIFY_HEAD).map_err(db_err)?;
    let head = heads.get(owner).map_err(db_err)?.map_or(0, |v| v.value());
    let table = txn.open_table(NOTIFY).map_err(db_err)?;
    let start = match table
        .range((owner, 0)..=(owner, u64::MAX))
        .map_err(db_err)?
        .next()
    {
        Some(item) => item.map_err(db_err)?.0.value().1,
        None => head + 1,
    };
    let mut frames = Vec::new();
    let from = after.saturating_add(1);
    if from <= head && limit > 0 {
        for item in table
            .range((owner, from)..=(owner, head))
            .map_err(db_err)?
            .take(limit)
        {
            let (k, v) = item.map_err(db_err)?;
            frames.push((k.value().1, Bytes::copy_from_slice(v.value())));
        }
    }
    Ok(NotificationPage {
        frames,
        head,
        start,
    })
}

/// A listing page, in key order: the store's snapshots, with `pending` (the
/// snapshots the last checkpoint does not hold, under the query's prefix, taken
/// before the read) in their place.
pub(super) fn read_list(
    db: &Database,
    q: &ListQuery,
    pending: Vec<(Arc<str>, Arc<Job>)>,
) -> Result<ListPage, HubError> {
    let txn = db.begin_read().map_err(db_err)?;
    let jobs = txn.open_table(JOBS).map_err(db_err)?;
    // A tenant's keys are `<tenant>/<id>`: one contiguous range.
    let prefix = q
        .tenant
        .as_ref()
        .map(|t| format!("{t}/"))
        .unwrap_or_default();
    let start = match &q.after {
        Some(after) => std::ops::Bound::Excluded(format!("{prefix}{after}")),
        None => std::ops::Bound::Included(prefix.clone()),
    };
    let mut pending: BTreeMap<Arc<str>, Arc<Job>> = pending
        .into_iter()
        .filter(|(k, _)| match &start {
            std::ops::Bound::Excluded(s) => **k > **s,
            _ => true,
        })
        .collect();
    let range = jobs
        .range::<&str>((
            start.as_ref().map(String::as_str),
            std::ops::Bound::Unbounded,
        ))
        .map_err(db_err)?;
    let mut page = Listing {
        q,
        out: Vec::new(),
        next: None,
    };
    'scan: for item in range {
        let (k, v) = item.map_err(db_err)?;
        let key = k.value();
        if !key.starts_with(prefix.as_str()) {
            break;
        }
        while let Some(entry) = pending.first_entry() {
            if &**entry.key() >= key {
                break;
            }
            let (k, job) = entry.remove_entry();
            if page.offer(&k, || Ok(Arc::unwrap_or_clone(job)))? {
                break 'scan;
            }
        }
        let stored = pending.remove(key);
        let parse = || match stored {
            Some(job) => Ok(Arc::unwrap_or_clone(job)),
            None => serde_json::from_slice(v.value()).map_err(storage),
        };
        if page.offer(key, parse)? {
            break;
        }
    }
    if page.next.is_none() {
        for (k, job) in pending {
            if page.offer(&k, || Ok(Arc::unwrap_or_clone(job)))? {
                break;
            }
        }
    }
    Ok(ListPage {
        jobs: page.out,
        next: page.next,
    })
}

/// A listing page being filled.
struct Listing<'q> {
    q: &'q ListQuery,
    out: Vec<Job>,
    next: Option<String>,
}

impl Listing<'_> {
    /// Offers the job under `key` (read by `job` only when the key passes).
    /// Returns true when the page is full (and `next` set).
    fn offer(
        &mut self,
        key: &str,
        job: impl FnOnce() -> Result<Job, HubError>,
    ) -> Result<bool, HubError> {
        if self.q.tenant.is_none() && key.contains('/') {
            return Ok(false);
        }
        let job = job()?;
        if self.q.status.is_some_and(|s| s != job.status) {
            return Ok(false);
        }
        if self.q.project.is_some() && self.q.project != job.project {
            return Ok(false);
        }
        if self.out.len() == self.q.limit {
            self.next = self.out.last().map(|j| j.id.clone());
            return Ok(true);
        }
        self.out.push(job);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobwire_proto::{JobStatus, Timestamp};

    fn job(id: &str, seq: u64) -> Job {
        let mut j = Job::new(id.to_owned(), None, Timestamp::now());
        j.seq = seq;
        j
    }

    /// A store holding `a`, `c`, `e` (seq 1), and what the last checkpoint lacks:
    /// `b` (new), `c` (seq 5), `f` (new, completed).
    type Fixture = (tempfile::TempDir, Database, Vec<(Arc<str>, Arc<Job>)>);

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::create(dir.path().join("t.redb")).expect("db");
        let txn = db.begin_write().expect("write");
        {
            let mut t = txn.open_table(JOBS).expect("jobs");
            for id in ["a", "c", "e"] {
                let bytes = serde_json::to_vec(&job(id, 1)).expect("json");
                t.insert(id, bytes.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
        let mut f = job("f", 2);
        f.status = JobStatus::Completed;
        let pending = vec![
            (Arc::from("b"), Arc::new(job("b", 1))),
            (Arc::from("c"), Arc::new(job("c", 5))),
            (Arc::from("f"), Arc::new(f)),
        ];
        (dir, db, pending)
    }

    fn page(db: &Database, pending: &[(Arc<str>, Arc<Job>)], q: ListQuery) -> Vec<(String, u64)> {
        let p = read_list(db, &q, pending.to_vec()).expect("list");
        p.jobs.into_iter().map(|j| (j.id, j.seq)).collect()
    }

    #[test]
    fn listings_merge_what_the_checkpoint_lacks_in_key_order_across_pages() {
        let (_dir, db, pending) = fixture();
        let q = |after: Option<&str>| ListQuery {
            after: after.map(str::to_owned),
            limit: 2,
            ..ListQuery::default()
        };
        let first = read_list(&db, &q(None), pending.clone()).expect("list");
        assert_eq!(first.next.as_deref(), Some("b"));
        assert_eq!(
            page(&db, &pending, q(None)),
            [("a".into(), 1), ("b".into(), 1)]
        );
        assert_eq!(
            page(&db, &pending, q(Some("b"))),
            [("c".into(), 5), ("e".into(), 1)],
            "the newer snapshot replaces the stored one"
        );
        assert_eq!(page(&db, &pending, q(Some("e"))), [("f".into(), 2)]);
        let done = ListQuery {
            status: Some(JobStatus::Completed),
            limit: 10,
            ..ListQuery::default()
        };
        assert_eq!(page(&db, &pending, done), [("f".into(), 2)]);
    }
}
