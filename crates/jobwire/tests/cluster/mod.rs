//! Several jobwire instances on one Redis: cross-instance delivery, concurrent
//! publishers, an instance killed mid-stream, Redis killed and restarted. Every
//! script runs twice: `classic::<name>` (`PUBLISH`/`SUBSCRIBE`) and `sharded::<name>`
//! (`--redis-sharded-pubsub`: `SPUBLISH`/`SSUBSCRIBE`, on a standalone Redis 7).

use crate::support::{seqs, Engine, Frame, Options, Process, RedisServer, Server, Ws};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// An in-process instance on `redis` under a shared prefix, on classic or sharded
/// pub/sub.
async fn instance(redis: &RedisServer, prefix: &str, sharded: bool) -> Server {
    Server::start_with(Options {
        engine: Engine::Redis,
        redis_url: Some(redis.url()),
        prefix: Some(prefix.to_owned()),
        sharded_pubsub: sharded,
        ..Default::default()
    })
    .await
}

/// Reads event frames until seq `last`, asserting exactly `from..=last` in order.
async fn expect_seqs(ws: &mut Ws, from: u64, last: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut want = from;
    while want <= last {
        let v = ws.json().await;
        if v["type"] == "snapshot" || v.get("seq").is_none() {
            continue;
        }
        assert_eq!(v["seq"], want, "gap or duplicate: {v}");
        want += 1;
        out.push(v);
    }
    out
}

async fn a_worker_publishes_on_one_instance_and_browsers_on_another_see_it(sharded: bool) {
    let redis = RedisServer::start(false);
    let a = instance(&redis, "x:", sharded).await;
    let b = instance(&redis, "x:", sharded).await;
    a.create("j").await;
    let mut ws = b.ws("/v1/jobs/j/ws").await;
    assert_eq!(ws.json().await["seq"], 1);
    let mut mux = b.ws("/v1/ws").await;
    mux.send(json!({"type": "subscribe", "job_id": "j"})).await;
    assert_eq!(mux.json().await["type"], "snapshot");
    // The mode asked for is the one in use: b holds one subscription of that kind.
    let (shard, classic) = (
        redis.cli(&["PUBSUB", "SHARDCHANNELS", "x:*"]),
        redis.cli(&["PUBSUB", "CHANNELS", "x:*"]),
    );
    let (used, unused) = if sharded {
        (shard, classic)
    } else {
        (classic, shard)
    };
    assert_eq!((used.trim(), unused.trim()), ("x:{j}:ch", ""));
    a.publish(
        "j",
        json!({"type": "progress", "progress": 30, "stage": "render"}),
    )
    .await;
    let e = ws.json().await;
    assert_eq!(
        (e["seq"].as_u64(), e["progress"].as_f64()),
        (Some(2), Some(30.0))
    );
    assert_eq!(mux.json().await["seq"], 2);
    // The snapshot and history are shared too.
    let (_, job) = b.get("/v1/jobs/j").await;
    assert_eq!(job["progress"], 30.0);
    b.publish("j", json!({"type": "completed"})).await;
    assert_eq!(ws.json().await["type"], "completed");
    assert_eq!(ws.close_code().await, 1000);
}

async fn concurrent_publishers_on_three_instances_get_contiguous_seqs(sharded: bool) {
    let redis = RedisServer::start(false);
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(Arc::new(instance(&redis, "c:", sharded).await));
    }
    servers[0].create("hot").await;
    let mut watcher = servers[2].ws("/v1/jobs/hot/ws?since=0").await;
    const EACH: usize = 60;
    let mut tasks = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for k in 0..EACH {
                let ev = if k % 3 == 0 {
                    json!([{"type": "log", "line": format!("{i}-{k}")}, {"type": "log", "line": format!("{i}-{k}b")}])
                } else {
                    json!({"type": "log", "line": format!("{i}-{k}")})
                };
                got.extend(s.publish("hot", ev).await);
            }
            got
        }));
    }
    let mut all: Vec<u64> = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("publisher"));
    }
    all.sort_unstable();
    let total = 3 * (EACH + EACH / 3) as u64;
    assert_eq!(
        all,
        (2..=total + 1).collect::<Vec<_>>(),
        "every seq assigned exactly once"
    );
    let events = expect_seqs(&mut watcher, 1, total + 1).await;
    let mut lines: Vec<&str> = events.iter().filter_map(|e| e["line"].as_str()).collect();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len() as u64, total, "each event stored once");
}

