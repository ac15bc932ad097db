//! Redis over TLS (`rediss://`) against a real TLS-only redis-server with a CA and
//! certificates generated at run time: two real instances sharing it, a password in
//! the URL, mutual TLS, and every misconfiguration failing fast with a clear error.

use crate::support::{serve_fails, Engine, Options, Process, Server, TlsRedisServer, TlsSpec, Ws};
use jobwire_redis::{ConnectError, RedisConfig, RedisEngine};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How long a refused TLS connection may take to be reported (the test timeouts are
/// longer, so a hang fails the assertion instead of the harness).
const FAST: Duration = Duration::from_secs(5);

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn two_instances_share_a_tls_redis_with_a_private_ca_and_a_password() {
    let redis = TlsRedisServer::start(TlsSpec {
        names: &["127.0.0.1"],
        password: Some("s3cret"),
        require_client_cert: false,
    });
    let url = redis.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--redis",
        url.as_str(),
        "--redis-ca-file",
        path(&redis.pki.ca),
    ];
    let a = Process::start(dir.path(), "127.0.0.1:0", &args);
    let b = Process::start(dir.path(), "127.0.0.1:0", &args);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/jobs", a.base))
        .json(&json!({"id": "tls-job"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut ws = Ws::connect(&format!("ws://{}/v1/jobs/tls-job/ws", b.addr)).await;
    let snap = ws.json().await;
    assert_eq!(
        (snap["type"].as_str(), snap["seq"].as_u64()),
        (Some("snapshot"), Some(1))
    );
    let r = http
        .post(format!("{}/v1/jobs/tls-job/events", a.base))
        .json(&json!({"type": "progress", "progress": 40, "stage": "encode"}))
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), StatusCode::OK);
    let e = ws.json().await;
    assert_eq!(
        (e["seq"].as_u64(), e["progress"].as_f64()),
        (Some(2), Some(40.0))
    );
    let r = http
        .post(format!("{}/v1/jobs/tls-job/events", b.base))
        .json(&json!({"type": "completed"}))
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(ws.json().await["type"], "completed");
    assert_eq!(ws.close_code().await, 1000);
    for p in [&a, &b] {
        let r = http
            .get(format!("{}/readyz", p.base))
            .send()
            .await
            .expect("readyz");
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn without_the_ca_the_server_refuses_to_start_with_a_clear_error() {
    let redis = TlsRedisServer::start(TlsSpec {
        names: &["127.0.0.1"],
        password: None,
        require_client_cert: false,
    });
    let url = redis.url();
    let (code, stderr, took) = serve_fails(&["--redis", &url]).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(took < FAST, "took {took:?}");
    assert!(
        stderr.contains("TLS handshake with Redis failed") && stderr.contains("UnknownIssuer"),
        "unclear error: {stderr}"
    );
    // Another CA is no better than none.
    let other = crate::support::TestPki::new(&["127.0.0.1"]);
    let (code, stderr, took) =
        serve_fails(&["--redis", &url, "--redis-ca-file", path(&other.ca)]).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(took < FAST, "took {took:?}");
    assert!(
        stderr.contains("TLS handshake with Redis failed: invalid peer certificate"),
        "unclear error: {stderr}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let redis = TlsRedisServer::start(TlsSpec {
        names: &["redis.internal"],
        password: None,
        require_client_cert: false,
    });
    let url = redis.url();
    let (code, stderr, took) =
        serve_fails(&["--redis", &url, "--redis-ca-file", path(&redis.pki.ca)]).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(took < FAST, "took {took:?}");
    assert!(
        stderr.contains("TLS handshake with Redis failed") && stderr.contains("not valid for name"),
        "unclear error: {stderr}"
    );
}

#[tokio::test]
async fn a_wrong_password_and_missing_files_are_reported_clearly() {
    let redis = TlsRedisServer::start(TlsSpec {
        names: &["127.0.0.1"],
        password: Some("right"),
        require_client_cert: false,
    });
    let ca = path(&redis.pki.ca);
    let wrong = redis.url_with_password(Some("wrong"));
    let (code, stderr, _) = serve_fails(&["--redis", &wrong, "--redis-ca-file", ca]).await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cannot connect to Redis") && stderr.contains("authentication failed"),
        "unclear error: {stderr}"
    );
    assert!(
        !stderr.contains("wrong@"),
        "the URL's password leaked: {stderr}"
    );
    let (code, stderr, _) = serve_fails(&[
        "--redis",
        &redis.url(),
        "--redis-ca-file",
        "/nonexistent/ca.pem",
    ])
    .await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cannot read the Redis CA file /nonexistent/ca.pem"),
        "unclear error: {stderr}"
    );
    // A CA file with a plain redis:// URL is a mistake, not a silent downgrade.
    let plain = format!("redis://127.0.0.1:{}/", redis.port);
    let (code, stderr, _) = serve_fails(&["--redis", &plain, "--redis-ca-file", ca]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("not rediss://"), "unclear error: {stderr}");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let redis = TlsRedisServer::start(TlsSpec {
        names: &["127.0.0.1"],
        password: None,
        require_client_cert: true,
    });
    // The library boundary: a typed error callers can branch on, returned in time.
    let metrics = Arc::new(jobwire_core::metrics::Metrics::default());
    let registry = Arc::new(jobwire_core::registry::Registry::new(metrics.clone()));
    let mut config = RedisConfig::new(redis.url());
    config.tls = redis.tls(false);
    config.command_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let refused = RedisEngine::connect(config, registry, metrics).await;
    assert!(started.elapsed() < FAST);
    match refused {
        Err(ConnectError::TlsHandshake(_) | ConnectError::Connect(_)) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("connected without a client certificate"),
    }
    // With the certificate: the full path, publish on one instance, watch on another.
    let instance = |cert: bool| Options {
        engine: Engine::Redis,
        redis_url: Some(redis.url()),
        redis_tls: redis.tls(cert),
        prefix: Some("m:".to_owned()),
        ..Default::default()
    };
    let a = Server::start_with(instance(true)).await;
    let b = Server::start_with(instance(true)).await;
    a.create("m").await;
    let mut ws = b.ws("/v1/jobs/m/ws").await;
    assert_eq!(ws.json().await["seq"], 1);
    a.publish("m", json!({"type": "log", "line": "over mTLS"}))
        .await;
    assert_eq!(ws.json().await["line"], "over mTLS");
    // The CLI flags carry the client certificate too.
    let (code, stderr, _) = serve_fails(&[
        "--redis",
        &redis.url(),
        "--redis-ca-file",
        path(&redis.pki.ca),
        "--redis-client-cert",
        path(&redis.pki.client_cert),
    ])
    .await;
    assert_ne!(code, 0, "a certificate without its key must be refused");
    assert!(
        stderr.contains("--redis-client-key"),
        "unclear error: {stderr}"
    );
}
