//! Test harness: a real jobwire server on an ephemeral port (in-process, or the real
//! binary as a child process for crash and CLI tests), plus real HTTP, WebSocket and
//! SSE clients.
#![allow(dead_code, unreachable_pub)]

use futures_util::{SinkExt, StreamExt};
use jobwire_core::engine::embedded::Retention;
use jobwire_core::{Hub, HubConfig};
use jobwire_server::{AppState, ServerConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Which engine an in-process server runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    Embedded,
    /// The embedded engine with its replay cache off: every snapshot and history
    /// read goes to the store (the path a restarted server takes).
    EmbeddedStoreReads,
    /// The shared test Redis ([`shared_redis`]), under a key prefix of its own.
    Redis,
}

/// Settings for an in-process server.
#[derive(Clone, Default)]
pub struct Options {
    pub engine: Engine,
    pub server: ServerConfig,
    pub hub: HubConfig,
    pub retention: Retention,
    /// Use this Redis URL (and `prefix`) instead of the shared one.
    pub redis_url: Option<String>,
    /// CA and client certificate for a `rediss://` `redis_url`.
    pub redis_tls: jobwire_redis::RedisTls,
    /// `SPUBLISH`/`SSUBSCRIBE` instead of `PUBLISH`/`SUBSCRIBE`.
    pub sharded_pubsub: bool,
    pub prefix: Option<String>,
    /// Authentication (development mode when `None`).
    pub auth: Option<AuthSpec>,
    pub limits: jobwire_server::ConnLimits,
}

/// How an in-process server verifies tokens.
#[derive(Clone)]
pub struct AuthSpec {
    pub source: jobwire_server::KeySource,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub tenant_claim: String,
    pub allowed_origins: Option<Vec<String>>,
}

impl AuthSpec {
    /// HS256 with `secret`, tenant claim `tenant`.
    pub fn secret(secret: &str) -> AuthSpec {
        AuthSpec {
            source: jobwire_server::KeySource::Secret(secret.as_bytes().to_vec()),
            audience: None,
            issuer: None,
            tenant_claim: "tenant".into(),
            allowed_origins: None,
        }
    }

    fn build(&self) -> jobwire_server::AuthConfig {
        let verifier = jobwire_server::Verifier::new(
            self.source.clone(),
            self.audience.clone(),
            self.issuer.clone(),
            self.tenant_claim.clone(),
        )
        .expect("auth config");
        jobwire_server::AuthConfig {
            verifier: Some(verifier),
            allowed_origins: self.allowed_origins.clone(),
        }
    }
}

impl Options {
    pub fn on(engine: Engine) -> Options {
        Options {
            engine,
            ..Default::default()
        }
    }
}

/// Runs each listed `async fn name(engine: Engine)` as two tests, `embedded::name` and
/// `redis::name`: the same protocol suite against both engines.
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test] async fn $name() { super::$name($crate::support::Engine::Embedded).await } )*
        }
        mod redis {
            $( #[tokio::test] async fn $name() { super::$name($crate::support::Engine::Redis).await } )*
        }
    };
}

/// Runs each replay-related test once more on the embedded engine with its replay
/// cache off, so that both of its read paths (memory tail, store) are covered.
#[macro_export]
macro_rules! on_store_reads {
    ($($name:ident),* $(,)?) => {
        mod store_reads {
            $( #[tokio::test] async fn $name() { super::$name($crate::support::Engine::EmbeddedStoreReads).await } )*
        }
    };
}

/// A real `redis-server` on an ephemeral port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    persistent: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl RedisServer {
    /// Starts redis-server; `persistent` turns on AOF with fsync always, so data
    /// survives a kill and restart.
    pub fn start(persistent: bool) -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            persistent,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(self.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd.spawn().expect(
            "cannot run redis-server: install it (apt-get install -y redis-server; .ci/run does)",
        );
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Runs `redis-cli` against it; returns stdout (fails the test on an error).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (package redis-tools)");
        assert!(out.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throwaway PKI generated at run time (rcgen): a CA, a server certificate for
/// `server_names` (DNS names or IP addresses) and a client certificate, as PEM files.
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new(server_names: &[&str]) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "jobwire test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let ca = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &ca).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let names = server_names.iter().map(|n| n.to_string()).collect();
        let (server_cert, server_key) = leaf(names, "redis");
        let (client_cert, client_key) = leaf(Vec::new(), "jobwire");
        TestPki {
            ca: write("ca.pem", ca_cert.pem()),
            server_cert: write("server.pem", server_cert),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client_cert),
            client_key: write("client.key", client_key),
            _dir: dir,
        }
    }
}