async fn watchers_of_a_killed_instance_resume_on_another_without_loss(sharded: bool) {
    let redis = RedisServer::start(false);
    let url = redis.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["--redis", url.as_str()];
    if sharded {
        args.push("--redis-sharded-pubsub");
    }
    let mut a = Process::start(dir.path(), "127.0.0.1:0", &args);
    let b = Process::start(dir.path(), "127.0.0.1:0", &args);
    let http = reqwest::Client::new();
    http.post(format!("{}/v1/jobs", b.base))
        .json(&json!({"id": "k"}))
        .send()
        .await
        .expect("create");
    let publish = |n: usize| {
        let http = http.clone();
        let base = b.base.clone();
        async move {
            for i in 0..n {
                let r = http
                    .post(format!("{base}/v1/jobs/k/events"))
                    .json(&json!({"type": "log", "line": format!("line {i}")}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(r.status(), StatusCode::OK);
            }
        }
    };
    let mut ws = Ws::connect(&format!("ws://{}/v1/jobs/k/ws?since=0", a.addr)).await;
    publish(10).await;
    let seen = expect_seqs(&mut ws, 1, 11).await;
    let last = seen.last().and_then(|v| v["seq"].as_u64()).expect("seq");
    a.kill9();
    // The socket dies with its instance; meanwhile the worker keeps publishing.
    loop {
        if let Some(Err(_)) | None = futures_util::StreamExt::next(&mut ws.inner).await {
            break;
        }
    }
    publish(15).await;
    let mut ws = Ws::connect(&format!("ws://{}/v1/jobs/k/ws?since={last}", b.addr)).await;
    assert_eq!(ws.json().await["seq"], 26);
    expect_seqs(&mut ws, last + 1, 26).await;
}

async fn redis_restart_refuses_publishes_meanwhile_and_watchers_catch_up(sharded: bool) {
    let mut redis = RedisServer::start(true);
    let a = instance(&redis, "r:", sharded).await;
    let b = instance(&redis, "r:", sharded).await;
    a.create("j").await;
    let mut ws = b.ws("/v1/jobs/j/ws?since=0").await;
    for i in 0..10 {
        a.publish("j", json!({"type": "log", "line": format!("before {i}")}))
            .await;
    }
    expect_seqs(&mut ws, 1, 11).await;

    redis.kill();
    // Publishes during the outage fail fast with 503 and are not acknowledged.
    let started = tokio::time::Instant::now();
    let (st, v) = a
        .post("/v1/jobs/j/events", json!({"type": "log", "line": "lost?"}))
        .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "storage_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.get("/readyz").await.0 != StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never reported the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (st, v) = a
            .post("/v1/jobs/j/events", json!({"type": "log", "line": "after"}))
            .await;
        if st == StatusCode::OK {
            assert_eq!(seqs(&v), vec![12], "the refused publish was not stored");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes never recovered: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..10 {
        a.publish("j", json!({"type": "log", "line": format!("after {i}")}))
            .await;
    }
    // The watcher stayed connected and sees every event exactly once, in order.
    expect_seqs(&mut ws, 12, 22).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.get("/readyz").await.0 != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ws.send(json!({"type": "ping"})).await;
    match ws.frame().await {
        Frame::Json(v) => assert_eq!(v["type"], "pong"),
        Frame::Close(c) => panic!("closed with {c}"),
    }
}

async fn an_instance_that_lost_trimmed_events_closes_watchers_4002_instead_of_a_silent_gap(
    sharded: bool,
) {
    let redis = RedisServer::start(false);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (package redis-tools)");
        assert!(out.status.success(), "{args:?}");
    };
    // Instance b logs in as its own user, so the test can keep it from reconnecting.
    cli(&["ACL", "SETUSER", "b", "on", ">pw", "~*", "&*", "+@all"]);
    let small = |url: String| Options {
        engine: Engine::Redis,
        redis_url: Some(url),
        prefix: Some("g:".to_owned()),
        sharded_pubsub: sharded,
        retention: jobwire_core::engine::embedded::Retention {
            max_events_per_job: 5,
            ..Default::default()
        },
        ..Default::default()
    };
    let a = Server::start_with(small(redis.url())).await;
    let b = Server::start_with(small(format!("redis://b:pw@127.0.0.1:{}/", redis.port))).await;
    a.create("j").await;
    let mut ws = b.ws("/v1/jobs/j/ws?since=0").await;
    expect_seqs(&mut ws, 1, 1).await;
    // Cut b's pub/sub connection and keep it out while more events are published
    // than the stream keeps.
    cli(&["ACL", "SETUSER", "b", "off"]);
    cli(&["CLIENT", "KILL", "USER", "b"]);
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"type": "log", "line": format!("l{i}")}))
        .collect();
    a.publish("j", Value::Array(batch)).await;
    cli(&["ACL", "SETUSER", "b", "on"]);
    assert_eq!(ws.close_code().await, 4002);
    // The documented recovery: resume with since, learn that history was trimmed.
    let mut ws = b.ws("/v1/jobs/j/ws?since=1").await;
    assert_eq!(ws.json().await["type"], "snapshot");
    let notice = ws.json().await;
    assert_eq!(
        (notice["type"].as_str(), notice["history_start"].as_u64()),
        (Some("history_truncated"), Some(17))
    );
    expect_seqs(&mut ws, 17, 21).await;
}

/// Runs each listed `async fn name(sharded: bool)` as `classic::name` and `sharded::name`.
macro_rules! both_pubsub_modes {
    ($($name:ident),* $(,)?) => {
        mod classic {
            $( #[tokio::test] async fn $name() { super::$name(false).await } )*
        }
        mod sharded {
            $( #[tokio::test] async fn $name() { super::$name(true).await } )*
        }
    };
}

both_pubsub_modes!(
    a_worker_publishes_on_one_instance_and_browsers_on_another_see_it,
    concurrent_publishers_on_three_instances_get_contiguous_seqs,
    watchers_of_a_killed_instance_resume_on_another_without_loss,
    redis_restart_refuses_publishes_meanwhile_and_watchers_catch_up,
    an_instance_that_lost_trimmed_events_closes_watchers_4002_instead_of_a_silent_gap
);
