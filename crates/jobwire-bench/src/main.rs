//! `jobwire-bench`: the load generator for jobwire.
//!
//! Scenarios (each bounded by a count and a duration):
//! - `idle`: hold N WebSockets over K jobs; server RSS per connection, connect rate.
//! - `fanout`: K jobs x W watchers, a publisher at R events/s; deliveries/s, loss,
//!   publish -> receive latency.
//! - `many-jobs`: fanout over 10,000 jobs with one watcher each.
//! - `ingest`: closed-loop publishers; acknowledged (durable) events/s.
//! - `replay`: fill J jobs with E events, then W clients replay with `since` at once.
//! - `floor`: the kernel's cost of one small loopback send, without jobwire: the
//!   yardstick for the server's CPU per delivery.
//!
//! With `--server-pid`, every scenario reports server CPU (utime + stime) and RSS
//! over its measured window. Output: one JSON line, then a readable summary. The
//! exit status is 1 when a correctness check failed (loss, gaps, failed clients).
//! Only 127.0.0.0/8 is ever targeted.
//!
//! `--peer nchan` drives nginx + nchan instead (idle, fanout, many-jobs), for the
//! side-by-side figures of `peers/run.py`; see `peer`.

mod net;
mod peer;
mod procfs;
mod publish;
mod report;
mod scenarios;
mod watch;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use net::{Http, Sources, Target};
use peer::Peer;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
#[command(
    name = "jobwire-bench",
    about = "Load generator for jobwire (loopback only)",
    version
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone, Debug)]
struct Common {
    /// Server to create jobs on and publish to (must be in 127.0.0.0/8).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8000")]
    server: String,
    /// Server watchers connect to (default: --server), e.g. a second instance.
    #[arg(long, global = true)]
    watch_server: Option<String>,
    /// Server process(es) to measure (CPU from /proc/PID/stat, RSS from
    /// /proc/PID/status); repeat for several instances.
    #[arg(long, global = true)]
    server_pid: Vec<u32>,
    /// Rotate client source addresses over 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, global = true, default_value_t = 1)]
    source_ips: u8,
    /// Runtime worker threads (0: one per CPU this process may run on).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    /// WebSocket handshakes in flight at once.
    #[arg(long, global = true, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds one connect (TCP + upgrade + snapshot) may take.
    #[arg(long, global = true, default_value_t = 30.0)]
    connect_timeout: f64,
    /// Client WebSocket read buffer, bytes.
    #[arg(long, global = true, default_value_t = 8192)]
    client_read_buffer: usize,
    /// Prefix of the job ids this run creates (default: bench-<unix seconds>).
    #[arg(long, global = true)]
    run_id: Option<String>,
    /// The server under test: jobwire, or nginx + nchan (`POST /pub/<id>`,
    /// WebSocket `/sub/<id>`; idle, fanout and many-jobs only).
    #[arg(long, global = true, value_enum, default_value_t = Peer::Jobwire)]
    peer: Peer,
}

#[derive(Subcommand)]
enum Cmd {
    /// Hold N idle WebSockets over K jobs; server RSS per connection.
    Idle(scenarios::idle::IdleArgs),
    /// K jobs x W watchers, one publisher at R events/s.
    Fanout(scenarios::fanout::FanoutArgs),
    /// Many jobs (default 10,000) with one watcher each, events spread over all jobs.
    ManyJobs(scenarios::fanout::ManyJobsArgs),
    /// Maximum acknowledged (durable) publishes per second.
    Ingest(scenarios::ingest::IngestArgs),
    /// Fill jobs with history, then many clients replay it at once.
    Replay(scenarios::replay::ReplayArgs),
    /// The kernel's CPU cost of one small loopback TCP send (no server involved):
    /// the yardstick for CPU per delivery.
    Floor(scenarios::floor::FloorArgs),
}

