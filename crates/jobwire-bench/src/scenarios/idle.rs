//! `idle`: N single-job WebSockets over K jobs, held for D seconds. Server RSS per
//! connection = (VmRSS once all are connected - VmRSS before) / connections.

use crate::peer::Peer;
use crate::procfs::{round, sample, Window};
use crate::publish::create_jobs;
use crate::report::Report;
use crate::scenarios::open_watchers;
use crate::watch::Endpoint;
use crate::{note, secs, Ctx};
use anyhow::Result;
use clap::Args;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Args, Debug)]
pub(crate) struct IdleArgs {
    /// WebSockets to open.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Jobs they watch (connection i watches job i % K).
    #[arg(long, default_value_t = 100)]
    jobs: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// Seconds to wait before each RSS reading.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Endpoint the connections use.
    #[arg(long, value_enum, default_value_t = Endpoint::Single)]
    endpoint: Endpoint,
}

fn sum_rss(pids: &[u32]) -> Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut kib = 0;
    for p in pids {
        kib += sample(Some(*p))?.rss_kib;
    }
    Ok(Some(kib))
}

pub(crate) async fn run(ctx: &Arc<Ctx>, a: IdleArgs) -> Result<Report> {
    const S: &str = "idle";
    let hold = secs("hold", a.hold)?;
    let settle = secs("settle", a.settle)?;
    let n = a.connections.min(1_000_000);
    let ids = Arc::new(ctx.job_ids(S, a.jobs.clamp(1, 100_000)));
    if ctx.peer == Peer::Jobwire {
        note(S, format!("creating {} jobs", ids.len()));
        create_jobs(&ctx.http, &ids, 64).await?;
    }
    tokio::time::sleep(settle).await;
    let rss0 = sum_rss(&ctx.pids)?;
    let bench0 = sample(None)?.rss_kib;
    let window = Window::start(&ctx.pids)?;
    let watchers = open_watchers(ctx, S, &ids, n, a.endpoint).await?;
    tokio::time::sleep(settle).await;
    let rss1 = sum_rss(&ctx.pids)?;
    let bench1 = sample(None)?.rss_kib;
    note(
        S,
        format!(
            "holding {} connections for {:.0} s",
            watchers.connected(),
            hold.as_secs_f64()
        ),
    );
    let hold_window = Window::start(&ctx.pids)?;
    tokio::time::sleep(hold).await;
    let hold_cost = hold_window.end(0, "")?;
    let rss2 = sum_rss(&ctx.pids)?;
    let ended_during_hold = watchers.live.ended.total();
    let connected = watchers.connected() as u64;
    let cost = window.end(connected, "connections")?;
    let mut r = Report::new(
        S,
        json!({
            "common": ctx.params(),
            "connections": n, "jobs": ids.len(), "hold_s": a.hold, "settle_s": a.settle,
            "endpoint": a.endpoint.name(),
        }),
    );
    r.set("connect", watchers.connect_json());
    r.lines(watchers.connect_lines());
    let per_conn = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some(round((a as f64 - b as f64) / connected as f64, 2))
        }
        _ => None,
    };
    let server_per_conn = per_conn(rss0, rss1);
    let server_per_conn_end = per_conn(rss0, rss2);
    let bench_per_conn = per_conn(Some(bench0), Some(bench1));
    r.set(
        "memory",
        json!({
            "server_rss_before_kib": rss0,
            "server_rss_connected_kib": rss1,
            "server_rss_end_of_hold_kib": rss2,
            "server_rss_per_connection_kib": server_per_conn,
            "server_rss_per_connection_end_kib": server_per_conn_end,
            "bench_rss_per_connection_kib": bench_per_conn,
        }),
    );
    r.set(
        "hold",
        json!({
            "seconds": a.hold,
            "ended_during_hold": ended_during_hold,
            "ended": watchers.live.ended.json(),
            "server_cpu_s": if ctx.pids.is_empty() { None } else { Some(round(hold_cost.cpu_s, 3)) },
        }),
    );
    match (rss0, rss1, server_per_conn) {
        (Some(b), Some(c), Some(p)) => r.line(format!(
            "server rss      {:.1} MiB before, {:.1} MiB with {} connections: {:.2} KiB per connection ({:.2} at end of hold)",
            b as f64 / 1024.0,
            c as f64 / 1024.0,
            connected,
            p,
            server_per_conn_end.unwrap_or(0.0)
        )),
        _ => r.line("server rss      not measured (pass --server-pid)"),
    }
    r.line(format!(
        "bench rss       {:.2} KiB per connection",
        bench_per_conn.unwrap_or(0.0)
    ));
    r.line(format!(
        "hold            {:.0} s, {} connections ended early{}",
        a.hold,
        ended_during_hold,
        if ctx.pids.is_empty() {
            String::new()
        } else {
            format!(", server cpu {:.3} core-s", hold_cost.cpu_s)
        }
    ));
    r.ok = watchers.failed == 0 && ended_during_hold == 0;
    let received = watchers.live.received.load(Ordering::Relaxed);
    r.set("events_received", received);
    watchers.stop().await;
    r.cost = Some(cost);
    Ok(r)
}
