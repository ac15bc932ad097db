//! Worker heartbeats: `Hub::heartbeat` on the embedded engine over 10,000 running jobs
//! with a `heartbeat_timeout`. A heartbeat is not stored: it reads the job's snapshot
//! (the replay tail's copy in memory), checks it, and moves the job's deadline. Issue
//! 13's target is ≥ 50,000 heartbeats/s; the figure is in docs/perf.md.

mod common;

use divan::counter::ItemsCount;
use divan::Bencher;
use jobwire_core::Access;
use jobwire_core::CreateJob;
use jobwire_proto::{EventInput, JobOptions};
use serde_json::json;

const JOBS: usize = 10_000;
/// Heartbeats per iteration (run concurrently).
const BATCH: usize = 64;

fn main() {
    divan::main();
}

struct Fixture {
    store: common::Embedded,
    ids: Vec<String>,
}

fn fixture() -> Fixture {
    let store = common::embedded();
    let (rt, hub) = (&store.rt, &store.hub);
    let ids: Vec<String> = (0..JOBS).map(|j| format!("job-{j}")).collect();
    rt.block_on(async {
        let start = EventInput::from_value(json!({"type": "progress", "progress": 1}))
            .expect("a valid event");
        let creates = ids.iter().map(|id| {
            let hub = hub.clone();
            let start = start.clone();
            async move {
                let req = CreateJob {
                    id: Some(id.clone()),
                    options: JobOptions {
                        heartbeat_timeout: Some(300.0),
                        ..JobOptions::default()
                    },
                    ..CreateJob::default()
                };
                hub.create_job(&Access::open(), req)
                    .await
                    .expect("creating a job");
                hub.publish(&Access::open(), id, vec![start])
                    .await
                    .expect("starting a job");
            }
        });
        futures_util::future::join_all(creates).await;
    });
    Fixture { store, ids }
}

/// 64 concurrent heartbeats per iteration, round-robin over 10,000 jobs.
#[divan::bench(sample_count = 200)]
fn heartbeats(b: Bencher) {
    let f = fixture();
    let access = Access::open();
    let mut next = 0usize;
    b.counter(ItemsCount::new(BATCH)).bench_local(|| {
        let ids: Vec<&str> = (0..BATCH)
            .map(|i| f.ids[(next + i) % JOBS].as_str())
            .collect();
        next = (next + BATCH) % JOBS;
        f.store.rt.block_on(async {
            let beats = ids
                .iter()
                .map(|id| f.store.hub.heartbeat(&access, id, None, None, None));
            for r in futures_util::future::join_all(beats).await {
                r.expect("heartbeat");
            }
        });
    });
}
