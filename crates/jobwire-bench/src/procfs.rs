//! Server (and own) cost from /proc: CPU seconds (utime + stime, fields 14 and 15 of
//! /proc/PID/stat) and resident memory (VmRSS of /proc/PID/status).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::Instant;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) cpu_s: f64,
    pub(crate) rss_kib: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if that fails).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Parses utime + stime (clock ticks) out of a /proc/PID/stat line.
fn cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: split after
    // the last ')'. What follows starts at field 3, so field N is at index N - 3.
    let rest = match stat.rfind(')') {
        Some(i) => &stat[i + 1..],
        None => bail!("unexpected /proc stat format"),
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.len() < 13 {
        bail!("short /proc stat line");
    }
    let utime: u64 = f[11].parse().context("utime")?;
    let stime: u64 = f[12].parse().context("stime")?;
    Ok(utime + stime)
}

/// utime + stime of a /proc stat line (process or thread), in seconds.
pub(crate) fn cpu_seconds(stat: &str) -> Result<f64> {
    Ok(cpu_ticks(stat)? as f64 / clk_tck())
}

fn vm_rss_kib(status: &str) -> Result<u64> {
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kib = v.trim().trim_end_matches("kB").trim();
            return kib.parse().context("VmRSS");
        }
    }
    bail!("no VmRSS line")
}

/// Reads process `pid` (`None`: this process).
pub(crate) fn sample(pid: Option<u32>) -> Result<Sample> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat"))
        .with_context(|| format!("reading {dir}/stat (is the server pid right?)"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("reading {dir}/status"))?;
    Ok(Sample {
        cpu_s: cpu_ticks(&stat)? as f64 / clk_tck(),
        rss_kib: vm_rss_kib(&status)?,
    })
}

/// CPU seconds all processes spent busy (everything but idle and iowait), from
/// the first line of /proc/stat.
fn system_busy_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    total.saturating_sub(idle) as f64 / clk_tck()
}

