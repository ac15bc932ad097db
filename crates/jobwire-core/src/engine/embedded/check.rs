//! `jobwire store check` and `jobwire store repair`: the damage check the server
//! runs at startup, as an operator tool, and a salvage of what can still be read.
//!
//! Repair never writes into the damaged file: it is renamed to
//! `jobwire.redb.damaged-<time>`, a scratch copy of it is opened (redb may recover
//! it), every job whose snapshot reads back is copied with the newest run of events
//! that reads back whole (older ones count as trimmed, so clients get
//! `history_truncated` rather than a gap), with its idempotency keys, create record
//! and expiry, plus notifications and API keys, into a fresh `jobwire.redb`. The
//! epoch goes on from the highest one the damaged store shows (its counter or any
//! kept job's epoch boundaries), so positions clients hold from before the repair
//! never look current to the repaired store.

// The salvage closures return redb's own (large) error, read once and dropped.
#![allow(clippy::result_large_err)]

use super::store::{self, db_err, quietly, Found};
use super::{
    API_KEYS, CREATES, EPOCH_KEY, EVENTS, EXPIRY, IDEMPOTENCY, JOBS, META, NOTIFY, NOTIFY_HEAD,
};
use crate::error::HubError;
use jobwire_proto::Job;
use redb::{Database, ReadTransaction, ReadableTable, WriteTransaction};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What `check` found.
#[derive(Debug)]
pub enum Health {
    /// No store file: the server will create a fresh one.
    Missing,
    /// The file opened and passed redb's integrity check.
    Sound { jobs: u64, events: u64 },
    /// The file is damaged; the message names it and what to do.
    Damaged(String),
}

/// Checks the store in `data_dir` the way `serve` does at startup. `Err` when it
/// could not be checked (in use by a running server, unreadable).
pub fn check(data_dir: &Path) -> Result<Health, HubError> {
    let path = data_dir.join(store::FILE);
    match store::inspect(&path) {
        Ok(Found::Missing) => return Ok(Health::Missing),
        Ok(Found::Present) => {}
        Err(HubError::Damaged(m)) => return Ok(Health::Damaged(m)),
        Err(e) => return Err(e),
    }
    let db = match store::open_checked(&path, true) {
        Ok(db) => db,
        Err(HubError::Damaged(m)) => return Ok(Health::Damaged(m)),
        Err(e) => return Err(e),
    };
    match quietly(|| count(&db)) {
        Ok(Ok((jobs, events))) => Ok(Health::Sound { jobs, events }),
        Ok(Err(e)) => Ok(Health::Damaged(
            store::damaged(&path, &e.to_string()).to_string(),
        )),
        Err(p) => Ok(Health::Damaged(store::damaged(&path, &p).to_string())),
    }
}

fn count(db: &Database) -> Result<(u64, u64), HubError> {
    use redb::ReadableTableMetadata;
    let txn = db.begin_read().map_err(db_err)?;
    let len = |r: Result<u64, redb::StorageError>| r.map_err(db_err);
    let jobs = match txn.open_table(JOBS) {
        Ok(t) => len(t.len())?,
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(db_err(e)),
    };
    let events = match txn.open_table(EVENTS) {
        Ok(t) => len(t.len())?,
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(db_err(e)),
    };
    Ok((jobs, events))
}

/// What `repair` did.
#[derive(Debug, Default)]
pub struct Repaired {
    /// Where the damaged file now is (`None`: nothing was damaged, nothing moved).
    pub damaged_copy: Option<PathBuf>,
    pub jobs: u64,
    pub events: u64,
    pub keys: u64,
    /// Jobs whose snapshot could be read but none of whose events could.
    pub jobs_without_events: u64,
    /// Why nothing could be read at all, when so.
    pub unreadable: Option<String>,
    /// Where the journal now is (its first segment; the second lies next to it,
    /// `jobwire.journal.1.damaged-…`), when there was one: its records after the
    /// damaged store's last checkpoint are not replayed into the fresh store (they
    /// may name events the salvage could not keep).
    pub journal_copy: Option<PathBuf>,
}

