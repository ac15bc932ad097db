//! Worker API keys (create, list, revoke, publish with a key, tenant isolation,
//! scopes), publish rate limits and the handshake timeout.

use crate::on_both_engines;
use crate::support::{cli, code, decode, hs256, AuthSpec, Engine, Options, Process, Server};
use jobwire_server::{PublishLimit, ServerConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "keys-test-secret-0123456789abcdef";

fn token(tenant: &str, scope: &str) -> String {
    hs256(
        SECRET,
        json!({"sub": format!("admin-{tenant}"), "tenant": tenant, "scope": scope}),
    )
}

fn secured_opts(engine: Engine) -> Options {
    Options {
        auth: Some(AuthSpec::secret(SECRET)),
        ..Options::on(engine)
    }
}

/// Creates a key as `admin`; returns (id, secret).
async fn create_key(s: &Server, admin: &str, body: Value) -> (String, String) {
    let (st, v) = s.post_as(admin, "/v1/keys", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["key"]["id"].as_str().expect("id").to_owned();
    let secret = v["secret"].as_str().expect("secret").to_owned();
    (id, secret)
}

/// Revokes key `id` as `admin` (`DELETE /v1/keys/{id}`).
async fn revoke(s: &Server, admin: &str, id: &str) -> (StatusCode, Value) {
    let r = s
        .http
        .delete(s.url(&format!("/v1/keys/{id}")))
        .bearer_auth(admin)
        .send()
        .await
        .expect("DELETE");
    decode(r).await
}

/// Publishes a log line to `job` with `X-Api-Key`.
async fn publish_with_header(s: &Server, key: &str, job: &str) -> (StatusCode, Value) {
    let r = s
        .http
        .post(s.url(&format!("/v1/jobs/{job}/events")))
        .header("x-api-key", key)
        .json(&json!({"type": "log", "line": "via x-api-key"}))
        .send()
        .await
        .expect("POST");
    decode(r).await
}

async fn keys_are_created_listed_used_and_revoked(engine: Engine) {
    let s = Server::start_with(secured_opts(engine)).await;
    let admin = token("acme", "jobs:admin");
    let r = s
        .http
        .post(s.url("/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"label": "render farm"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let (st, created) = decode(r).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let id = created["key"]["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with(&format!("jwk_{id}_")), "{secret}");
    assert_eq!(secret.len(), 4 + 12 + 1 + 43);
    assert_eq!(created["key"]["tenant"], "acme");
    assert_eq!(created["key"]["scopes"], json!(["jobs:publish"]));
    assert_eq!(created["key"]["label"], "render farm");
    assert_eq!(created["key"]["revoked"], false);
    assert!(created["key"].get("hash").is_none(), "{created}");

    // The key publishes to its tenant's jobs, as a bearer token and as X-Api-Key.
    s.post_as(&admin, "/v1/jobs", json!({"id": "j1"})).await;
    let (st, v) = s
        .post_as(
            &secret,
            "/v1/jobs/j1/events",
            json!({"type": "log", "line": "from a worker"}),
        )
        .await;
    assert_eq!((st, v["seqs"].clone()), (StatusCode::OK, json!([2])), "{v}");
    let (st, v) = publish_with_header(&s, &secret, "j1").await;
    assert_eq!((st, v["seqs"].clone()), (StatusCode::OK, json!([3])), "{v}");
    // A key can create jobs too (jobs:publish), in its tenant.
    let (st, v) = s.post_as(&secret, "/v1/jobs", json!({"id": "j2"})).await;
    assert_eq!(
        (st, v["job"]["tenant"].clone()),
        (StatusCode::CREATED, json!("acme"))
    );

    // Listing never shows the secret or its hash.
    let r = s
        .http
        .get(s.url("/v1/keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("GET");
    let text = r.text().await.expect("text");
    assert!(!text.contains(&secret), "the secret leaked into the list");
    assert!(
        !text.contains(&secret[4 + 12 + 1..]),
        "the secret part leaked"
    );
    let list: Value = serde_json::from_str(&text).expect("json");
    let keys = list["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{list}");
    assert_eq!(keys[0]["id"], id.as_str());
    assert!(keys[0].get("hash").is_none() && keys[0].get("secret").is_none());

    // Revoked: refused with 401 invalid_api_key, listed as revoked.
    let (st, v) = revoke(&s, &admin, &id).await;
    assert_eq!(
        (st, v["key"]["revoked"].clone()),
        (StatusCode::OK, json!(true)),
        "{v}"
    );
    let (st, v) = s
        .post_as(
            &secret,
            "/v1/jobs/j1/events",
            json!({"type": "log", "line": "no"}),
        )
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
    let (st, v) = publish_with_header(&s, &secret, "j1").await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
    let (_, list) = s.get_as(&admin, "/v1/keys").await;
    assert_eq!(list["keys"][0]["revoked"], true);
    // Nothing of the refused publishes was stored.
    let (_, job) = s.get_as(&admin, "/v1/jobs/j1").await;
    assert_eq!(job["seq"], 3);
}

async fn a_key_acts_only_in_its_tenant_with_its_scopes(engine: Engine) {
    let s = Server::start_with(secured_opts(engine)).await;
    let acme = token("acme", "jobs:admin");
    let globex = token("globex", "jobs:admin");
    s.post_as(&acme, "/v1/jobs", json!({"id": "a-job", "project": "p"}))
        .await;
    s.post_as(&acme, "/v1/jobs", json!({"id": "a-other", "project": "q"}))
        .await;
    s.post_as(&globex, "/v1/jobs", json!({"id": "b-job"})).await;
    let (a_id, a_key) = create_key(&s, &acme, json!({})).await;

    // Tenant A's key against tenant B's job: exactly the answer for an unknown job.
    let ev = json!({"type": "log", "line": "x"});
    let unknown = s
        .post_as(&a_key, "/v1/jobs/never-existed/events", ev.clone())
        .await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(
        s.post_as(&a_key, "/v1/jobs/b-job/events", ev.clone()).await,
        unknown
    );
    // B's admin neither sees nor revokes A's key: same 404 as an unknown id.
    let (_, list) = s.get_as(&globex, "/v1/keys").await;
    assert_eq!(list["keys"], json!([]));
    let del = |who: String, id: String| {
        let r = s
            .http
            .delete(s.url(&format!("/v1/keys/{id}")))
            .bearer_auth(who)
            .send();
        async move { decode(r.await.expect("DELETE")).await }
    };
    let not_found = del(globex.clone(), "aaaaaaaaaaaa".into()).await;
    assert_eq!(
        (not_found.0, code(&not_found.1)),
        (StatusCode::NOT_FOUND, "key_not_found")
    );
    assert_eq!(del(globex.clone(), a_id.clone()).await, not_found);
    assert_eq!(
        del(globex.clone(), "../../etc".into()).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.post_as(&a_key, "/v1/jobs/a-job/events", ev.clone())
            .await
            .0,
        StatusCode::OK,
        "still valid after B's attempt"
    );

    // Scopes: a publish key cannot read or manage keys; a watch key cannot publish.
    let (st, v) = s.get_as(&a_key, "/v1/jobs/a-job").await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (st, v) = s.post_as(&a_key, "/v1/keys", json!({})).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (_, watch_key) = create_key(&s, &acme, json!({"scopes": ["jobs:watch"]})).await;
    let (st, v) = s
        .post_as(&watch_key, "/v1/jobs/a-job/events", ev.clone())
        .await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(
        s.get_as(&watch_key, "/v1/jobs/a-job").await.0,
        StatusCode::OK
    );
    // A JWT without jobs:admin cannot manage keys either.
    let publisher = token("acme", "jobs:publish jobs:watch");
    let (st, v) = s.get_as(&publisher, "/v1/keys").await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));

    // A project allow-list narrows the key like a token's `projects` claim.
    let (_, p_key) = create_key(&s, &acme, json!({"projects": ["p"]})).await;
    assert_eq!(
        s.post_as(&p_key, "/v1/jobs/a-job/events", ev.clone())
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        s.post_as(&p_key, "/v1/jobs/a-other/events", ev.clone())
            .await,
        s.post_as(&p_key, "/v1/jobs/never-existed/events", ev.clone())
            .await
    );
    // A project-limited admin cannot mint a key that reaches further.
    let narrow = hs256(
        SECRET,
        json!({"tenant": "acme", "scope": "jobs:admin", "projects": ["p"]}),
    );
    let (st, v) = s
        .post_as(&narrow, "/v1/keys", json!({"projects": ["q"]}))
        .await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (st, v) = s.post_as(&narrow, "/v1/keys", json!({})).await;
    assert_eq!(
        (st, v["key"]["projects"].clone()),
        (StatusCode::CREATED, json!(["p"]))
    );

    // Bad requests.
    for body in [
        json!({"scopes": ["jobs:everything"]}),
        json!({"scopes": []}),
        json!({"projects": ["a/b"]}),
        json!({"label": "x".repeat(201)}),
        json!({"surprise": 1}),
    ] {
        let (st, v) = s.post_as(&acme, "/v1/keys", body.clone()).await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            "{body}"
        );
    }
}

async fn malformed_unknown_and_forged_keys_get_401(engine: Engine) {
    let s = Server::start_with(secured_opts(engine)).await;
    let admin = token("acme", "jobs:admin");
    s.post_as(&admin, "/v1/jobs", json!({"id": "j"})).await;
    let (id, real) = create_key(&s, &admin, json!({})).await;
    let forged = format!("jwk_{id}_{}", "A".repeat(43));
    let unknown = format!("jwk_{}_{}", "z".repeat(12), &real[17..]);
    for (name, key) in [
        ("malformed", "jwk_nope".to_owned()),
        ("forged secret", forged),
        ("unknown id", unknown),
        ("empty header", String::new()),
    ] {
        let (st, v) = publish_with_header(&s, &key, "j").await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::UNAUTHORIZED, "invalid_api_key"),
            "{name}"
        );
    }
    let (st, v) = s.get_as("jwk_nope", "/v1/jobs").await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
    // The real key still works after the failed attempts.
    assert_eq!(publish_with_header(&s, &real, "j").await.0, StatusCode::OK);
}

