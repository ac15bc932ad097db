//! The durable append path: `Hub::publish` on the embedded engine (redb, one writer
//! thread, group commit with one fsync per group) in a temporary directory. Every
//! iteration waits for durability, so these figures are bounded by the disk's
//! fsync latency; concurrent publishes share commits.

mod common;

use divan::counter::ItemsCount;
use divan::Bencher;
use jobwire_core::Access;
use jobwire_core::CreateJob;
use jobwire_proto::EventInput;
use serde_json::json;

fn main() {
    divan::main();
}

fn store(jobs: usize) -> common::Embedded {
    let store = common::embedded();
    let (rt, hub) = (&store.rt, &store.hub);
    rt.block_on(async {
        for j in 0..jobs {
            hub.create_job(
                &Access::open(),
                CreateJob {
                    id: Some(format!("job-{j}")),
                    ..CreateJob::default()
                },
            )
            .await
            .expect("creating a job");
        }
    });
    store
}

fn events(n: usize) -> Vec<EventInput> {
    (0..n)
        .map(|i| {
            EventInput::from_value(json!({"type": "custom", "name": "bench", "data": {"t": i}}))
                .expect("a valid event")
        })
        .collect()
}

/// One publish of `batch` events to one job, waited for (sequential).
#[divan::bench(args = [1, 10, 100, 1000], sample_count = 30)]
fn publish_batch(bencher: Bencher, batch: usize) {
    let s = store(1);
    let input = events(batch);
    bencher.counter(ItemsCount::new(batch)).bench_local(|| {
        s.rt.block_on(s.hub.publish(&Access::open(), "job-0", input.clone()))
            .expect("publish")
    });
}

/// `concurrency` single-event publishes to as many jobs at once: group commit.
#[divan::bench(args = [1, 16, 64], sample_count = 30)]
fn publish_concurrent(bencher: Bencher, concurrency: usize) {
    let s = store(concurrency);
    let names: Vec<String> = (0..concurrency).map(|j| format!("job-{j}")).collect();
    let input = events(1);
    let open = Access::open();
    bencher
        .counter(ItemsCount::new(concurrency))
        .bench_local(|| {
            s.rt.block_on(async {
                let all = names.iter().map(|n| s.hub.publish(&open, n, input.clone()));
                for r in futures_util::future::join_all(all).await {
                    r.expect("publish");
                }
            })
        });
}
