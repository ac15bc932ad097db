//! Fan-out ahead of the flush across a real crash: a watcher sees an event before
//! it is durable, the binary is killed with SIGKILL before the flush, the restarted
//! binary writes another event under the same seq, and the watcher, resuming with
//! the epoch it was given, is told to rewind and gets the new event: it never keeps
//! a seq the store took back.

use super::{answered, never_acked, publish_log, Reply};
use crate::support::{Process, Ws};
use serde_json::{json, Value};
use std::time::Duration;

/// The writer's pause between pushing a group and flushing it (the crash window).
const DELAY_MS: &str = "3000";

async fn json_frame(ws: &mut Ws) -> Value {
    ws.json().await
}

/// Publishes the event the crash will take back: it waits for a flush that the
/// kill prevents.
fn publish_lost(http: &reqwest::Client, base: &str, job: &str) -> Reply {
    publish_log(http, base, job, "lost in the crash")
}

/// Kills `p` with SIGKILL (its watcher saw `lost` pushed), checks `lost` was never
/// acknowledged, restarts on the same directory (no delay) and writes another
/// event under the same seq 2.
async fn crash_and_rewrite(
    mut p: Process,
    dir: &std::path::Path,
    http: &reqwest::Client,
    job: &str,
    lost: Reply,
) -> Process {
    p.kill9();
    never_acked(lost).await;
    let p2 = Process::start(dir, "127.0.0.1:0", &[]);
    let (_, v) = answered(publish_log(
        http,
        &p2.base,
        job,
        "written after the restart",
    ))
    .await;
    assert_eq!(v["seqs"], json!([2]), "the store reused seq 2: {v}");
    p2
}