on_both_engines!(
    keys_are_created_listed_used_and_revoked,
    a_key_acts_only_in_its_tenant_with_its_scopes,
    malformed_unknown_and_forged_keys_get_401,
);

/// Key writes go through the embedded store's writer like publishes do: while
/// publishers keep it busy (a write transaction open across groups), a key is
/// still created, usable at once and revoked at once, within a second each.
#[tokio::test]
async fn keys_are_written_promptly_while_publishers_keep_the_store_busy() {
    let s = std::sync::Arc::new(Server::start_with(secured_opts(Engine::Embedded)).await);
    let admin = token("acme", "jobs:admin");
    let worker = token("acme", "jobs:publish jobs:create");
    let (st, v) = s.post_as(&worker, "/v1/jobs", json!({"id": "busy"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut publishers = Vec::new();
    for _ in 0..8 {
        let (s, worker, stop) = (s.clone(), worker.clone(), stop.clone());
        publishers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"type": "log", "line": "busy"});
                let (st, v) = s.post_as(&worker, "/v1/jobs/busy/events", body).await;
                assert_eq!(st, StatusCode::OK, "{v}");
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let t = Instant::now();
        let (id, secret) = create_key(&s, &admin, json!({"label": "busy"})).await;
        assert_eq!(
            publish_with_header(&s, &secret, "busy").await.0,
            StatusCode::OK
        );
        assert_eq!(revoke(&s, &admin, &id).await.0, StatusCode::OK);
        let (st, v) = publish_with_header(&s, &secret, "busy").await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::UNAUTHORIZED, "invalid_api_key")
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "create, use and revoke took {:?} under load",
            t.elapsed()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for p in publishers {
        total += p.await.expect("publisher");
    }
    assert!(
        total > 50,
        "the publishers kept the writer busy ({total} publishes)"
    );
}

#[tokio::test]
async fn key_management_is_refused_in_development_mode() {
    let s = Server::start().await;
    for (st, v) in [s.post("/v1/keys", json!({})).await, s.get("/v1/keys").await] {
        assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "auth_disabled"));
    }
}

