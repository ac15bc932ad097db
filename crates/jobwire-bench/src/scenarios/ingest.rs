//! `ingest`: C closed-loop publishers (each sends its next request when the previous
//! one is acknowledged, i.e. durable) for D seconds; acknowledged events/s and
//! request latency.

use crate::procfs::{round, Window};
use crate::publish::{closed_loop, create_jobs, PubStats};
use crate::report::{hist_json, hist_line, Report};
use crate::{note, secs, Ctx};
use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Args, Debug)]
pub(crate) struct IngestArgs {
    /// Publishers (requests in flight).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events per request (1 = single-event publishes, at most 1000).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Jobs published to (publisher w uses job w % jobs; 0 = one job per publisher).
    #[arg(long, default_value_t = 0)]
    jobs: usize,
    /// Seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
}

pub(crate) async fn run(ctx: &Arc<Ctx>, a: IngestArgs) -> Result<Report> {
    const S: &str = "ingest";
    let duration = secs("duration", a.duration)?;
    if a.concurrency == 0 || a.concurrency > 10_000 {
        bail!("--concurrency must be 1..=10,000");
    }
    if a.batch == 0 || a.batch > 1000 {
        bail!("--batch must be 1..=1000");
    }
    let jobs = if a.jobs == 0 {
        a.concurrency
    } else {
        a.jobs.min(100_000)
    };
    let ids = Arc::new(ctx.job_ids(S, jobs));
    note(S, format!("creating {jobs} jobs"));
    create_jobs(&ctx.http, &ids, 64).await?;
    note(
        S,
        format!(
            "{} publishers, {} events per request, for {:.0} s",
            a.concurrency,
            a.batch,
            duration.as_secs_f64()
        ),
    );
    let stats = PubStats::new(jobs)?;
    let window = Window::start(&ctx.pids)?;
    let took = closed_loop(
        ctx.http.clone(),
        ids,
        a.concurrency,
        a.batch,
        duration,
        stats.clone(),
    )
    .await?;
    let events = stats.events_ok.load(Ordering::Relaxed);
    let requests = stats.requests_ok.load(Ordering::Relaxed);
    let cost = window.end(events, "events")?;
    let secs = took.as_secs_f64().max(1e-9);
    let lat = stats.latency();
    let errors = stats.errors.total();
    let mut r = Report::new(
        S,
        json!({
            "common": ctx.params(),
            "concurrency": a.concurrency, "batch": a.batch, "jobs": jobs, "duration_s": a.duration,
        }),
    );
    r.set("events", events);
    r.set("requests", requests);
    r.set("errors", stats.errors.json());
    r.set("seconds", round(secs, 3));
    r.set("events_per_s", round(events as f64 / secs, 1));
    r.set("requests_per_s", round(requests as f64 / secs, 1));
    r.set("request_latency", hist_json(&lat));
    r.line(format!(
        "ingest          {:.0} durable events/s ({:.0} requests/s of {} events), {events} events in {secs:.2} s",
        events as f64 / secs,
        requests as f64 / secs,
        a.batch
    ));
    r.line(format!(
        "errors          {errors}{}",
        if errors > 0 {
            format!(" ({})", stats.errors.line())
        } else {
            String::new()
        }
    ));
    r.line(format!("request latency {}", hist_line(&lat)));
    r.ok = errors == 0;
    r.cost = Some(cost);
    Ok(r)
}
