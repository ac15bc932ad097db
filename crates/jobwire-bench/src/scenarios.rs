//! The scenarios, and the connect phase they share.

pub(crate) mod fanout;
pub(crate) mod floor;
pub(crate) mod idle;
pub(crate) mod ingest;
pub(crate) mod replay;

use crate::report::{hist_json, hist_line, histogram, record, Errors};
use crate::watch::{self, Endpoint, Live, Watched};
use crate::Ctx;
use anyhow::Result;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch as signal, Semaphore};
use tokio::task::JoinHandle;

/// Live watchers, all past their snapshot (or failed), reading until stopped.
pub(crate) struct Watchers {
    handles: Vec<JoinHandle<Option<Watched>>>,
    stop: signal::Sender<bool>,
    pub(crate) live: Arc<Live>,
    /// (job index, snapshot seq) of every connected watcher.
    pub(crate) snaps: Vec<(usize, u64)>,
    pub(crate) requested: usize,
    pub(crate) failed: u64,
    pub(crate) errors: Arc<Errors>,
    pub(crate) connect_time: Duration,
    pub(crate) connect_latency: Histogram<u64>,
}

/// Opens `n` watchers, watcher `w` on `jobs[w % jobs.len()]`, at most
/// `ctx.connect_concurrency` handshakes at a time; returns once every watcher has
/// its snapshot or has failed.
pub(crate) async fn open_watchers(
    ctx: &Arc<Ctx>,
    scenario: &str,
    jobs: &Arc<Vec<String>>,
    n: usize,
    endpoint: Endpoint,
) -> Result<Watchers> {
    let live = Arc::new(Live::new()?);
    let (stop, stop_rx) = signal::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Option<(usize, u64)>>();
    let sem = Arc::new(Semaphore::new(ctx.connect_concurrency));
    let errors = Arc::new(Errors::default());
    let latency = Arc::new(Mutex::new(histogram()?));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for w in 0..n {
        let job = w % jobs.len().max(1);
        let (ctx, jobs, live, sem, errors, latency) = (
            ctx.clone(),
            jobs.clone(),
            live.clone(),
            sem.clone(),
            errors.clone(),
            latency.clone(),
        );
        let (ready, stop_rx) = (ready_tx.clone(), stop_rx.clone());
        handles.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok();
            let t0 = Instant::now();
            let src = ctx.sources.next();
            let opened = tokio::time::timeout(
                ctx.connect_timeout,
                watch::open(
                    &ctx.watch, src, &jobs[job], endpoint, None, ctx.ws_cfg, ctx.peer,
                ),
            )
            .await;
            drop(permit);
            match opened {
                Ok(Ok(conn)) => {
                    {
                        let mut h = latency.lock().unwrap_or_else(|p| p.into_inner());
                        record(&mut h, t0.elapsed().as_micros() as u64);
                    }
                    let _ = ready.send(Some((job, conn.snap_seq)));
                    drop(ready);
                    Some(watch::live(conn, job, &live, stop_rx).await)
                }
                Ok(Err(e)) => {
                    errors.add_err(&e);
                    let _ = ready.send(None);
                    None
                }
                Err(_) => {
                    errors.add("connect timeout");
                    let _ = ready.send(None);
                    None
                }
            }
        }));
    }
    drop(ready_tx);
    let mut snaps = Vec::with_capacity(n);
    let mut failed = 0;
    let mut next_note = Instant::now() + Duration::from_secs(5);
    while let Some(r) = ready_rx.recv().await {
        match r {
            Some(s) => snaps.push(s),
            None => failed += 1,
        }
        if snaps.len() + failed as usize >= n {
            break;
        }
        if Instant::now() >= next_note {
            crate::note(
                scenario,
                format!("{} of {n} watchers connected, {failed} failed", snaps.len()),
            );
            next_note += Duration::from_secs(5);
        }
    }
    let connect_time = started.elapsed();
    let connect_latency = latency.lock().unwrap_or_else(|p| p.into_inner()).clone();
    crate::note(
        scenario,
        format!(
            "{} of {n} watchers connected in {:.2} s, {failed} failed",
            snaps.len(),
            connect_time.as_secs_f64()
        ),
    );
    Ok(Watchers {
        handles,
        stop,
        live,
        snaps,
        requested: n,
        failed,
        errors,
        connect_time,
        connect_latency,
    })
}

impl Watchers {
    /// Tells every watcher to stop, and collects what each saw.
    pub(crate) async fn stop(self) -> Vec<Watched> {
        let _ = self.stop.send(true);
        let mut out = Vec::with_capacity(self.handles.len());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for h in self.handles {
            let abort = h.abort_handle();
            match tokio::time::timeout_at(deadline, h).await {
                Ok(Ok(Some(w))) => out.push(w),
                Ok(_) => {}
                Err(_) => abort.abort(),
            }
        }
        out
    }

    /// Connected watchers.
    pub(crate) fn connected(&self) -> usize {
        self.snaps.len()
    }

    pub(crate) fn connect_json(&self) -> Value {
        let secs = self.connect_time.as_secs_f64();
        json!({
            "requested": self.requested,
            "ok": self.connected(),
            "failed": self.failed,
            "errors": self.errors.json(),
            "seconds": crate::procfs::round(secs, 3),
            "per_s": crate::procfs::round(self.connected() as f64 / secs.max(1e-9), 1),
            "latency": hist_json(&self.connect_latency),
        })
    }

    pub(crate) fn connect_lines(&self) -> Vec<String> {
        let secs = self.connect_time.as_secs_f64();
        vec![
            format!(
                "connections     {} of {} in {:.2} s ({:.0}/s), {} failed{}",
                self.connected(),
                self.requested,
                secs,
                self.connected() as f64 / secs.max(1e-9),
                self.failed,
                if self.failed > 0 {
                    format!(": {}", self.errors.line())
                } else {
                    String::new()
                }
            ),
            format!("connect latency {}", hist_line(&self.connect_latency)),
        ]
    }
}
