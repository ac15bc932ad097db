//! WebSocket scripts: the single-job and multiplexed endpoints.

use crate::support::{normal_close, Engine, Frame, Options, Server, Ws};
use jobwire_core::HubConfig;
use jobwire_server::ServerConfig;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Reads event frames for `job` until one with seq `last`; asserts seqs are exactly
/// `from..=last` (no gap, no duplicate, in order).
async fn expect_seqs(ws: &mut Ws, job: &str, from: u64, last: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut want = from;
    while want <= last {
        let v = ws.json().await;
        if v["job_id"] != job || v.get("seq").is_none() || v["type"] == "snapshot" {
            continue;
        }
        assert_eq!(v["seq"], want, "gap or duplicate: {v}");
        want += 1;
        out.push(v);
    }
    out
}

async fn single_job_socket_sends_snapshot_then_live_then_closes_1000_at_the_end(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    s.publish("j", json!({"type": "progress", "progress": 10}))
        .await;
    let mut ws = s.ws("/v1/jobs/j/ws").await;
    let snap = ws.json().await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["seq"], 2);
    assert_eq!(snap["job"]["progress"], 10.0);
    s.publish(
        "j",
        json!([{"type": "log", "line": "a"}, {"type": "progress", "progress": 50}]),
    )
    .await;
    let evs = expect_seqs(&mut ws, "j", 3, 4).await;
    assert_eq!(evs[0]["type"], "log");
    assert_eq!(evs[1]["progress"], 50.0);
    s.publish("j", json!({"type": "completed", "result": {"ok": true}}))
        .await;
    let done = ws.json().await;
    assert_eq!(done["type"], "completed");
    assert_eq!(done["seq"], 5);
    assert_eq!(ws.close_code().await, normal_close());

    // Watching a finished job: snapshot, requested history, then close 1000 at once.
    let mut ws = s.ws("/v1/jobs/j/ws?since=3").await;
    assert_eq!(ws.json().await["job"]["status"], "completed");
    expect_seqs(&mut ws, "j", 4, 5).await;
    assert_eq!(ws.close_code().await, normal_close());
}

async fn unknown_job_gets_an_error_frame_then_close_4504(engine: Engine) {
    let s = Server::start_on(engine).await;
    let mut ws = s.ws("/v1/jobs/ghost/ws").await;
    let e = ws.json().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "job_not_found");
    assert_eq!(e["job_id"], "ghost");
    assert_eq!(ws.close_code().await, 4504);
}

async fn reconnect_with_since_misses_nothing_and_repeats_nothing(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    let mut ws = s.ws("/v1/jobs/j/ws?since=0").await;
    assert_eq!(ws.json().await["type"], "snapshot");
    expect_seqs(&mut ws, "j", 1, 1).await;
    for i in 0..5 {
        s.publish("j", json!({"type": "log", "line": format!("l{i}")}))
            .await;
    }
    let seen = expect_seqs(&mut ws, "j", 2, 6).await;
    let last = seen
        .last()
        .and_then(|v| v["seq"].as_u64())
        .expect("last seq");
    ws.close().await;
    // Published while the client was away.
    for i in 0..7 {
        s.publish("j", json!({"type": "progress", "progress": i as f64}))
            .await;
    }
    let mut ws = s.ws(&format!("/v1/jobs/j/ws?since={last}")).await;
    let snap = ws.json().await;
    assert_eq!(snap["seq"], 13);
    expect_seqs(&mut ws, "j", 7, 13).await;
    s.publish("j", json!({"type": "log", "line": "live"})).await;
    let live = expect_seqs(&mut ws, "j", 14, 14).await;
    assert_eq!(live[0]["line"], "live");
}

/// Many clients reconnecting at once with `since=0` all catch up: on Redis, range
/// reads beyond the per-instance bound wait for a permit instead of queueing on the
/// connection until they time out (`storage_unavailable`, close 1011).
async fn a_reconnect_storm_catches_everyone_up(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    for b in 0..6 {
        let batch: Vec<Value> = (0..100)
            .map(|i| json!({"type": "log", "line": format!("b{b}-{i}")}))
            .collect();
        s.publish("j", Value::Array(batch)).await;
    }
    let url = s.ws_url("/v1/jobs/j/ws?since=0");
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let url = url.clone();
        clients.spawn(async move {
            let mut ws = Ws::connect(&url).await;
            let first = ws.json().await;
            assert_eq!(first["type"], "snapshot", "{first}");
            expect_seqs(&mut ws, "j", 1, 601).await.len()
        });
    }
    let mut caught_up = 0;
    while let Some(r) = clients.join_next().await {
        assert_eq!(r.expect("client task"), 601);
        caught_up += 1;
    }
    assert_eq!(caught_up, 100);
}

