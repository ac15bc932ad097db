//! Redis at `maxmemory` with `noeviction`: writes reach the client as 507
//! `storage_full`, reads go on, and writes resume once Redis has room.

use crate::support::{code, Process, RedisServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn post(http: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let r = http.post(url).json(&body).send().await.expect("post");
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn redis_oom_is_storage_full() {
    let redis = RedisServer::start(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(dir.path(), "127.0.0.1:0", &["--redis", &redis.url()]);
    let http = reqwest::Client::new();
    let (st, _) = post(&http, format!("{}/v1/jobs", p.base), json!({"id": "j"})).await;
    assert_eq!(st, StatusCode::CREATED);
    let event = json!({"type": "log", "line": "hello", "event_id": "e1"});
    // A tiny limit that the data already exceeds: every write is refused.
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let (st, v) = post(&http, format!("{}/v1/jobs/j/events", p.base), event.clone()).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
        "{v}"
    );
    let (st, v) = post(&http, format!("{}/v1/jobs", p.base), json!({"id": "k"})).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
        "{v}"
    );
    let r = http
        .get(format!("{}/v1/jobs/j", p.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK, "reads go on");
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let (st, v) = post(&http, format!("{}/v1/jobs/j/events", p.base), event).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let job: Value = http
        .get(format!("{}/v1/jobs/j", p.base))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(job["seq"], 2, "the refused publish was not stored");
}
