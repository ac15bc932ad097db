//! What one embedded-store checkpoint costs in redb for three table layouts, the
//! measurement behind docs/perf-experiments.md "What a checkpoint writes": 1,000 events over
//! 1,000 different jobs (many-jobs at 2,000/s between two checkpoints) on a store
//! of 10,000 jobs.
//!
//! `cargo run --release -p jobwire-core --example checkpoint_layouts -- MODE [DIR]`
//! with MODE one of
//! - `job_seq`: today's layout, a snapshot per job and events keyed (job, seq);
//! - `arrival`: snapshots as today, events keyed by arrival (an append-only log);
//! - `no_snap`: events by arrival and no snapshot writes (a lower bound: snapshots
//!   written lazily and rebuilt from the log after a crash);
//! - `nd`: today's layout, but only every tenth commit durable (the others
//!   `Durability::None`: no `fdatasync`, the journal covers them);
//! - `lazy_nd`: as `nd`, and the nine non-durable commits write events only: the
//!   snapshots of the jobs they touched wait for the tenth (durable) commit.

use redb::{Database, Durability, TableDefinition};
use std::collections::HashSet;
use std::error::Error;
use std::time::Instant;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const JOBS_N: usize = 10_000;
const PER_CHECKPOINT: usize = 1_000;
const ROUNDS: usize = 40;

/// xorshift: a fixed, dependency-free sequence of job picks.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

struct Store {
    db: Database,
    mode: String,
    ids: Vec<String>,
    seqs: Vec<u64>,
    arrival: u64,
    /// Jobs whose snapshot a `lazy_nd` commit left for the next durable one.
    pending: HashSet<usize>,
    round: usize,
}

impl Store {
    /// Writes `picks` events (and snapshots, unless `no_snap`) in one transaction;
    /// returns the milliseconds spent inserting and committing.
    fn checkpoint(
        &mut self,
        picks: &[usize],
        snap: &[u8],
        ev: &[u8],
    ) -> Result<(f64, f64), Box<dyn Error>> {
        let t0 = Instant::now();
        let mut txn = self.db.begin_write()?;
        self.round += 1;
        let durable = self.round % 10 == 0 || !self.mode.ends_with("nd");
        if !durable {
            txn.set_durability(Durability::None);
        }
        {
            let mut jobs = txn.open_table(JOBS)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut log = txn.open_table(LOG)?;
            for &i in picks {
                self.seqs[i] += 1;
                let id = self.ids[i].as_str();
                if self.mode == "lazy_nd" && !durable {
                    self.pending.insert(i);
                } else if self.mode != "no_snap" {
                    jobs.insert(id, snap)?;
                }
                if self.mode == "job_seq" || self.mode.ends_with("nd") {
                    events.insert((id, self.seqs[i]), ev)?;
                } else {
                    self.arrival += 1;
                    log.insert(self.arrival, ev)?;
                }
            }
            if durable {
                for i in self.pending.drain() {
                    jobs.insert(self.ids[i].as_str(), snap)?;
                }
            }
        }
        let inserted = t0.elapsed();
        let t1 = Instant::now();
        txn.commit()?;
        Ok((
            inserted.as_secs_f64() * 1e3,
            t1.elapsed().as_secs_f64() * 1e3,
        ))
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "job_seq".into());
    if !["job_seq", "arrival", "no_snap", "nd", "lazy_nd"].contains(&mode.as_str()) {
        return Err(
            format!("unknown mode {mode}: job_seq, arrival, no_snap, nd or lazy_nd").into(),
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("checkpoint-layouts")
        .tempdir_in(args.next().unwrap_or_else(|| "/var/tmp".into()))?;
    let db = Database::create(dir.path().join("store.redb"))?;
    let (snap, ev) = (vec![b's'; 600], vec![b'e'; 200]);
    let ids = (0..JOBS_N)
        .map(|i| format!("bench-1796319235-job-{i:05}"))
        .collect();
    let mut store = Store {
        db,
        mode,
        ids,
        seqs: vec![0; JOBS_N],
        arrival: 0,
        pending: HashSet::new(),
        round: 9,
    };
    // The store as many-jobs leaves it: every job with a snapshot and 4 events.
    let all: Vec<usize> = (0..JOBS_N).flat_map(|i| [i; 4]).collect();
    store.checkpoint(&all, &snap, &ev)?;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut inserts, mut commits, mut worst) = (0.0, 0.0, 0f64);
    for _ in 0..ROUNDS {
        let picks: Vec<usize> = (0..PER_CHECKPOINT)
            .map(|_| (next(&mut rng) % JOBS_N as u64) as usize)
            .collect();
        let (i, c) = store.checkpoint(&picks, &snap, &ev)?;
        // A `lazy_nd` durable round inserts the pending snapshots in one go: part of
        // its stall, so the worst counts inserts and commit.
        (inserts, commits, worst) = (inserts + i, commits + c, worst.max(i + c));
    }
    let n = ROUNDS as f64;
    println!(
        "{}: inserts {:.2} ms + commit {:.2} ms per checkpoint (mean of {ROUNDS}), worst inserts + commit {worst:.2} ms",
        store.mode,
        inserts / n,
        commits / n
    );
    Ok(())
}
