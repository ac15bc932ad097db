//! Damaged store files: `serve` refuses to start with a message naming the file and
//! what to do (never a panic, never an empty store over lost data), `store check`
//! reports it, `store repair` moves it aside and the server starts on what was kept.

use crate::support::{bin, Process};
use serde_json::json;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

/// A data directory with a store holding 3 jobs of 41 events each, server stopped.
async fn store_with_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let http = reqwest::Client::new();
    for j in 0..3 {
        let r = http
            .post(format!("{}/v1/jobs", p.base))
            .json(&json!({"id": format!("j{j}")}))
            .send()
            .await
            .expect("create");
        assert!(r.status().is_success());
        for i in 0..40 {
            let r = http
                .post(format!("{}/v1/jobs/j{j}/events", p.base))
                .json(&json!({"type": "log", "line": format!("{i} {}", "y".repeat(200))}))
                .send()
                .await
                .expect("publish");
            assert!(r.status().is_success());
        }
    }
    assert!(p.terminate(), "clean stop");
    dir
}

async fn run(args: &[&str], dir: &Path) -> Output {
    let child = tokio::process::Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("JOBWIRE_LOG", "warn")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn jobwire");
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("jobwire should exit, not hang or serve")
        .expect("wait")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Damages the store with `damage`, then checks serve, check, repair and a restart.
async fn refused_then_repaired(name: &str, damage: impl FnOnce(&Path)) {
    let dir = store_with_data().await;
    let file = dir.path().join("jobwire.redb");
    damage(&file);

    let out = run(&["serve", "--listen", "127.0.0.1:0"], dir.path()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name}: serve must refuse: {stderr}"
    );
    assert!(
        !stdout.contains("listening"),
        "{name}: must not serve: {stdout}"
    );
    assert!(
        stderr.contains(&file.display().to_string()),
        "{name}: names the file: {stderr}"
    );
    assert!(
        stderr.contains("damaged") && stderr.contains("store repair"),
        "{name}: says what to do: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{name}: no panic: {stderr}"
    );

    let out = run(&["store", "check"], dir.path()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name}: check exit code: {stdout}{stderr}"
    );
    assert!(
        stdout.starts_with("DAMAGED") && stdout.contains(&file.display().to_string()),
        "{name}: {stdout}"
    );
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");

    let out = run(&["store", "repair"], dir.path()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}: repair: {stdout}{stderr}"
    );
    assert!(stdout.contains("repaired: kept"), "{name}: {stdout}");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("jobwire.redb.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{name}: the damaged file is kept aside");

    let out = run(&["store", "check"], dir.path()).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}: sound after repair: {:?}",
        text(&out)
    );
    let p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let r = reqwest::get(format!("{}/readyz", p.base))
        .await
        .expect("readyz");
    assert_eq!(
        r.status(),
        reqwest::StatusCode::OK,
        "{name}: serves after repair"
    );
    eprintln!("{name}: {stdout}");
}

fn cut(file: &Path, len: impl FnOnce(u64) -> u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open");
    let size = f.metadata().expect("stat").len();
    f.set_len(len(size)).expect("truncate");
}

/// Overwrites 64 bytes in every 4 KiB page from `from` (a fraction of the file).
/// Only the whole file (0.0) is used: garbling part of it may hit only free pages,
/// and then the store is rightly sound.
fn garble(file: &Path, from: f64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open");
    let size = f.metadata().expect("stat").len();
    let mut at = ((size as f64 * from) as u64 / 4096).max(1) * 4096;
    while at + 300 < size {
        f.seek(SeekFrom::Start(at + 200)).expect("seek");
        f.write_all(&[0xde; 64]).expect("write");
        at += 4096;
    }
}

#[tokio::test]
async fn one_byte_short() {
    refused_then_repaired("one byte short", |f| cut(f, |n| n - 1)).await;
}

#[tokio::test]
async fn cut_in_half() {
    refused_then_repaired("cut in half", |f| cut(f, |n| n / 2)).await;
}

#[tokio::test]
async fn truncated_to_4096_bytes() {
    refused_then_repaired("truncated to 4096", |f| cut(f, |_| 4096)).await;
}

#[tokio::test]
async fn zero_bytes_is_damage_not_a_fresh_store() {
    refused_then_repaired("0 bytes", |f| cut(f, |_| 0)).await;
}

#[tokio::test]
async fn garbled_pages() {
    refused_then_repaired("garbled pages", |f| garble(f, 0.0)).await;
}

#[tokio::test]
async fn a_missing_file_is_a_fresh_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["store", "check"], dir.path()).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let r = reqwest::get(format!("{}/readyz", p.base))
        .await
        .expect("readyz");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
}