/// TcpExt counters of /proc/net/netstat: listen-queue overflows and drops.
fn listen_drops() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/net/netstat") else {
        return (0, 0);
    };
    let rows: Vec<&str> = s.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let (Some(names), Some(values)) = (rows.first(), rows.get(1)) else {
        return (0, 0);
    };
    let mut overflows = 0;
    let mut drops = 0;
    for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
        match n {
            "ListenOverflows" => overflows = v.parse().unwrap_or(0),
            "ListenDrops" => drops = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    (overflows, drops)
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A measured window: server and bench CPU and RSS at its start.
pub(crate) struct Window {
    pids: Vec<u32>,
    start: Vec<Sample>,
    bench: Sample,
    system_busy_s: f64,
    listen: (u64, u64),
    t0: Instant,
}

impl Window {
    pub(crate) fn start(pids: &[u32]) -> Result<Window> {
        let start = pids
            .iter()
            .map(|p| sample(Some(*p)))
            .collect::<Result<_>>()?;
        Ok(Window {
            pids: pids.to_vec(),
            start,
            bench: sample(None)?,
            system_busy_s: system_busy_s(),
            listen: listen_drops(),
            t0: Instant::now(),
        })
    }

    /// Closes the window. `units` is what the CPU is divided by (per million).
    pub(crate) fn end(&self, units: u64, unit_name: &str) -> Result<Cost> {
        let wall_s = self.t0.elapsed().as_secs_f64();
        let mut per_pid = Vec::new();
        let mut cpu_s = 0.0;
        let mut rss_before = 0;
        let mut rss_after = 0;
        for (pid, s0) in self.pids.iter().zip(&self.start) {
            let s1 = sample(Some(*pid))?;
            let d = s1.cpu_s - s0.cpu_s;
            cpu_s += d;
            rss_before += s0.rss_kib;
            rss_after += s1.rss_kib;
            per_pid.push(json!({
                "pid": pid, "cpu_s": round(d, 3),
                "rss_before_kib": s0.rss_kib, "rss_after_kib": s1.rss_kib,
            }));
        }
        let b1 = sample(None)?;
        let bench_cpu_s = b1.cpu_s - self.bench.cpu_s;
        let busy = system_busy_s() - self.system_busy_s;
        let listen = listen_drops();
        let per_million = if units > 0 {
            cpu_s / (units as f64 / 1e6)
        } else {
            0.0
        };
        Ok(Cost {
            measured: !self.pids.is_empty(),
            wall_s,
            cpu_s,
            per_million,
            unit_name: unit_name.to_owned(),
            rss_before,
            rss_after,
            per_pid,
            bench_cpu_s,
            bench_rss_kib: b1.rss_kib,
            other_cpu_s: (busy - cpu_s - bench_cpu_s).max(0.0),
            listen_overflows: listen.0.saturating_sub(self.listen.0),
            listen_drops: listen.1.saturating_sub(self.listen.1),
        })
    }
}

/// Server and bench cost over a window.
pub(crate) struct Cost {
    measured: bool,
    wall_s: f64,
    pub(crate) cpu_s: f64,
    pub(crate) per_million: f64,
    unit_name: String,
    pub(crate) rss_before: u64,
    pub(crate) rss_after: u64,
    per_pid: Vec<Value>,
    bench_cpu_s: f64,
    bench_rss_kib: u64,
    /// CPU used by every other process during the window (other engineers'
    /// builds and tests): above ~0.1 core the figures were taken under load.
    other_cpu_s: f64,
    listen_overflows: u64,
    listen_drops: u64,
}

impl Cost {
    pub(crate) fn server_json(&self) -> Value {
        if !self.measured {
            return Value::Null;
        }
        json!({
            "window_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_util": round(self.cpu_s / self.wall_s.max(1e-9), 3),
            "cpu_per_million": round(self.per_million, 3),
            "cpu_per_million_unit": self.unit_name,
            "rss_before_kib": self.rss_before,
            "rss_after_kib": self.rss_after,
            "processes": self.per_pid,
        })
    }

    pub(crate) fn bench_json(&self) -> Value {
        json!({
            "cpu_s": round(self.bench_cpu_s, 3),
            "cpu_util": round(self.bench_cpu_s / self.wall_s.max(1e-9), 3),
            "rss_kib": self.bench_rss_kib,
        })
    }

    /// The machine during the window: other processes' CPU, listen-queue drops.
    pub(crate) fn machine_json(&self) -> Value {
        json!({
            "other_cpu_s": round(self.other_cpu_s, 3),
            "other_cpu_util": round(self.other_cpu_s / self.wall_s.max(1e-9), 3),
            "listen_overflows": self.listen_overflows,
            "listen_drops": self.listen_drops,
        })
    }

    pub(crate) fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.measured {
            out.push(format!(
                "server cpu      {:.2} core-s over {:.1} s ({:.0}% of a core); {:.3} core-s per million {}",
                self.cpu_s,
                self.wall_s,
                100.0 * self.cpu_s / self.wall_s.max(1e-9),
                self.per_million,
                self.unit_name
            ));
            out.push(format!(
                "server rss      {:.1} MiB -> {:.1} MiB",
                self.rss_before as f64 / 1024.0,
                self.rss_after as f64 / 1024.0
            ));
        } else {
            out.push("server cost     not measured (pass --server-pid)".to_owned());
        }
        out.push(format!(
            "bench cpu       {:.2} core-s ({:.0}% of a core), rss {:.1} MiB",
            self.bench_cpu_s,
            100.0 * self.bench_cpu_s / self.wall_s.max(1e-9),
            self.bench_rss_kib as f64 / 1024.0
        ));
        let other = self.other_cpu_s / self.wall_s.max(1e-9);
        out.push(format!(
            "other load      {:.2} cores used by other processes{}; {} listen-queue overflows",
            other,
            if other > 0.1 {
                " (UNDER LOAD: re-run for clean figures)"
            } else {
                ""
            },
            self.listen_overflows
        ));
        out
    }
}

pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let line = "1234 (jobwire (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100";
        assert_eq!(cpu_ticks(line).ok(), Some(300));
    }

    #[test]
    fn parses_vmrss() {
        let s = "Name:\tjobwire\nVmRSS:\t   12345 kB\nThreads: 3\n";
        assert_eq!(vm_rss_kib(s).ok(), Some(12345));
    }

    #[test]
    fn reads_self() {
        let s = sample(None);
        assert!(s.is_ok_and(|s| s.rss_kib > 0));
    }
}
