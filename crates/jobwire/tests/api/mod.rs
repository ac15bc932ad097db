//! HTTP API scripts.

use crate::support::{code, Engine, Options, Server};
use jobwire_core::engine::embedded::Retention;
use jobwire_proto::{CloseCode, ErrorCode};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

async fn create_returns_snapshot_and_urls_and_is_idempotent(engine: Engine) {
    let s = Server::start_on(engine).await;
    let (st, v) = s
        .post(
            "/v1/jobs",
            json!({"id": "render-1", "project": "video", "metadata": {"k": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(v["created"], true);
    assert_eq!(v["job"]["id"], "render-1");
    assert_eq!(v["job"]["status"], "pending");
    assert_eq!(v["job"]["seq"], 1);
    assert_eq!(v["job"]["metadata"]["k"], 1);
    assert_eq!(v["urls"]["ws"], s.ws_url("/v1/jobs/render-1/ws"));
    assert_eq!(v["urls"]["sse"], s.url("/v1/jobs/render-1/events"));

    // An identical retry is safe: 200, same job, not created again.
    let (st, again) = s
        .post(
            "/v1/jobs",
            json!({"id": "render-1", "project": "video", "metadata": {"k": 1}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(again["created"], false);
    assert_eq!(again["job"]["seq"], 1);

    // A different request for the same id is a conflict.
    let (st, conflict) = s
        .post("/v1/jobs", json!({"id": "render-1", "project": "other"}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(code(&conflict), "job_exists");

    // No id: the server makes one.
    let (st, gen) = s.post("/v1/jobs", json!({})).await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(gen["job"]["id"].as_str().is_some_and(|id| id.len() >= 16));
}

async fn publish_assigns_contiguous_seqs_and_folds_the_snapshot(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    assert_eq!(
        s.publish("j", json!({"type": "status", "status": "queued"}))
            .await,
        vec![2]
    );
    let batch = json!([
        {"type": "step", "step": "synthesis", "label": "Synthesis"},
        {"type": "progress", "progress": 45.5, "stage": "render", "message": "frame 900/2000", "metadata": {"fps": 30}},
        {"type": "log", "line": "hello", "level": "info"},
        {"type": "step", "step": "place"},
        {"type": "custom", "name": "rc_analysis_progress", "data": {"a": 1}},
    ]);
    assert_eq!(s.publish("j", batch).await, vec![3, 4, 5, 6, 7]);
    let (st, job) = s.get("/v1/jobs/j").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(job["status"], "in_progress");
    assert_eq!(job["progress"], 45.5);
    assert_eq!(job["stage"], "render");
    assert_eq!(job["message"], "frame 900/2000");
    assert_eq!(job["metadata"]["fps"], 30);
    assert_eq!(job["step"]["step"], "place");
    assert_eq!(job["completed_steps"], json!(["synthesis"]));
    assert_eq!(job["logs"][0]["line"], "hello");
    assert_eq!(job["log_count"], 1);
    assert_eq!(job["seq"], 7);

    assert_eq!(
        s.publish(
            "j",
            json!({"type": "completed", "result": {"url": "s3://x"}})
        )
        .await,
        vec![8]
    );
    let (_, job) = s.get("/v1/jobs/j").await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["progress"], 100.0);
    assert_eq!(job["result"]["url"], "s3://x");
    assert_eq!(job["completed_steps"], json!(["synthesis", "place"]));
    assert!(job["finished_at"].is_string());
}

async fn every_event_carries_type_job_id_seq_timestamp_status(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    s.publish(
        "j",
        json!([{"type": "progress", "progress": 1}, {"type": "failed", "error": "boom"}]),
    )
    .await;
    let (_, page) = s.get("/v1/jobs/j/events?since=0").await;
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        assert_eq!(e["job_id"], "j");
        assert!(jobwire_proto::Timestamp::parse(e["timestamp"].as_str().expect("ts")).is_some());
        assert!(e["type"].is_string() && e["status"].is_string(), "{e}");
    }
    assert_eq!(events[0]["type"], "created");
    assert_eq!(events[2]["type"], "failed");
    assert_eq!(events[2]["error"], "boom");
    assert_eq!(events[2]["status"], "failed");
}

async fn a_batch_is_atomic(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    // The third event is an illegal transition (in_progress -> queued): nothing is stored.
    let (st, v) = s
        .post(
            "/v1/jobs/j/events",
            json!([
                {"type": "progress", "progress": 10},
                {"type": "log", "line": "a"},
                {"type": "status", "status": "queued"},
            ]),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "invalid_transition");
    let (_, job) = s.get("/v1/jobs/j").await;
    assert_eq!(job["seq"], 1);
    assert_eq!(job["status"], "pending");
    assert_eq!(job["log_count"], 0);
}

async fn event_id_makes_retries_idempotent(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    let ev = json!({"type": "log", "line": "once", "event_id": "worker-7:42"});
    assert_eq!(s.publish("j", ev.clone()).await, vec![2]);
    s.publish("j", json!({"type": "log", "line": "other"}))
        .await;
    assert_eq!(
        s.publish("j", ev.clone()).await,
        vec![2],
        "a retry returns the original seq"
    );
    // In a batch too, and the same key twice in one batch is stored once.
    let batch = json!([ev, {"type": "log", "line": "x", "event_id": "k2"}, {"type": "log", "line": "x", "event_id": "k2"}]);
    assert_eq!(s.publish("j", batch).await, vec![2, 4, 4]);
    let (_, job) = s.get("/v1/jobs/j").await;
    assert_eq!(job["log_count"], 3);
    assert_eq!(job["seq"], 4);
    // A retried terminal event after the job ended is still answered with its seq.
    s.publish("j", json!({"type": "status", "status": "in_progress"}))
        .await;
    let done = json!({"type": "completed", "event_id": "done"});
    assert_eq!(s.publish("j", done.clone()).await, vec![6]);
    assert_eq!(s.publish("j", done).await, vec![6]);
}

async fn bad_input_gets_a_documented_code_and_changes_nothing(engine: Engine) {
    let s = Server::start_with(Options {
        engine,
        server: jobwire_server::ServerConfig {
            max_body_bytes: 4096,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    s.create("j").await;
    let cases: Vec<(&str, &str, StatusCode, &str)> = vec![
        (
            "/v1/jobs/j/events",
            "{not json",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/v1/jobs/j/events",
            r#"{"type":"teleport"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            "/v1/jobs/j/events",
            r#"{"type":"progress","progress":"half"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            "/v1/jobs/j/events",
            r#"{"type":"progress","progress":100.5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            "/v1/jobs/j/events",
            r#"{"type":"progress","progress":-3}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            "/v1/jobs/j/events",
            r#"{"type":"log","line":"x","colour":"red"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            "/v1/jobs/j/events",
            r#"{"type":"created"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            "/v1/jobs/j/events",
            r#"{"type":"status","status":"completed"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            "/v1/jobs/j/events",
            r#"42"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            "/v1/jobs/j/events",
            r#"[]"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
        ),
        (
            "/v1/jobs/j/events",
            r#"{"type":"completed"}"#,
            StatusCode::CONFLICT,
            "invalid_transition",
        ),
        (
            "/v1/jobs/nope/events",
            r#"{"type":"log","line":"x"}"#,
            StatusCode::NOT_FOUND,
            "job_not_found",
        ),
        (
            "/v1/jobs/bad%20id/events",
            r#"{"type":"log","line":"x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_job_id",
        ),
        (
            "/v1/jobs",
            r#"{"id":"has space"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_job_id",
        ),
        (
            "/v1/jobs",
            r#"{"id":"ok","metadata":"not an object"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "/v1/jobs",
            r#"{"id":"ok2","colour":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ];
    for (path, body, status, want) in cases {
        let (st, v) = s.post_raw(path, body.to_owned()).await;
        assert_eq!((st, code(&v)), (status, want), "{path} {body}: {v}");
        assert!(
            v["error"]["number"].is_u64() && v["error"]["message"].is_string(),
            "{v}"
        );
    }
    let big = format!(r#"{{"type":"log","line":"{}"}}"#, "x".repeat(5000));
    let (st, v) = s.post_raw("/v1/jobs/j/events", big).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let (_, job) = s.get("/v1/jobs/j").await;
    assert_eq!(job["seq"], 1, "nothing was stored: {job}");

    // Terminal jobs accept nothing more.
    s.publish("j", json!({"type": "cancelled", "reason": "user"}))
        .await;
    let (st, v) = s
        .post("/v1/jobs/j/events", json!({"type": "log", "line": "late"}))
        .await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "job_terminal"));

    // Unknown routes, methods and query parameters.
    let (st, v) = s.get("/v2/nothing").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "route_not_found"));
    let r = s
        .http
        .delete(s.url("/v1/jobs/j"))
        .send()
        .await
        .expect("delete");
    let (st, v) = crate::support::decode(r).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let (st, v) = s.get("/v1/jobs/j/events?since=minus-one").await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (st, v) = s.get("/v1/jobs?status=sleeping").await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (st, v) = s.get("/v1/jobs/missing").await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "job_not_found"));
    // A plain GET on a WebSocket endpoint.
    let (st, v) = s.get("/v1/ws").await;
    assert_eq!((st, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    // Every refusal above is counted.
    assert!(s.metric("jobwire_client_errors_total").await >= 24.0);
}

async fn state_machine_is_enforced_over_http(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("a").await;
    // pending -> in_progress directly is allowed.
    s.publish("a", json!({"type": "status", "status": "in_progress"}))
        .await;
    let (st, v) = s
        .post(
            "/v1/jobs/a/events",
            json!({"type": "status", "status": "in_progress"}),
        )
        .await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "invalid_transition"));
    s.create("b").await;
    s.publish("b", json!({"type": "status", "status": "queued"}))
        .await;
    // queued cannot complete without starting.
    let (st, v) = s
        .post("/v1/jobs/b/events", json!({"type": "completed"}))
        .await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "invalid_transition"));
    // Any non-terminal state may fail.
    s.publish("b", json!({"type": "failed", "error": "oom"}))
        .await;
    let (_, job) = s.get("/v1/jobs/b").await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "oom");
}

async fn history_pages_and_list_filters(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"type": "log", "line": format!("l{i}")}))
        .collect();
    s.publish("j", Value::Array(events)).await;
    let (_, p1) = s.get("/v1/jobs/j/events?since=0&limit=10").await;
    assert_eq!(p1["events"].as_array().map(Vec::len), Some(10));
    assert_eq!(p1["next_since"], 10);
    let (_, p2) = s.get("/v1/jobs/j/events?since=10&limit=100").await;
    let seqs: Vec<u64> = p2["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(seqs, (11..=31).collect::<Vec<_>>());
    assert_eq!(p2["seq"], 31);
    assert_eq!(p2["truncated"], false);

    for (id, project) in [("p1", "a"), ("p2", "b"), ("p3", "a")] {
        s.post("/v1/jobs", json!({"id": id, "project": project}))
            .await;
    }
    s.publish("p3", json!({"type": "cancelled"})).await;
    let (_, l) = s.get("/v1/jobs?project=a").await;
    let ids: Vec<&str> = l["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["p1", "p3"]);
    let (_, l) = s.get("/v1/jobs?status=cancelled").await;
    assert_eq!(l["jobs"].as_array().map(Vec::len), Some(1));
    // Pagination walks every job exactly once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/jobs?limit=2&after={a}"),
            None => "/v1/jobs?limit=2".to_owned(),
        };
        let (_, page) = s.get(&path).await;
        seen.extend(
            page["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .filter_map(|j| j["id"].as_str().map(str::to_owned)),
        );
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["j", "p1", "p2", "p3"]);
}

async fn cancel_endpoint_publishes_a_cancelled_event(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    let (st, v) = s
        .post("/v1/jobs/j/cancel", json!({"reason": "user asked"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["seqs"], json!([2]));
    let (_, job) = s.get("/v1/jobs/j").await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["message"], "user asked");
    let (st, v) = s.post_raw("/v1/jobs/j/cancel", "").await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "job_terminal"));
}

async fn retention_trims_history_and_says_so(engine: Engine) {
    let s = Server::start_with(Options {
        engine,
        retention: Retention {
            max_events_per_job: 5,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    s.create("j").await;
    let events: Vec<Value> = (0..11)
        .map(|i| json!({"type": "log", "line": format!("l{i}")}))
        .collect();
    s.publish("j", Value::Array(events)).await;
    let (_, page) = s.get("/v1/jobs/j/events?since=0").await;
    assert_eq!(page["truncated"], true);
    assert_eq!(page["history_start"], 8);
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![8, 9, 10, 11, 12]);
    let (_, page) = s.get("/v1/jobs/j/events?since=9").await;
    assert_eq!(page["truncated"], false);

    // A WebSocket asking for trimmed history gets the snapshot and a notice, never a silent gap.
    let mut ws = s.ws("/v1/jobs/j/ws?since=2").await;
    let snap = ws.json().await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["job"]["log_count"], 11);
    let notice = ws.json().await;
    assert_eq!(notice["type"], "history_truncated");
    assert_eq!(notice["since"], 2);
    assert_eq!(notice["history_start"], 8);
    assert_eq!(ws.json().await["seq"], 8);
}

async fn finished_jobs_expire_after_their_ttl(engine: Engine) {
    let s = Server::start_with(Options {
        engine,
        retention: Retention {
            terminal_ttl: Duration::from_millis(0),
            sweep_interval: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    s.create("done").await;
    s.create("running").await;
    let keyed = |line: &str| json!({"type": "log", "line": line, "event_id": line});
    s.publish("done", json!([keyed("a"), keyed("b")])).await;
    s.publish("done", json!({"type": "cancelled"})).await;
    s.publish("running", json!({"type": "progress", "progress": 5}))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (st, _) = s.get("/v1/jobs/done").await;
        if st == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "terminal job never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, _) = s.get("/v1/jobs/running").await;
    assert_eq!(st, StatusCode::OK, "non-terminal jobs are kept");
    let (st, _) = s.get("/v1/jobs/done/events?since=0").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A new job under the same id starts clean: none of the old events or
    // idempotency keys come back.
    s.create("done").await;
    assert_eq!(
        s.publish("done", json!([keyed("b"), keyed("c")])).await,
        vec![2, 3]
    );
    let (_, page) = s.get("/v1/jobs/done/events?since=0").await;
    let seqs: Vec<(u64, &str)> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| Some((e["seq"].as_u64()?, e["type"].as_str()?)))
        .collect();
    assert_eq!(seqs, [(1, "created"), (2, "log"), (3, "log")], "{page}");
}

async fn health_metrics_and_openapi(engine: Engine) {
    let s = Server::start_on(engine).await;
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(s.get("/readyz").await.0, StatusCode::OK);
    s.create("j").await;
    s.publish("j", json!({"type": "log", "line": "x"})).await;
    assert_eq!(s.metric("jobwire_events_published_total").await, 2.0);
    assert!(s.metric("jobwire_publish_duration_seconds_count").await >= 1.0);
    for name in [
        "jobwire_connections",
        "jobwire_subscriptions",
        "jobwire_events_delivered_total",
        "jobwire_events_coalesced_total",
        "jobwire_slow_consumer_closes_total",
    ] {
        s.metric(name).await;
    }
    let (st, doc) = s.get("/v1/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/ws",
        "/v1/ws",
        "/v1/keys",
        "/v1/keys/{id}",
        "/v1/projects/{project}/ws",
        "/v1/notifications/ws",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi lacks {path}");
    }
}

#[test]
fn protocol_doc_lists_every_error_and_close_code() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/protocol.md"
    ))
    .expect("docs/protocol.md");
    for c in ErrorCode::ALL {
        let row = format!(
            "| {} | `{}` | {} |",
            c.number(),
            c.as_str(),
            c.http_status()
        );
        assert!(
            doc.contains(&row),
            "docs/protocol.md lacks the row starting {row}"
        );
    }
    for c in CloseCode::ALL {
        let row = format!(
            "| {} | `{}` | {} |",
            c.number(),
            c.as_str(),
            c.action().as_str()
        );
        assert!(
            doc.contains(&row),
            "docs/protocol.md lacks the close-code row starting {row}"
        );
    }
}

crate::on_both_engines!(
    create_returns_snapshot_and_urls_and_is_idempotent,
    publish_assigns_contiguous_seqs_and_folds_the_snapshot,
    every_event_carries_type_job_id_seq_timestamp_status,
    a_batch_is_atomic,
    event_id_makes_retries_idempotent,
    bad_input_gets_a_documented_code_and_changes_nothing,
    state_machine_is_enforced_over_http,
    history_pages_and_list_filters,
    cancel_endpoint_publishes_a_cancelled_event,
    retention_trims_history_and_says_so,
    finished_jobs_expire_after_their_ttl,
    health_metrics_and_openapi,
);

crate::on_store_reads!(
    publish_assigns_contiguous_seqs_and_folds_the_snapshot,
    history_pages_and_list_filters,
    retention_trims_history_and_says_so,
    finished_jobs_expire_after_their_ttl,
);
