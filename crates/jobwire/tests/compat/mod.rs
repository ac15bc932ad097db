//! The wire dialects (`--compat`): each system's frames, golden, built from jobwire
//! events published over v1 (on both engines); each class of bad input per dialect;
//! and each system's own documented client code, run as written against the real
//! binary (Python `websockets` clients, JavaScript in node with a WebSocket global).

use crate::support::{hs256, AuthSpec, Engine, Options, Process, Server, Ws};
use jobwire_server::compat::DialectName;
use jobwire_server::ServerConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn all_dialects() -> ServerConfig {
    ServerConfig {
        compat: DialectName::ALL.to_vec(),
        heartbeat_interval: Duration::from_millis(300),
        ..Default::default()
    }
}

async fn server(engine: Engine) -> Server {
    Server::start_with(Options {
        engine,
        server: all_dialects(),
        ..Default::default()
    })
    .await
}

/// Drops the `timestamp` of a frame (and of its `data`), which varies.
fn untimed(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        assert!(
            m.remove("timestamp").is_some() || m.get("type") == Some(&json!("error")),
            "every frame carries a timestamp: {v:?}"
        );
    }
    v
}

async fn next_untimed(ws: &mut Ws) -> Value {
    loop {
        let v = ws.json().await;
        // Heartbeats and keepalives are checked on their own.
        if v["type"] == "heartbeat" || (v["type"] == "ping" && v["message"] == "keepalive") {
            continue;
        }
        return untimed(v);
    }
}

async fn publish(s: &Server, id: &str, body: Value) {
    let (st, v) = s.post(&format!("/v1/jobs/{id}/events"), body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn progress_channel_frames(engine: Engine) {
    let s = server(engine).await;
    s.create("job-123").await;
    publish(
        &s,
        "job-123",
        json!({"type": "progress", "progress": 10, "stage": "stage_1"}),
    )
    .await;
    let mut ws = s.ws("/progress/ws/job-123").await;
    // State on connect, as one progress frame.
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"job_id": "job-123", "status": "in_progress", "progress": 10.0, "message": null, "metadata": {"stage": "stage_1"}})
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(next_untimed(&mut ws).await, json!({"type": "pong"}));
    ws.send_text("{not json").await;
    let e = ws.json().await;
    assert_eq!(e["type"], "error");
    assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    // A log changes none of the four fields: no frame. A progress does.
    publish(&s, "job-123", json!({"type": "log", "line": "quiet"})).await;
    publish(&s, "job-123", json!({"type": "progress", "progress": 75, "stage": "stage_3", "message": "Processing stage 3"})).await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"job_id": "job-123", "status": "in_progress", "progress": 75.0, "message": "Processing stage 3", "metadata": {"stage": "stage_3"}})
    );
    // A second job on the same socket; an unknown one is an error, the socket stays.
    s.create("job-9").await;
    ws.send(json!({"type": "subscribe", "job_id": "job-9"}))
        .await;
    assert_eq!(next_untimed(&mut ws).await["job_id"], "job-9");
    ws.send(json!({"type": "subscribe", "job_id": "nope"}))
        .await;
    assert_eq!(
        ws.json().await,
        json!({"type": "error", "error": "Job not found"})
    );
    // The end: the final frame, then a normal close.
    publish(
        &s,
        "job-123",
        json!({"type": "completed", "result": {"ok": true}}),
    )
    .await;
    let last = next_untimed(&mut ws).await;
    assert_eq!(
        (last["status"].as_str(), last["progress"].as_f64()),
        (Some("completed"), Some(100.0))
    );
    assert_eq!(ws.close_code().await, 1000);
    // Heartbeats on the interval.
    s.create("hb").await;
    let mut hb = s.ws("/progress/ws/hb").await;
    let _ = hb.json().await;
    // (`json()` skips heartbeats; read the raw text.)
    let beat: Value = serde_json::from_str(&hb.text().await).expect("JSON");
    assert_eq!(beat["type"], "heartbeat", "{beat}");
    assert!(beat["timestamp"].is_string());
    // An unknown job: error, then close.
    let mut unknown = s.ws("/progress/ws/missing").await;
    assert_eq!(
        unknown.json().await,
        json!({"type": "error", "error": "Job not found"})
    );
    assert_eq!(unknown.close_code().await, 4504);
}

