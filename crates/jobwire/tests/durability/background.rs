//! The embedded store's background checkpoints across real crashes. A test hook
//! (`JOBWIRE_TEST_CHECKPOINT_DELAY_MS`) holds every checkpoint's commit on its
//! thread, so the script acts while one is committing: the writer answers from
//! what the committing checkpoint holds (jobs it created, idempotency keys, a
//! terminal status) and from what came after it, acknowledges without waiting
//! for the commit, makes an API key wait for it, and a SIGKILL in the middle loses
//! nothing: the restarted binary chains both journal segments.

use super::post;
use crate::support::{code, get_json, hs256, metric_at, seqs, Process};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "background-checkpoint-secret-0123456789";
/// How long each checkpoint's commit is held.
const HOLD: Duration = Duration::from_millis(4000);

fn held() -> [(&'static str, &'static str); 2] {
    [
        ("JOBWIRE_TEST_CHECKPOINT_MS", "200"),
        ("JOBWIRE_TEST_CHECKPOINT_DELAY_MS", "4000"),
    ]
}

/// A client that speaks as the tenant's admin.
fn admin() -> reqwest::Client {
    let token = hs256(
        SECRET,
        json!({"sub": "admin", "tenant": "studio", "scope": "jobs:admin"}),
    );
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}").parse().expect("header");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Process {
    start_with(dir, env, &[])
}

fn start_with(dir: &std::path::Path, env: &[(&str, &str)], extra: &[&str]) -> Process {
    let args: Vec<&str> = ["--jwt-secret", SECRET]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    Process::start_env(dir, "127.0.0.1:0", &args, env)
}

async fn checkpoints(http: &reqwest::Client, base: &str) -> f64 {
    metric_at(http, base, "jobwire_store_checkpoints_total").await
}

/// The binary on a fresh directory with every commit held, and the job `first`
/// created once a checkpoint is due: its group begins checkpoint 1.
async fn held_server(extra: &[&str], first: &str) -> (tempfile::TempDir, reqwest::Client, Process) {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = admin();
    let p = start_with(dir.path(), &held(), extra);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, v) = create(&http, &p.base, first, json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (dir, http, p)
}

/// Publishes `body` to `job`; its status, body and how long the ack took.
async fn publish(
    http: &reqwest::Client,
    base: &str,
    job: &str,
    body: Value,
) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let url = format!("{base}/v1/jobs/{job}/events");
    let (st, v) = post(http, url, body).await.expect("publish");
    (st, v, started.elapsed())
}

/// Creates `id` with `metadata`: status and body.
async fn create(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    metadata: Value,
) -> (StatusCode, Value) {
    let body = json!({"id": id, "metadata": metadata});
    post(http, format!("{base}/v1/jobs"), body)
        .await
        .expect("create")
}

/// Publishes heartbeats to `job` until the writer has seen `n` checkpoints end
/// (it notices a finished commit on its next group).
async fn until_checkpoints(http: &reqwest::Client, base: &str, job: &str, n: f64) {
    let deadline = Instant::now() + HOLD * 3;
    while checkpoints(http, base).await < n {
        assert!(Instant::now() < deadline, "checkpoint {n} never ended");
        let (st, v, _) = publish(http, base, job, json!({"type": "log", "line": "tick"})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lines of `job`'s history, checking its seqs run from 1 without a gap.
async fn lines(http: &reqwest::Client, base: &str, job: &str) -> Vec<String> {
    let url = format!("{base}/v1/jobs/{job}/events?since=0&limit=1000");
    let page = get_json(http, &url).await;
    let events = page["events"].as_array().expect("events");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "{job}: contiguous history");
    }
    events
        .iter()
        .filter_map(|e| e["line"].as_str().map(str::to_owned))
        .filter(|l| l != "tick")
        .collect()
}

/// What the first script stored, asked again: the log line `l1` is deduplicated,
/// the same create is answered with the job, a different one is `job_exists`, and
/// the completed render-6 refuses events with `job_terminal`.
async fn answers_from_what_it_stored(http: &reqwest::Client, base: &str, l1: &Value) {
    let (st, v, _) = publish(http, base, "render-5", l1.clone()).await;
    assert_eq!(
        (st, seqs(&v)),
        (StatusCode::OK, vec![2]),
        "l1 deduplicated: {v}"
    );
    let (st, v) = create(http, base, "render-5", json!({"scene": "a"})).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "the same create is answered with the job: {v}"
    );
    let (st, v) = create(http, base, "render-5", json!({"scene": "b"})).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "job_exists"), "{v}");
    let late = json!({"type": "log", "line": "late"});
    let (st, v, _) = publish(http, base, "render-6", late).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::CONFLICT, "job_terminal"),
        "{v}"
    );
}

