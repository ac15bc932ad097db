//! Fan-out cost without sockets: `Registry::broadcast` of committed events into N
//! watchers' `Outbox`es, then each outbox drained (what a session's flush does
//! before it writes to its socket). Throughput is in deliveries (events x watchers).

use bytes::Bytes;
use divan::counter::ItemsCount;
use divan::Bencher;
use jobwire_core::metrics::Metrics;
use jobwire_core::registry::Registry;
use jobwire_core::session::{EventKind, Outbox, Published};
use std::sync::Arc;

fn main() {
    divan::main();
}

/// Events broadcast per iteration (below the default outbox capacity of 1024).
const EVENTS: usize = 64;

const FRAME: &[u8] = br#"{"type":"custom","name":"bench","data":{"t":1732350000123456789},"job_id":"job","seq":1,"timestamp":"2026-11-23T09:22:36.757Z","status":"pending"}"#;

fn event(job: &str) -> Published {
    Published {
        job_id: Arc::from(job),
        seq: 1,
        kind: EventKind::Other,
        bytes: Bytes::from_static(FRAME),
        project: None,
        encodings: Default::default(),
    }
}

/// One job watched by `watchers` outboxes.
#[divan::bench(args = [1, 10, 100, 1000, 10_000])]
fn one_job(bencher: Bencher, watchers: usize) {
    let registry = Registry::new(Arc::new(Metrics::default()));
    let outboxes: Vec<Arc<Outbox>> = (0..watchers).map(|_| Outbox::new(1024)).collect();
    for o in &outboxes {
        registry.add("job", o);
    }
    let ev = event("job");
    let mut buf = Vec::with_capacity(EVENTS);
    bencher
        .counter(ItemsCount::new(EVENTS * watchers))
        .bench_local(|| {
            for _ in 0..EVENTS {
                registry.broadcast(divan::black_box(&ev));
            }
            for o in &outboxes {
                o.drain(&mut buf);
            }
        });
}

/// `jobs` jobs with one watcher each, one event to every job (the many-jobs shape).
#[divan::bench(args = [100, 10_000])]
fn many_jobs(bencher: Bencher, jobs: usize) {
    let registry = Registry::new(Arc::new(Metrics::default()));
    let names: Vec<String> = (0..jobs).map(|i| format!("job-{i}")).collect();
    let outboxes: Vec<Arc<Outbox>> = (0..jobs).map(|_| Outbox::new(1024)).collect();
    for (name, o) in names.iter().zip(&outboxes) {
        registry.add(name, o);
    }
    let events: Vec<Published> = names.iter().map(|n| event(n)).collect();
    let mut buf = Vec::new();
    bencher.counter(ItemsCount::new(jobs)).bench_local(|| {
        for ev in &events {
            registry.broadcast(divan::black_box(ev));
        }
        for o in &outboxes {
            o.drain(&mut buf);
        }
    });
}
