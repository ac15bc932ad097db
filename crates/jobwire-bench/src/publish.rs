//! The publishing side: create jobs, publish bench events open-loop at a fixed rate
//! (fanout, many-jobs) or closed-loop as fast as acknowledged (ingest).
//!
//! Every bench event is `{"type":"custom","name":"bench","data":{"t":<unix ns>}}`:
//! custom events are never coalesced, and `t` (taken just before the request is
//! sent) lets watchers measure publish -> receive latency. On nchan (`--peer
//! nchan`) the open-loop publisher sends one such event per request, with a seq the
//! bench counts per job (see `peer`).

use crate::net::Http;
use crate::peer::{nchan_publish, Peer};
use crate::report::{histogram, record, Errors};
use anyhow::{bail, Context, Result};
use futures_util::{stream, TryStreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// Unix time in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The body of one publish: one event, or an array of `batch` events.
pub(crate) fn bench_body(batch: usize) -> String {
    let one = format!(
        r#"{{"type":"custom","name":"bench","data":{{"t":{}}}}}"#,
        now_ns()
    );
    if batch <= 1 {
        return one;
    }
    let mut s = String::with_capacity(batch * (one.len() + 1) + 2);
    s.push('[');
    for i in 0..batch {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&one);
    }
    s.push(']');
    s
}

/// Creates the jobs (an existing job with the same id is reused).
pub(crate) async fn create_jobs(http: &Http, ids: &[String], concurrency: usize) -> Result<()> {
    let url = format!("{}/v1/jobs", http.base);
    stream::iter(ids.iter().map(Ok))
        .try_for_each_concurrent(concurrency.max(1), |id: &String| {
            let url = url.clone();
            async move {
                let r = http
                    .client()
                    .post(url)
                    .body(json!({ "id": id }).to_string())
                    .send()
                    .await
                    .with_context(|| format!("creating job {id}"))?;
                let st = r.status();
                if st.as_u16() != 200 && st.as_u16() != 201 {
                    let body = r.text().await.unwrap_or_default();
                    bail!("creating job {id}: HTTP {st}: {body}");
                }
                Ok(())
            }
        })
        .await
}

/// Publishes one body to `job`; returns the highest seq acknowledged.
pub(crate) async fn post_events(
    client: &reqwest::Client,
    base: &str,
    job: &str,
    body: String,
) -> Result<u64> {
    let r = client
        .post(format!("{base}/v1/jobs/{job}/events"))
        .body(body)
        .send()
        .await
        .context("publish request")?;
    let st = r.status();
    let bytes = r.bytes().await.context("publish response")?;
    if !st.is_success() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = v["error"]["code"].as_str().unwrap_or("?");
        bail!("publish HTTP {} {code}", st.as_u16());
    }
    let v: Value = serde_json::from_slice(&bytes).context("publish response JSON")?;
    v["seqs"]
        .as_array()
        .and_then(|a| a.iter().filter_map(Value::as_u64).max())
        .context("publish response without seqs")
}

/// Publish totals shared by the publishing tasks.
pub(crate) struct PubStats {
    /// Highest acknowledged seq per job.
    pub(crate) max_seq: Vec<AtomicU64>,
    /// nchan only: the last seq handed out per job.
    next_seq: Vec<AtomicU64>,
    pub(crate) events_ok: AtomicU64,
    pub(crate) requests_ok: AtomicU64,
    pub(crate) errors: Errors,
    /// Request -> durable acknowledgement, µs.
    pub(crate) latency: Mutex<Histogram<u64>>,
}

impl PubStats {
    pub(crate) fn new(jobs: usize) -> Result<Arc<PubStats>> {
        Ok(Arc::new(PubStats {
            max_seq: (0..jobs).map(|_| AtomicU64::new(0)).collect(),
            next_seq: (0..jobs).map(|_| AtomicU64::new(0)).collect(),
            events_ok: AtomicU64::new(0),
            requests_ok: AtomicU64::new(0),
            errors: Errors::default(),
            latency: Mutex::new(histogram()?),
        }))
    }

    fn ok(&self, job: usize, seq: u64, events: usize, took: Duration) {
        self.max_seq[job].fetch_max(seq, Ordering::Relaxed);
        self.events_ok.fetch_add(events as u64, Ordering::Relaxed);
        self.requests_ok.fetch_add(1, Ordering::Relaxed);
        let mut h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        record(&mut h, took.as_micros() as u64);
    }

    pub(crate) fn latency(&self) -> Histogram<u64> {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A fixed-rate (open-loop) publishing plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Events per second, all jobs together.
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    /// Events per request.
    pub(crate) batch: usize,
    /// Requests in flight at most; past that the publisher waits (a "stall").
    pub(crate) max_inflight: usize,
    /// The server published to (nchan: `batch` must be 1).
    pub(crate) peer: Peer,
}

/// What the open-loop publisher did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenLoop {
    pub(crate) requests: u64,
    /// Requests that had to wait for an in-flight slot (the rate was not held).
    pub(crate) stalls: u64,
    /// From the first request to the last acknowledgement.
    pub(crate) elapsed: Duration,
}

