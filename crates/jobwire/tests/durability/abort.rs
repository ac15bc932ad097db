//! A group that fails half-way through (stood in for by the `JOBWIRE_TEST_ABORT_ON`
//! hook: a publish to a matching job fails as a storage error, as a failed redb
//! read would): nothing of the group is acknowledged or kept (the requests before
//! the failing one, and after it in the same group, answer `storage_unavailable`), a
//! watcher that was pushed one of its events is closed with `4002 resync` and told
//! to rewind when it resumes, and once the store takes writes again every
//! acknowledged event is there, across a `kill -9` too.

use super::{answered, post, publish_log, Reply};
use crate::support::{get_json, Process, Ws};
use serde_json::{json, Value};
use std::time::Duration;

async fn refused(reply: Reply, what: &str) {
    let (status, v) = answered(reply).await;
    assert_eq!(status, 503, "{what}: {v}");
    assert_eq!(v["error"]["code"], "storage_unavailable", "{what}: {v}");
}

async fn create(http: &reqwest::Client, base: &str, ids: &[&str]) {
    for id in ids {
        let (st, v) = post(http, format!("{base}/v1/jobs"), json!({ "id": id }))
            .await
            .expect("create");
        assert_eq!(st, 201, "{id}: {v}");
    }
}

/// Publishes until the store takes writes again (it probes every 500 ms).
async fn publish_until_ok(http: &reqwest::Client, base: &str, id: &str, line: &str) -> Value {
    for _ in 0..100 {
        let (status, v) = answered(publish_log(http, base, id, line)).await;
        if status == 200 {
            return v;
        }
        assert_eq!(v["error"]["code"], "storage_unavailable", "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the store never took writes again");
}

fn lines(job: &Value) -> Vec<String> {
    job["logs"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|x| x["line"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_group_that_fails_half_way_acknowledges_and_keeps_none_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No window: what queues while the writer holds a group back is the next group,
    // in arrival order. Checkpoints held off, so the acknowledged records must be
    // replayed after the failure.
    let env = [
        ("JOBWIRE_TEST_ABORT_ON", "doomed"),
        ("JOBWIRE_FLUSH_WINDOW", "0s"),
        ("JOBWIRE_TEST_FLUSH_DELAY_MS", "1500"),
        ("JOBWIRE_TEST_CHECKPOINT_MS", "600000"),
    ];
    let mut p = Process::start_env(dir.path(), "127.0.0.1:0", &[], &env);
    let http = reqwest::Client::new();
    let base = p.base.clone();
    create(&http, &base, &["render-a", "render-b", "doomed", "hold"]).await;
    let (status, _) = answered(publish_log(&http, &base, "render-a", "acked")).await;
    assert_eq!(status, 200);

    // The writer sleeps 1.5 s before flushing `hold`'s group; three publishes queue
    // meanwhile and become one group: render-a, then the failing one, then render-b.
    let hold = publish_log(&http, &base, "hold", "held");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = publish_log(&http, &base, "render-a", "lost");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let doomed = publish_log(&http, &base, "doomed", "fails");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = publish_log(&http, &base, "render-b", "never applied");
    let (status, _) = answered(hold).await;
    assert_eq!(status, 200, "the group before is acknowledged");
    refused(a, "applied before the failure").await;
    refused(doomed, "the failing request").await;
    refused(b, "after the failure, never applied").await;

    // Nothing of the failed group is visible; the acknowledged event is.
    let job = get_json(&http, &format!("{base}/v1/jobs/render-a")).await;
    assert_eq!(
        (job["seq"].as_u64(), lines(&job)),
        (Some(2), vec!["acked".to_owned()])
    );
    let job = get_json(&http, &format!("{base}/v1/jobs/render-b")).await;
    assert_eq!(job["seq"], 1);

    // The acknowledged records since the last checkpoint were replayed into the
    // store: the next event follows them (seq 3 was never acknowledged nor sent).
    let v = publish_until_ok(&http, &base, "render-a", "after").await;
    assert_eq!(v["seqs"], json!([3]), "{v}");
    p.kill9();

    let p2 = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let job = |id: &'static str| {
        let (http, url) = (http.clone(), format!("{}/v1/jobs/{id}", p2.base));
        async move { get_json(&http, &url).await }
    };
    assert_eq!(
        lines(&job("render-a").await),
        vec!["acked".to_owned(), "after".to_owned()]
    );
    assert_eq!(lines(&job("hold").await), vec!["held".to_owned()]);
    assert_eq!(job("render-b").await["seq"], 1);
    assert_eq!(job("doomed").await["seq"], 1);
}

#[tokio::test]
async fn a_group_that_fails_after_pushing_ahead_resyncs_its_watcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("JOBWIRE_TEST_ABORT_ON", "doomed"),
        ("JOBWIRE_FLUSH_WINDOW", "1500ms"),
        ("JOBWIRE_TEST_CHECKPOINT_MS", "600000"),
    ];
    let p = Process::start_env(dir.path(), "127.0.0.1:0", &[], &env);
    let http = reqwest::Client::new();
    let base = p.base.clone();
    create(&http, &base, &["render-a", "doomed"]).await;
    let (status, _) = answered(publish_log(&http, &base, "render-a", "acked")).await;
    assert_eq!(status, 200);
    let url = format!("ws://{}/v1/jobs/render-a/ws", p.addr);
    let mut ws = Ws::connect(&url).await;
    let snap = ws.json().await;
    assert_eq!(snap["seq"], 2);
    let epoch = snap["epoch"].as_u64().expect("epoch");

    // Pushed at once, inside the window; then the group fails before its flush.
    let a = publish_log(&http, &base, "render-a", "pushed, then lost");
    let ev = ws.json().await;
    assert_eq!(
        (ev["seq"].as_u64(), ev["line"].as_str()),
        (Some(3), Some("pushed, then lost"))
    );
    refused(
        publish_log(&http, &base, "doomed", "fails"),
        "the failing request",
    )
    .await;
    refused(a, "pushed ahead, never acknowledged").await;
    assert_eq!(
        ws.close_code().await,
        4002,
        "the watcher holds a taken-back event"
    );

    // Resuming from what it was given, with its epoch: told to drop seq 3 on.
    publish_until_ok(&http, &base, "render-a", "written after").await;
    let mut ws = Ws::connect(&format!("{url}?since=3&epoch={epoch}")).await;
    let snap = ws.json().await;
    assert_eq!(snap["seq"], 3);
    assert_eq!(
        lines(&snap["job"]),
        vec!["acked".to_owned(), "written after".to_owned()]
    );
    let rw = ws.json().await;
    assert_eq!(
        (
            rw["type"].as_str(),
            rw["since"].as_u64(),
            rw["from"].as_u64()
        ),
        (Some("rewound"), Some(3), Some(3)),
        "{rw}"
    );
    assert!(rw["epoch"].as_u64() > Some(epoch), "{rw}");
    let ev = ws.json().await;
    assert_eq!(
        (ev["seq"].as_u64(), ev["line"].as_str()),
        (Some(3), Some("written after"))
    );
}