/// How a [`TlsRedisServer`] is set up.
pub struct TlsSpec<'a> {
    /// Names the server certificate is valid for.
    pub names: &'a [&'a str],
    /// `requirepass`, if any.
    pub password: Option<&'a str>,
    /// `tls-auth-clients yes`: clients must present a certificate signed by the CA.
    pub require_client_cert: bool,
}

/// A real `redis-server` that speaks only TLS (`--port 0 --tls-port <ephemeral>`) with
/// a certificate from a fresh [`TestPki`], killed on drop.
pub struct TlsRedisServer {
    pub port: u16,
    pub pki: TestPki,
    password: Option<String>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsRedisServer {
    pub fn start(spec: TlsSpec<'_>) -> TlsRedisServer {
        let pki = TestPki::new(spec.names);
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(&pki.server_cert)
            .arg("--tls-key-file")
            .arg(&pki.server_key)
            .arg("--tls-ca-cert-file")
            .arg(&pki.ca)
            .args([
                "--tls-auth-clients",
                if spec.require_client_cert {
                    "yes"
                } else {
                    "no"
                },
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = spec.password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd.spawn().expect(
            "cannot run redis-server: install it (apt-get install -y redis-server; .ci/run does)",
        );
        let mut server = TlsRedisServer {
            port,
            pki,
            password: spec.password.map(str::to_owned),
            child,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server exited ({status}): was it built without TLS?");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server (TLS) did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `rediss://[:password@]127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        self.url_with_password(self.password.as_deref())
    }

    pub fn url_with_password(&self, password: Option<&str>) -> String {
        let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
        format!("rediss://{auth}127.0.0.1:{}/", self.port)
    }

    /// Trust the test CA; present the client certificate if `client_cert`.
    pub fn tls(&self, client_cert: bool) -> jobwire_redis::RedisTls {
        jobwire_redis::RedisTls {
            ca_file: Some(self.pki.ca.clone()),
            client_cert: client_cert.then(|| self.pki.client_cert.clone()),
            client_key: client_cert.then(|| self.pki.client_key.clone()),
        }
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One redis-server shared by the whole test binary (each server uses its own key
/// prefix). A watchdog shell kills it when the test process exits.
pub fn shared_redis_url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        let port = free_port();
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no >/dev/null & r=$!; \
             while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; kill $r",
            pid = std::process::id()
        );
        let which = Command::new("sh").args(["-c", "command -v redis-server"]).output().expect("sh");
        assert!(
            which.status.success(),
            "redis-server is missing: install it (apt-get install -y redis-server; .ci/run does)"
        );
        // Deliberately detached: the watchdog outlives no one but this process.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis watchdog");
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "shared redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        format!("redis://127.0.0.1:{port}/")
    })
}

/// A key prefix no other server in this test run uses.
pub fn unique_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("t{}-{n}:", std::process::id())
}

/// Builds a hub on the engine `opts` asks for.
async fn open_hub(opts: &Options, dir: &Path) -> std::sync::Arc<Hub> {
    if opts.redis_url.is_none() && opts.engine != Engine::Redis {
        let mut retention = opts.retention;
        if opts.engine == Engine::EmbeddedStoreReads {
            retention.replay_cache_bytes = 0;
        }
        return Hub::open_embedded(dir.to_path_buf(), retention, Default::default(), opts.hub)
            .expect("open hub");
    }
    let url = opts
        .redis_url
        .clone()
        .unwrap_or_else(|| shared_redis_url().to_owned());
    let metrics = std::sync::Arc::new(jobwire_core::metrics::Metrics::default());
    let registry = std::sync::Arc::new(jobwire_core::registry::Registry::new(metrics.clone()));
    let config = jobwire_redis::RedisConfig {
        url,
        tls: opts.redis_tls.clone(),
        prefix: opts.prefix.clone().unwrap_or_else(unique_prefix),
        retention: opts.retention,
        // The production default: a tighter one turned a loaded CI machine's slow
        // replies into `storage_unavailable` (close 1011) in the reconnect storm.
        command_timeout: Duration::from_secs(2),
        sharded_pubsub: opts.sharded_pubsub,
    };
    let engine = jobwire_redis::RedisEngine::connect(config, registry.clone(), metrics.clone())
        .await
        .expect("connect to redis");
    Hub::new(engine, registry, metrics, opts.hub)
}

/// An in-process server on 127.0.0.1:0 with its own data directory.
pub struct Server {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(Options::default()).await
    }

    pub async fn start_on(engine: Engine) -> Server {
        Server::start_with(Options::on(engine)).await
    }

    pub async fn start_with(opts: Options) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = open_hub(&opts, dir.path()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let mut state = AppState::new(hub, opts.server).with_limits(opts.limits);
        if let Some(a) = &opts.auth {
            state = state.with_auth(a.build());
        }
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            jobwire_server::run(listener, state, shutdown)
                .await
                .expect("server run");
        });
        Server {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Triggers graceful shutdown and waits for `run` to return.
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("shutdown in time")
                .expect("join");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        decode(r).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        decode(r).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        decode(r).await
    }