/// Sends `rate * duration / batch` requests, request `i` at `start + i / (rate /
/// batch)`, round-robin over `jobs`, without waiting for earlier ones to be
/// acknowledged; then waits for every acknowledgement.
pub(crate) async fn open_loop(
    http: Arc<Http>,
    jobs: Arc<Vec<String>>,
    plan: Plan,
    stats: Arc<PubStats>,
) -> Result<OpenLoop> {
    if jobs.is_empty() || plan.rate <= 0.0 || plan.batch == 0 {
        bail!("nothing to publish");
    }
    if plan.peer == Peer::Nchan && plan.batch != 1 {
        bail!("nchan takes one event per publish (--batch 1)");
    }
    let per_request = Duration::from_secs_f64(plan.batch as f64 / plan.rate);
    let requests = ((plan.rate * plan.duration.as_secs_f64()) / plan.batch as f64).ceil() as u64;
    let inflight = plan.max_inflight.clamp(1, Semaphore::MAX_PERMITS);
    let sem = Arc::new(Semaphore::new(inflight));
    let start = tokio::time::Instant::now();
    let mut stalls = 0;
    for i in 0..requests {
        let due = start + per_request.mul_f64(i as f64);
        if due > tokio::time::Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let permit = match sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                stalls += 1;
                sem.clone().acquire_owned().await?
            }
        };
        let job = (i as usize) % jobs.len();
        let (http, jobs, stats) = (http.clone(), jobs.clone(), stats.clone());
        let (batch, peer) = (plan.batch, plan.peer);
        tokio::spawn(async move {
            let _permit = permit;
            let t0 = Instant::now();
            let sent = match peer {
                Peer::Jobwire => {
                    let body = bench_body(batch);
                    post_events(http.client(), &http.base, &jobs[job], body).await
                }
                Peer::Nchan => {
                    let seq = stats.next_seq[job].fetch_add(1, Ordering::Relaxed) + 1;
                    nchan_publish(http.client(), &http.base, &jobs[job], seq).await
                }
            };
            match sent {
                Ok(seq) => stats.ok(job, seq, batch, t0.elapsed()),
                Err(e) => stats.errors.add_err(&e),
            }
        });
    }
    // Every request has a 30 s timeout, so this wait is bounded.
    let _all = sem.acquire_many(inflight as u32).await?;
    Ok(OpenLoop {
        requests,
        stalls,
        elapsed: start.elapsed(),
    })
}

/// `concurrency` publishers, each sending its next request when the previous one is
/// acknowledged, for `duration`. Publisher `w` publishes to `jobs[w % jobs.len()]`.
pub(crate) async fn closed_loop(
    http: Arc<Http>,
    jobs: Arc<Vec<String>>,
    concurrency: usize,
    batch: usize,
    duration: Duration,
    stats: Arc<PubStats>,
) -> Result<Duration> {
    if jobs.is_empty() || concurrency == 0 || batch == 0 {
        bail!("nothing to publish");
    }
    let start = Instant::now();
    let end = start + duration;
    let workers = (0..concurrency).map(|w| {
        let (http, jobs, stats) = (http.clone(), jobs.clone(), stats.clone());
        tokio::spawn(async move {
            let job = w % jobs.len();
            let client = http.client_for(w);
            while Instant::now() < end {
                let t0 = Instant::now();
                match post_events(client, &http.base, &jobs[job], bench_body(batch)).await {
                    Ok(seq) => stats.ok(job, seq, batch, t0.elapsed()),
                    Err(e) => {
                        stats.errors.add_err(&e);
                        // Do not spin on a refusing server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        })
    });
    let handles: Vec<_> = workers.collect();
    for h in handles {
        h.await?;
    }
    Ok(start.elapsed())
}

/// Publishes `events` bench events to each job (in requests of `batch`), with
/// `concurrency` requests in flight. Returns the last seq of each job.
pub(crate) async fn fill(
    http: &Http,
    jobs: &[String],
    events: usize,
    batch: usize,
    concurrency: usize,
) -> Result<Vec<u64>> {
    let batch = batch.clamp(1, 1000);
    let last: Vec<AtomicU64> = jobs.iter().map(|_| AtomicU64::new(0)).collect();
    let mut work = Vec::new();
    for (j, _) in jobs.iter().enumerate() {
        let mut left = events;
        while left > 0 {
            let n = left.min(batch);
            work.push((j, n));
            left -= n;
        }
    }
    let last_ref = &last;
    stream::iter(work.into_iter().map(Ok))
        .try_for_each_concurrent(concurrency.max(1), |(j, n)| async move {
            let seq = post_events(http.client(), &http.base, &jobs[j], bench_body(n)).await?;
            last_ref[j].fetch_max(seq, Ordering::Relaxed);
            Ok::<_, anyhow::Error>(())
        })
        .await?;
    Ok(last.iter().map(|a| a.load(Ordering::Relaxed)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_json() {
        let one: Value = serde_json::from_str(&bench_body(1)).unwrap_or(Value::Null);
        assert_eq!(one["type"], "custom");
        assert!(one["data"]["t"].as_u64().is_some_and(|t| t > 0));
        let many: Value = serde_json::from_str(&bench_body(3)).unwrap_or(Value::Null);
        assert_eq!(many.as_array().map(Vec::len), Some(3));
    }
}
