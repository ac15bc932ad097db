//! Crash and restart scripts against the real binary.

mod abort;
mod background;
mod epochs;
mod journal;
mod window;
mod writer_panic;

use crate::support::{seqs, Process, Ws};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn post(
    http: &reqwest::Client,
    url: String,
    body: Value,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let r = http.post(url).json(&body).send().await?;
    let st = r.status();
    let v = r.json().await.unwrap_or(Value::Null);
    Ok((st, v))
}

/// A publish's reply, awaited later: `Err` when the server died before answering.
type Reply = tokio::task::JoinHandle<Result<(StatusCode, Value), reqwest::Error>>;

/// Publishes one log line to `job` on a task of its own: its reply may wait for a
/// flush (a window, a delay) or never come (a crash).
fn publish_log(http: &reqwest::Client, base: &str, job: &str, line: &str) -> Reply {
    let (http, url) = (http.clone(), format!("{base}/v1/jobs/{job}/events"));
    let body = json!({"type": "log", "line": line});
    tokio::spawn(async move { post(&http, url, body).await })
}

/// The reply of a publish that must answer: its status and body.
async fn answered(reply: Reply) -> (StatusCode, Value) {
    reply.await.expect("task").expect("publish")
}

/// A publish that a crash took: it was never acknowledged.
async fn never_acked(reply: Reply) {
    let reply = reply.await.expect("task");
    assert!(
        !reply.as_ref().is_ok_and(|(st, _)| st.is_success()),
        "the lost publish was never acknowledged: {reply:?}"
    );
}

#[tokio::test]
async fn every_acknowledged_event_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let http = reqwest::Client::new();
    let base = p.base.clone();
    for w in 0..4 {
        let (st, _) = post(
            &http,
            format!("{base}/v1/jobs"),
            json!({"id": format!("job{w}")}),
        )
        .await
        .expect("create");
        assert_eq!(st, StatusCode::CREATED);
    }
    // Four concurrent publishers; each records what the server acknowledged.
    let acked: Arc<Mutex<Vec<(String, u64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (http, base, acked, stop) = (http.clone(), base.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let job = format!("job{w}");
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let line = format!("{job}-line-{i}");
                match post(
                    &http,
                    format!("{base}/v1/jobs/{job}/events"),
                    json!({"type": "log", "line": line}),
                )
                .await
                {
                    Ok((StatusCode::OK, v)) => {
                        acked
                            .lock()
                            .expect("lock")
                            .push((job.clone(), seqs(&v)[0], line))
                    }
                    _ => break, // the server is gone: unacknowledged, may or may not be stored
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    p.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("publisher");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "only {} publishes were acknowledged before the kill",
        acked.len()
    );

    let p2 = Process::start(dir.path(), "127.0.0.1:0", &[]);
    for w in 0..4 {
        let job = format!("job{w}");
        let mut stored: Vec<Value> = Vec::new();
        let mut since = 0;
        loop {
            let r = http
                .get(format!(
                    "{}/v1/jobs/{job}/events?since={since}&limit=1000",
                    p2.base
                ))
                .send()
                .await
                .expect("history");
            let page: Value = r.json().await.expect("json");
            let events = page["events"].as_array().expect("events").clone();
            if events.is_empty() {
                break;
            }
            since = page["next_since"].as_u64().expect("next");
            stored.extend(events);
        }
        // Contiguous seqs from 1.
        for (i, e) in stored.iter().enumerate() {
            assert_eq!(e["seq"], i as u64 + 1, "{job}: gap after restart");
        }
        for (j, seq, line) in acked.iter().filter(|(j, _, _)| *j == job) {
            let e = &stored[(*seq - 1) as usize];
            assert_eq!(
                (e["line"].as_str(), e["job_id"].as_str()),
                (Some(line.as_str()), Some(j.as_str())),
                "acknowledged event lost or changed"
            );
        }
        // New publishes continue the sequence; nothing is reused.
        let (st, v) = post(
            &http,
            format!("{}/v1/jobs/{job}/events", p2.base),
            json!({"type": "log", "line": "after restart"}),
        )
        .await
        .expect("post");
        assert_eq!(st, StatusCode::OK);
        assert_eq!(seqs(&v)[0], stored.len() as u64 + 1);
    }
    // A watcher resumes with since after the restart.
    let mut ws = Ws::connect(&format!("ws://{}/v1/jobs/job0/ws?since=1", p2.addr)).await;
    assert_eq!(ws.json().await["type"], "snapshot");
    assert_eq!(ws.json().await["seq"], 2);
}

#[tokio::test]
async fn sigterm_closes_sockets_1012_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Process::start(dir.path(), "127.0.0.1:0", &["--shutdown-grace", "5s"]);
    let http = reqwest::Client::new();
    post(&http, format!("{}/v1/jobs", p.base), json!({"id": "j"}))
        .await
        .expect("create");
    post(
        &http,
        format!("{}/v1/jobs/j/events", p.base),
        json!({"type": "progress", "progress": 33}),
    )
    .await
    .expect("publish");
    let mut ws = Ws::connect(&format!("ws://{}/v1/jobs/j/ws", p.addr)).await;
    assert_eq!(ws.json().await["type"], "snapshot");
    let waiter = std::thread::spawn(move || {
        let ok = p.terminate();
        (ok, p)
    });
    assert_eq!(ws.close_code().await, 1012);
    let (ok, _p) = waiter.join().expect("join");
    assert!(ok, "jobwire exits 0 after SIGTERM");
    let p2 = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let job: Value = http
        .get(format!("{}/v1/jobs/j", p2.base))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(job["progress"], 33.0);
    assert_eq!(job["seq"], 2);
}
