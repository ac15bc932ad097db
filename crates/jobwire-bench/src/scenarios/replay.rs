//! `replay`: publish E events to each of J jobs, then W clients connect at once with
//! `since=S` and read until they have the job's last seq. Reports the time until
//! every client is caught up and the replayed events/s.

use crate::procfs::{round, Window};
use crate::publish::{create_jobs, fill};
use crate::report::{hist_json, hist_line, histogram, record, Errors, Report};
use crate::watch::{self, Endpoint};
use crate::{note, secs, Ctx};
use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// Jobs.
    #[arg(long, default_value_t = 10)]
    jobs: usize,
    /// Events published to each job before the clients connect.
    #[arg(long, default_value_t = 1000)]
    events: usize,
    /// Clients (client i replays job i % jobs).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// The `since` the clients send (the last seq they have; 0 = everything).
    #[arg(long, default_value_t = 0)]
    since: u64,
    /// Events per request while filling.
    #[arg(long, default_value_t = 1000)]
    fill_batch: usize,
    /// Fill requests in flight.
    #[arg(long, default_value_t = 8)]
    fill_concurrency: usize,
    /// Seconds the replay phase may take in all.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Seconds to wait between filling and replaying.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Endpoint the clients use.
    #[arg(long, value_enum, default_value_t = Endpoint::Single)]
    endpoint: Endpoint,
}

struct Done {
    job: usize,
    events: u64,
    gaps: u64,
    snap_seq: u64,
    done_us: u64,
}

pub(crate) async fn run(ctx: &Arc<Ctx>, a: ReplayArgs) -> Result<Report> {
    const S: &str = "replay";
    let timeout = secs("timeout", a.timeout)?;
    let settle = secs("settle", a.settle)?;
    if a.jobs == 0 || a.jobs > 100_000 || a.clients > 1_000_000 || a.events > 10_000_000 {
        bail!(
            "--jobs must be 1..=100,000, --clients at most 1,000,000, --events at most 10,000,000"
        );
    }
    let ids = Arc::new(ctx.job_ids(S, a.jobs));
    note(
        S,
        format!(
            "creating {} jobs and publishing {} events to each",
            a.jobs, a.events
        ),
    );
    create_jobs(&ctx.http, &ids, 64).await?;
    let fill_start = Instant::now();
    let last = Arc::new(fill(&ctx.http, &ids, a.events, a.fill_batch, a.fill_concurrency).await?);
    let fill_s = fill_start.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    note(
        S,
        format!("{} clients replaying since={}", a.clients, a.since),
    );

    let window = Window::start(&ctx.pids)?;
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let sem = Arc::new(Semaphore::new(ctx.connect_concurrency));
    let errors = Arc::new(Errors::default());
    let mut handles = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        let job = i % a.jobs;
        let (ctx, ids, sem, errors) = (ctx.clone(), ids.clone(), sem.clone(), errors.clone());
        let (since, endpoint) = (a.since, a.endpoint);
        handles.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok();
            let src = ctx.sources.next();
            let opened = tokio::time::timeout(
                ctx.connect_timeout,
                watch::open(
                    &ctx.watch,
                    src,
                    &ids[job],
                    endpoint,
                    Some(since),
                    ctx.ws_cfg,
                    ctx.peer,
                ),
            )
            .await;
            drop(permit);
            let conn = match opened {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    errors.add_err(&e);
                    return None;
                }
                Err(_) => {
                    errors.add("connect timeout");
                    return None;
                }
            };
            match tokio::time::timeout_at(deadline, watch::catch_up(conn, since)).await {
                Ok(Ok(c)) => Some(Done {
                    job,
                    events: c.events,
                    gaps: c.gaps,
                    snap_seq: c.snap_seq,
                    done_us: t0.elapsed().as_micros() as u64,
                }),
                Ok(Err(e)) => {
                    errors.add_err(&e);
                    None
                }
                Err(_) => {
                    errors.add("not caught up before --timeout");
                    None
                }
            }
        }));
    }
    let mut done = Vec::with_capacity(a.clients);
    let join_deadline = deadline + std::time::Duration::from_secs(5);
    for h in handles {
        let abort = h.abort_handle();
        match tokio::time::timeout_at(join_deadline, h).await {
            Ok(Ok(Some(d))) => done.push(d),
            Ok(_) => {}
            Err(_) => {
                abort.abort();
                errors.add("aborted at --timeout");
            }
        }
    }
    let all_s = done.iter().map(|d| d.done_us).max().unwrap_or(0) as f64 / 1e6;
    let events: u64 = done.iter().map(|d| d.events).sum();
    let cost = window.end(events, "replayed events")?;
    let mut hist = histogram()?;
    let (mut gaps, mut wrong) = (0, 0);
    for d in &done {
        record(&mut hist, d.done_us);
        gaps += d.gaps;
        let want = last[d.job].saturating_sub(a.since);
        if d.snap_seq != last[d.job] || d.events != want {
            wrong += 1;
        }
    }
    let failed = a.clients - done.len();
    let mut r = Report::new(
        S,
        json!({
            "common": ctx.params(),
            "jobs": a.jobs, "events_per_job": a.events, "clients": a.clients, "since": a.since,
            "fill_batch": a.fill_batch, "timeout_s": a.timeout, "endpoint": a.endpoint.name(),
        }),
    );
    r.set("fill_seconds", round(fill_s, 3));
    r.set("clients_caught_up", done.len());
    r.set("clients_failed", failed);
    r.set("errors", errors.json());
    r.set("clients_wrong_count", wrong);
    r.set("gaps", gaps);
    r.set("all_caught_up_s", round(all_s, 3));
    r.set("events_replayed", events);
    r.set("events_per_s", round(events as f64 / all_s.max(1e-9), 1));
    r.set("catch_up_time", hist_json(&hist));
    r.line(format!(
        "filled          {} jobs x {} events in {fill_s:.2} s",
        a.jobs, a.events
    ));
    r.line(format!(
        "caught up       {} of {} clients in {all_s:.3} s; {failed} failed{}",
        done.len(),
        a.clients,
        if failed > 0 {
            format!(" ({})", errors.line())
        } else {
            String::new()
        }
    ));
    r.line(format!(
        "replayed        {events} events ({:.0}/s); {wrong} clients with a wrong count, {gaps} gaps",
        events as f64 / all_s.max(1e-9)
    ));
    r.line(format!("catch-up time   {}", hist_line(&hist)));
    r.ok = failed == 0 && wrong == 0 && gaps == 0;
    r.cost = Some(cost);
    Ok(r)
}
