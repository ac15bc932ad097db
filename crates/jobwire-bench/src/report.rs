//! Output: one JSON line with every figure and the parameters, then a readable
//! summary. Latencies are kept in HDR histograms in microseconds.

use crate::procfs::{round, Cost};
use anyhow::Result;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A latency histogram in microseconds, 1 µs to 10 min, 3 significant digits.
pub(crate) fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

/// Records `us` microseconds, clamped into the histogram's range.
pub(crate) fn record(h: &mut Histogram<u64>, us: u64) {
    let v = us.clamp(1, h.high());
    // In range by construction; saturate rather than fail on a counter overflow.
    let _ = h.record(v);
}

fn ms(us: u64) -> f64 {
    round(us as f64 / 1000.0, 3)
}

/// Percentiles in milliseconds.
pub(crate) fn hist_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "mean_ms": round(h.mean() / 1000.0, 3),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

pub(crate) fn hist_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".to_owned();
    }
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms  (n={})",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

/// Error tallies by kind (first line of the message, without numbers that vary).
#[derive(Default)]
pub(crate) struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    pub(crate) fn add(&self, kind: impl Into<String>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(kind.into()).or_insert(0) += 1;
    }

    pub(crate) fn add_err(&self, e: &anyhow::Error) {
        // "context: cause" keeps the kind readable without per-socket details.
        let mut kind = format!("{e:#}");
        kind.truncate(160);
        self.add(kind)
    }

    pub(crate) fn total(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }

    pub(crate) fn json(&self) -> Value {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    }

    pub(crate) fn line(&self) -> String {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.is_empty() {
            return "none".to_owned();
        }
        let mut v: Vec<_> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter()
            .take(4)
            .map(|(k, n)| format!("{n} x {k}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What a scenario hands back for printing.
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) params: Value,
    pub(crate) results: Map<String, Value>,
    pub(crate) summary: Vec<String>,
    pub(crate) cost: Option<Cost>,
    /// False when a correctness check failed (loss, gaps, failed clients).
    pub(crate) ok: bool,
}

impl Report {
    pub(crate) fn new(scenario: &'static str, params: Value) -> Report {
        Report {
            scenario,
            params,
            results: Map::new(),
            summary: Vec::new(),
            cost: None,
            ok: true,
        }
    }

    pub(crate) fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.results.insert(key.to_owned(), v.into());
    }

    pub(crate) fn line(&mut self, s: impl Into<String>) {
        self.summary.push(s.into());
    }

    pub(crate) fn lines(&mut self, v: Vec<String>) {
        self.summary.extend(v);
    }

    /// Prints the JSON line, then the summary.
    pub(crate) fn print(&self, env: Value) -> Result<()> {
        let (server, bench, machine) = match &self.cost {
            Some(c) => (c.server_json(), c.bench_json(), c.machine_json()),
            None => (Value::Null, Value::Null, Value::Null),
        };
        let line = json!({
            "scenario": self.scenario,
            "ok": self.ok,
            "params": self.params,
            "results": self.results,
            "server": server,
            "bench": bench,
            "machine": machine,
            "env": env,
        });
        println!("{}", serde_json::to_string(&line)?);
        println!();
        println!(
            "== {} {}",
            self.scenario,
            if self.ok { "" } else { "(CHECK FAILED)" }
        );
        for l in &self.summary {
            println!("  {l}");
        }
        if let Some(c) = &self.cost {
            for l in c.summary() {
                println!("  {l}");
            }
        }
        Ok(())
    }
}