    /// Creates a job and asserts it was created.
    pub async fn create(&self, id: &str) -> Value {
        let (status, v) = self.post("/v1/jobs", json!({"id": id})).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }

    /// Publishes and asserts success; returns the seqs.
    pub async fn publish(&self, id: &str, body: Value) -> Vec<u64> {
        let (status, v) = self.post(&format!("/v1/jobs/{id}/events"), body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        seqs(&v)
    }

    pub async fn ws(&self, path: &str) -> Ws {
        Ws::connect(&self.ws_url(path)).await
    }

    /// The value of one metric line, e.g. `jobwire_events_coalesced_total`.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_at(&self.http, &self.base, name).await
    }
}

/// The value of one metric line of the server at `base` (a [`Process`] too).
pub async fn metric_at(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metric_value(&text, name)
}

/// `GET url` as JSON (any status).
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json")
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

/// The `error.code` of an error answer (`<none>` when there is none).
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

pub async fn decode(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

pub fn seqs(v: &Value) -> Vec<u64> {
    v["seqs"]
        .as_array()
        .expect("seqs")
        .iter()
        .map(|s| s.as_u64().expect("seq"))
        .collect()
}

/// A real WebSocket client.
pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a WebSocket read produced.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Close(u16),
}

impl Ws {
    pub async fn connect(url: &str) -> Ws {
        let (inner, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        Ws { inner }
    }

    pub async fn send(&mut self, v: Value) {
        self.inner
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, s: &str) {
        self.inner
            .send(Message::Text(s.to_owned().into()))
            .await
            .expect("send");
    }

    /// The next text message as it is (not parsed), skipping pings.
    pub async fn text(&mut self) -> String {
        loop {
            let msg = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .expect("a frame in time")
                .expect("stream open")
                .expect("frame ok");
            if let Message::Text(t) = msg {
                return t.as_str().to_owned();
            }
        }
    }

    /// The next JSON frame or close, skipping heartbeats and pings.
    pub async fn frame(&mut self) -> Frame {
        loop {
            let msg = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .expect("a frame in time")
                .expect("stream open")
                .expect("frame ok");
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON frame");
                    if v["type"] == "heartbeat" {
                        continue;
                    }
                    return Frame::Json(v);
                }
                Message::Close(f) => {
                    return Frame::Close(f.map(|f| u16::from(f.code)).unwrap_or(1005))
                }
                _ => continue,
            }
        }
    }

    /// The next JSON frame; fails on close.
    pub async fn json(&mut self) -> Value {
        match self.frame().await {
            Frame::Json(v) => v,
            Frame::Close(c) => panic!("expected a frame, got close {c}"),
        }
    }

    /// Reads until a close frame and returns its code (skipping other frames).
    pub async fn close_code(&mut self) -> u16 {
        loop {
            if let Frame::Close(c) = self.frame().await {
                return c;
            }
        }
    }

    /// Asserts nothing but heartbeats arrives for `d`.
    pub async fn quiet_for(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                    assert_eq!(v["type"], "heartbeat", "unexpected frame {v}");
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.inner.close(None).await;
    }
}