async fn a6hub_frames(engine: Engine) {
    let s = server(engine).await;
    s.create("123").await;
    publish(
        &s,
        "123",
        json!({"type": "step", "step": "initialization", "label": "Init"}),
    )
    .await;
    let mut ws = s.ws("/api/v1/ws/jobs/123/updates").await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"type": "connected", "data": {"job_id": 123, "status": "running", "current_step": "initialization", "progress": 0}})
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"type": "pong", "data": {}})
    );
    publish(
        &s,
        "123",
        json!({"type": "step", "step": "synthesis", "label": "Synthesis"}),
    )
    .await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"type": "step", "data": {"step_name": "synthesis", "step_label": "Synthesis"}})
    );
    publish(&s, "123", json!({"type": "progress", "progress": 45})).await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"type": "progress", "data": {"progress": 45, "current_step": "synthesis", "completed_steps": ["initialization"]}})
    );
    publish(
        &s,
        "123",
        json!({"type": "log", "line": "Running synthesis...\n"}),
    )
    .await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"type": "log", "data": {"log_line": "Running synthesis...\n"}})
    );
    publish(
        &s,
        "123",
        json!({"type": "completed", "message": "Build completed successfully"}),
    )
    .await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"type": "complete", "data": {"status": "completed", "message": "Build completed successfully"}})
    );
    assert_eq!(ws.close_code().await, 1000);
    // Status words and errors.
    s.create("build-2").await;
    let mut ws = s.ws("/api/v1/ws/jobs/build-2/updates").await;
    assert_eq!(next_untimed(&mut ws).await["data"]["job_id"], "build-2");
    publish(
        &s,
        "build-2",
        json!({"type": "status", "status": "in_progress"}),
    )
    .await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"type": "status", "data": {"status": "running"}})
    );
    publish(
        &s,
        "build-2",
        json!({"type": "failed", "error": "Build failed: Synthesis error"}),
    )
    .await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"type": "error", "data": {"error_message": "Build failed: Synthesis error"}})
    );
}

async fn titan_frames(engine: Engine) {
    let s = server(engine).await;
    // A socket on a job nobody created yet waits for it.
    let mut ws = s.ws("/ws/jobs/job_12345").await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"type": "connected", "job_id": "job_12345", "message": "Connected to job progress stream"})
    );
    s.create("job_12345").await;
    publish(&s, "job_12345", json!({"type": "progress", "progress": 75, "stage": "rendering", "message": "Rendering frame 1500/2000", "metadata": {"current_frame": 1500, "total_frames": 2000}})).await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"job_id": "job_12345", "status": "processing", "stage": "rendering", "progress": 0.75, "message": "Rendering frame 1500/2000", "metadata": {"current_frame": 1500, "total_frames": 2000}})
    );
    // Keepalives on the interval.
    let beat = ws.json().await;
    assert_eq!(
        (
            beat["type"].as_str(),
            beat["message"].as_str(),
            beat["job_id"].as_str()
        ),
        (Some("ping"), Some("keepalive"), Some("job_12345")),
        "{beat}"
    );
    publish(&s, "job_12345", json!({"type": "completed", "result": {"video_url": "https://cdn.example.com/video.mp4"}, "message": "Job completed successfully"})).await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"job_id": "job_12345", "status": "completed", "stage": "complete", "progress": 1.0, "message": "Job completed successfully", "result": {"video_url": "https://cdn.example.com/video.mp4"}})
    );
    assert_eq!(ws.close_code().await, 1000);
    // Failure.
    s.create("job_2").await;
    publish(
        &s,
        "job_2",
        json!({"type": "progress", "progress": 50, "stage": "rendering"}),
    )
    .await;
    let mut ws = s.ws("/ws/jobs/job_2").await;
    let _connected = next_untimed(&mut ws).await;
    let _state = next_untimed(&mut ws).await;
    publish(
        &s,
        "job_2",
        json!({"type": "failed", "error": "Out of memory"}),
    )
    .await;
    assert_eq!(
        next_untimed(&mut ws).await,
        json!({"job_id": "job_2", "status": "failed", "stage": "rendering", "progress": 0.5, "message": "Error: Out of memory", "error": "Out of memory"})
    );
    // The service endpoints.
    let (st, h) = s.get("/health").await;
    assert_eq!((st, h), (StatusCode::OK, json!({"status": "healthy"})));
    let (st, created) = s.post("/jobs/create", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{created}");
    let id = created["job_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        created,
        json!({"job_id": id, "websocket_url": format!("/ws/jobs/{id}"), "status": "queued"})
    );
    let (_, snap) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(snap["status"], "queued");
}