async fn no_gap_no_duplicate_while_publishing_races_subscribing(engine: Engine) {
    let s = Arc::new(Server::start_on(engine).await);
    s.create("race").await;
    const TOTAL: u64 = 400; // events after `created`
    let publisher = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL / 4 {
                let batch: Vec<Value> = (0..4)
                    .map(|k| json!({"type": "log", "line": format!("{i}-{k}")}))
                    .collect();
                s.publish("race", Value::Array(batch)).await;
            }
        })
    };
    let mut watchers = Vec::new();
    for w in 0..24u64 {
        let s = s.clone();
        watchers.push(tokio::spawn(async move {
            // Join at different moments while the publisher runs.
            tokio::time::sleep(Duration::from_millis(w * 7)).await;
            let (path, from) = if w % 3 == 0 {
                ("/v1/ws".to_owned(), 1)
            } else {
                ("/v1/jobs/race/ws?since=0".to_owned(), 1)
            };
            let mut ws = s.ws(&path).await;
            if path == "/v1/ws" {
                ws.send(json!({"type": "subscribe", "job_id": "race", "since": 0}))
                    .await;
            }
            let snap = ws.json().await;
            assert_eq!(snap["type"], "snapshot");
            expect_seqs(&mut ws, "race", from, TOTAL + 1).await.len()
        }));
    }
    publisher.await.expect("publisher");
    for w in watchers {
        assert_eq!(w.await.expect("watcher"), TOTAL as usize + 1);
    }
    // Late joiners without `since` get the snapshot and only what follows.
    let mut ws = s.ws("/v1/jobs/race/ws").await;
    assert_eq!(ws.json().await["seq"], TOTAL + 1);
    s.publish("race", json!({"type": "log", "line": "after"}))
        .await;
    expect_seqs(&mut ws, "race", TOTAL + 2, TOTAL + 2).await;
}

