//! Connections on a bad day: a peer that stops reading (write deadline frees its
//! slot), a body that trickles in (408, and it counts against the per-IP limit), a
//! client-initiated close (answered), graceful shutdown of the real binary while
//! sessions still drain (they get every event and 1012; racing publishers get 503),
//! and the smaller refusals (dev-mode `auth` frames, API keys in `?token=`, weak
//! secrets, undecodable path segments).

use crate::support::{code, serve_fails, Options, Process, Server, Ws};
use futures_util::{SinkExt, StreamExt};
use jobwire_server::{ConnLimits, ServerConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A TCP connection whose receive buffer is as small as the kernel allows, so the
/// server's writes block as soon as the client stops reading.
async fn tight_tcp(addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    sock.connect(addr).await.expect("connect")
}

/// Fills job `id` with `batches` x 16 log lines of 32 KiB (8 MiB for 16 batches).
async fn big_job(s_base: &str, id: &str, batches: usize) -> u64 {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{s_base}/v1/jobs"))
        .json(&json!({"id": id}))
        .send()
        .await
        .expect("create");
    assert!(r.status().is_success());
    let line = "x".repeat(32 * 1024);
    let mut last = 1;
    for _ in 0..batches {
        let events: Vec<Value> = (0..16)
            .map(|_| json!({"type": "log", "line": line}))
            .collect();
        let r = http
            .post(format!("{s_base}/v1/jobs/{id}/events"))
            .json(&events)
            .send()
            .await
            .expect("publish");
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.expect("json");
        last = crate::support::seqs(&v).last().copied().unwrap_or(last);
    }
    last
}

/// Opens a WebSocket on `path` over a tight TCP connection and stops reading.
async fn stuck_watcher(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = tight_tcp(addr).await;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("handshake");
    tcp
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_closed_and_its_slot_freed() {
    let s = Server::start_with(Options {
        server: ServerConfig {
            write_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(60),
            ..Default::default()
        },
        limits: ConnLimits {
            max_total: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    big_job(&s.base, "big", 16).await;
    let _a = stuck_watcher(s.addr, "/v1/jobs/big/ws?since=0").await;
    let _b = stuck_watcher(s.addr, "/v1/jobs/big/ws?since=0").await;
    // Both slots are held while their writes block ...
    let t0 = Instant::now();
    loop {
        match Ws::try_connect(&s.ws_url("/v1/ws"), &[]).await {
            Err(429) => break,
            Ok(_) | Err(_) if t0.elapsed() > Duration::from_secs(5) => {
                panic!("the two stuck watchers should hold both slots")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // ... and are freed once the write deadline passes.
    let t0 = Instant::now();
    let mut ws = loop {
        match Ws::try_connect(&s.ws_url("/v1/ws"), &[]).await {
            Ok(ws) => break ws,
            Err(429) if t0.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(c) => panic!("slots never freed (last answer {c})"),
        }
    };
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.json().await["type"], "pong");
    // Both stuck sessions end by the deadline (the first freed slot let us in).
    let t0 = Instant::now();
    while s.metric("jobwire_write_timeouts_total").await < 2.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the second stuck watcher was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close() {
    let s = Server::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(s.ws_url("/v1/ws"))
        .await
        .expect("connect");
    ws.send(Message::Close(None)).await.expect("send close");
    // The closing handshake completes: the server's close arrives, then the end.
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an answer in time");
    match reply {
        Some(Ok(Message::Close(_))) | None => {}
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the stream ends");
    assert!(
        !matches!(end, Some(Err(_))),
        "closing handshake not completed: {end:?}"
    );
}

/// Sends a request head announcing `len` body bytes and only `sent` of them.
async fn trickle(addr: SocketAddr, len: usize, sent: usize) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    tcp.write_all(&b"{\"id\":\"slow-1\"       "[..sent])
        .await
        .expect("body");
    tcp
}

#[tokio::test]
async fn a_trickling_body_times_out_and_holds_a_per_ip_slot_meanwhile() {
    let s = Server::start_with(Options {
        server: ServerConfig {
            body_timeout: Duration::from_millis(800),
            ..Default::default()
        },
        limits: ConnLimits {
            max_per_ip: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut one = trickle(s.addr, 100, 10).await;
    let _two = trickle(s.addr, 100, 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Both per-IP slots are taken by the trickling bodies.
    let (st, v) = s.post("/v1/jobs", json!({"id": "fast"})).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_connections"),
        "{v}"
    );
    // The first one is answered 408 and its connection closed.
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), one.read_to_end(&mut buf))
        .await
        .expect("the server answers and closes in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    // Once they are gone, requests go through again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, v) = s.post("/v1/jobs", json!({"id": "fast"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let t0 = Instant::now();
    while s.metric("jobwire_body_timeouts_total").await < 2.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "both slow bodies time out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_waits_for_sessions_to_drain_and_refuses_newcomers_with_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Process::start(dir.path(), "127.0.0.1:0", &["--shutdown-grace", "20s"]);
    let last = big_job(&p.base, "big", 8).await; // 4 MiB of history
                                                 // A watcher that reads slowly: its replay takes a few seconds.
    let tcp = tight_tcp(p.addr).await;
    let url = format!("ws://{}/v1/jobs/big/ws?since=0", p.addr);
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("handshake");
    let first = ws.next().await;
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
    let pid = p.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Racing the shutdown: a publisher is told to go elsewhere, not refused.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/jobs", p.base))
        .json(&json!({"id": "late"}))
        .send()
        .await
        .expect("the listener still answers during the drain");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = r.json().await.expect("json");
    assert_eq!(code(&v), "shutting_down", "{v}");
    // The slow watcher still gets every event, then 1012.
    let mut seen = 0;
    let close = loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("json");
                if let Some(seq) = v["seq"].as_u64() {
                    if v["type"] != "snapshot" {
                        seen = seq;
                    }
                }
            }
            Some(Ok(Message::Close(c))) => break c.map(|c| u16::from(c.code)),
            Some(Ok(_)) => {}
            other => panic!("stream cut before its close (last seq {seen}): {other:?}"),
        }
    };
    assert_eq!(seen, last, "every event was delivered before the close");
    assert_eq!(close, Some(1012));
    assert!(p.child.wait().expect("wait").success());
}

#[tokio::test]
async fn small_refusals_say_what_is_wrong() {
    // Development mode: an `auth` frame has nothing to act on.
    let s = Server::start().await;
    let mut ws = s.ws("/v1/ws").await;
    ws.send(json!({"type": "auth", "token": "garbage"})).await;
    let v = ws.json().await;
    assert_eq!(
        (v["type"].as_str(), v["code"].as_str()),
        (Some("error"), Some("auth_disabled")),
        "{v}"
    );
    // A job id whose percent-encoding is not UTF-8: the JSON envelope.
    let r = reqwest::get(s.url("/v1/jobs/%FF%FE")).await.expect("get");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("a JSON error body");
    assert_eq!(code(&v), "bad_request", "{v}");

    // An API key in ?token= is told where keys go.
    let secret = "connections-secret-0123456789abcdef";
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(dir.path(), "127.0.0.1:0", &["--jwt-secret", secret]);
    let r = reqwest::get(format!(
        "{}/v1/jobs?token=jwk_abcdefghijkl_{}",
        p.base,
        "A".repeat(43)
    ))
    .await
    .expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.expect("json");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("API key") && msg.contains("header"), "{v}");

    // A short HS256 secret is refused unless forced.
    let (code, err, _) = serve_fails(&["--jwt-secret", "short"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("at least 32"), "{err}");
}