/// What every scenario needs.
pub(crate) struct Ctx {
    pub(crate) publish: Target,
    pub(crate) watch: Target,
    pub(crate) sources: Sources,
    pub(crate) http: Arc<Http>,
    pub(crate) pids: Vec<u32>,
    pub(crate) connect_concurrency: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) ws_cfg: WebSocketConfig,
    pub(crate) run_id: String,
    pub(crate) peer: Peer,
}

impl Ctx {
    fn new(c: &Common) -> Result<Ctx> {
        let publish = Target::parse(&c.server)?;
        let watch = match &c.watch_server {
            Some(w) => Target::parse(w)?,
            None => publish.clone(),
        };
        let sources = Sources::new(c.source_ips)?;
        let http = Arc::new(Http::new(&publish, &sources)?);
        let run_id = match &c.run_id {
            Some(r) => r.clone(),
            None => format!("bench-{}", publish::now_ns() / 1_000_000_000),
        };
        Ok(Ctx {
            publish,
            watch,
            sources,
            http,
            pids: c.server_pid.clone(),
            connect_concurrency: c.connect_concurrency.clamp(1, 65_536),
            connect_timeout: secs("connect-timeout", c.connect_timeout)?,
            ws_cfg: net::ws_config(c.client_read_buffer),
            run_id,
            peer: c.peer,
        })
    }

    /// `n` job ids for a scenario of this run.
    pub(crate) fn job_ids(&self, scenario: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{}-{scenario}-{i}", self.run_id))
            .collect()
    }

    /// The parameters every report carries.
    pub(crate) fn params(&self) -> Value {
        json!({
            "server": self.publish.http,
            "watch_server": self.watch.http,
            "server_pids": self.pids,
            "source_ips": self.sources.len(),
            "connect_concurrency": self.connect_concurrency,
            "run_id": self.run_id,
            "peer": self.peer.name(),
        })
    }
}

/// Seconds from the command line, within 0 ..= 1 hour.
pub(crate) fn secs(name: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
        bail!("--{name} must be between 0 and 3600 seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Progress on stderr (stdout is the report).
pub(crate) fn note(scenario: &str, msg: impl std::fmt::Display) {
    eprintln!("[{scenario}] {msg}");
}

async fn run(cli: Cli, nofile: u64) -> Result<bool> {
    let ctx = Arc::new(Ctx::new(&cli.common)?);
    if ctx.peer != Peer::Jobwire && matches!(cli.cmd, Cmd::Ingest(_) | Cmd::Replay(_)) {
        bail!(
            "--peer {} supports idle, fanout, many-jobs and floor",
            ctx.peer.name()
        );
    }
    let load_start = procfs::loadavg();
    let report = match cli.cmd {
        Cmd::Idle(a) => scenarios::idle::run(&ctx, a).await?,
        Cmd::Fanout(a) => scenarios::fanout::run(&ctx, a.into_params(), "fanout").await?,
        Cmd::ManyJobs(a) => scenarios::fanout::run(&ctx, a.into_params(), "many-jobs").await?,
        Cmd::Ingest(a) => scenarios::ingest::run(&ctx, a).await?,
        Cmd::Replay(a) => scenarios::replay::run(&ctx, a).await?,
        Cmd::Floor(a) => scenarios::floor::run(&ctx, a).await?,
    };
    let env = json!({
        "loadavg_start": load_start,
        "loadavg_end": procfs::loadavg(),
        "nofile_limit": nofile,
        "threads": tokio::runtime::Handle::current().metrics().num_workers(),
    });
    report.print(env)?;
    Ok(report.ok)
}

fn raise_nofile() -> u64 {
    // Soft limit up to the hard limit; the sandbox caps both at 20,000.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("warning: could not raise RLIMIT_NOFILE: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let nofile = raise_nofile();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if cli.common.threads > 0 {
        rt.worker_threads(cli.common.threads);
    }
    let result = rt
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(cli, nofile)));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
