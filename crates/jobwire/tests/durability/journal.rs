//! The embedded store's journal across real crashes: with checkpoints held off
//! (`JOBWIRE_TEST_CHECKPOINT_MS`), every acknowledged write lives only in the journal
//! when the binary is killed with SIGKILL; the restarted binary has all of it, a
//! torn record at the journal's end is ignored, and before the crash every read
//! (snapshot, history, listing) already showed what the store's last
//! checkpoint did not hold.

use crate::support::{seqs, Process};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write;

/// Longer than the test: no checkpoint happens before the kill.
const NO_CHECKPOINT: [(&str, &str); 1] = [("JOBWIRE_TEST_CHECKPOINT_MS", "600000")];

async fn get(http: &reqwest::Client, url: String) -> Value {
    let r = http.get(url).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let r = http.post(url).json(&body).send().await.expect("post");
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.expect("json")
}

/// What the server shows of the job `id`: its seq, its event lines in order.
async fn shown(http: &reqwest::Client, base: &str, id: &str) -> (u64, Vec<String>) {
    let job = get(http, format!("{base}/v1/jobs/{id}")).await;
    let page = get(
        http,
        format!("{base}/v1/jobs/{id}/events?since=0&limit=1000"),
    )
    .await;
    let events = page["events"].as_array().expect("events");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "{id}: contiguous history");
    }
    let lines = events
        .iter()
        .filter_map(|e| e["line"].as_str().map(str::to_owned))
        .collect();
    (job["seq"].as_u64().expect("seq"), lines)
}

#[tokio::test]
async fn what_only_the_journal_holds_survives_kill_9_and_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Process::start_env(dir.path(), "127.0.0.1:0", &[], &NO_CHECKPOINT);
    let http = reqwest::Client::new();
    let base = p.base.clone();
    let mut want = Vec::new();
    for j in 0..3 {
        let id = format!("render-{j}");
        post(&http, format!("{base}/v1/jobs"), json!({"id": id})).await;
        let mut lines = Vec::new();
        for i in 0..40 {
            let line = format!("{id} frame {i}");
            let v = post(
                &http,
                format!("{base}/v1/jobs/{id}/events"),
                json!({"type": "log", "line": line, "event_id": format!("e{i}")}),
            )
            .await;
            assert_eq!(seqs(&v), vec![i as u64 + 2]);
            lines.push(line);
        }
        want.push((id, lines));
    }
    // One job ends: its owner's notification is written in the same group.
    post(
        &http,
        format!("{base}/v1/jobs/render-0/events"),
        json!({"type": "status", "status": "in_progress"}),
    )
    .await;
    post(
        &http,
        format!("{base}/v1/jobs/render-0/events"),
        json!({"type": "completed", "result": {"frames": 40}}),
    )
    .await;

    // Before the crash, reads show what the last checkpoint (the empty store at
    // open) does not hold: snapshots, history, listings.
    for (id, lines) in &want {
        let (seq, shown_lines) = shown(&http, &base, id).await;
        let extra = 2 * u64::from(id == "render-0");
        assert_eq!(seq, 41 + extra, "{id}");
        assert_eq!(&shown_lines, lines, "{id}");
    }
    let list = get(&http, format!("{base}/v1/jobs?limit=2")).await;
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, ["render-0", "render-1"], "{list}");
    let list = get(&http, format!("{base}/v1/jobs?status=completed")).await;
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(1), "{list}");

    p.kill9();
    let journal = dir.path().join("jobwire.journal");
    let len = std::fs::metadata(&journal).expect("journal").len();
    assert!(len > 0, "the journal holds the writes");
    // A torn record where the next one would go: a header with a bad checksum,
    // then garbage. (The file is preallocated: overwrite right after the last
    // record by finding the first all-zero run.)
    let mut bytes = std::fs::read(&journal).expect("read journal");
    let end = bytes
        .windows(64)
        .position(|w| w.iter().all(|b| *b == 0))
        .expect("zeroed space after the records");
    let torn: Vec<u8> = (0..40u8)
        .map(|b| b.wrapping_mul(37).wrapping_add(1))
        .collect();
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::File::create(&journal)
        .and_then(|mut f| f.write_all(&bytes))
        .expect("write journal");

    let p2 = Process::start(dir.path(), "127.0.0.1:0", &[]);
    for (id, lines) in &want {
        let (seq, shown_lines) = shown(&http, &p2.base, id).await;
        let extra = 2 * u64::from(id == "render-0");
        assert_eq!(seq, 41 + extra, "{id}: every acknowledged event is back");
        assert_eq!(&shown_lines, lines, "{id}");
    }
    let job = get(&http, format!("{}/v1/jobs/render-0", p2.base)).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["result"]["frames"], 40);
    // Idempotency keys came back with the events: a retry is not a new event.
    let v = post(
        &http,
        format!("{}/v1/jobs/render-1/events", p2.base),
        json!({"type": "log", "line": "render-1 frame 3", "event_id": "e3"}),
    )
    .await;
    assert_eq!(seqs(&v), vec![5]);
    // New writes continue the sequence.
    let v = post(
        &http,
        format!("{}/v1/jobs/render-1/events", p2.base),
        json!({"type": "log", "line": "after"}),
    )
    .await;
    assert_eq!(seqs(&v), vec![42]);
}
