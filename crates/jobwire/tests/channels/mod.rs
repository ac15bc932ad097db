//! Channels beyond one job: the project channel (`/v1/projects/{project}/ws`) and the
//! notifications channel (`/v1/notifications/ws`), on both engines, under auth:
//! what arrives, what never crosses a tenant or user, allow-lists, and resuming after
//! a disconnect without loss or repeat while a publisher keeps publishing.

use crate::support::{hs256, AuthSpec, Engine, Options, RedisServer, Server, Ws};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const SECRET: &str = "channel-secret-0123456789";

fn tok(tenant: &str, sub: &str) -> String {
    hs256(
        SECRET,
        json!({"sub": sub, "tenant": tenant, "scope": "jobs:admin"}),
    )
}

async fn secured(engine: Engine) -> Server {
    Server::start_with(Options {
        engine,
        auth: Some(AuthSpec::secret(SECRET)),
        ..Default::default()
    })
    .await
}

async fn create(s: &Server, token: &str, id: &str, project: Option<&str>) {
    let body = match project {
        Some(p) => json!({"id": id, "project": p}),
        None => json!({"id": id}),
    };
    let (st, v) = s.post_as(token, "/v1/jobs", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

async fn publish(s: &Server, token: &str, id: &str, body: Value) -> Vec<u64> {
    let (st, v) = s
        .post_as(token, &format!("/v1/jobs/{id}/events"), body)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    crate::support::seqs(&v)
}

async fn log(s: &Server, token: &str, id: &str, line: &str) -> u64 {
    publish(s, token, id, json!({"type": "log", "line": line})).await[0]
}

/// Opens a channel socket, sends `resume`, and returns it with the catch-up frames
/// (everything before `ready`) and the `ready` frame.
async fn open(s: &Server, token: &str, path: &str, resume: Value) -> (Ws, Vec<Value>, Value) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut ws = Ws::connect(&s.ws_url(&format!("{path}{sep}token={token}"))).await;
    ws.send(resume).await;
    let mut frames = Vec::new();
    loop {
        let v = ws.json().await;
        if v["type"] == "ready" {
            return (ws, frames, v);
        }
        frames.push(v);
    }
}

fn key(v: &Value) -> (String, u64, String) {
    (
        v["job_id"].as_str().unwrap_or("?").to_owned(),
        v["seq"].as_u64().unwrap_or(0),
        v["type"].as_str().unwrap_or("?").to_owned(),
    )
}

fn k(job: &str, seq: u64, ty: &str) -> (String, u64, String) {
    (job.to_owned(), seq, ty.to_owned())
}

async fn project_channel_streams_its_jobs_and_nothing_else(engine: Engine) {
    let s = secured(engine).await;
    let a = tok("acme", "ana");
    let b = tok("globex", "bob");
    create(&s, &a, "a1", Some("P")).await;
    create(&s, &a, "a2", Some("P")).await;
    create(&s, &a, "q1", Some("Q")).await;
    create(&s, &b, "a1", Some("P")).await; // same id and project, other tenant
    log(&s, &a, "a1", "before").await;

    let (mut ws, replay, ready) =
        open(&s, &a, "/v1/projects/P/ws", json!({"type": "resume"})).await;
    // Without positions: one snapshot per job of the project, nothing else.
    let mut snaps: Vec<(String, u64)> = replay
        .iter()
        .map(|v| {
            assert_eq!(v["type"], "snapshot", "{v}");
            (
                v["job_id"].as_str().unwrap_or("?").to_owned(),
                v["seq"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    snaps.sort();
    assert_eq!(snaps, vec![("a1".into(), 2), ("a2".into(), 1)]);
    assert_eq!(
        (ready["jobs"].as_u64(), ready["omitted"].as_u64()),
        (Some(2), Some(0))
    );

    log(&s, &a, "a1", "one").await;
    log(&s, &a, "q1", "other project").await;
    log(&s, &b, "a1", "other tenant").await;
    publish(&s, &a, "a2", json!({"type": "progress", "progress": 10})).await;
    create(&s, &a, "a3", Some("P")).await; // created after connect: appears live
    log(&s, &a, "a3", "new job").await;
    log(&s, &a, "a1", "end").await;
    let mut got = Vec::new();
    while got.last() != Some(&k("a1", 4, "log")) {
        let v = ws.json().await;
        assert_ne!(v["line"], "other project", "{v}");
        assert_ne!(v["line"], "other tenant", "{v}");
        got.push(key(&v));
    }
    assert_eq!(
        got,
        vec![
            k("a1", 3, "log"),
            k("a2", 2, "progress"),
            k("a3", 1, "created"),
            k("a3", 2, "log"),
            k("a1", 4, "log"),
        ]
    );
    ws.quiet_for(Duration::from_millis(200)).await;

    // Tenant B's watcher of its own `P` sees only its own `a1`.
    let (mut wb, replay, _) = open(&s, &b, "/v1/projects/P/ws", json!({"type": "resume"})).await;
    assert_eq!(replay.len(), 1);
    assert_eq!(
        (replay[0]["job_id"].as_str(), replay[0]["seq"].as_u64()),
        (Some("a1"), Some(2))
    );
    log(&s, &a, "a1", "not for b").await;
    log(&s, &b, "a1", "for b").await;
    assert_eq!(wb.json().await["line"], "for b");
}

/// A publisher keeps publishing to two jobs while the watcher drops its connection
/// and resumes with its positions: every seq arrives exactly once.
async fn project_channel_resumes_without_loss_or_repeat(engine: Engine) {
    let s = secured(engine).await;
    let a = tok("acme", "ana");
    create(&s, &a, "r1", Some("P")).await;
    create(&s, &a, "r2", Some("P")).await;
    const N: u64 = 40;
    let (mut ws, replay, _) = open(&s, &a, "/v1/projects/P/ws", json!({"type": "resume"})).await;
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for v in &replay {
        last.insert(
            v["job_id"].as_str().unwrap_or("?").to_owned(),
            v["seq"].as_u64().unwrap_or(0),
        );
    }
    let publisher = {
        let base = s.url("");
        let a = a.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..N {
                for job in ["r1", "r2"] {
                    let r = http
                        .post(format!("{base}/v1/jobs/{job}/events"))
                        .bearer_auth(&a)
                        .json(&json!({"type": "log", "line": format!("{i}")}))
                        .send()
                        .await
                        .expect("publish");
                    assert!(r.status().is_success());
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut record = |v: &Value, last: &mut BTreeMap<String, u64>| {
        let (job, seq, _) = key(v);
        seen.entry(job.clone()).or_default().push(seq);
        last.insert(job, seq);
    };
    for _ in 0..15 {
        let v = ws.json().await;
        record(&v, &mut last);
    }
    drop(ws); // abrupt: no close handshake
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resume = json!({"type": "resume", "positions": last});
    let (mut ws, replay, _) = open(&s, &a, "/v1/projects/P/ws", resume).await;
    for v in &replay {
        if v["type"] != "snapshot" {
            record(v, &mut last);
        }
    }
    while last.values().any(|&seq| seq < N + 1) {
        let v = ws.json().await;
        record(&v, &mut last);
    }
    publisher.await.expect("publisher");
    for job in ["r1", "r2"] {
        let want: Vec<u64> = (2..=N + 1).collect();
        assert_eq!(seen.get(job), Some(&want), "{job}: lost or repeated events");
    }
    ws.quiet_for(Duration::from_millis(200)).await;
}

async fn finish(s: &Server, token: &str, id: &str, ok: bool) {
    if ok {
        publish(s, token, id, json!([{"type": "progress", "progress": 50}, {"type": "completed", "result": {"id": id}}])).await;
    } else {
        publish(s, token, id, json!({"type": "failed", "error": "boom"})).await;
    }
}

fn note(v: &Value) -> (u64, String, String) {
    assert_eq!(v["type"], "notification", "{v}");
    (
        v["seq"].as_u64().unwrap_or(0),
        v["event"]["job_id"].as_str().unwrap_or("?").to_owned(),
        v["event"]["type"].as_str().unwrap_or("?").to_owned(),
    )
}

fn n(seq: u64, job: &str, ty: &str) -> (u64, String, String) {
    (seq, job.to_owned(), ty.to_owned())
}

/// A user's notifications: their own jobs' ends only, across projects; resume after
/// a disconnect gets what finished meanwhile exactly once.
async fn notifications_reach_their_user_only_and_resume_exactly_once(engine: Engine) {
    let s = secured(engine).await;
    let ana = tok("acme", "ana");
    let ben = tok("acme", "ben");
    let ana_elsewhere = tok("globex", "ana"); // same subject, other tenant
    let (mut ws, replay, _) =
        open(&s, &ana, "/v1/notifications/ws", json!({"type": "resume"})).await;
    assert!(replay.is_empty());

    create(&s, &ana, "j1", Some("x")).await;
    create(&s, &ana, "j2", None).await;
    create(&s, &ben, "k1", Some("x")).await;
    create(&s, &ana_elsewhere, "j1", Some("x")).await;
    finish(&s, &ana, "j1", true).await;
    finish(&s, &ben, "k1", false).await;
    finish(&s, &ana_elsewhere, "j1", false).await;
    log(&s, &ana, "j2", "not an end").await;
    finish(&s, &ana, "j2", false).await;
    assert_eq!(note(&ws.json().await), n(1, "j1", "completed"));
    let second = ws.json().await;
    assert_eq!(note(&second), n(2, "j2", "failed"));
    assert_eq!(second["event"]["error"], "boom");
    ws.quiet_for(Duration::from_millis(200)).await;
    drop(ws);

    // Away: one of ana's jobs finishes (and one of ben's).
    create(&s, &ana, "j3", Some("y")).await;
    finish(&s, &ana, "j3", true).await;
    create(&s, &ben, "k2", None).await;
    finish(&s, &ben, "k2", true).await;
    let (mut ws, replay, ready) = open(
        &s,
        &ana,
        "/v1/notifications/ws",
        json!({"type": "resume", "since": 2}),
    )
    .await;
    let replayed: Vec<_> = replay.iter().map(note).collect();
    assert_eq!(replayed, vec![n(3, "j3", "completed")]);
    assert_eq!(ready["jobs"], 1);
    create(&s, &ana, "j4", None).await;
    publish(
        &s,
        &ana,
        "j4",
        json!({"type": "cancelled", "reason": "user"}),
    )
    .await;
    assert_eq!(note(&ws.json().await), n(4, "j4", "cancelled"));
    ws.quiet_for(Duration::from_millis(200)).await;

    // Ben and ana-at-globex see only their own.
    let (_, replay, _) = open(
        &s,
        &ben,
        "/v1/notifications/ws",
        json!({"type": "resume", "since": 0}),
    )
    .await;
    let got: Vec<_> = replay.iter().map(note).collect();
    assert_eq!(got, vec![n(1, "k1", "failed"), n(2, "k2", "completed")]);
    let (_, replay, _) = open(
        &s,
        &ana_elsewhere,
        "/v1/notifications/ws",
        json!({"type": "resume", "since": 0}),
    )
    .await;
    let got: Vec<_> = replay.iter().map(note).collect();
    assert_eq!(got, vec![n(1, "j1", "failed")]);
}

crate::on_both_engines!(
    project_channel_streams_its_jobs_and_nothing_else,
    project_channel_resumes_without_loss_or_repeat,
    notifications_reach_their_user_only_and_resume_exactly_once,
);

#[tokio::test]
async fn allow_lists_narrow_the_project_channel_and_notifications_need_a_user() {
    let s = secured(Engine::Embedded).await;
    let a = tok("acme", "ana");
    create(&s, &a, "a1", Some("P")).await;
    create(&s, &a, "a2", Some("P")).await;
    let only_p = hs256(
        SECRET,
        json!({"sub": "ana", "tenant": "acme", "scope": "jobs:watch", "projects": ["P"]}),
    );
    let only_a1 = hs256(
        SECRET,
        json!({"sub": "ana", "tenant": "acme", "scope": "jobs:watch", "jobs": ["a1"]}),
    );
    let no_sub = hs256(SECRET, json!({"tenant": "acme", "scope": "jobs:watch"}));
    let publish_only = hs256(
        SECRET,
        json!({"sub": "ana", "tenant": "acme", "scope": "jobs:publish"}),
    );
    let url = |path: &str, t: &str| s.ws_url(&format!("{path}?token={t}"));
    assert_eq!(
        Ws::try_connect(&url("/v1/projects/Q/ws", &only_p), &[])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        Ws::try_connect(&url("/v1/projects/P/ws", &publish_only), &[])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        Ws::try_connect(&url("/v1/projects/bad%20name/ws", &a), &[])
            .await
            .err(),
        Some(400)
    );
    assert_eq!(
        Ws::try_connect(&url("/v1/projects/P/ws", "garbage"), &[])
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        Ws::try_connect(&url("/v1/notifications/ws", &no_sub), &[])
            .await
            .err(),
        Some(403)
    );

    let (mut ws, replay, _) =
        open(&s, &only_a1, "/v1/projects/P/ws", json!({"type": "resume"})).await;
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0]["job_id"], "a1");
    log(&s, &a, "a2", "hidden").await;
    create(&s, &a, "a3", Some("P")).await; // not in the allow-list either
    log(&s, &a, "a1", "visible").await;
    let v = ws.json().await;
    assert_eq!(
        (v["job_id"].as_str(), v["line"].as_str()),
        (Some("a1"), Some("visible"))
    );
    ws.quiet_for(Duration::from_millis(200)).await;

    // A channel socket takes no subscribe frames; a late resume is refused.
    ws.send(json!({"type": "subscribe", "job_id": "a2"})).await;
    assert_eq!(ws.json().await["code"], "bad_request");
    ws.send(json!({"type": "resume"})).await;
    assert_eq!(ws.json().await["code"], "bad_request");
    let mut mux = Ws::connect(&url("/v1/ws", &a)).await;
    mux.send(json!({"type": "resume"})).await;
    assert_eq!(mux.json().await["code"], "bad_request");
}

/// Two instances on one Redis: the watcher's project channel is on one, the
/// publisher on the other; a job created on the other instance shows up too.
#[tokio::test]
async fn project_channel_across_redis_instances() {
    project_channel_across_redis_instances_on(false).await
}

/// The same on sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`).
#[tokio::test]
async fn project_channel_across_redis_instances_sharded() {
    project_channel_across_redis_instances_on(true).await
}

async fn project_channel_across_redis_instances_on(sharded: bool) {
    let redis = RedisServer::start(false);
    let instance = || {
        Server::start_with(Options {
            engine: Engine::Redis,
            redis_url: Some(redis.url()),
            sharded_pubsub: sharded,
            prefix: Some("ch:".into()),
            auth: Some(AuthSpec::secret(SECRET)),
            ..Default::default()
        })
    };
    let (w, p) = (instance().await, instance().await);
    let a = tok("acme", "ana");
    create(&p, &a, "x1", Some("P")).await;
    let (mut ws, replay, _) = open(&w, &a, "/v1/projects/P/ws", json!({"type": "resume"})).await;
    assert_eq!(replay.len(), 1);
    // A second watcher of the same project on the same instance shares the one
    // Redis subscription and still gets everything.
    let (mut ws2, _, _) = open(&w, &a, "/v1/projects/P/ws", json!({"type": "resume"})).await;
    log(&p, &a, "x1", "hi").await;
    create(&p, &a, "x2", Some("P")).await;
    create(&p, &a, "y1", Some("Q")).await;
    finish(&p, &a, "x2", true).await;
    let want = vec![
        k("x1", 2, "log"),
        k("x2", 1, "created"),
        k("x2", 2, "progress"),
        k("x2", 3, "completed"),
    ];
    for sock in [&mut ws, &mut ws2] {
        let mut got = Vec::new();
        while got.len() < want.len() {
            got.push(key(&sock.json().await));
        }
        assert_eq!(got, want);
    }
    drop(ws2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    log(&p, &a, "x1", "still").await;
    assert_eq!(ws.json().await["line"], "still");

    // Notifications cross instances too.
    let (mut n1, _, _) = open(
        &w,
        &a,
        "/v1/notifications/ws",
        json!({"type": "resume", "since": 1}),
    )
    .await;
    finish(&p, &a, "x1", false).await;
    assert_eq!(note(&n1.json().await), n(2, "x1", "failed"));
}

/// Redis restarts under a project watcher: its pub/sub connection comes back, the
/// socket is closed with 4002 and a resume with positions misses nothing.
#[tokio::test]
async fn project_channel_asks_for_resume_after_a_redis_reconnect() {
    let mut redis = RedisServer::start(true);
    let s = Server::start_with(Options {
        engine: Engine::Redis,
        redis_url: Some(redis.url()),
        prefix: Some("rs:".into()),
        auth: Some(AuthSpec::secret(SECRET)),
        ..Default::default()
    })
    .await;
    let a = tok("acme", "ana");
    create(&s, &a, "x1", Some("P")).await;
    let (mut ws, _, _) = open(&s, &a, "/v1/projects/P/ws", json!({"type": "resume"})).await;
    log(&s, &a, "x1", "before").await;
    assert_eq!(key(&ws.json().await), k("x1", 2, "log"));
    redis.restart();
    assert_eq!(ws.close_code().await, 4002);
    // Publish once Redis takes writes again, then resume from seq 2.
    let deadline = tokio::time::Instant::now() + crate::support::WAIT;
    loop {
        let (st, _) = s
            .post_as(
                &a,
                "/v1/jobs/x1/events",
                json!({"type": "log", "line": "after"}),
            )
            .await;
        if st == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resume = json!({"type": "resume", "positions": {"x1": 2}});
    let (_, replay, _) = open(&s, &a, "/v1/projects/P/ws", resume).await;
    let got: Vec<_> = replay.iter().map(key).collect();
    assert_eq!(got, vec![k("x1", 3, "snapshot"), k("x1", 3, "log")]);
}
