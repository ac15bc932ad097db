//! Process-wide counters, gauges and the publish-latency histogram, rendered as
//! Prometheus text. Plain atomics: updating a metric is one relaxed add.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1)
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram of durations.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Every metric jobwire exports. Owned by the hub, shared (`Arc`) with transports.
#[derive(Default)]
pub struct Metrics {
    /// Open WebSocket and SSE connections.
    pub connections: Gauge,
    /// Job subscriptions across all connections.
    pub subscriptions: Gauge,
    /// Bytes in the embedded engine's replay tail (set after each commit).
    pub replay_cache_bytes: Gauge,
    /// Events acknowledged (durable) by the engine.
    pub events_published: Counter,
    /// Event frames written to clients.
    pub events_delivered: Counter,
    /// Progress frames dropped because a newer one superseded them in a full queue.
    pub coalesced: Counter,
    /// Sessions closed because their queue overflowed.
    pub slow_consumers: Counter,
    /// Requests refused with a client error, by any transport.
    pub client_errors: Counter,
    /// Connections refused by a connection limit.
    pub limit_rejections: Counter,
    /// Publish requests refused by the publish rate limit.
    pub rate_limited: Counter,
    /// Connections closed because they did not send a complete request head in time.
    pub handshake_timeouts: Counter,
    /// WebSocket sessions ended because a write made no progress within the deadline.
    pub write_timeouts: Counter,
    /// Requests refused because their body did not arrive within the body timeout.
    pub body_timeouts: Counter,
    /// Messages taken from the Redis bridge and published.
    pub ingested: Counter,
    /// Redis bridge messages that could not be decoded or were refused.
    pub ingest_rejected: Counter,
    /// Heartbeats accepted.
    pub heartbeats: Counter,
    /// Checkpoints of the embedded store (its journal started over).
    pub checkpoints: Counter,
    /// Publish call latency, including the durable commit.
    pub publish_latency: Histogram,
    /// How long the embedded store's writer spends making one group durable as a
    /// journal record (append + `fdatasync`).
    pub flush_duration: Histogram,
    /// How long one checkpoint (a commit of the open transaction) holds the writer.
    pub checkpoint_duration: Histogram,
}

impl Metrics {
    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let gauges = [
            (
                "jobwire_connections",
                "Open WebSocket and SSE connections.",
                self.connections.get(),
            ),
            (
                "jobwire_subscriptions",
                "Job subscriptions across all connections.",
                self.subscriptions.get(),
            ),
            (
                "jobwire_replay_cache_bytes",
                "Bytes held by the replay tail (embedded engine), after the last commit.",
                self.replay_cache_bytes.get(),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let counters = [
            (
                "jobwire_events_published_total",
                "Events acknowledged (durable).",
                &self.events_published,
            ),
            (
                "jobwire_store_checkpoints_total",
                "Checkpoints of the embedded store (each commits what its journal held).",
                &self.checkpoints,
            ),
            (
                "jobwire_events_delivered_total",
                "Event frames written to clients.",
                &self.events_delivered,
            ),
            (
                "jobwire_events_coalesced_total",
                "Progress frames superseded in a full client queue.",
                &self.coalesced,
            ),
            (
                "jobwire_slow_consumer_closes_total",
                "Connections closed because they read too slowly.",
                &self.slow_consumers,
            ),
            (
                "jobwire_client_errors_total",
                "Requests and frames refused with a client error.",
                &self.client_errors,
            ),
            (
                "jobwire_limit_rejections_total",
                "Connections refused by a connection limit.",
                &self.limit_rejections,
            ),
            (
                "jobwire_rate_limited_total",
                "Publish requests refused by the publish rate limit.",
                &self.rate_limited,
            ),
            (
                "jobwire_handshake_timeouts_total",
                "Connections closed for not sending a complete request head in time.",
                &self.handshake_timeouts,
            ),
            (
                "jobwire_write_timeouts_total",
                "WebSocket sessions ended because the peer stopped reading (write deadline).",
                &self.write_timeouts,
            ),
            (
                "jobwire_ingested_total",
                "Messages from the Redis bridge published as events.",
                &self.ingested,
            ),
            (
                "jobwire_ingest_rejected_total",
                "Redis bridge messages that could not be decoded or were refused.",
                &self.ingest_rejected,
            ),
            (
                "jobwire_body_timeouts_total",
                "Requests refused because their body did not arrive in time.",
                &self.body_timeouts,
            ),
            (
                "jobwire_heartbeats_total",
                "Worker heartbeats accepted (not stored as events).",
                &self.heartbeats,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        self.publish_latency.render(
            "jobwire_publish_duration_seconds",
            "Publish latency including the durable commit.",
            &mut out,
        );
        self.flush_duration.render(
            "jobwire_store_flush_duration_seconds",
            "Time to make one group durable as a journal record (embedded engine).",
            &mut out,
        );
        self.checkpoint_duration.render(
            "jobwire_store_checkpoint_duration_seconds",
            "Time one checkpoint holds the writer (embedded engine).",
            &mut out,
        );
        out
    }
}