/// Moves a damaged store aside and copies what can be read into a fresh one. A
/// sound or missing store is left alone (`damaged_copy: None`).
pub fn repair(data_dir: &Path) -> Result<Repaired, HubError> {
    match check(data_dir)? {
        Health::Missing | Health::Sound { .. } => return Ok(Repaired::default()),
        Health::Damaged(_) => {}
    }
    let path = data_dir.join(store::FILE);
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "-");
    let aside = data_dir.join(format!("{}.damaged-{stamp}", store::FILE));
    let io = |what: &str, e: std::io::Error| HubError::Storage(format!("{what}: {e}"));
    std::fs::rename(&path, &aside).map_err(|e| io("moving the damaged file aside", e))?;
    // Both journal segments go aside; the report names the first one moved.
    let mut journal_copy = None;
    for file in super::journal::FILES {
        let journal = data_dir.join(file);
        if journal.exists() {
            let to = data_dir.join(format!("{file}.damaged-{stamp}"));
            std::fs::rename(&journal, &to).map_err(|e| io("moving the journal aside", e))?;
            journal_copy.get_or_insert(to);
        }
    }
    let scratch = data_dir.join(format!("{}.salvage", store::FILE));
    std::fs::copy(&aside, &scratch).map_err(|e| io("copying the damaged file", e))?;
    let mut out = Repaired {
        damaged_copy: Some(aside),
        journal_copy,
        ..Repaired::default()
    };
    let fresh = Database::create(&path).map_err(db_err)?;
    let txn = fresh.begin_write().map_err(db_err)?;
    let source = quietly(|| Database::create(&scratch));
    match source {
        Ok(Ok(src)) => match quietly(|| salvage(&src, &txn, &mut out)) {
            Ok(r) => r?,
            Err(p) => out.unreadable = Some(p),
        },
        Ok(Err(e)) => out.unreadable = Some(e.to_string()),
        Err(p) => out.unreadable = Some(p),
    }
    create_tables(&txn)?;
    txn.commit().map_err(db_err)?;
    let _ = std::fs::remove_file(&scratch);
    Ok(out)
}

fn create_tables(txn: &WriteTransaction) -> Result<(), HubError> {
    txn.open_table(JOBS).map_err(db_err)?;
    txn.open_table(EVENTS).map_err(db_err)?;
    txn.open_table(IDEMPOTENCY).map_err(db_err)?;
    txn.open_table(CREATES).map_err(db_err)?;
    txn.open_table(EXPIRY).map_err(db_err)?;
    txn.open_table(API_KEYS).map_err(db_err)?;
    txn.open_table(NOTIFY).map_err(db_err)?;
    txn.open_table(NOTIFY_HEAD).map_err(db_err)?;
    Ok(())
}

/// The rows `read` collects before the first unreadable one (or a panic inside
/// redb): damage ends a read, it does not undo what was read before it.
fn each<T>(read: impl FnOnce(&mut Vec<T>) -> Result<(), redb::Error>) -> Vec<T> {
    let mut v = Vec::new();
    let _ = quietly(|| read(&mut v));
    v
}

