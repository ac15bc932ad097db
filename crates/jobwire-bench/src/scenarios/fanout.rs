//! `fanout` and `many-jobs`: K jobs x W watchers each, a publisher at R events/s.
//!
//! Loss is counted per watcher: every event acknowledged to the publisher with a seq
//! above the watcher's snapshot seq must reach it (expected = last acknowledged seq
//! of its job - its snapshot seq). Latency is receive time - the event's `data.t`
//! (set just before the publish request was sent), so it covers HTTP, the durable
//! commit, fan-out and the WebSocket write.
//!
//! On nchan (`--peer nchan`) there is no snapshot: watchers connect before the first
//! publish, so every acknowledged event of their job is expected; events delivered
//! out of order are counted as `reordered` (not a failure).

use crate::peer::Peer;
use crate::procfs::{round, Window};
use crate::publish::{create_jobs, now_ns, open_loop, Plan, PubStats};
use crate::report::{hist_json, hist_line, Report};
use crate::scenarios::open_watchers;
use crate::watch::Endpoint;
use crate::{note, secs, Ctx};
use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags fanout and many-jobs share.
#[derive(Args, Debug, Clone)]
pub(crate) struct FanoutCommon {
    /// Seconds of publishing after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds published first whose latencies are not recorded (their
    /// deliveries still count for loss).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Events per publish request (1 = single-event publishes).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Publish requests in flight at most (past that the rate is not held).
    #[arg(long, default_value_t = 1024)]
    max_inflight: usize,
    /// Seconds to wait after the last acknowledgement for deliveries to arrive.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Endpoint watchers use.
    #[arg(long, value_enum, default_value_t = Endpoint::Single)]
    endpoint: Endpoint,
}

#[derive(Args, Debug)]
pub(crate) struct FanoutArgs {
    /// Jobs.
    #[arg(long, default_value_t = 10)]
    jobs: usize,
    /// Watchers per job.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Events per second, all jobs together (round-robin over jobs).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    #[command(flatten)]
    common: FanoutCommon,
}

#[derive(Args, Debug)]
pub(crate) struct ManyJobsArgs {
    /// Jobs.
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// Watchers per job.
    #[arg(long, default_value_t = 1)]
    watchers: usize,
    /// Events per second, all jobs together (round-robin over jobs).
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    #[command(flatten)]
    common: FanoutCommon,
}

pub(crate) struct FanoutParams {
    jobs: usize,
    watchers: usize,
    rate: f64,
    c: FanoutCommon,
}

impl FanoutArgs {
    pub(crate) fn into_params(self) -> FanoutParams {
        FanoutParams {
            jobs: self.jobs,
            watchers: self.watchers,
            rate: self.rate,
            c: self.common,
        }
    }
}

impl ManyJobsArgs {
    pub(crate) fn into_params(self) -> FanoutParams {
        FanoutParams {
            jobs: self.jobs,
            watchers: self.watchers,
            rate: self.rate,
            c: self.common,
        }
    }
}