const SECRET: &str = "compat-secret-0123456789abcdefghij";

async fn project_updates_frames(engine: Engine) {
    let s = Server::start_with(Options {
        engine,
        server: all_dialects(),
        auth: Some(AuthSpec {
            tenant_claim: "company_id".into(),
            ..AuthSpec::secret(SECRET)
        }),
        ..Default::default()
    })
    .await;
    let ana = hs256(
        SECRET,
        json!({"sub": "ana", "company_id": "acme", "scope": "jobs:admin"}),
    );
    let bob = hs256(
        SECRET,
        json!({"sub": "bob", "company_id": "globex", "scope": "jobs:admin"}),
    );
    let mut ws = Ws::connect(&s.ws_url(&format!("/ws/projects/p1?token={ana}"))).await;
    // Another tenant's project of the same name looks like an empty one.
    let mut other = Ws::connect(&s.ws_url(&format!("/ws/projects/p1?token={bob}"))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, v) = s
        .post_as(
            &ana,
            "/v1/jobs",
            json!({"id": "rc-1", "project": "p1", "metadata": {"operation": "rc_analysis"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    for body in [
        json!({"type": "custom", "name": "rc_analysis_progress", "data": {"status": "extracting_text", "progress": 10, "message": "Extracting text from PDF..."}}),
        json!({"type": "status", "status": "in_progress"}),
        json!({"type": "completed", "result": {"requirements": 12}}),
    ] {
        let (st, v) = s.post_as(&ana, "/v1/jobs/rc-1/events", body).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    assert_eq!(
        untimed(ws.json().await),
        json!({"type": "rc_analysis_progress", "status": "extracting_text", "progress": 10, "message": "Extracting text from PDF..."})
    );
    // Events without a word in the system go out as v1 JSON plus `operation`.
    let status = untimed(ws.json().await);
    assert_eq!(
        (
            status["type"].as_str(),
            status["status"].as_str(),
            status["operation"].as_str()
        ),
        (Some("status"), Some("in_progress"), Some("rc_analysis")),
        "{status}"
    );
    assert_eq!(
        untimed(ws.json().await),
        json!({"type": "completion", "operation": "rc_analysis", "result": {"requirements": 12}})
    );
    // Text ping, text pong.
    ws.send_text("ping").await;
    assert_eq!(ws.text().await, "pong");
    other.send_text("ping").await;
    assert_eq!(other.text().await, "pong", "nothing of acme reached globex");
    // A failed job.
    s.post_as(&ana, "/v1/jobs", json!({"id": "gen-1", "project": "p1"}))
        .await;
    s.post_as(
        &ana,
        "/v1/jobs/gen-1/events",
        json!({"type": "failed", "error": "model unavailable"}),
    )
    .await;
    let mut e = untimed(ws.json().await);
    while e["type"] == "created" {
        e = untimed(ws.json().await);
    }
    assert_eq!(
        e,
        json!({"type": "error", "operation": "gen-1", "error": "model unavailable"})
    );
    // Bad tokens: the socket opens, then closes with 1008.
    for token in [
        "",
        "garbage",
        &hs256(
            SECRET,
            json!({"sub": "ana", "company_id": "acme", "exp": 1}),
        ),
    ] {
        let mut bad = Ws::connect(&s.ws_url(&format!("/ws/projects/p1?token={token}"))).await;
        assert_eq!(bad.close_code().await, 1008, "token {token:?}");
    }
    // Notifications: the end of each of the caller's own jobs.
    let mut n = Ws::connect(&s.ws_url(&format!("/ws/notifications?token={ana}"))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.post_as(&ana, "/v1/jobs", json!({"id": "doc-1", "project": "p2"}))
        .await;
    s.post_as(
        &ana,
        "/v1/jobs/doc-1/events",
        json!([{"type": "status", "status": "in_progress"}, {"type": "completed", "result": {"pages": 3}}]),
    )
    .await;
    assert_eq!(
        untimed(n.json().await),
        json!({"type": "completion", "operation": "doc-1", "result": {"pages": 3}})
    );
}

crate::on_both_engines!(
    progress_channel_frames,
    a6hub_frames,
    titan_frames,
    project_updates_frames,
);

#[tokio::test]
async fn dialects_are_off_unless_enabled() {
    let s = Server::start().await;
    for path in [
        "/progress/ws/x",
        "/api/v1/ws/jobs/1/updates",
        "/ws/jobs/x",
        "/ws/projects/p",
    ] {
        let r = Ws::try_connect(&s.ws_url(path), &[]).await;
        assert_eq!(r.err(), Some(404), "{path}");
    }
    let (st, _) = s.get("/health").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// The interpreter for the systems' Python clients: the SDK's venv (it has
/// `websockets`), else `python3`; fails loudly when neither can import it.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python/.venv/bin/python");
    let py = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let ok = std::process::Command::new(&py)
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import websockets: run `make deps` (or pip install websockets)",
        py.display()
    );
    py
}

/// Writes a client script with its placeholders filled in.
fn script(dir: &Path, name: &str, fill: &[(&str, &str)]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/compat/clients")
        .join(name);
    let mut text = std::fs::read_to_string(&src).expect("client script");
    for (k, v) in fill {
        text = text.replace(k, v);
    }
    let out = dir.join(name);
    std::fs::write(&out, text).expect("write script");
    out
}

/// Starts a client process (`cmd args file rest`); its stdout is read when it ends.
fn client(cmd: &Path, args: &[&str], file: &Path, rest: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(cmd)
        .args(args)
        .arg(file)
        .args(rest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", cmd.display()))
}

async fn output(child: tokio::process::Child) -> String {
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the client ends when the job does")
        .expect("wait");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

async fn wait_watchers(base: &str, n: f64) {
    for _ in 0..100 {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        if crate::support::metric_value(&text, "jobwire_subscriptions") >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the clients never subscribed");
}

async fn post(base: &str, path: &str, body: Value, token: Option<&str>) {
    let mut r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.expect("post");
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

#[tokio::test]
async fn the_systems_own_clients_follow_a_job_to_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(dir.path(), "127.0.0.1:0", &["--compat", "all"]);
    let addr = p.addr.to_string();
    let fill = [("{{ADDR}}", addr.as_str()), ("{{JOB}}", "job-123")];
    let py = python();
    let node = PathBuf::from("node");
    post(&p.base, "/v1/jobs", json!({"id": "job-123"}), None).await;
    let pc_py = client(
        &py,
        &[],
        &script(dir.path(), "progress_channel_client.py", &fill),
        &["job-123"],
    );
    let pc_js = client(
        &node,
        &["--experimental-websocket"],
        &script(dir.path(), "progress_channel_client.js", &fill),
        &[],
    );
    // titan's clients connect before the job exists; its worker creates it by reporting.
    let tfill = [("{{ADDR}}", addr.as_str()), ("{{JOB}}", "job_12345")];
    let t_py = client(
        &py,
        &[],
        &script(dir.path(), "titan_client.py", &tfill),
        &["job_12345"],
    );
    let t_js = client(
        &node,
        &["--experimental-websocket"],
        &script(dir.path(), "titan_client.js", &tfill),
        &[],
    );
    wait_watchers(&p.base, 4.0).await;
    for body in [
        json!({"type": "progress", "progress": 40, "stage": "stage_3", "message": "Processing stage 3"}),
        json!({"type": "progress", "progress": 75, "message": "Processing stage 4"}),
        json!({"type": "completed", "result": {"ok": true}}),
    ] {
        post(&p.base, "/v1/jobs/job-123/events", body, None).await;
    }
    post(&p.base, "/v1/jobs", json!({"id": "job_12345"}), None).await;
    for body in [
        json!({"type": "progress", "progress": 50, "stage": "rendering", "message": "Rendering frame 1000/2000"}),
        json!({"type": "completed", "result": {"video_url": "https://cdn.example.com/videos/job_12345.mp4"}, "message": "Video rendering completed"}),
    ] {
        post(&p.base, "/v1/jobs/job_12345/events", body, None).await;
    }
    let out = output(pc_py).await;
    for line in [
        "Status: pending",
        "Progress: 40.0%",
        "Message: Processing stage 3",
        "Progress: 75.0%",
        "Status: completed",
        "Progress: 100.0%",
    ] {
        assert!(
            out.contains(line),
            "progress-channel Python client lacks {line:?}:\n{out}"
        );
    }
    let out = output(pc_js).await;
    for line in [
        "Connected to job progress",
        "Pong received",
        "Progress: 40%",
        "Message: Processing stage 4",
        "Status: completed",
        "WebSocket connection closed",
    ] {
        assert!(
            out.contains(line),
            "progress-channel JS client lacks {line:?}:\n{out}"
        );
    }
    let out = output(t_py).await;
    for line in [
        "Connected to job job_12345",
        "rendering: 50.0% - Rendering frame 1000/2000",
        "✅ Job completed: {'video_url': 'https://cdn.example.com/videos/job_12345.mp4'}",
    ] {
        assert!(
            out.contains(line),
            "titan Python client lacks {line:?}:\n{out}"
        );
    }
    let out = output(t_js).await;
    for line in [
        "Connected to job job_12345",
        "Progress: 50%",
        "Stage: rendering",
        "BAR 0.5",
        "Job completed!",
        "Disconnected from job progress stream",
    ] {
        assert!(out.contains(line), "titan JS client lacks {line:?}:\n{out}");
    }
}

#[tokio::test]
async fn the_project_updates_client_follows_a_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--compat",
            "project-updates",
            "--jwt-secret",
            SECRET,
            "--tenant-claim",
            "company_id",
            "--default-scope",
            "jobs:watch jobs:publish",
        ],
    );
    // A token as the system issued it: `sub` and `company_id`, no scope.
    let token = hs256(SECRET, json!({"sub": "u-1", "company_id": "acme"}));
    let addr = p.addr.to_string();
    let fill = [
        ("{{ADDR}}", addr.as_str()),
        ("{{PROJECT}}", "p-42"),
        ("{{TOKEN}}", token.as_str()),
    ];
    let js = client(
        Path::new("node"),
        &["--experimental-websocket"],
        &script(dir.path(), "project_updates_client.js", &fill),
        &[],
    );
    wait_watchers(&p.base, 1.0).await;
    let t = Some(token.as_str());
    post(
        &p.base,
        "/v1/jobs",
        json!({"id": "gen-7", "project": "p-42", "metadata": {"operation": "ai_generation"}}),
        t,
    )
    .await;
    for body in [
        json!({"type": "custom", "name": "rc_analysis_progress", "data": {"status": "analyzing", "progress": 40, "message": "Analyzing document with AI..."}}),
        json!({"type": "custom", "name": "generation_progress", "data": {"current_section": "summary", "sections_completed": 1, "sections_total": 4, "progress": 25, "quality_score": null}}),
        json!({"type": "status", "status": "in_progress"}),
        json!({"type": "completed", "result": {"sections": 4}}),
    ] {
        post(&p.base, "/v1/jobs/gen-7/events", body, t).await;
    }
    let out = output(js).await;
    for line in [
        "WebSocket connected",
        "BAR 40",
        "STATUS Analyzing document with AI...",
        "GENERATION summary 1/4",
        "COMPLETE ai_generation {\"sections\":4}",
        "WebSocket disconnected",
    ] {
        assert!(
            out.contains(line),
            "project-updates client lacks {line:?}:\n{out}"
        );
    }
}

/// Waits until `n` pattern subscriptions exist on `redis` (the bridge is listening).
async fn bridge_listening(redis: &crate::support::RedisServer, n: u64) {
    for _ in 0..100 {
        if redis
            .cli(&["PUBSUB", "NUMPAT"])
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
            >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Redis bridge never subscribed");
}

#[tokio::test]
async fn workers_publishing_into_redis_reach_v1_and_dialect_watchers() {
    let redis = crate::support::RedisServer::start(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(
        dir.path(),
        "127.0.0.1:0",
        &["--compat", "all", "--ingest-redis", &redis.url()],
    );
    bridge_listening(&redis, 2).await;
    let ws_url = |path: &str| format!("ws://{}{path}", p.addr);
    // titan: the watcher is there before the worker's first report creates the job.
    let mut titan = Ws::connect(&ws_url("/ws/jobs/job_77")).await;
    assert_eq!(titan.json().await["type"], "connected");
    let report = |v: Value| v.to_string();
    redis.cli(&["PUBLISH", "job_progress:job_77", &report(json!({"job_id": "job_77", "status": "processing", "stage": "rendering", "progress": 0.25, "message": "Rendering frame 500/2000", "timestamp": "2024-01-01T00:00:00Z", "metadata": {"current_frame": 500}}))]);
    let f = untimed(titan.json().await);
    assert_eq!(
        (
            f["status"].as_str(),
            f["progress"].as_f64(),
            f["stage"].as_str()
        ),
        (Some("processing"), Some(0.25), Some("rendering")),
        "{f}"
    );
    redis.cli(&["PUBLISH", "job_progress:job_77", &report(json!({"job_id": "job_77", "status": "completed", "stage": "complete", "progress": 1.0, "message": "Video rendering completed", "result": {"frames": 2000}, "timestamp": "2024-01-01T00:00:01Z"}))]);
    let f = untimed(titan.json().await);
    assert_eq!(
        (f["status"].as_str(), f["result"]["frames"].as_u64()),
        (Some("completed"), Some(2000)),
        "{f}"
    );
    // Durable and numbered in the v1 log.
    let hist: Value = reqwest::get(format!("{}/v1/jobs/job_77/events?since=0", p.base))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let kinds: Vec<&str> = hist["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(kinds, ["created", "progress", "completed"], "{hist}");

    // a6hub: a v1 watcher and an a6hub watcher of the same job.
    post(&p.base, "/v1/jobs", json!({"id": "123"}), None).await;
    let mut v1 = Ws::connect(&ws_url("/v1/jobs/123/ws")).await;
    assert_eq!(v1.json().await["type"], "snapshot");
    let mut a6 = Ws::connect(&ws_url("/api/v1/ws/jobs/123/updates")).await;
    assert_eq!(a6.json().await["type"], "connected");
    let frame = |kind: &str, data: Value| {
        json!({"type": kind, "data": data, "timestamp": "2025-01-06T12:00:00Z"}).to_string()
    };
    for msg in [
        frame("status", json!({"status": "running"})),
        frame(
            "step",
            json!({"step_name": "synthesis", "step_label": "Synthesis"}),
        ),
        frame(
            "progress",
            json!({"progress": 45, "current_step": "synthesis", "completed_steps": ["initialization"]}),
        ),
        frame("log", json!({"log_line": "Running synthesis...\n"})),
        "not json at all".to_owned(),
        frame(
            "complete",
            json!({"status": "completed", "message": "Build completed successfully"}),
        ),
    ] {
        redis.cli(&["PUBLISH", "job:123:updates", &msg]);
    }
    let mut v1_kinds = Vec::new();
    loop {
        match v1.frame().await {
            crate::support::Frame::Json(v) => {
                v1_kinds.push(v["type"].as_str().unwrap_or("?").to_owned())
            }
            crate::support::Frame::Close(c) => {
                assert_eq!(c, 1000);
                break;
            }
        }
    }
    assert_eq!(v1_kinds, ["status", "step", "progress", "log", "completed"]);
    let mut a6_kinds = Vec::new();
    while a6_kinds.last().map(String::as_str) != Some("complete") {
        a6_kinds.push(a6.json().await["type"].as_str().unwrap_or("?").to_owned());
    }
    assert_eq!(a6_kinds, ["status", "step", "progress", "log", "complete"]);
    // The bad message was counted, not fatal. (A watcher sees an event before the
    // bridge's publish call returns and counts it: wait for the count.)
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = reqwest::get(format!("{}/metrics", p.base))
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        if crate::support::metric_value(&metrics, "jobwire_ingested_total") >= 7.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        crate::support::metric_value(&metrics, "jobwire_ingested_total"),
        7.0,
        "{metrics}"
    );
    assert_eq!(
        crate::support::metric_value(&metrics, "jobwire_ingest_rejected_total"),
        1.0,
        "{metrics}"
    );
}
