//! `jobwire watch <job>`: a live terminal view of one job over the single-job
//! WebSocket. It remembers the last seq it saw and reconnects with `since` after any
//! drop (server restart, network change), so nothing is missed or shown twice. Exit
//! status: see [`EXIT_CODES`].

use crate::client::ServerArg;
use clap::Args;
use futures_util::StreamExt;
use jobwire_proto::event::EventBody;
use jobwire_proto::{Event, Job, JobStatus};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The exit codes, as `jobwire watch --help` shows them.
pub(crate) const EXIT_CODES: &str =
    "Exit status: 0 the job completed; 1 it failed; 2 it was cancelled; \
3 no such job; 4 the server refused the watch (bad token, forbidden, invalid job id); \
5 the server could not be reached within --give-up-after.";

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct WatchArgs {
    /// The job to watch.
    job: String,
    /// Start after this seq (default: snapshot, then live).
    #[arg(long)]
    since: Option<u64>,
    /// Print every frame as a JSON line instead of the progress bar.
    #[arg(long)]
    json: bool,
    /// Stop trying to reach the server after this long without a connection.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    give_up_after: Duration,
    /// Keep trying to reach the server forever (overrides --give-up-after).
    #[arg(long)]
    forever: bool,
    #[command(flatten)]
    server: ServerArg,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct View {
    tty: bool,
    json: bool,
    job: Option<Job>,
}

impl View {
    fn bar(&self) {
        let Some(job) = &self.job else { return };
        if !self.tty || self.json {
            return;
        }
        let width = 30usize;
        let filled = ((job.progress / 100.0) * width as f64).round() as usize;
        let filled = filled.min(width);
        let stage = job
            .step
            .as_ref()
            .map(|s| s.label.clone().unwrap_or_else(|| s.step.clone()))
            .or_else(|| job.stage.clone())
            .unwrap_or_default();
        let line = format!(
            "[{}{}] {:5.1}% {} {} {}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            job.progress,
            job.status.as_str(),
            stage,
            job.message.clone().unwrap_or_default()
        );
        // A status line wider than the terminal would wrap, and `\r` would then
        // leave the wrapped part behind: cut it to the width.
        let cols = terminal_size::terminal_size().map_or(80, |(w, _)| usize::from(w.0));
        let line: String = line.chars().take(cols.saturating_sub(1)).collect();
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{line}");
        let _ = out.flush();
    }

    fn line(&self, text: &str) {
        if self.tty && !self.json {
            print!("\r\x1b[2K");
        }
        println!("{text}");
        self.bar();
    }

    fn event(&mut self, raw: &str, ev: Event) {
        if self.json {
            println!("{raw}");
        }
        // Replayed events are already folded into the snapshot: print, don't re-apply.
        if let Some(job) = self.job.as_mut().filter(|j| ev.seq > j.seq) {
            job.apply(&ev);
        }
        let text = match &ev.body {
            EventBody::Log { line, .. } => Some(line.clone()),
            EventBody::Step { step, label, .. } => {
                Some(format!("» step {}", label.as_deref().unwrap_or(step)))
            }
            EventBody::Status { .. } => Some(format!("» status {}", ev.status.as_str())),
            EventBody::Completed { .. } => Some("✔ completed".into()),
            EventBody::Failed { error, .. } => Some(format!("✘ failed: {error}")),
            EventBody::Stalled { heartbeat_timeout } => {
                Some(format!("⚠ stalled: no heartbeat for {heartbeat_timeout} s"))
            }
            EventBody::Recovered { stalled_for } => {
                Some(format!("» recovered after {stalled_for:.1} s"))
            }
            EventBody::CancelRequested { by, reason } => Some(format!(
                "» cancel requested{}{}",
                by.as_deref()
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default(),
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
            EventBody::Cancelled { reason, .. } => Some(format!(
                "✘ cancelled{}",
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
            EventBody::Custom { name, .. } => Some(format!("» {name}")),
            EventBody::Progress {
                progress, stage, ..
            } if !self.tty => Some(format!(
                "{progress:.1}% {}",
                stage.clone().unwrap_or_default()
            )),
            _ => None,
        };
        if !self.json {
            match text {
                Some(t) => self.line(&t),
                None => self.bar(),
            }
        }
    }
}

fn exit_for(status: Option<JobStatus>) -> ExitCode {
    match status {
        Some(JobStatus::Completed) => ExitCode::SUCCESS,
        Some(JobStatus::Failed) => ExitCode::from(1),
        Some(JobStatus::Cancelled) => ExitCode::from(2),
        _ => ExitCode::from(4),
    }
}

pub(crate) async fn run(a: WatchArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = jobwire_proto::JobId::validate(&a.job) {
        eprintln!("jobwire watch: invalid job id {:?}: {e}", a.job);
        return Ok(ExitCode::from(4));
    }
    // Escape sequences only for a terminal: piped or logged output stays plain.
    let err_tty = std::io::stderr().is_terminal();
    let clear = if err_tty { "\r\x1b[2K" } else { "" };
    let mut unreachable_since: Option<std::time::Instant> = None;
    let ws_base = a
        .server
        .server
        .trim_end_matches('/')
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let mut view = View {
        tty: std::io::stdout().is_terminal(),
        json: a.json,
        job: None,
    };
    let mut since = a.since;
    // The epoch the server gave with the last snapshot (or rewind notice): sent
    // back with `since`, so a crash that took back what was printed is noticed.
    let mut epoch: Option<u64> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let query = match (since, epoch) {
            (Some(s), Some(e)) => format!("?since={s}&epoch={e}"),
            (Some(s), None) => format!("?since={s}"),
            _ => String::new(),
        };
        let url = format!("{ws_base}/v1/jobs/{}/ws{query}", a.job);
        let request = match url.as_str().into_client_request() {
            Ok(mut r) => {
                if let Some(t) = &a.server.token {
                    if let Ok(v) = format!("Bearer {t}").parse() {
                        r.headers_mut().insert("authorization", v);
                    }
                }
                r
            }
            Err(e) => anyhow::bail!("bad server URL {url}: {e}"),
        };
        let mut ws = match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => {
                backoff = Duration::from_millis(200);
                unreachable_since = None;
                ws
            }
            // A refused upgrade (bad token, forbidden origin, too many connections…)
            // will not heal by itself: report it instead of retrying forever.
            Err(tokio_tungstenite::tungstenite::Error::Http(resp))
                if resp.status().is_client_error() =>
            {
                let status = resp.status();
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                eprintln!("jobwire watch: the server refused the watch (HTTP {status}) {body}");
                return Ok(ExitCode::from(if status.as_u16() == 404 { 3 } else { 4 }));
            }
            Err(e) => {
                let since_when = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if !a.forever && since_when.elapsed() >= a.give_up_after {
                    eprintln!(
                        "{clear}jobwire watch: cannot reach {} ({e}) for {:?}; check --server, or pass --forever",
                        a.server.server, a.give_up_after
                    );
                    return Ok(ExitCode::from(5));
                }
                eprintln!("{clear}jobwire watch: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        while let Some(msg) = ws.next().await {
            let text = match msg {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(frame)) => {
                    let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                    if view.tty && !view.json {
                        println!();
                    }
                    match code {
                        1000 => return Ok(exit_for(view.job.as_ref().map(|j| j.status))),
                        4504 => {
                            eprintln!("jobwire watch: job {} not found", a.job);
                            return Ok(ExitCode::from(3));
                        }
                        4500..=4999 | 1009 => {
                            eprintln!("jobwire watch: the server refused the watch (close {code})");
                            return Ok(ExitCode::from(4));
                        }
                        _ => break,
                    }
                }
                Ok(_) => continue,
                Err(_) => break,
            };
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if v.get("seq").is_some() && v.get("job_id").is_some() && v["type"] != "snapshot" {
                if let Ok(ev) = serde_json::from_value::<Event>(v) {
                    since = Some(ev.seq);
                    view.event(text.as_str(), ev);
                }
                continue;
            }
            match v["type"].as_str() {
                Some("snapshot") => {
                    epoch = v["epoch"].as_u64().or(epoch);
                    if let Ok(job) = serde_json::from_value::<Job>(v["job"].clone()) {
                        if view.json {
                            println!("{}", text.as_str());
                        } else if view.job.is_none() && since.is_none() {
                            for l in &job.logs {
                                view.line(&l.line);
                            }
                        }
                        // Without `since` the server sends no history: resume after the
                        // snapshot. With it, `since` advances as replayed events print.
                        if since.is_none() {
                            since = Some(job.seq);
                        }
                        view.job = Some(job);
                        view.bar();
                    }
                }
                Some("history_truncated") => view.line("(older history was trimmed by retention)"),
                Some("rewound") => {
                    // What was printed from `from` on was taken back by a server crash;
                    // it follows again, possibly different.
                    let from = v["from"].as_u64().unwrap_or(1);
                    epoch = v["epoch"].as_u64().or(epoch);
                    since = Some(from.saturating_sub(1));
                    view.line(&format!(
                        "(the server lost events from seq {from} in a crash; they follow again)"
                    ));
                }
                // The close that follows reports an unknown job (once, on stderr).
                Some("error") if v["code"] == "job_not_found" => {}
                Some("error") => view.line(&format!(
                    "error: {}",
                    v["message"].as_str().unwrap_or_default()
                )),
                _ => {}
            }
        }
        if view.tty && !view.json && err_tty {
            eprint!(
                "\r\x1b[2Kjobwire watch: connection lost; reconnecting from seq {}",
                since.unwrap_or(0)
            );
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
