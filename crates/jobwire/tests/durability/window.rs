//! The flush window (`--flush-window`): requests that arrive while a group is open
//! are applied and pushed to watchers as they come, acknowledged together after
//! one journal flush, and across a real crash inside the window the watcher that
//! saw an unflushed event is told to rewind (see `epochs`).

use super::{answered, never_acked, publish_log, Reply};
use crate::support::{metric_at, Process, Ws};
use serde_json::{json, Value};
use std::time::Duration;

/// Long enough that both publishes below land in one window on a slow machine.
const WINDOW: &str = "1500ms";
const FLUSHES: &str = "jobwire_store_flush_duration_seconds_count";

async fn flushes(http: &reqwest::Client, base: &str) -> f64 {
    metric_at(http, base, FLUSHES).await
}

fn publish(http: &reqwest::Client, base: &str, line: &str) -> Reply {
    publish_log(http, base, "render-9", line)
}

async fn seqs(reply: Reply) -> Value {
    let (st, v) = answered(reply).await;
    assert_eq!(st, 200, "{v}");
    v["seqs"].clone()
}

#[tokio::test]
async fn a_flush_window_pushes_at_once_acks_after_one_flush_and_rewinds_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Checkpoints held off: every group is one journal flush, counted exactly.
    let env = [
        ("JOBWIRE_FLUSH_WINDOW", WINDOW),
        ("JOBWIRE_TEST_CHECKPOINT_MS", "600000"),
    ];
    let mut p = Process::start_env(dir.path(), "127.0.0.1:0", &[], &env);
    let http = reqwest::Client::new();
    let base = p.base.clone();
    let r = http
        .post(format!("{base}/v1/jobs"))
        .json(&json!({"id": "render-9"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let mut ws = Ws::connect(&format!("ws://{}/v1/jobs/render-9/ws", p.addr)).await;
    let snap = ws.json().await;
    assert_eq!(snap["seq"], 1);
    let epoch = snap["epoch"].as_u64().expect("epoch");
    let before = flushes(&http, &base).await;

    // Two publishes, the second sent only after the watcher saw the first: both
    // are pushed while their acks still wait for the window.
    let first = publish(&http, &base, "frame 1");
    let seen = ws.json().await;
    assert_eq!(
        (seen["seq"].as_u64(), seen["line"].as_str()),
        (Some(2), Some("frame 1"))
    );
    assert!(!first.is_finished(), "the first ack waits for the window");
    let second = publish(&http, &base, "frame 2");
    let seen = ws.json().await;
    assert_eq!(
        (seen["seq"].as_u64(), seen["line"].as_str()),
        (Some(3), Some("frame 2"))
    );
    assert!(
        !first.is_finished() && !second.is_finished(),
        "both acks wait"
    );
    assert_eq!(seqs(first).await, json!([2]));
    assert_eq!(seqs(second).await, json!([3]));
    assert_eq!(
        flushes(&http, &base).await - before,
        1.0,
        "the two publishes share one journal flush"
    );

    // A third is pushed, then the process dies inside the window: never acked.
    let lost = publish(&http, &base, "lost in the crash");
    let seen = ws.json().await;
    assert_eq!(seen["seq"], 4);
    p.kill9();
    never_acked(lost).await;

    // Restarted: the acknowledged two are there; seq 4 is written again.
    let p2 = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let again = publish(&http, &p2.base, "written after the restart");
    assert_eq!(seqs(again).await, json!([4]));
    let mut ws = Ws::connect(&format!(
        "ws://{}/v1/jobs/render-9/ws?since=1&epoch={epoch}",
        p2.addr
    ))
    .await;
    let snap = ws.json().await;
    assert_eq!(snap["type"], "snapshot");
    let new_epoch = snap["epoch"].as_u64().expect("epoch");
    assert!(new_epoch > epoch);
    // Resumed from 1 in the old epoch: 2 and 3 were durable, so no rewind before 4.
    let lines: Vec<Value> = [ws.json().await, ws.json().await, ws.json().await]
        .into_iter()
        .map(|f| json!([f["type"], f["seq"], f["line"]]))
        .collect();
    assert_eq!(
        lines,
        vec![
            json!(["log", 2, "frame 1"]),
            json!(["log", 3, "frame 2"]),
            json!(["log", 4, "written after the restart"]),
        ],
        "the acknowledged events survive the crash"
    );
    ws.quiet_for(Duration::from_millis(300)).await;

    // The watcher that kept seq 4 of the old epoch is told to rewind to it.
    let mut ws = Ws::connect(&format!(
        "ws://{}/v1/jobs/render-9/ws?since=4&epoch={epoch}",
        p2.addr
    ))
    .await;
    assert_eq!(ws.json().await["type"], "snapshot");
    assert_eq!(
        ws.json().await,
        json!({"type": "rewound", "job_id": "render-9", "since": 4, "from": 4, "epoch": new_epoch})
    );
    let frame = ws.json().await;
    assert_eq!(
        (frame["seq"].as_u64(), frame["line"].as_str()),
        (Some(4), Some("written after the restart"))
    );
}