#[tokio::test]
async fn writes_during_a_background_checkpoint_are_answered_from_it_and_survive_kill_9() {
    // Checkpoint 1 begins with the first group after 200 ms: "warmup" is in it.
    let (dir, http, mut p) = held_server(&[], "warmup").await;
    let base = p.base.clone();
    let first_began = Instant::now();
    // While it commits: a job, an idempotent log line, a job that ends.
    let (st, _) = create(&http, &base, "render-5", json!({"scene": "a"})).await;
    assert_eq!(st, StatusCode::CREATED);
    let l1 = json!({"type": "log", "line": "one", "event_id": "l1"});
    let (st, v, _) = publish(&http, &base, "render-5", l1.clone()).await;
    assert_eq!((st, seqs(&v)), (StatusCode::OK, vec![2]), "{v}");
    assert_eq!(
        create(&http, &base, "render-6", json!({})).await.0,
        StatusCode::CREATED
    );
    for ev in [
        json!({"type": "status", "status": "in_progress"}),
        json!({"type": "completed"}),
    ] {
        let (st, v, _) = publish(&http, &base, "render-6", ev).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    // The writer answers them from what it applied since the checkpoint began.
    let (_, v, _) = publish(&http, &base, "render-5", l1.clone()).await;
    assert_eq!(
        seqs(&v),
        vec![2],
        "a retry during the commit is deduplicated: {v}"
    );
    assert!(
        first_began.elapsed() < HOLD,
        "the writes above were acknowledged without waiting for the commit"
    );
    assert_eq!(checkpoints(&http, &base).await, 0.0);

    // The group that sees checkpoint 1 end begins checkpoint 2, which holds
    // everything above: the writer now answers from that checkpoint's records.
    until_checkpoints(&http, &base, "warmup", 1.0).await;
    let second_began = Instant::now();
    answers_from_what_it_stored(&http, &base, &l1).await;
    let (st, v, took) = publish(
        &http,
        &base,
        "render-5",
        json!({"type": "log", "line": "two"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(took < HOLD / 2, "a publish waited for the commit: {took:?}");
    assert_eq!(lines(&http, &base, "render-5").await, ["one", "two"]);
    assert!(second_began.elapsed() < HOLD, "still inside checkpoint 2");
    assert_eq!(checkpoints(&http, &base).await, 1.0);
    // An API key needs the store itself: it waits for the commit, and is not
    // journaled but committed on the writer's thread with its group.
    let (st, key) = post(&http, format!("{base}/v1/keys"), json!({"label": "farm"}))
        .await
        .expect("key");
    assert_eq!(st, StatusCode::CREATED, "{key}");
    assert_eq!(
        checkpoints(&http, &base).await,
        3.0,
        "the key waited for checkpoint 2, then checkpointed itself"
    );
    let secret = key["secret"].as_str().expect("secret").to_owned();
    // Checkpoint 4 begins with "three" (due 200 ms after the key's); "four" goes
    // to the journal's other segment: the process dies with both uncommitted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for line in ["three", "four"] {
        let (st, v, _) = publish(
            &http,
            &base,
            "render-5",
            json!({"type": "log", "line": line}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    assert_eq!(checkpoints(&http, &base).await, 3.0);
    p.kill9();

    let p = start(dir.path(), &[]);
    let base = p.base.clone();
    assert_eq!(
        lines(&http, &base, "render-5").await,
        ["one", "two", "three", "four"]
    );
    answers_from_what_it_stored(&http, &base, &l1).await;
    let job = get_json(&http, &format!("{base}/v1/jobs/warmup")).await;
    assert_eq!(job["id"], "warmup", "{job}");
    let with_key = reqwest::Client::new();
    let r = with_key
        .post(format!("{base}/v1/jobs/render-5/events"))
        .bearer_auth(&secret)
        .json(&json!({"type": "log", "line": "from the key"}))
        .send()
        .await
        .expect("publish with key");
    assert_eq!(r.status(), StatusCode::OK, "the key survived the crash");
}

#[tokio::test]
async fn what_follows_a_finished_background_checkpoint_survives_kill_9() {
    let (dir, http, mut p) = held_server(&[], "render-7").await;
    let base = p.base.clone();
    let (st, _, _) = publish(
        &http,
        &base,
        "render-7",
        json!({"type": "log", "line": "one"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // The commit ends; what came during it is replayed into the next transaction,
    // which no checkpoint commits before the kill (the next is held 4 s).
    until_checkpoints(&http, &base, "render-7", 1.0).await;
    let (st, _, _) = publish(
        &http,
        &base,
        "render-7",
        json!({"type": "log", "line": "two"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    p.kill9();

    let p = start(dir.path(), &[]);
    assert_eq!(lines(&http, &p.base, "render-7").await, ["one", "two"]);
}

#[tokio::test]
async fn a_sweep_during_a_background_checkpoint_waits_for_the_commit_not_the_publishes() {
    // A sweep every 100 ms: most of them arrive while a commit is held.
    // Checkpoint 1 begins with the create of render-8; the job ends while it commits.
    let extra = ["--terminal-ttl", "0s", "--sweep-interval", "100ms"];
    let (_dir, http, p) = held_server(&extra, "render-8").await;
    let base = p.base.clone();
    let began = Instant::now();
    assert_eq!(
        create(&http, &base, "render-9", json!({})).await.0,
        StatusCode::CREATED
    );
    for ev in [
        json!({"type": "status", "status": "in_progress"}),
        json!({"type": "completed"}),
    ] {
        let (st, v, _) = publish(&http, &base, "render-8", ev).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    // Sweeps keep arriving during the commit; publishes are not held behind them.
    let mut i = 0;
    while began.elapsed() < HOLD - Duration::from_millis(800) {
        let (st, v, took) = publish(
            &http,
            &base,
            "render-9",
            json!({"type": "log", "line": format!("l{i}")}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert!(
            took < HOLD / 4,
            "publish {i} waited {took:?}: behind a sweep and the commit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        i += 1;
    }
    assert!(i >= 5, "only {i} publishes during the commit");
    // Once the commit is done, the deferred sweep deletes the finished job.
    let deadline = Instant::now() + HOLD * 3;
    loop {
        let r = http
            .get(format!("{base}/v1/jobs/render-8"))
            .send()
            .await
            .expect("get");
        if r.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the finished job was never swept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http
        .get(format!("{base}/v1/jobs/render-9"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK, "the running job is kept");
}