pub fn normal_close() -> u16 {
    u16::from(CloseCode::Normal)
}

/// The real `jobwire` binary, serving on an ephemeral port.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    pub base: String,
    pub data_dir: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_jobwire")
}

impl Process {
    /// Starts `jobwire serve` on `listen` (use "127.0.0.1:0" for a fresh port).
    pub fn start(data_dir: &Path, listen: &str, extra: &[&str]) -> Process {
        Process::start_env(data_dir, listen, extra, &[])
    }

    /// Like [`Process::start`], with extra environment variables.
    pub fn start_env(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Process {
        let mut child = Command::new(bin())
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("JOBWIRE_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn jobwire");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listen line");
        let url = line
            .trim()
            .strip_prefix("jobwire listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        let addr: SocketAddr = url.parse().expect("addr");
        Process {
            child,
            addr,
            base: format!("http://{addr}"),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `jobwire serve` expecting it to fail at startup; returns (exit code, stderr,
/// how long it took). Fails the test if it is still running after [`WAIT`].
pub async fn serve_fails(extra: &[&str]) -> (i32, String, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let child = tokio::process::Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(extra)
        .env("JOBWIRE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn jobwire");
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("jobwire serve should exit, not hang")
        .expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

/// Runs the CLI with `args` and returns (exit code, stdout).
pub async fn cli(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(bin())
        .args(args)
        .output()
        .await
        .expect("run jobwire");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A WebSocket client that completes the handshake and then never writes, so it
/// never answers pings. Reads until the server closes; returns the close code sent.
pub async fn silent_client_close_code(addr: SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("handshake");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut buf))
        .await
        .expect("server closes in time")
        .expect("read");
    let mut i = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("handshake response")
        + 4;
    // Server frames are unmasked: opcode, length (7-bit or 16-bit), payload.
    while i + 2 <= buf.len() {
        let opcode = buf[i] & 0x0f;
        let mut len = (buf[i + 1] & 0x7f) as usize;
        i += 2;
        if len == 126 {
            len = u16::from_be_bytes([buf[i], buf[i + 1]]) as usize;
            i += 2;
        }
        if opcode == 8 {
            return u16::from_be_bytes([buf[i], buf[i + 1]]);
        }
        i += len;
    }
    panic!("no close frame before EOF");
}

/// Signs `claims` (adding `exp` one hour ahead unless given) with HS256.
pub fn hs256(secret: &str, claims: serde_json::Value) -> String {
    sign(
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        None,
        claims,
    )
}

/// Signs `claims` with any key; adds `exp` one hour ahead unless given.
pub fn sign(
    alg: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    kid: Option<&str>,
    mut claims: serde_json::Value,
) -> String {
    if claims.get("exp").is_none() {
        claims["exp"] = json!(unix_now() + 3600);
    }
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Server {
    /// GET with a bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        decode(r).await
    }

    /// POST JSON with a bearer token.
    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        decode(r).await
    }
}

impl Ws {
    /// Connects with extra headers; `Err(status)` when the server refused the upgrade.
    pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().expect("request");
        for (k, v) in headers {
            req.headers_mut().append(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("in time")
        {
            Ok((inner, _)) => Ok(Ws { inner }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket connect failed: {e}"),
        }
    }
}