#[tokio::test]
async fn a_key_made_on_one_instance_works_on_another_and_revocation_reaches_it() {
    let prefix = crate::support::unique_prefix();
    let opts = || Options {
        prefix: Some(prefix.clone()),
        ..secured_opts(Engine::Redis)
    };
    let a = Server::start_with(opts()).await;
    let b = Server::start_with(opts()).await;
    let admin = token("acme", "jobs:admin");
    a.post_as(&admin, "/v1/jobs", json!({"id": "j"})).await;
    let (id, key) = create_key(&a, &admin, json!({})).await;
    assert_eq!(publish_with_header(&b, &key, "j").await.0, StatusCode::OK);
    let (_, list) = b.get_as(&admin, "/v1/keys").await;
    assert_eq!(list["keys"][0]["id"], id.as_str());
    assert_eq!(revoke(&a, &admin, &id).await.0, StatusCode::OK);
    // B cached the record: it must stop accepting the key within the cache TTL.
    let revoked_at = Instant::now();
    loop {
        let (st, _) = publish_with_header(&b, &key, "j").await;
        if st == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < jobwire_server::apikeys::KEY_CACHE_TTL + Duration::from_secs(1),
            "revocation did not reach the other instance in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn publish_rate_limit_answers_429_with_retry_after_per_key() {
    let s = Server::start_with(Options {
        server: ServerConfig {
            publish_limit: PublishLimit {
                rate: 0.2,
                burst: 3.0,
            },
            ..Default::default()
        },
        ..secured_opts(Engine::Embedded)
    })
    .await;
    let admin = token("acme", "jobs:admin");
    s.post_as(&admin, "/v1/jobs", json!({"id": "j"})).await; // 1 token of acme's bucket
    let (_, k1) = create_key(&s, &admin, json!({})).await;
    let (_, k2) = create_key(&s, &admin, json!({})).await;
    let ev = json!({"type": "log", "line": "x"});
    // A batch of 3 uses k1's whole burst.
    let batch = json!([ev.clone(), ev.clone(), ev.clone()]);
    assert_eq!(
        s.post_as(&k1, "/v1/jobs/j/events", batch).await.0,
        StatusCode::OK
    );
    let r = s
        .http
        .post(s.url("/v1/jobs/j/events"))
        .bearer_auth(&k1)
        .json(&ev)
        .send()
        .await
        .expect("POST");
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header");
    let (st, v) = decode(r).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!((1..=5).contains(&retry), "retry-after {retry}");
    assert!(s.metric("jobwire_rate_limited_total").await >= 1.0);
    // Another key has its own bucket; the JWT caller uses the tenant's (2 left).
    assert_eq!(
        s.post_as(&k2, "/v1/jobs/j/events", ev.clone()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.post_as(&admin, "/v1/jobs/j/events", ev.clone()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.post_as(&admin, "/v1/jobs/j/events", ev.clone()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.post_as(&admin, "/v1/jobs/j/events", ev.clone()).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Reads are not limited.
    assert_eq!(s.get_as(&admin, "/v1/jobs/j").await.0, StatusCode::OK);
    // Refused publishes stored nothing: created + 3 + 1 + 2.
    assert_eq!(s.get_as(&admin, "/v1/jobs/j").await.1["seq"], 7);
}

/// Opens a TCP connection, sends `partial`, and returns how long until the server
/// closes it (or panics after `limit`).
async fn closed_after(addr: std::net::SocketAddr, partial: &[u8], limit: Duration) -> Duration {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let start = Instant::now();
    if !partial.is_empty() {
        tcp.write_all(partial).await.expect("write");
    }
    let mut buf = Vec::new();
    tokio::time::timeout(limit, tcp.read_to_end(&mut buf))
        .await
        .expect("the server closes a slow client in time")
        .ok();
    start.elapsed()
}

#[tokio::test]
async fn slow_loris_connections_are_dropped_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(400);
    let s = Server::start_with(Options {
        server: ServerConfig {
            handshake_timeout: timeout,
            heartbeat_interval: Duration::from_millis(200),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // Half a request line, a request without its final empty line, and nothing at all.
    for partial in [
        &b"GET /v1/jo"[..],
        &b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"[..],
        &b""[..],
    ] {
        let took = closed_after(s.addr, partial, Duration::from_secs(5)).await;
        assert!(
            took >= timeout - Duration::from_millis(50),
            "closed too early: {took:?}"
        );
    }
    assert!(s.metric("jobwire_handshake_timeouts_total").await >= 3.0);
    // Established WebSockets and normal requests are unaffected.
    s.create("j").await;
    let mut ws = s.ws("/v1/jobs/j/ws").await;
    assert_eq!(ws.json().await["type"], "snapshot");
    ws.quiet_for(timeout * 3).await;
    s.publish("j", json!({"type": "log", "line": "still open"}))
        .await;
    assert_eq!(ws.json().await["line"], "still open");
}

#[tokio::test]
async fn the_keys_cli_creates_lists_and_revokes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(dir.path(), "127.0.0.1:0", &["--jwt-secret", SECRET]);
    let server = p.base.as_str();
    let admin = token("acme", "jobs:admin");
    let with = |args: &[&str], tok: &str| {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--server".into(),
            server.into(),
            "--token".into(),
            tok.into(),
        ]);
        v
    };
    let run = |v: Vec<String>| async move {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        cli(&refs).await
    };
    let (code, key) = run(with(
        &[
            "keys",
            "create",
            "--scope",
            "jobs:publish",
            "--label",
            "ci",
            "--quiet",
        ],
        &admin,
    ))
    .await;
    let key = key.trim().to_owned();
    assert_eq!(code, 0);
    assert!(key.starts_with("jwk_"), "{key}");
    let id = key[4..16].to_owned();
    assert_eq!(
        run(with(&["job", "create", "--id", "k1"], &admin)).await.0,
        0
    );
    let (code, out) = run(with(&["log", "k1", "hello", "from", "a", "key"], &key)).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(with(&["keys", "list"], &admin)).await;
    assert_eq!(code, 0);
    assert!(!out.contains(&key), "list printed the secret");
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list["keys"][0]["id"], id.as_str());
    assert_eq!(list["keys"][0]["label"], "ci");
    let (code, _) = run(with(&["keys", "revoke", &id], &admin)).await;
    assert_eq!(code, 0);
    let (code, _) = run(with(&["log", "k1", "refused"], &key)).await;
    assert_ne!(code, 0, "a revoked key must not publish");
    let (code, _) = run(with(&["keys", "revoke", "aaaaaaaaaaaa"], &admin)).await;
    assert_ne!(code, 0);
    // The key also survives a restart of the embedded store.
    drop(p);
    let p = Process::start(dir.path(), "127.0.0.1:0", &["--jwt-secret", SECRET]);
    let (code, out) = cli(&["keys", "list", "--server", &p.base, "--token", &admin]).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(list["keys"][0]["revoked"], true);
}