pub(crate) async fn run(ctx: &Arc<Ctx>, p: FanoutParams, name: &'static str) -> Result<Report> {
    let duration = secs("duration", p.c.duration)?;
    let warmup = secs("warmup", p.c.warmup)?;
    let drain_timeout = secs("drain-timeout", p.c.drain_timeout)?;
    if p.jobs == 0 || p.jobs > 1_000_000 || p.watchers > 100_000 {
        bail!("--jobs must be 1..=1,000,000 and --watchers at most 100,000");
    }
    if !(p.rate.is_finite() && p.rate > 0.0 && p.rate <= 10_000_000.0) {
        bail!("--rate must be above 0 and at most 10,000,000");
    }
    if p.c.batch == 0 || p.c.batch > 1000 {
        bail!("--batch must be 1..=1000");
    }
    let ids = Arc::new(ctx.job_ids(name, p.jobs));
    if ctx.peer == Peer::Jobwire {
        note(name, format!("creating {} jobs", ids.len()));
        create_jobs(&ctx.http, &ids, 64).await?;
    } else if p.c.batch != 1 {
        bail!(
            "--peer {} publishes one event per request (--batch 1)",
            ctx.peer.name()
        );
    }
    let watchers = open_watchers(ctx, name, &ids, p.jobs * p.watchers, p.c.endpoint).await?;
    let stats = PubStats::new(p.jobs)?;
    note(
        name,
        format!(
            "publishing {} events/s ({} per request) for {:.0} s + {:.0} s warm-up",
            p.rate,
            p.c.batch,
            duration.as_secs_f64(),
            warmup.as_secs_f64()
        ),
    );
    let window = Window::start(&ctx.pids)?;
    let pub_start_ns = now_ns();
    watchers
        .live
        .measure_from_ns
        .store(pub_start_ns + warmup.as_nanos() as u64, Ordering::Relaxed);
    let plan = Plan {
        rate: p.rate,
        duration: warmup + duration,
        batch: p.c.batch,
        max_inflight: p.c.max_inflight,
        peer: ctx.peer,
    };
    let out = open_loop(ctx.http.clone(), ids.clone(), plan, stats.clone()).await?;
    let last_seq = |j: usize| stats.max_seq[j].load(Ordering::Relaxed);
    let expected: u64 = watchers
        .snaps
        .iter()
        .map(|&(j, snap)| last_seq(j).saturating_sub(snap))
        .sum();
    let drain_start = Instant::now();
    while watchers.live.received.load(Ordering::Relaxed) < expected
        && drain_start.elapsed() < drain_timeout
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let received_at_end = watchers.live.received.load(Ordering::Relaxed);
    let cost = window.end(received_at_end, "deliveries")?;
    let last_ns = watchers.live.last_ns.load(Ordering::Relaxed);
    let live = watchers.live.clone();
    let connected = watchers.connected();
    let failed = watchers.failed;
    let connect_json = watchers.connect_json();
    let connect_lines = watchers.connect_lines();
    let seen = watchers.stop().await;

    let (mut lost, mut extra, mut lossy, mut ended_early, mut received) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for w in &seen {
        let exp = last_seq(w.job).saturating_sub(w.snap_seq);
        received += w.received;
        if w.received < exp {
            lost += exp - w.received;
            lossy += 1;
        } else {
            extra += w.received - exp;
        }
        if w.ended_early {
            ended_early += 1;
        }
    }
    let unaccounted = connected.saturating_sub(seen.len()) as u64;
    let gaps = live.gaps.load(Ordering::Relaxed);
    let dups = live.dups.load(Ordering::Relaxed);
    let reordered = live.reordered.load(Ordering::Relaxed);
    let latency = live
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let ack = stats.latency();
    let acked = stats.events_ok.load(Ordering::Relaxed);
    let pub_errors = stats.errors.total();
    let pub_secs = out.elapsed.as_secs_f64();
    let deliver_secs = (last_ns.saturating_sub(pub_start_ns) as f64 / 1e9).max(1e-9);

    let mut r = Report::new(
        name,
        json!({
            "common": ctx.params(),
            "jobs": p.jobs, "watchers_per_job": p.watchers, "rate": p.rate,
            "duration_s": p.c.duration, "warmup_s": p.c.warmup, "batch": p.c.batch,
            "max_inflight": p.c.max_inflight, "drain_timeout_s": p.c.drain_timeout,
            "endpoint": p.c.endpoint.name(),
        }),
    );
    r.set("connect", connect_json);
    r.set(
        "publish",
        json!({
            "requests": out.requests,
            "requests_ok": stats.requests_ok.load(Ordering::Relaxed),
            "events_acked": acked,
            "errors": stats.errors.json(),
            "stalls": out.stalls,
            "seconds": round(pub_secs, 3),
            "events_per_s": round(acked as f64 / pub_secs.max(1e-9), 1),
            "ack_latency": hist_json(&ack),
        }),
    );
    r.set(
        "deliveries",
        json!({
            "expected": expected,
            "received": received,
            "lost": lost,
            "watchers_with_loss": lossy,
            "extra": extra,
            "gaps": gaps,
            "duplicates": dups,
            "reordered": reordered,
            "watchers_ended_early": ended_early,
            "watchers_unaccounted": unaccounted,
            "ended": live.ended.json(),
            "per_s": round(received as f64 / deliver_secs, 1),
            "drain_wait_s": round(drain_s, 3),
        }),
    );
    r.set("latency", hist_json(&latency));
    r.lines(connect_lines);
    r.line(format!(
        "publish         {acked} events acked of {} planned in {pub_secs:.2} s ({:.0}/s), {pub_errors} errors{}, {} stalls",
        out.requests * p.c.batch as u64,
        acked as f64 / pub_secs.max(1e-9),
        if pub_errors > 0 { format!(" ({})", stats.errors.line()) } else { String::new() },
        out.stalls
    ));
    r.line(format!("ack latency     {}", hist_line(&ack)));
    r.line(format!(
        "deliveries      {received} of {expected} expected ({:.0}/s); lost {lost} ({lossy} watchers), gaps {gaps}, duplicates {dups}{}, ended early {ended_early}{}",
        received as f64 / deliver_secs,
        if ctx.peer == Peer::Jobwire { String::new() } else { format!(", reordered {reordered}") },
        if ended_early > 0 { format!(" ({})", live.ended.line()) } else { String::new() }
    ));
    r.line(format!("latency         {}", hist_line(&latency)));
    r.ok = lost == 0
        && gaps == 0
        && dups == 0
        && failed == 0
        && pub_errors == 0
        && ended_early == 0
        && unaccounted == 0;
    r.cost = Some(cost);
    Ok(r)
}
