//! A full disk under the embedded store: 507 `storage_full`, `/readyz` 503, reads go
//! on, and once space is freed writes and readiness come back without a restart.
//! The disk is a real 8 MiB tmpfs (the test needs root and `mount`; where mounting
//! is refused it says so loudly and does not pretend to pass).

use crate::support::{code, Frame, Process, Ws};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the disk refuses (ENOSPC); returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![7u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

async fn publish(http: &reqwest::Client, base: &str, i: u64) -> (StatusCode, Value) {
    let r = http
        .post(format!("{base}/v1/jobs/j/events"))
        .json(&json!({"type": "log", "line": format!("line {i} {}", "x".repeat(1000)), "event_id": format!("e{i}")}))
        .send()
        .await
        .expect("publish");
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn ready(http: &reqwest::Client, base: &str) -> StatusCode {
    http.get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz")
        .status()
}

#[tokio::test]
async fn a_full_disk_answers_507_and_heals_without_a_restart() {
    let Some(disk) = Tmpfs::mount("8m") else {
        eprintln!(
            "\n!!!!! SKIPPED faults::disk_full: cannot mount a tmpfs here (needs root and mount); \
             the full-disk path is NOT tested on this machine !!!!!\n"
        );
        return;
    };
    let p = Process::start(disk.path(), "127.0.0.1:0", &[]);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/jobs", p.base))
        .json(&json!({"id": "j"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    // A watcher, reading in the background until its socket closes.
    let mut ws = Ws::connect(&format!("ws://{}/v1/jobs/j/ws", p.addr)).await;
    let snap = ws.json().await;
    let epoch = snap["epoch"].as_u64().expect("epoch");
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            match ws.frame().await {
                Frame::Json(v) => seen.push(v["seq"].as_u64().unwrap_or(0)),
                Frame::Close(c) => return (seen, c),
            }
        }
    });
    let mut acked: Vec<u64> = Vec::new();
    for i in 0..20 {
        let (st, _) = publish(&http, &p.base, i).await;
        assert_eq!(st, StatusCode::OK);
        acked.push(i);
    }
    let filler = fill(disk.path());
    // redb may still have free pages inside its file; publish until the disk refuses.
    let mut refused = Vec::new();
    let mut i = 20;
    while refused.is_empty() {
        assert!(i < 3000, "the server never reported the disk full");
        let (st, v) = publish(&http, &p.base, i).await;
        match st {
            StatusCode::OK => acked.push(i),
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(code(&v), "storage_full", "{v}");
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("out of space")),
                    "{v}"
                );
                refused.push(i);
            }
            other => panic!("unexpected {other}: {v}"),
        }
        i += 1;
    }
    assert_eq!(ready(&http, &p.base).await, StatusCode::SERVICE_UNAVAILABLE);
    // While full: writes keep being refused with the same code, reads keep working.
    let (st, v) = publish(&http, &p.base, i).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::INSUFFICIENT_STORAGE, "storage_full")
    );
    refused.push(i);
    let r = http
        .get(format!("{}/v1/jobs/j", p.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let job: Value = r.json().await.expect("json");
    assert_eq!(
        job["seq"],
        acked.len() as u64 + 1,
        "only acknowledged events count"
    );

    // A refused publish may have been pushed ahead of its failed flush: then its
    // watchers were closed with `resync` (4002), to resume with their epoch.
    let stored = acked.len() as u64 + 1;
    let (seen, close) = tokio::time::timeout(Duration::from_secs(2), watcher)
        .await
        .map(|r| r.expect("watcher"))
        .unwrap_or_default();
    let max_seen = seen.iter().copied().max().unwrap_or(1);
    eprintln!("disk_full: watcher saw up to {max_seen}, {stored} stored, close {close}");
    if max_seen > stored {
        assert_eq!(close, 4002, "a watcher of a taken-back event resyncs");
    }
    assert!(max_seen >= stored, "the watcher saw every stored event");

    std::fs::remove_file(&filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&http, &p.base).await != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "/readyz did not recover after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The refused publishes are retried (same event_id) and new ones go through.
    for &i in refused.iter().chain([i + 1, i + 2].iter()) {
        let (st, v) = publish(&http, &p.base, i).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        acked.push(i);
    }
    // The watcher resumes where it was, with its epoch: told to rewind when it
    // held a taken-back seq, then given exactly the stored events after that.
    let mut ws = Ws::connect(&format!(
        "ws://{}/v1/jobs/j/ws?since={max_seen}&epoch={epoch}",
        p.addr
    ))
    .await;
    assert_eq!(ws.json().await["type"], "snapshot");
    let mut next = max_seen + 1;
    if max_seen > stored {
        let notice = ws.json().await;
        assert_eq!(notice["type"], "rewound", "{notice}");
        assert_eq!(notice["from"], stored + 1, "{notice}");
        next = stored + 1;
    }
    let total = acked.len() as u64 + 1;
    while next <= total {
        let e = ws.json().await;
        assert_eq!(e["seq"], next, "{e}");
        next += 1;
    }
    let r = http
        .get(format!("{}/v1/jobs/j/events?since=0&limit=10000", p.base))
        .send()
        .await
        .expect("history");
    let page: Value = r.json().await.expect("json");
    let events = page["events"].as_array().expect("events");
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], n as u64 + 1, "contiguous seqs");
    }
    let lines: Vec<String> = events
        .iter()
        .filter_map(|e| e["line"].as_str())
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    for i in &acked {
        let want = format!("line {i}");
        assert_eq!(
            lines.iter().filter(|l| **l == want).count(),
            1,
            "acknowledged event {i} must be stored exactly once"
        );
    }
    assert_eq!(
        lines.len(),
        acked.len(),
        "nothing un-acknowledged was stored"
    );
}
