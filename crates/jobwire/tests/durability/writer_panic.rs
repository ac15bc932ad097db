//! A bug that kills the embedded store's writer thread (stood in for by the
//! `JOBWIRE_TEST_WRITER_PANIC_ON` hook): the process stays up for reads, but
//! `/readyz` answers 503 so an orchestrator restarts it, writes answer 503
//! `storage_unavailable` (not `shutting_down`), and a restart finds every
//! acknowledged write.

use crate::support::{get_json, Process};
use serde_json::{json, Value};

#[tokio::test]
async fn a_dead_writer_turns_readyz_503_and_writes_storage_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("JOBWIRE_TEST_WRITER_PANIC_ON", "poison")];
    let mut p = Process::start_env(dir.path(), "127.0.0.1:0", &[], &env);
    let http = reqwest::Client::new();
    let base = p.base.clone();
    for id in ["render-1", "poison"] {
        let r = http
            .post(format!("{base}/v1/jobs"))
            .json(&json!({"id": id}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
    }
    let r = http
        .post(format!("{base}/v1/jobs/render-1/events"))
        .json(&json!({"type": "progress", "progress": 40}))
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 200, "acknowledged before the writer dies");
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);

    for id in ["poison", "render-1"] {
        let r = http
            .post(format!("{base}/v1/jobs/{id}/events"))
            .json(&json!({"type": "log", "line": "after"}))
            .send()
            .await
            .expect("publish");
        assert_eq!(r.status(), 503, "{id}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "storage_unavailable", "{id}: {v}");
    }
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "not ready once the writer is gone");
    // Reads still answer.
    let job = get_json(&http, &format!("{base}/v1/jobs/render-1")).await;
    assert_eq!(job["progress"], 40.0);
    p.kill9();

    let p2 = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let job = get_json(&http, &format!("{}/v1/jobs/render-1", p2.base)).await;
    assert_eq!(
        (job["progress"].as_f64(), job["seq"].as_u64()),
        (Some(40.0), Some(2))
    );
}