#[tokio::test]
async fn a_watcher_of_an_event_lost_in_a_crash_is_told_to_rewind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("JOBWIRE_TEST_FLUSH_DELAY_MS", DELAY_MS)];
    let p = Process::start_env(dir.path(), "127.0.0.1:0", &[], &env);
    let http = reqwest::Client::new();
    let base = p.base.clone();
    let r = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"id": "render-7"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);

    let ws_url = format!("ws://{}/v1/jobs/render-7/ws", p.addr);
    let mut ws = Ws::connect(&ws_url).await;
    let snap = json_frame(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["seq"], 1);
    let epoch = snap["epoch"]
        .as_u64()
        .expect("the snapshot carries the epoch");

    let lost = publish_lost(&http, &base, "render-7");
    let seen = json_frame(&mut ws).await;
    assert_eq!(
        seen["seq"], 2,
        "the watcher sees the event before its flush"
    );
    assert_eq!(seen["line"], "lost in the crash");
    let p2 = crash_and_rewrite(p, dir.path(), &http, "render-7", lost).await;

    // Resuming with the old epoch: told to rewind, then the new event 2.
    let mut ws = Ws::connect(&format!(
        "ws://{}/v1/jobs/render-7/ws?since=2&epoch={epoch}",
        p2.addr
    ))
    .await;
    let snap = json_frame(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    let new_epoch = snap["epoch"].as_u64().expect("epoch");
    assert!(new_epoch > epoch, "a restart begins a new epoch");
    let notice = json_frame(&mut ws).await;
    assert_eq!(
        notice,
        json!({"type": "rewound", "job_id": "render-7", "since": 2, "from": 2, "epoch": new_epoch})
    );
    let again = json_frame(&mut ws).await;
    assert_eq!(again["seq"], 2);
    assert_eq!(again["line"], "written after the restart");

    // A client of the new epoch resumes with no rewind.
    let mut ws = Ws::connect(&format!(
        "ws://{}/v1/jobs/render-7/ws?since=2&epoch={new_epoch}",
        p2.addr
    ))
    .await;
    assert_eq!(json_frame(&mut ws).await["type"], "snapshot");
    ws.quiet_for(Duration::from_millis(300)).await;

    // Polling: the JSON history page says the same.
    let page: Value = http
        .get(format!(
            "{}/v1/jobs/render-7/events?since=2&epoch={epoch}",
            p2.base
        ))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    assert_eq!(page["rewound"], json!({"since": 2, "from": 2}), "{page}");
    assert_eq!(page["epoch"], new_epoch);
    assert_eq!(page["events"][0]["line"], "written after the restart");
    let page: Value = http
        .get(format!(
            "{}/v1/jobs/render-7/events?since=2&epoch={new_epoch}",
            p2.base
        ))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    assert!(page.get("rewound").is_none(), "{page}");

    // SSE: the event id carries the epoch, and a browser's Last-Event-ID from the
    // lost epoch is rewound the same way.
    let r = http
        .get(format!("{}/v1/jobs/render-7/events", p2.base))
        .header("accept", "text/event-stream")
        .header("last-event-id", format!("2:{epoch}"))
        .send()
        .await
        .expect("sse");
    let mut body = r;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let event_id = format!("id: 2:{new_epoch}\ndata: ");
    while !text.contains(&event_id) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), body.chunk()).await {
            Ok(Ok(Some(c))) => text.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
    }
    assert!(text.contains(r#""type":"rewound""#), "{text}");
    let (notice, event) = (text.find(r#""type":"rewound""#), text.find(&event_id));
    assert!(event.is_some(), "event ids are seq:epoch: {text}");
    assert!(notice < event, "the notice comes before the event: {text}");
}

/// The project channel: a channel watcher that was sent an event a crash took back
/// resumes with `positions` and the epoch, and is told to rewind that job (and only
/// that job) before its catch-up replays the event written under the same seq.
#[tokio::test]
async fn a_project_channel_watcher_of_an_event_lost_in_a_crash_is_told_to_rewind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("JOBWIRE_TEST_FLUSH_DELAY_MS", DELAY_MS)];
    let p = Process::start_env(dir.path(), "127.0.0.1:0", &[], &env);
    let http = reqwest::Client::new();
    let base = p.base.clone();
    for id in ["web-lost", "web-kept"] {
        let r = http
            .post(format!("{base}/v1/jobs"))
            .json(&json!({"id": id, "project": "web"}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201, "{id}");
    }
    let mut ws = Ws::connect(&format!("ws://{}/v1/projects/web/ws", p.addr)).await;
    ws.send(json!({"type": "resume"})).await;
    let mut epoch = None;
    loop {
        let f = json_frame(&mut ws).await;
        if f["type"] == "snapshot" {
            epoch = f["epoch"].as_u64();
        }
        if f["type"] == "ready" {
            break;
        }
    }
    let epoch = epoch.expect("the channel's snapshots carry the epoch");

    let lost = publish_lost(&http, &base, "web-lost");
    let seen = json_frame(&mut ws).await;
    assert_eq!(
        (seen["job_id"].as_str(), seen["seq"].as_u64()),
        (Some("web-lost"), Some(2)),
        "the channel sees the event before its flush: {seen}"
    );
    let p2 = crash_and_rewrite(p, dir.path(), &http, "web-lost", lost).await;

    let mut ws = Ws::connect(&format!("ws://{}/v1/projects/web/ws", p2.addr)).await;
    ws.send(json!({"type": "resume", "positions": {"web-lost": 2, "web-kept": 1}, "epoch": epoch}))
        .await;
    let mut frames = Vec::new();
    loop {
        let f = json_frame(&mut ws).await;
        let done = f["type"] == "ready";
        frames.push(f);
        if done {
            break;
        }
    }
    let of = |id: &str| -> Vec<&Value> { frames.iter().filter(|f| f["job_id"] == id).collect() };
    let lost = of("web-lost");
    let kinds: Vec<&str> = lost.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(kinds, ["snapshot", "rewound", "log"], "{frames:?}");
    let new_epoch = lost[0]["epoch"].as_u64().expect("epoch");
    assert!(new_epoch > epoch);
    assert_eq!(
        *lost[1],
        json!({"type": "rewound", "job_id": "web-lost", "since": 2, "from": 2, "epoch": new_epoch})
    );
    assert_eq!(
        (lost[2]["seq"].as_u64(), lost[2]["line"].as_str()),
        (Some(2), Some("written after the restart"))
    );
    let kept: Vec<&str> = of("web-kept")
        .iter()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert_eq!(
        kept,
        ["snapshot"],
        "nothing of web-kept was lost: {frames:?}"
    );
}
