//! A small HTTP client of the `/v1` API for the CLI commands. Errors carry the
//! server's error code so scripts see `job_not_found: …`, not a bare status.

use anyhow::{anyhow, bail};
use clap::Args;
use serde_json::Value;

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

    /// Publishes one event or a batch to a job; returns the assigned seqs.
    pub(crate) async fn publish(&self, job: &str, events: &Value) -> anyhow::Result<Vec<u64>> {
        let v = self.post(&format!("/v1/jobs/{job}/events"), events).await?;
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