async fn multiplexed_socket_subscribes_unsubscribes_and_survives_bad_frames(engine: Engine) {
    let s = Server::start_with(Options {
        engine,
        server: ServerConfig {
            max_frame_bytes: 1024,
            max_subscriptions: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    s.create("a").await;
    s.create("b").await;
    s.create("c").await;
    let mut ws = s.ws("/v1/ws").await;
    let bad: Vec<(&str, &str)> = vec![
        ("{oops", "malformed_json"),
        (r#"{"type":"dance"}"#, "unknown_message_type"),
        (r#"{"job_id":"a"}"#, "unknown_message_type"),
        (r#"{"type":"subscribe"}"#, "bad_request"),
        (
            r#"{"type":"subscribe","job_id":"a","since":"x"}"#,
            "bad_request",
        ),
        (r#"{"type":"ping","extra":1}"#, "bad_request"),
    ];
    for (text, want) in bad {
        ws.send_text(text).await;
        let e = ws.json().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(want)),
            "{text}"
        );
        assert!(e["number"].is_u64(), "{e}");
    }
    ws.send_text(&format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(2000)
    ))
    .await;
    assert_eq!(ws.json().await["code"], "payload_too_large");
    ws.send(json!({"type": "ping"})).await;
    let pong = ws.json().await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].is_string());

    ws.send(json!({"type": "subscribe", "job_id": "ghost"}))
        .await;
    let e = ws.json().await;
    assert_eq!(
        (e["code"].as_str(), e["job_id"].as_str()),
        (Some("job_not_found"), Some("ghost"))
    );

    ws.send(json!({"type": "subscribe", "job_id": "a", "since": 0}))
        .await;
    assert_eq!(ws.json().await["job_id"], "a");
    expect_seqs(&mut ws, "a", 1, 1).await;
    ws.send(json!({"type": "subscribe", "job_id": "b"})).await;
    let snap = ws.json().await;
    assert_eq!(
        (snap["type"].as_str(), snap["job_id"].as_str()),
        (Some("snapshot"), Some("b"))
    );
    ws.send(json!({"type": "subscribe", "job_id": "a"})).await;
    assert_eq!(ws.json().await["code"], "already_subscribed");
    ws.send(json!({"type": "subscribe", "job_id": "c"})).await;
    assert_eq!(ws.json().await["code"], "too_many_subscriptions");

    s.publish("a", json!({"type": "log", "line": "to a"})).await;
    s.publish("b", json!({"type": "log", "line": "to b"})).await;
    let ea = ws.json().await;
    let eb = ws.json().await;
    assert_eq!(
        (ea["job_id"].as_str(), ea["seq"].as_u64()),
        (Some("a"), Some(2))
    );
    assert_eq!(
        (eb["job_id"].as_str(), eb["seq"].as_u64()),
        (Some("b"), Some(2))
    );

    ws.send(json!({"type": "unsubscribe", "job_id": "a"})).await;
    assert_eq!(
        ws.json().await,
        json!({"type": "unsubscribed", "job_id": "a"})
    );
    ws.send(json!({"type": "unsubscribe", "job_id": "a"})).await;
    assert_eq!(ws.json().await["code"], "not_subscribed");
    s.publish("a", json!({"type": "log", "line": "nobody hears"}))
        .await;
    s.publish("b", json!({"type": "log", "line": "b again"}))
        .await;
    let next = ws.json().await;
    assert_eq!(
        (next["job_id"].as_str(), next["seq"].as_u64()),
        (Some("b"), Some(3)),
        "no frame for a after unsubscribe"
    );
    // The connection is still usable after every refusal.
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.json().await["type"], "pong");
    assert!(s.metric("jobwire_client_errors_total").await >= 9.0);
}

async fn oversize_message_beyond_the_hard_limit_closes_1009(engine: Engine) {
    let s = Server::start_with(Options {
        engine,
        server: ServerConfig {
            max_frame_bytes: 1024,
            max_message_bytes: 4096,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut ws = s.ws("/v1/ws").await;
    ws.send_text(&"x".repeat(10_000)).await;
    assert_eq!(ws.close_code().await, 1009);
}

async fn heartbeats_flow_and_silent_clients_are_closed(engine: Engine) {
    let s = Server::start_with(Options {
        engine,
        server: ServerConfig {
            heartbeat_interval: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(400),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // A client that keeps reading answers pings (tungstenite replies with pongs) and stays.
    let mut live = s.ws("/v1/ws").await;
    let mut heartbeats = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1200);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) =
            tokio::time::timeout(
                Duration::from_millis(300),
                futures_util::StreamExt::next(&mut live.inner),
            )
            .await
        {
            let v: Value = serde_json::from_str(t.as_str()).expect("json");
            assert_eq!(v["type"], "heartbeat");
            assert!(v["timestamp"].is_string());
            heartbeats += 1;
        }
    }
    assert!(heartbeats >= 5, "only {heartbeats} heartbeats");
    live.send(json!({"type": "ping"})).await;
    assert_eq!(live.json().await["type"], "pong");

    // A client that never answers pings is closed with 4000.
    let started = tokio::time::Instant::now();
    assert_eq!(
        crate::support::silent_client_close_code(s.addr, "/v1/ws").await,
        4000
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the idle timeout"
    );
}

/// Fills the kernel socket buffers with a few big frames so the server's writes
/// block and later frames wait in the outbox.
async fn stall(s: &Server, job: &str) -> u64 {
    let line = "x".repeat(60_000);
    let mut last = 0;
    for _ in 0..20 {
        let batch: Vec<Value> = (0..10)
            .map(|_| json!({"type": "log", "line": line}))
            .collect();
        let body = Value::Array(batch);
        let (st, v) = s
            .post_raw(
                &format!("/v1/jobs/{job}/events"),
                serde_json::to_vec(&body).expect("json"),
            )
            .await;
        assert!(st.is_success(), "{v}");
        last = *crate::support::seqs(&v).last().expect("seq");
    }
    last
}

fn big_body_options(engine: Engine, outbox: usize) -> Options {
    Options {
        engine,
        server: ServerConfig {
            max_body_bytes: 8 * 1024 * 1024,
            // The stalled client is slow, not dead: keep the write deadline out of it.
            write_timeout: Duration::from_secs(120),
            ..Default::default()
        },
        hub: HubConfig {
            outbox_capacity: outbox,
        },
        ..Default::default()
    }
}

async fn slow_consumer_has_progress_coalesced_but_loses_nothing_else(engine: Engine) {
    let s = Server::start_with(big_body_options(engine, 256)).await;
    s.create("j").await;
    let mut ws = s.ws("/v1/jobs/j/ws").await;
    assert_eq!(ws.json().await["type"], "snapshot");
    let stalled_until = stall(&s, "j").await;
    // While the client is stalled: many progress updates and a few logs.
    let mut logs = Vec::new();
    for i in 1..=300u64 {
        let seqs = s
            .publish("j", json!({"type": "progress", "progress": i as f64 / 3.0}))
            .await;
        if i % 50 == 0 {
            logs.extend(
                s.publish("j", json!({"type": "log", "line": format!("log {i}")}))
                    .await,
            );
        }
        assert!(seqs[0] > stalled_until);
    }
    let end = s.publish("j", json!({"type": "completed"})).await[0];
    // Now read everything.
    let mut progress_seen = 0;
    let mut last_progress = 0.0;
    let mut logs_seen = Vec::new();
    let mut prev = 1;
    loop {
        match ws.frame().await {
            Frame::Json(v) => {
                let seq = v["seq"].as_u64().expect("event");
                assert!(seq > prev, "order: {seq} after {prev}");
                prev = seq;
                match v["type"].as_str() {
                    Some("progress") => {
                        progress_seen += 1;
                        last_progress = v["progress"].as_f64().expect("progress");
                    }
                    Some("log") if seq > stalled_until => logs_seen.push(seq),
                    _ => {}
                }
            }
            Frame::Close(code) => {
                assert_eq!(code, normal_close());
                break;
            }
        }
    }
    assert_eq!(prev, end, "the terminal event arrived");
    assert_eq!(logs_seen, logs, "no log event was dropped");
    assert!(
        progress_seen < 300,
        "progress was coalesced ({progress_seen} of 300 delivered)"
    );
    assert_eq!(last_progress, 100.0, "the latest progress won");
    assert!(s.metric("jobwire_events_coalesced_total").await > 0.0);
}

async fn slow_consumer_that_cannot_catch_up_is_closed_4001_and_recovers_with_since(engine: Engine) {
    let s = Server::start_with(big_body_options(engine, 16)).await;
    s.create("j").await;
    let mut ws = s.ws("/v1/jobs/j/ws?since=0").await;
    assert_eq!(ws.json().await["type"], "snapshot");
    stall(&s, "j").await;
    for i in 0..100 {
        s.publish("j", json!({"type": "log", "line": format!("small {i}")}))
            .await;
    }
    let total = s.publish("j", json!({"type": "log", "line": "last"})).await[0];
    let mut last_seen = 0;
    let code = loop {
        match ws.frame().await {
            Frame::Json(v) => {
                if let Some(seq) = v["seq"].as_u64() {
                    if v["type"] != "snapshot" {
                        assert_eq!(seq, last_seen + 1, "no gap before the close");
                        last_seen = seq;
                    }
                }
            }
            Frame::Close(c) => break c,
        }
    };
    assert_eq!(code, 4001);
    assert!(last_seen < total);
    assert!(s.metric("jobwire_slow_consumer_closes_total").await >= 1.0);
    // The documented recovery: reconnect with since = last seq seen.
    let mut ws = s.ws(&format!("/v1/jobs/j/ws?since={last_seen}")).await;
    assert_eq!(ws.json().await["type"], "snapshot");
    expect_seqs(&mut ws, "j", last_seen + 1, total).await;
}

async fn graceful_shutdown_closes_sockets_with_1012(engine: Engine) {
    let mut s = Server::start_on(engine).await;
    s.create("j").await;
    let mut a = s.ws("/v1/jobs/j/ws").await;
    let mut b = s.ws("/v1/ws").await;
    assert_eq!(a.json().await["type"], "snapshot");
    b.send(json!({"type": "ping"})).await;
    assert_eq!(b.json().await["type"], "pong");
    let closer = tokio::spawn(async move {
        s.shutdown().await;
        s
    });
    assert_eq!(a.close_code().await, 1012);
    assert_eq!(b.close_code().await, 1012);
    let _s = closer.await.expect("shutdown");
}

async fn metrics_count_connections_subscriptions_and_deliveries(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    let mut ws = s.ws("/v1/jobs/j/ws").await;
    assert_eq!(ws.json().await["type"], "snapshot");
    assert_eq!(s.metric("jobwire_connections").await, 1.0);
    assert_eq!(s.metric("jobwire_subscriptions").await, 1.0);
    s.publish("j", json!({"type": "log", "line": "x"})).await;
    expect_seqs(&mut ws, "j", 2, 2).await;
    assert!(s.metric("jobwire_events_delivered_total").await >= 1.0);
    ws.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.metric("jobwire_connections").await != 0.0
        || s.metric("jobwire_subscriptions").await != 0.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

crate::on_both_engines!(
    single_job_socket_sends_snapshot_then_live_then_closes_1000_at_the_end,
    unknown_job_gets_an_error_frame_then_close_4504,
    reconnect_with_since_misses_nothing_and_repeats_nothing,
    a_reconnect_storm_catches_everyone_up,
    no_gap_no_duplicate_while_publishing_races_subscribing,
    multiplexed_socket_subscribes_unsubscribes_and_survives_bad_frames,
    oversize_message_beyond_the_hard_limit_closes_1009,
    heartbeats_flow_and_silent_clients_are_closed,
    slow_consumer_has_progress_coalesced_but_loses_nothing_else,
    slow_consumer_that_cannot_catch_up_is_closed_4001_and_recovers_with_since,
    graceful_shutdown_closes_sockets_with_1012,
    metrics_count_connections_subscriptions_and_deliveries,
);

crate::on_store_reads!(
    reconnect_with_since_misses_nothing_and_repeats_nothing,
    no_gap_no_duplicate_while_publishing_races_subscribing,
    slow_consumer_that_cannot_catch_up_is_closed_4001_and_recovers_with_since,
);