fn salvage(src: &Database, dst: &WriteTransaction, out: &mut Repaired) -> Result<(), HubError> {
    let rtxn: ReadTransaction = src.begin_read().map_err(db_err)?;
    // Snapshots first: a job is kept when its snapshot reads and parses.
    let mut jobs: Vec<(String, Job)> = Vec::new();
    let _ = quietly(|| -> Result<(), redb::Error> {
        let t = rtxn.open_table(JOBS)?;
        for item in t.iter()? {
            let Ok((k, v)) = item else { break };
            if let Ok(job) = serde_json::from_slice::<Job>(v.value()) {
                jobs.push((k.value().to_owned(), job));
            }
        }
        Ok(())
    });
    let counter = each(|v| {
        let t = rtxn.open_table(META)?;
        v.extend(t.get(EPOCH_KEY)?.map(|e| e.value()));
        Ok(())
    });
    let highest = jobs
        .iter()
        .flat_map(|(_, j)| j.epochs.iter().map(|e| e[0]))
        .chain(counter)
        .max();
    if let Some(epoch) = highest {
        let mut t = dst.open_table(META).map_err(db_err)?;
        t.insert(EPOCH_KEY, epoch).map_err(db_err)?;
    }
    let mut kept = HashSet::new();
    {
        let mut jt = dst.open_table(JOBS).map_err(db_err)?;
        let mut et = dst.open_table(EVENTS).map_err(db_err)?;
        for (key, mut job) in jobs {
            // The newest run of events that reads back whole, ending at the snapshot.
            let events: Vec<(u64, Vec<u8>)> = each(|v| {
                let t = rtxn.open_table(EVENTS)?;
                for item in t.range((key.as_str(), job.history_start)..=(key.as_str(), job.seq))? {
                    let (k, val) = item?;
                    v.push((k.value().1, val.value().to_vec()));
                }
                Ok(())
            });
            let mut start = job.seq + 1;
            for (seq, _) in events.iter().rev() {
                if *seq + 1 != start {
                    break;
                }
                start = *seq;
            }
            job.history_start = start;
            for (seq, bytes) in events.iter().filter(|(s, _)| *s >= start) {
                et.insert((key.as_str(), *seq), bytes.as_slice())
                    .map_err(db_err)?;
                out.events += 1;
            }
            if start > job.seq {
                out.jobs_without_events += 1;
            }
            let snap = serde_json::to_vec(&job).map_err(|e| HubError::Storage(e.to_string()))?;
            jt.insert(key.as_str(), snap.as_slice()).map_err(db_err)?;
            out.jobs += 1;
            kept.insert(key);
        }
    }
    // Per-job records of the kept jobs.
    let idem = each(|v| {
        let t = rtxn.open_table(IDEMPOTENCY)?;
        for item in t.iter()? {
            let (k, s) = item?;
            let (job, eid) = k.value();
            v.push((job.to_owned(), eid.to_owned(), s.value()));
        }
        Ok(())
    });
    let mut t = dst.open_table(IDEMPOTENCY).map_err(db_err)?;
    for (job, eid, seq) in idem.iter().filter(|r| kept.contains(&r.0)) {
        t.insert((job.as_str(), eid.as_str()), *seq)
            .map_err(db_err)?;
    }
    drop(t);
    let creates = bytes_rows(&rtxn, CREATES);
    let mut t = dst.open_table(CREATES).map_err(db_err)?;
    for (job, v) in creates.iter().filter(|r| kept.contains(&r.0)) {
        t.insert(job.as_str(), v.as_slice()).map_err(db_err)?;
    }
    drop(t);
    let expiry = each(|v| {
        let t = rtxn.open_table(EXPIRY)?;
        for item in t.iter()? {
            let (k, _) = item?;
            let (at, job) = k.value();
            v.push((at, job.to_owned()));
        }
        Ok(())
    });
    let mut t = dst.open_table(EXPIRY).map_err(db_err)?;
    for (at, job) in expiry.iter().filter(|r| kept.contains(&r.1)) {
        t.insert((*at, job.as_str()), ()).map_err(db_err)?;
    }
    drop(t);
    // Tables not tied to one job: every readable row.
    let keys = bytes_rows(&rtxn, API_KEYS);
    let mut t = dst.open_table(API_KEYS).map_err(db_err)?;
    for (id, v) in &keys {
        t.insert(id.as_str(), v.as_slice()).map_err(db_err)?;
        out.keys += 1;
    }
    drop(t);
    let notes = each(|v| {
        let t = rtxn.open_table(NOTIFY)?;
        for item in t.iter()? {
            let (k, val) = item?;
            let (owner, seq) = k.value();
            v.push((owner.to_owned(), seq, val.value().to_vec()));
        }
        Ok(())
    });
    let mut t = dst.open_table(NOTIFY).map_err(db_err)?;
    for (owner, seq, v) in &notes {
        t.insert((owner.as_str(), *seq), v.as_slice())
            .map_err(db_err)?;
    }
    drop(t);
    let heads = each(|v| {
        let t = rtxn.open_table(NOTIFY_HEAD)?;
        for item in t.iter()? {
            let (k, s) = item?;
            v.push((k.value().to_owned(), s.value()));
        }
        Ok(())
    });
    // An owner's head is the last notification seq given out: never below a kept
    // notification, even when the heads table did not read back (a head that went
    // back would hand out seqs its clients already have).
    let mut head: HashMap<&str, u64> = HashMap::new();
    for (owner, seq) in heads
        .iter()
        .map(|(o, s)| (o, *s))
        .chain(notes.iter().map(|(o, s, _)| (o, *s)))
    {
        let h = head.entry(owner.as_str()).or_default();
        *h = (*h).max(seq);
    }
    let mut t = dst.open_table(NOTIFY_HEAD).map_err(db_err)?;
    for (owner, seq) in head {
        t.insert(owner, seq).map_err(db_err)?;
    }
    Ok(())
}

