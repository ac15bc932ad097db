//! `floor`: what one small loopback TCP send costs this machine's kernel, with no
//! jobwire involved. A WebSocket delivery is at least one such send, so this is the
//! yardstick for the server's CPU per delivery: VMs differ (and drift) by tens of
//! percent, and a per-delivery figure means little without the floor beside it.
//!
//! A writer thread sends `--bytes`-byte messages round-robin over `--sockets`
//! connected loopback sockets (TCP_NODELAY, like the server's), pausing briefly
//! after each round so sends are not merged; a reader thread drains them. The
//! writer's own CPU (utime + stime of /proc/thread-self/stat) per send is the floor.
//!
//! By default the reader polls (it never sleeps on a socket), so no send pays for
//! waking a reader: the bare cost of the TCP path. With `--blocking-readers` each
//! socket has its own thread blocked in `read`, as a real client is blocked in
//! `epoll_wait`: every send also wakes a thread, which is what a server pays per
//! delivery to an idle client (more when the reader sleeps on another CPU).

use crate::report::Report;
use crate::Ctx;
use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub(crate) struct FloorArgs {
    /// Connected socket pairs written round-robin.
    #[arg(long, default_value_t = 64)]
    sockets: usize,
    /// Bytes per send (a progress event frame is about 200).
    #[arg(long, default_value_t = 200)]
    bytes: usize,
    /// Sends in all.
    #[arg(long, default_value_t = 50_000)]
    sends: usize,
    /// One blocking reader thread per socket, so that every send wakes a reader.
    #[arg(long)]
    blocking_readers: bool,
}

/// This thread's CPU seconds so far.
fn thread_cpu_s() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").context("thread stat")?;
    crate::procfs::cpu_seconds(&stat)
}

pub(crate) async fn run(_ctx: &Arc<Ctx>, a: FloorArgs) -> Result<Report> {
    let params = json!({
        "sockets": a.sockets, "bytes": a.bytes, "sends": a.sends,
        "blocking_readers": a.blocking_readers,
    });
    let a2 = a.clone();
    let (per_send_us, wall) = tokio::task::spawn_blocking(move || measure(&a2))
        .await
        .context("floor thread")??;
    let mut r = Report::new("floor", params);
    r.set("per_send_us", crate::procfs::round(per_send_us, 3));
    r.set("wall_s", crate::procfs::round(wall, 3));
    let readers = if a.blocking_readers {
        "each waking a blocked reader"
    } else {
        "polling reader"
    };
    r.line(format!(
        "loopback send   {per_send_us:.2} us of writer CPU per {}-byte send ({} sends over {} sockets, {readers})",
        a.bytes, a.sends, a.sockets
    ));
    r.line(format!(
        "                = a floor of {:.2} core-s per million single-frame deliveries",
        per_send_us
    ));
    Ok(r)
}

fn measure(a: &FloorArgs) -> Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut writers = Vec::with_capacity(a.sockets);
    let mut readers = Vec::with_capacity(a.sockets);
    for _ in 0..a.sockets.max(1) {
        let w = TcpStream::connect(addr)?;
        w.set_nodelay(true)?;
        let (r, _) = listener.accept()?;
        r.set_nonblocking(!a.blocking_readers)?;
        writers.push(w);
        readers.push(r);
    }
    if a.blocking_readers {
        return measure_blocking(a, writers, readers);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let mut got = false;
                for r in readers.iter_mut() {
                    if let Ok(n) = r.read(&mut buf) {
                        got |= n > 0;
                    }
                }
                if !got {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        })
    };
    let result = write_rounds(a, &mut writers);
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    result
}

/// Writes `--sends` messages round-robin; returns (writer CPU µs per send, wall s).
fn write_rounds(a: &FloorArgs, writers: &mut [TcpStream]) -> Result<(f64, f64)> {
    let msg = vec![b'x'; a.bytes.max(1)];
    let rounds = (a.sends / writers.len()).max(1);
    let t0 = Instant::now();
    let c0 = thread_cpu_s()?;
    for _ in 0..rounds {
        for w in writers.iter_mut() {
            w.write_all(&msg)?;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let c1 = thread_cpu_s()?;
    let wall = t0.elapsed().as_secs_f64();
    let sends = (rounds * writers.len()) as f64;
    Ok(((c1 - c0) * 1e6 / sends, wall))
}

/// One thread per socket, blocked in `read` until the writer closes its end.
fn measure_blocking(
    a: &FloorArgs,
    mut writers: Vec<TcpStream>,
    readers: Vec<TcpStream>,
) -> Result<(f64, f64)> {
    let threads: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
            })
        })
        .collect();
    let result = write_rounds(a, &mut writers);
    // Closing the writers ends every reader with EOF.
    drop(writers);
    for t in threads {
        let _ = t.join();
    }
    result
}
