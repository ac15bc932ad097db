//! Authentication, tenant isolation, origins and connection limits.

use crate::support::{code, hs256, sign, unix_now, AuthSpec, Options, Process, Server, Ws};
use base64::Engine as _;
use jobwire_server::{ConnLimits, KeySource};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "test-secret-0123456789";

fn token(tenant: &str, scope: &str) -> String {
    hs256(
        SECRET,
        json!({"sub": format!("user-{tenant}"), "tenant": tenant, "scope": scope}),
    )
}

async fn secured() -> Server {
    Server::start_with(Options {
        auth: Some(AuthSpec::secret(SECRET)),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn tenants_never_see_each_others_jobs_on_any_endpoint() {
    let s = secured().await;
    let a = token("acme", "jobs:admin");
    let b = token("globex", "jobs:admin");
    for id in ["only-a", "shared"] {
        let (st, v) = s
            .post_as(&a, "/v1/jobs", json!({"id": id, "project": "p"}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert_eq!(v["job"]["tenant"], "acme");
    }
    // Same id in another tenant: a different job, not a conflict (no existence leak).
    let (st, _) = s.post_as(&b, "/v1/jobs", json!({"id": "shared"})).await;
    assert_eq!(st, StatusCode::CREATED);

    // Every HTTP endpoint answers B about A's job exactly as about a job that does not exist.
    let unknown = s.get_as(&b, "/v1/jobs/never-existed").await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get_as(&b, "/v1/jobs/only-a").await, unknown);
    let history_unknown = s.get_as(&b, "/v1/jobs/never-existed/events?since=0").await;
    assert_eq!(
        s.get_as(&b, "/v1/jobs/only-a/events?since=0").await,
        history_unknown
    );
    let pub_unknown = s
        .post_as(
            &b,
            "/v1/jobs/never-existed/events",
            json!({"type": "log", "line": "x"}),
        )
        .await;
    assert_eq!(pub_unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(
        s.post_as(
            &b,
            "/v1/jobs/only-a/events",
            json!({"type": "log", "line": "x"})
        )
        .await,
        pub_unknown
    );
    let cancel_unknown = s
        .post_as(&b, "/v1/jobs/never-existed/cancel", json!({}))
        .await;
    assert_eq!(
        s.post_as(&b, "/v1/jobs/only-a/cancel", json!({})).await,
        cancel_unknown
    );
    let sse = |tok: String, id: &str| {
        s.http
            .get(s.url(&format!("/v1/jobs/{id}/events")))
            .header("accept", "text/event-stream")
            .bearer_auth(tok)
            .send()
    };
    assert_eq!(
        sse(b.clone(), "only-a").await.expect("sse").status(),
        StatusCode::NOT_FOUND
    );

    // Lists hold only the caller's jobs.
    let (_, list) = s.get_as(&b, "/v1/jobs").await;
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["shared"]);

    // WebSockets: single-job socket and multiplexed subscribe.
    let bearer = format!("Bearer {b}");
    let mut ws = Ws::try_connect(
        &s.ws_url("/v1/jobs/only-a/ws"),
        &[("authorization", &bearer)],
    )
    .await
    .expect("upgrade");
    let e = ws.json().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("job_not_found"))
    );
    assert_eq!(ws.close_code().await, 4504);
    let mut mux = Ws::try_connect(&s.ws_url("/v1/ws"), &[("authorization", &bearer)])
        .await
        .expect("upgrade");
    mux.send(json!({"type": "subscribe", "job_id": "only-a", "since": 0}))
        .await;
    assert_eq!(mux.json().await["code"], "job_not_found");

    // B's "shared" is its own: B's watcher sees B's events only, A's watcher A's only.
    mux.send(json!({"type": "subscribe", "job_id": "shared"}))
        .await;
    assert_eq!(mux.json().await["job"]["tenant"], "globex");
    let mut wa = Ws::try_connect(
        &s.ws_url("/v1/jobs/shared/ws"),
        &[("authorization", &format!("Bearer {a}"))],
    )
    .await
    .expect("upgrade");
    assert_eq!(wa.json().await["job"]["tenant"], "acme");
    let (st, v) = s
        .post_as(
            &b,
            "/v1/jobs/shared/events",
            json!({"type": "log", "line": "from b"}),
        )
        .await;
    assert_eq!((st, v["seqs"].clone()), (StatusCode::OK, json!([2])));
    let (st, v) = s
        .post_as(
            &a,
            "/v1/jobs/shared/events",
            json!({"type": "log", "line": "from a"}),
        )
        .await;
    assert_eq!((st, v["seqs"].clone()), (StatusCode::OK, json!([2])));
    let eb = mux.json().await;
    assert_eq!(
        (eb["line"].as_str(), eb["job_id"].as_str()),
        (Some("from b"), Some("shared"))
    );
    let ea = wa.json().await;
    assert_eq!(ea["line"], "from a");
    mux.quiet_for(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn allow_lists_narrow_what_a_token_reaches() {
    let s = secured().await;
    let admin = token("acme", "jobs:admin");
    for (id, project) in [("x", "p"), ("y", "p"), ("z", "q")] {
        s.post_as(&admin, "/v1/jobs", json!({"id": id, "project": project}))
            .await;
    }
    let only_x = hs256(
        SECRET,
        json!({"tenant": "acme", "scope": "jobs:watch", "jobs": ["x"]}),
    );
    assert_eq!(s.get_as(&only_x, "/v1/jobs/x").await.0, StatusCode::OK);
    assert_eq!(
        s.get_as(&only_x, "/v1/jobs/y").await.0,
        StatusCode::NOT_FOUND
    );
    let only_p = hs256(
        SECRET,
        json!({"tenant": "acme", "scope": "jobs:admin", "projects": ["p"]}),
    );
    assert_eq!(s.get_as(&only_p, "/v1/jobs/y").await.0, StatusCode::OK);
    assert_eq!(
        s.get_as(&only_p, "/v1/jobs/z").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = s.get_as(&only_p, "/v1/jobs").await;
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(2));
    let (st, v) = s
        .post_as(&only_p, "/v1/jobs", json!({"id": "w", "project": "q"}))
        .await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (st, v) = s
        .post_as(
            &only_p,
            "/v1/jobs/z/events",
            json!({"type": "log", "line": "no"}),
        )
        .await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "job_not_found"));
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_code() {
    let s = Server::start_with(Options {
        auth: Some(AuthSpec {
            audience: Some("jobwire".into()),
            issuer: Some("https://auth.example".into()),
            ..AuthSpec::secret(SECRET)
        }),
        ..Default::default()
    })
    .await;
    let good = json!({"tenant": "t", "scope": "jobs:admin", "aud": "jobwire", "iss": "https://auth.example"});
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let ok = hs256(SECRET, good.clone());
    assert_eq!(s.get_as(&ok, "/v1/jobs").await.0, StatusCode::OK);

    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(with(json!({"exp": unix_now() + 60})))
    );
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "garbage",
            "not.a.jwt".into(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "alg none",
            alg_none,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "wrong algorithm",
            sign(
                Algorithm::HS512,
                &EncodingKey::from_secret(SECRET.as_bytes()),
                None,
                good.clone(),
            ),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "bad signature",
            hs256("another-secret", good.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "expired",
            hs256(SECRET, with(json!({"exp": unix_now() - 120}))),
            StatusCode::UNAUTHORIZED,
            "token_expired",
        ),
        (
            "not yet valid",
            hs256(SECRET, with(json!({"nbf": unix_now() + 600}))),
            StatusCode::UNAUTHORIZED,
            "token_expired",
        ),
        (
            "wrong audience",
            hs256(SECRET, with(json!({"aud": "other"}))),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "wrong issuer",
            hs256(SECRET, with(json!({"iss": "https://evil.example"}))),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "no tenant",
            hs256(SECRET, with(json!({"tenant": null}))),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "bad tenant",
            hs256(SECRET, with(json!({"tenant": "a/b"}))),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
    ];
    for (name, tok, status, want) in &cases {
        let (st, v) = s.get_as(tok, "/v1/jobs").await;
        assert_eq!((st, code(&v)), (*status, *want), "{name}: {v}");
        // The same refusal before a WebSocket upgrade.
        let got = Ws::try_connect(
            &s.ws_url("/v1/ws"),
            &[("authorization", &format!("Bearer {tok}"))],
        )
        .await;
        assert_eq!(got.err(), Some(status.as_u16()), "{name} over WebSocket");
    }
    // No token at all.
    let (st, v) = s.get("/v1/jobs").await;
    assert_eq!((st, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    assert_eq!(
        Ws::try_connect(&s.ws_url("/v1/ws"), &[]).await.err(),
        Some(401)
    );
    // Scopes: a watcher cannot publish or create, a publisher cannot watch.
    let watcher = hs256(SECRET, with(json!({"scope": "jobs:watch"})));
    let (st, v) = s.post_as(&watcher, "/v1/jobs", json!({"id": "j"})).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let publisher = hs256(SECRET, with(json!({"scope": "jobs:publish"})));
    assert_eq!(
        s.post_as(&publisher, "/v1/jobs", json!({"id": "j"}))
            .await
            .0,
        StatusCode::CREATED
    );
    let (st, v) = s.get_as(&publisher, "/v1/jobs/j").await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(s.get_as(&watcher, "/v1/jobs/j").await.0, StatusCode::OK);
    // Health and metrics stay open.
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(s.get("/metrics").await.0, StatusCode::OK);
}

#[tokio::test]
async fn tokens_are_accepted_from_the_query_and_the_websocket_subprotocol() {
    let s = secured().await;
    let t = token("acme", "jobs:admin");
    s.post_as(&t, "/v1/jobs", json!({"id": "j"})).await;
    assert_eq!(
        s.get(&format!("/v1/jobs/j?token={t}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.get(&format!("/v1/jobs/j/events?since=0&token={t}"))
            .await
            .0,
        StatusCode::OK
    );
    let mut ws = Ws::connect(&s.ws_url(&format!("/v1/jobs/j/ws?token={t}"))).await;
    assert_eq!(ws.json().await["type"], "snapshot");
    // Browsers cannot set headers on a WebSocket: the token rides in the subprotocols.
    let protocols = format!("jobwire, bearer.{t}");
    let mut ws = Ws::try_connect(
        &s.ws_url("/v1/jobs/j/ws"),
        &[("sec-websocket-protocol", &protocols)],
    )
    .await
    .expect("upgrade");
    assert_eq!(ws.json().await["type"], "snapshot");
}

#[tokio::test]
async fn a_socket_closes_4501_when_its_token_expires_unless_renewed() {
    let s = secured().await;
    let admin = token("acme", "jobs:admin");
    s.post_as(&admin, "/v1/jobs", json!({"id": "j"})).await;
    let short = hs256(
        SECRET,
        json!({"tenant": "acme", "scope": "jobs:watch", "exp": unix_now() + 2}),
    );
    let auth = format!("Bearer {short}");
    let mut renewed = Ws::try_connect(&s.ws_url("/v1/jobs/j/ws"), &[("authorization", &auth)])
        .await
        .expect("upgrade");
    let mut lapsing = Ws::try_connect(&s.ws_url("/v1/ws"), &[("authorization", &auth)])
        .await
        .expect("upgrade");
    assert_eq!(renewed.json().await["type"], "snapshot");
    let fresh = hs256(
        SECRET,
        json!({"tenant": "acme", "scope": "jobs:watch", "exp": unix_now() + 600}),
    );
    renewed
        .send(json!({"type": "auth", "token": "garbage"}))
        .await;
    assert_eq!(renewed.json().await["code"], "unauthorized");
    let other_tenant = token("globex", "jobs:watch");
    renewed
        .send(json!({"type": "auth", "token": other_tenant}))
        .await;
    assert_eq!(renewed.json().await["code"], "forbidden");
    renewed.send(json!({"type": "auth", "token": fresh})).await;
    let ack = renewed.json().await;
    assert_eq!(ack["type"], "authenticated");
    assert!(ack["expires_at"]
        .as_u64()
        .is_some_and(|e| e > unix_now() + 500));
    assert_eq!(lapsing.close_code().await, 4501);
    // The renewed socket is still live after the first token's expiry.
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.post_as(
        &admin,
        "/v1/jobs/j/events",
        json!({"type": "log", "line": "still here"}),
    )
    .await;
    assert_eq!(renewed.json().await["line"], "still here");
}

#[tokio::test]
async fn rs256_es256_and_a_reloaded_jwks_file_verify_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa.pem",
    ]);
    openssl(&["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub"]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "ec.pem",
    ]);
    openssl(&["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub"]);
    let read = |f: &str| std::fs::read(dir.path().join(f)).expect("read key");
    let claims = json!({"tenant": "acme", "scope": "jobs:admin"});

    let rs = Server::start_with(Options {
        auth: Some(AuthSpec {
            source: KeySource::PublicKeyPem(read("rsa.pub")),
            ..AuthSpec::secret("")
        }),
        ..Default::default()
    })
    .await;
    let rsa_key = EncodingKey::from_rsa_pem(&read("rsa.pem")).expect("rsa key");
    let ec_key = EncodingKey::from_ec_pem(&read("ec.pem")).expect("ec key");
    assert_eq!(
        rs.get_as(
            &sign(Algorithm::RS256, &rsa_key, None, claims.clone()),
            "/v1/jobs"
        )
        .await
        .0,
        StatusCode::OK
    );
    // An HS256 token "signed" with the public key bytes must not pass (algorithm confusion).
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&read("rsa.pub")),
        None,
        claims.clone(),
    );
    assert_eq!(
        rs.get_as(&confused, "/v1/jobs").await.0,
        StatusCode::UNAUTHORIZED
    );

    let es = Server::start_with(Options {
        auth: Some(AuthSpec {
            source: KeySource::PublicKeyPem(read("ec.pub")),
            ..AuthSpec::secret("")
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(
        es.get_as(
            &sign(Algorithm::ES256, &ec_key, None, claims.clone()),
            "/v1/jobs"
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        es.get_as(
            &sign(Algorithm::RS256, &rsa_key, None, claims.clone()),
            "/v1/jobs"
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );

    // JWKS: start with the RSA key only; adding the EC key to the file takes effect without a restart.
    let modulus = String::from_utf8(openssl(&[
        "rsa", "-pubin", "-in", "rsa.pub", "-noout", "-modulus",
    ]))
    .expect("utf8");
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let rsa_jwk =
        json!({"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": b64(&n), "e": "AQAB"});
    let ec_text = String::from_utf8(openssl(&[
        "pkey", "-pubin", "-in", "ec.pub", "-noout", "-text",
    ]))
    .expect("utf8");
    let pub_hex: String = ec_text
        .split("pub:")
        .nth(1)
        .and_then(|r| r.split("ASN1").next())
        .expect("ec pub")
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    let point: Vec<u8> = (0..pub_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&pub_hex[i..i + 2], 16).expect("hex"))
        .collect();
    assert_eq!((point.len(), point[0]), (65, 4), "uncompressed P-256 point");
    let ec_jwk = json!({"kty": "EC", "kid": "e1", "alg": "ES256", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])});
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [rsa_jwk.clone()]}).to_string()).expect("write jwks");
    let js = Server::start_with(Options {
        auth: Some(AuthSpec {
            source: KeySource::JwksFile(jwks.clone()),
            ..AuthSpec::secret("")
        }),
        ..Default::default()
    })
    .await;
    let rs_tok = sign(Algorithm::RS256, &rsa_key, Some("r1"), claims.clone());
    let es_tok = sign(Algorithm::ES256, &ec_key, Some("e1"), claims.clone());
    assert_eq!(js.get_as(&rs_tok, "/v1/jobs").await.0, StatusCode::OK);
    assert_eq!(
        js.get_as(&es_tok, "/v1/jobs").await.0,
        StatusCode::UNAUTHORIZED
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&jwks, json!({"keys": [rsa_jwk, ec_jwk]}).to_string()).expect("rewrite jwks");
    assert_eq!(js.get_as(&es_tok, "/v1/jobs").await.0, StatusCode::OK);
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused() {
    let s = Server::start_with(Options {
        auth: Some(AuthSpec {
            allowed_origins: Some(vec!["https://app.example".into()]),
            ..AuthSpec::secret(SECRET)
        }),
        ..Default::default()
    })
    .await;
    let t = format!("Bearer {}", token("acme", "jobs:admin"));
    assert_eq!(
        Ws::try_connect(
            &s.ws_url("/v1/ws"),
            &[("authorization", &t), ("origin", "https://evil.example")]
        )
        .await
        .err(),
        Some(403),
        "cross-site WebSocket hijacking fails"
    );
    assert!(Ws::try_connect(
        &s.ws_url("/v1/ws"),
        &[("authorization", &t), ("origin", "https://app.example")]
    )
    .await
    .is_ok());
    let r = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/v1/jobs"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("preflight");
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example")
    );
    let r = s
        .http
        .get(s.url("/v1/jobs"))
        .header("origin", "https://evil.example")
        .header("authorization", &t)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn connection_limits_refuse_with_429_and_free_slots_on_close() {
    let s = Server::start_with(Options {
        limits: ConnLimits {
            max_per_ip: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let first = s.ws("/v1/ws").await;
    let _second = s.ws("/v1/ws").await;
    assert_eq!(
        Ws::try_connect(&s.ws_url("/v1/ws"), &[]).await.err(),
        Some(429)
    );
    let r = s
        .http
        .get(s.url("/v1/jobs/x/events"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sse");
    let (st, v) = crate::support::decode(r).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_connections")
    );
    assert!(s.metric("jobwire_limit_rejections_total").await >= 2.0);
    first.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Ws::try_connect(&s.ws_url("/v1/ws"), &[]).await {
            Ok(_) => break,
            Err(429) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(other) => panic!("slot never freed: {other}"),
        }
    }
}

#[test]
fn serve_refuses_a_public_address_without_auth_unless_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(crate::support::bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without authentication"));
    let p = Process::start(dir.path(), "0.0.0.0:0", &["--allow-anonymous"]);
    assert!(p.addr.port() > 0);
}

#[tokio::test]
async fn watch_cli_exits_4_on_a_refused_token_instead_of_retrying() {
    let s = secured().await;
    let good = token("acme", "jobs:admin");
    s.http
        .post(s.url("/v1/jobs"))
        .bearer_auth(&good)
        .json(&json!({"id": "w"}))
        .send()
        .await
        .expect("create");
    let bad = hs256("wrong-secret-0123456789", json!({"tenant": "acme"}));
    let args = ["watch", "w", "--server", &s.base, "--token", &bad];
    let (code, _) = tokio::time::timeout(Duration::from_secs(10), crate::support::cli(&args))
        .await
        .expect("watch gives up on a refused token");
    assert_eq!(code, 4);
    // Another tenant's job is "not found" for this token: exit 3, like an unknown job.
    let other = token("globex", "jobs:watch");
    let (code, _) =
        crate::support::cli(&["watch", "w", "--server", &s.base, "--token", &other]).await;
    assert_eq!(code, 3);
}

/// A flood of refused handshakes, raw junk bytes and junk frames does not stop a
/// good watcher from getting every event in order, nor the server from answering.
#[tokio::test]
async fn good_clients_are_served_through_a_flood_of_bad_handshakes_and_junk() {
    use tokio::io::AsyncWriteExt;
    let s = secured().await;
    let good = token("acme", "jobs:admin");
    s.post_as(&good, "/v1/jobs", json!({"id": "steady"})).await;
    let mut watcher = Ws::try_connect(
        &format!("{}?token={good}", s.ws_url("/v1/jobs/steady/ws")),
        &[],
    )
    .await
    .expect("good watcher");
    assert_eq!(watcher.json().await["type"], "snapshot");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    // Refused handshakes: forged tokens, no token, wrong scope.
    for i in 0..8 {
        let (url, stop) = (s.ws_url("/v1/jobs/steady/ws"), stop.clone());
        let bad = [
            format!("{url}?token=forged.{i}.x"),
            url.clone(),
            format!("{url}?token={}", token("acme", "jobs:publish")),
        ];
        flood.push(tokio::spawn(async move {
            let mut refused = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for u in &bad {
                    if let Err(code) = Ws::try_connect(u, &[]).await {
                        assert!(code == 401 || code == 403, "{code}");
                        refused += 1;
                    }
                }
            }
            refused
        }));
    }
    // Raw junk on TCP, and WebSocket junk frames on accepted sockets.
    for _ in 0..4 {
        let (addr, stop) = (s.addr, stop.clone());
        let ws = format!("{}?token={good}", s.ws_url("/v1/ws"));
        flood.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await {
                    let _ = tcp.write_all(b"\x16\x03\x01 not http at all\r\n\r\n").await;
                }
                if let Ok(mut junk) = Ws::try_connect(&ws, &[]).await {
                    junk.send_text("{not json").await;
                    junk.send_text(r#"{"type":"subscribe"}"#).await;
                    junk.send_text(&"x".repeat(200_000)).await;
                    assert_eq!(junk.json().await["type"], "error");
                }
                n += 1;
            }
            n
        }));
    }

    let started = std::time::Instant::now();
    for i in 0..40 {
        let (st, _) = s
            .post_as(
                &good,
                "/v1/jobs/steady/events",
                json!({"type": "log", "line": format!("l{i}")}),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let v = watcher.json().await;
        assert_eq!(
            (v["type"].as_str(), v["line"].as_str()),
            (Some("log"), Some(format!("l{i}").as_str()))
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for f in flood {
        total += f.await.expect("flood task");
    }
    assert!(total > 100, "the flood was real: {total} bad attempts");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "events kept flowing during the flood"
    );
    assert!(s.metric("jobwire_client_errors_total").await >= 50.0);
}
