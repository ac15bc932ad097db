//! A small HTTP client of the `/v1` API for the CLI commands. Errors carry the
//! server's error code so scripts see `job_not_found: …`, not a bare status.

use anyhow::{anyhow, bail};
use clap::Args;
use serde_json::Value;
use std::time::Duration;

/// `--server` for every client command.
#[derive(Args, Clone)]
pub(crate) struct ServerArg {
    /// Base URL of the jobwire server (`host:port` means `http://host:port`).
    #[arg(long, env = "JOBWIRE_SERVER", default_value = "http://127.0.0.1:8000", value_parser = server_url)]
    pub(crate) server: String,
    /// Bearer token (a JWT or a `jwk_…` API key) when the server requires authentication.
    #[arg(long, env = "JOBWIRE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// Tries of one publish (the waits between them: 0.5, 1, 2, 4 s, or `Retry-After`).
const PUBLISH_ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(8);

/// `events` (an object or an array) with an `event_id` on each event that has none.
fn with_event_ids(events: &Value) -> Value {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let stamp = format!("cli-{nanos:x}-{:x}", std::process::id());
    let mut out = events.clone();
    let one = |ev: &mut Value| {
        if let Some(obj) = ev.as_object_mut() {
            if !obj.contains_key("event_id") {
                let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                obj.insert("event_id".into(), Value::String(format!("{stamp}-{n}")));
            }
        }
    };
    match &mut out {
        Value::Array(list) => list.iter_mut().for_each(one),
        ev => one(ev),
    }
    out
}

/// `--server`: a URL, or `host:port` (http assumed).
pub(crate) fn server_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if s.is_empty() {
        return Err("the server URL is empty".into());
    }
    if s.contains("://") {
        if s.starts_with("http://") || s.starts_with("https://") {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "{s}: the server URL must start with http:// or https://"
            ))
        }
    } else {
        Ok(format!("http://{s}"))
    }
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(server: &ServerArg) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: server.server.trim_end_matches('/').to_owned(),
            token: server.token.clone(),
        }
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .auth(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await?;
        Self::decode(resp).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .auth(self.http.post(format!("{}{path}", self.base)))
            .json(body)
            .send()
            .await?;
        Self::decode(resp).await
    }

    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .auth(self.http.delete(format!("{}{path}", self.base)))
            .send()
            .await?;
        Self::decode(resp).await
    }

    /// Publishes one event or a batch to a job; returns the assigned seqs. Every
    /// event gets an `event_id` (unless it has one) made once, so the retries of a
    /// busy (503), rate-limited (429, after `Retry-After`) or unreachable server
    /// store it exactly once.
    pub(crate) async fn publish(&self, job: &str, events: &Value) -> anyhow::Result<Vec<u64>> {
        let events = with_event_ids(events);
        let url = format!("{}/v1/jobs/{job}/events", self.base);
        let mut delay = FIRST_RETRY;
        let mut attempt = 1;
        let resp = loop {
            let sent = self.auth(self.http.post(&url)).json(&events).send().await;
            let wait = match &sent {
                Ok(r) if r.status() == 503 || r.status() == 429 => r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(delay, Duration::from_secs),
                Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => delay,
                _ => break sent?,
            };
            if attempt >= PUBLISH_ATTEMPTS {
                break sent?;
            }
            let why = match &sent {
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            eprintln!("jobwire: {why}; retrying in {wait:?} ({attempt}/{PUBLISH_ATTEMPTS})");
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(MAX_RETRY);
            attempt += 1;
        };
        let v = Self::decode(resp).await?;
        v["seqs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .ok_or_else(|| anyhow!("unexpected reply: {v}"))
    }

    async fn decode(resp: reqwest::Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let text = resp.text().await?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        match (
            body["error"]["code"].as_str(),
            body["error"]["message"].as_str(),
        ) {
            (Some(code), Some(msg)) => bail!("{code}: {msg} (HTTP {status})"),
            _ => bail!("HTTP {status}: {body}"),
        }
    }
}