fn bytes_rows(
    rtxn: &ReadTransaction,
    def: redb::TableDefinition<'static, &'static str, &'static [u8]>,
) -> Vec<(String, Vec<u8>)> {
    each(|v| {
        let t = rtxn.open_table(def)?;
        for item in t.iter()? {
            let (k, val) = item?;
            v.push((k.value().to_owned(), val.value().to_vec()));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobwire_proto::Timestamp;

    /// `src` salvaged into a fresh store in `dir`.
    fn salvaged(src: &Database, dir: &std::path::Path) -> Database {
        let dst = Database::create(dir.join("dst.redb")).expect("dst");
        let txn = dst.begin_write().expect("txn");
        salvage(src, &txn, &mut Repaired::default()).expect("salvage");
        txn.commit().expect("commit");
        dst
    }

    /// A store whose epoch counter says `counter` and whose one job was last
    /// written in epoch `job_epoch`, salvaged into a fresh one: the epoch it keeps.
    fn salvaged_epoch(counter: Option<u64>, job_epoch: u64) -> Option<u64> {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Database::create(dir.path().join("src.redb")).expect("src");
        let txn = src.begin_write().expect("txn");
        {
            let mut job = Job::new("j".into(), None, Timestamp::now());
            job.epochs = vec![[1, 1], [job_epoch, 1]];
            let mut jobs = txn.open_table(JOBS).expect("jobs");
            let bytes = serde_json::to_vec(&job).expect("json");
            jobs.insert("j", bytes.as_slice()).expect("insert");
            let mut meta = txn.open_table(META).expect("meta");
            if let Some(c) = counter {
                meta.insert(EPOCH_KEY, c).expect("insert");
            }
        }
        txn.commit().expect("commit");
        let read = salvaged(&src, dir.path()).begin_read().expect("read");
        let meta = read.open_table(META).ok()?;
        let epoch = meta.get(EPOCH_KEY).expect("get").map(|v| v.value());
        epoch
    }

    /// A store with notifications `notes` of owner `u` and head `head`, salvaged:
    /// the head it keeps.
    fn salvaged_head(notes: &[u64], head: Option<u64>) -> Option<u64> {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Database::create(dir.path().join("src.redb")).expect("src");
        let txn = src.begin_write().expect("txn");
        {
            let mut t = txn.open_table(NOTIFY).expect("notify");
            for &seq in notes {
                t.insert(("u", seq), &b"{}"[..]).expect("insert");
            }
            let mut t = txn.open_table(NOTIFY_HEAD).expect("heads");
            if let Some(h) = head {
                t.insert("u", h).expect("insert");
            }
        }
        txn.commit().expect("commit");
        let read = salvaged(&src, dir.path()).begin_read().expect("read");
        let heads = read.open_table(NOTIFY_HEAD).ok()?;
        let h = heads.get("u").expect("get").map(|v| v.value());
        h
    }

    #[test]
    fn a_salvage_never_moves_a_notification_head_below_a_kept_notification() {
        assert_eq!(salvaged_head(&[3, 4], Some(9)), Some(9), "the head");
        assert_eq!(salvaged_head(&[3, 4], None), Some(4), "no readable head");
        assert_eq!(
            salvaged_head(&[3, 7], Some(5)),
            Some(7),
            "a head behind its rows"
        );
        assert_eq!(salvaged_head(&[], None), None);
    }

    #[test]
    fn a_salvage_keeps_the_highest_epoch_the_damaged_store_shows() {
        assert_eq!(salvaged_epoch(Some(7), 5), Some(7), "the counter");
        assert_eq!(salvaged_epoch(Some(2), 5), Some(5), "a job's boundary");
        assert_eq!(salvaged_epoch(None, 4), Some(4), "no readable counter");
    }
}
