//! `jobwire serve`: flags (each also a `JOBWIRE_*` variable) -> configs -> run.

use anyhow::Context;
use clap::{Args, ValueEnum};
use jobwire_core::engine::embedded::{Durability, Retention};
use jobwire_core::metrics::Metrics;
use jobwire_core::registry::Registry;
use jobwire_core::{Hub, HubConfig};
use jobwire_redis::{RedisConfig, RedisEngine, RedisTls};
use jobwire_server::compat::DialectName;
use jobwire_server::{
    AppState, AuthConfig, ConnLimits, KeySource, PublishLimit, ServerConfig, Verifier,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Human,
    Json,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on: `ip:port`, or `host:port` (e.g. `localhost:8000`).
    #[arg(long, env = "JOBWIRE_LISTEN", default_value = "127.0.0.1:8000", value_parser = listen_addr)]
    listen: SocketAddr,
    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "JOBWIRE_DATA_DIR", default_value = "./jobwire-data")]
    data_dir: PathBuf,
    /// Use Redis as the engine (state, history, cross-instance fan-out) instead of the
    /// embedded store, e.g. `redis://:password@10.0.0.5:6379/0`, or `rediss://…` for
    /// TLS. `--data-dir` is then unused.
    #[arg(long = "redis", env = "JOBWIRE_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// PEM file of the CA(s) that signed the Redis server certificate (`rediss://`
    /// only); replaces the system trust store for Redis.
    #[arg(long, env = "JOBWIRE_REDIS_CA_FILE")]
    redis_ca_file: Option<PathBuf>,
    /// PEM client certificate for Redis servers that require one (`tls-auth-clients yes`).
    #[arg(long, env = "JOBWIRE_REDIS_CLIENT_CERT", requires = "redis_client_key")]
    redis_client_cert: Option<PathBuf>,
    /// PEM private key of `--redis-client-cert`.
    #[arg(long, env = "JOBWIRE_REDIS_CLIENT_KEY", requires = "redis_client_cert")]
    redis_client_key: Option<PathBuf>,
    /// Prefix of every Redis key and channel (several deployments can share one Redis).
    #[arg(long, env = "JOBWIRE_REDIS_PREFIX", default_value = "jobwire:")]
    redis_prefix: String,
    /// Connect and command timeout for Redis; past it publishes fail with 503.
    #[arg(long, env = "JOBWIRE_REDIS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    redis_timeout: Duration,
    /// Sharded pub/sub (Redis 7+): `SPUBLISH`/`SSUBSCRIBE` on channels in each job's hash
    /// slot. Every instance sharing a prefix must use the same setting.
    #[arg(long, env = "JOBWIRE_REDIS_SHARDED_PUBSUB")]
    redis_sharded_pubsub: bool,
    /// HS256 shared secret for JWTs (enables auth).
    #[arg(long, env = "JOBWIRE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Accept a `--jwt-secret` shorter than 32 bytes (refused otherwise: short HS256
    /// secrets can be brute-forced from one token).
    #[arg(long, env = "JOBWIRE_ALLOW_WEAK_SECRET")]
    allow_weak_secret: bool,
    /// PEM public key (RSA for RS256, EC P-256 for ES256) for JWTs (enables auth).
    #[arg(long, env = "JOBWIRE_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// JWKS file with the verification keys, re-read when it changes (enables auth).
    #[arg(long, env = "JOBWIRE_JWKS_FILE")]
    jwks_file: Option<PathBuf>,
    /// Required `aud` claim.
    #[arg(long, env = "JOBWIRE_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Required `iss` claim.
    #[arg(long, env = "JOBWIRE_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// The claim holding the tenant (e.g. `company_id` for tokens that name a company).
    #[arg(long, env = "JOBWIRE_TENANT_CLAIM", default_value = "tenant")]
    tenant_claim: String,
    /// Browser Origins allowed for WebSockets, SSE and CORS (comma-separated); others get 403.
    #[arg(long, env = "JOBWIRE_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Option<Vec<String>>,
    /// Allow running without authentication on a non-loopback address.
    #[arg(long, env = "JOBWIRE_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Most WebSocket + SSE connections in all (0: no limit).
    #[arg(long, env = "JOBWIRE_MAX_CONNECTIONS", default_value_t = 0)]
    max_connections: usize,
    /// Most WebSocket + SSE connections per client IP (0: no limit).
    #[arg(long, env = "JOBWIRE_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    max_connections_per_ip: usize,
    /// Most WebSocket + SSE connections per tenant (0: no limit).
    #[arg(long, env = "JOBWIRE_MAX_CONNECTIONS_PER_TENANT", default_value_t = 0)]
    max_connections_per_tenant: usize,
    /// Publish rate limit per API key (JWT callers: per tenant; development mode: per
    /// client IP), in events per second; 0 turns it off.
    #[arg(long, env = "JOBWIRE_PUBLISH_RATE", default_value_t = 0.0)]
    publish_rate: f64,
    /// Events a key may publish at once after a quiet period (the bucket size).
    #[arg(long, env = "JOBWIRE_PUBLISH_BURST", default_value_t = 100)]
    publish_burst: u32,
    /// Close connections that have not sent a complete request head (or WebSocket
    /// upgrade request) within this time; `0s` turns it off.
    #[arg(long, env = "JOBWIRE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// Log format.
    #[arg(long, env = "JOBWIRE_LOG_FORMAT", value_enum, default_value = "human")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `jobwire=debug`.
    #[arg(long, env = "JOBWIRE_LOG", default_value = "info")]
    log: String,
    /// Finished jobs are deleted this long after they end.
    #[arg(long, env = "JOBWIRE_TERMINAL_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    terminal_ttl: Duration,
    /// How often finished jobs past their TTL are deleted.
    #[arg(long, env = "JOBWIRE_SWEEP_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    sweep_interval: Duration,
    /// Events kept per job; older ones are trimmed (clients asking for them get `history_truncated`).
    #[arg(long, env = "JOBWIRE_MAX_EVENTS_PER_JOB", default_value_t = 10_000)]
    max_events_per_job: u64,
    /// How long the embedded store holds a group of writes open for more before its
    /// one flush: events reach watchers at once, publish acks wait up to this long
    /// (fewer flushes, less CPU); `0s` flushes each group as soon as it is applied.
    #[arg(long, env = "JOBWIRE_FLUSH_WINDOW", default_value = "1ms", value_parser = humantime::parse_duration)]
    flush_window: Duration,
    /// Memory (MiB) for each job's newest events, so that replays skip the store (embedded engine; 0 = off).
    #[arg(long, env = "JOBWIRE_REPLAY_CACHE_MB", default_value_t = 64)]
    replay_cache_mb: usize,
    /// Frames queued per connection before progress is coalesced and then the client is closed as slow.
    #[arg(long, env = "JOBWIRE_OUTBOX_CAPACITY", default_value_t = 4096)]
    outbox_capacity: usize,
    /// Heartbeat frame + WebSocket ping interval.
    #[arg(long, env = "JOBWIRE_HEARTBEAT_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// Close WebSockets that send nothing for this long.
    #[arg(long, env = "JOBWIRE_IDLE_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Largest client WebSocket frame handled (bigger: `payload_too_large` error frame).
    #[arg(long, env = "JOBWIRE_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    max_frame_bytes: usize,
    /// Hard WebSocket message limit (bigger: close 1009).
    #[arg(long, env = "JOBWIRE_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    max_message_bytes: usize,
    /// Largest HTTP request body (bigger: 413).
    #[arg(long, env = "JOBWIRE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Jobs one WebSocket may watch at once.
    #[arg(long, env = "JOBWIRE_MAX_SUBSCRIPTIONS", default_value_t = 1000)]
    max_subscriptions: usize,
    /// SSE keep-alive comment interval.
    #[arg(long, env = "JOBWIRE_SSE_KEEPALIVE", default_value = "15s", value_parser = humantime::parse_duration)]
    sse_keepalive: Duration,
    /// How long shutdown waits for connections to drain.
    #[arg(long, env = "JOBWIRE_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// A WebSocket write that makes no progress for this long closes the connection
    /// (the peer stopped reading) and frees its slot.
    #[arg(long, env = "JOBWIRE_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,
    /// A request body not fully received this long after the request head gets 408
    /// `request_timeout`; while it arrives it holds a slot of `--max-connections-per-ip`.
    #[arg(long, env = "JOBWIRE_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// Serve the URLs and message shapes of systems teams run today, so their
    /// clients work unchanged: `progress-channel`, `a6hub`, `titan`,
    /// `project-updates` (comma-separated), or `all`. See docs/compat.md.
    #[arg(long, env = "JOBWIRE_COMPAT", value_parser = parse_compat, default_value = "")]
    compat: CompatList,
    /// Take the messages that the enabled dialects' workers publish into this Redis
    /// (a6hub: `job:*:updates`, titan: `job_progress:*`) and publish them as jobwire
    /// events, creating jobs as needed. Pub/sub is at-most-once: what is published
    /// while jobwire is disconnected from this Redis is lost (the SDKs are lossless).
    #[arg(long, env = "JOBWIRE_INGEST_REDIS", hide_env_values = true)]
    ingest_redis: Option<String>,
    /// The tenant whose namespace the Redis bridge's jobs go to (needed with
    /// authentication; without it, the default namespace).
    #[arg(long, env = "JOBWIRE_INGEST_TENANT")]
    ingest_tenant: Option<String>,
    /// Scopes given to a valid token that has no `scope` claim (space-separated), e.g.
    /// `jobs:watch` for tokens issued for another system.
    #[arg(long, env = "JOBWIRE_DEFAULT_SCOPE")]
    default_scope: Option<String>,
    /// Serve the dashboard at `/` from this directory (a `dashboard/dist` build) instead
    /// of the copy built into the binary; for working on the dashboard.
    #[arg(long, env = "JOBWIRE_DASHBOARD_DIR")]
    dashboard_dir: Option<std::path::PathBuf>,
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// `--listen`: `ip:port`, or `host:port` resolved once at startup (the first
/// address `localhost` resolves to, for example).
fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs;
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("{s}: not an address to listen on ({e}); use host:port"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s}: resolves to no address"))
}

/// The parsed `--compat` list.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompatList(Vec<DialectName>);

fn parse_compat(s: &str) -> Result<CompatList, String> {
    DialectName::parse_list(s).map(CompatList)
}

/// Shortest `--jwt-secret` accepted without `--allow-weak-secret` (256 bits).
const MIN_SECRET_BYTES: usize = 32;

/// Builds the auth settings; without a key source, development mode (and only on
/// loopback unless `--allow-anonymous`).
fn auth_config(a: &ServeArgs) -> anyhow::Result<AuthConfig> {
    let sources = [
        a.jwt_secret.is_some(),
        a.jwt_public_key.is_some(),
        a.jwks_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        anyhow::bail!("give only one of --jwt-secret, --jwt-public-key, --jwks-file");
    }
    let source = if let Some(s) = &a.jwt_secret {
        if s.len() < MIN_SECRET_BYTES && !a.allow_weak_secret {
            anyhow::bail!(
                "--jwt-secret is {} bytes; an HS256 secret needs at least {MIN_SECRET_BYTES} random \
                 bytes (e.g. `openssl rand -base64 32`), or pass --allow-weak-secret",
                s.len()
            );
        }
        Some(KeySource::Secret(s.as_bytes().to_vec()))
    } else if let Some(p) = &a.jwt_public_key {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        Some(KeySource::PublicKeyPem(pem))
    } else {
        a.jwks_file.clone().map(KeySource::JwksFile)
    };
    let verifier = match source {
        Some(src) => Some(
            Verifier::new(
                src,
                a.jwt_audience.clone(),
                a.jwt_issuer.clone(),
                a.tenant_claim.clone(),
            )?
            .with_default_scope(a.default_scope.clone()),
        ),
        None => {
            if !a.listen.ip().is_loopback() && !a.allow_anonymous {
                anyhow::bail!(
                    "refusing to serve {} without authentication: configure --jwt-secret, \
                     --jwt-public-key or --jwks-file, or pass --allow-anonymous",
                    a.listen
                );
            }
            tracing::warn!(
                "DEVELOPMENT MODE: no authentication configured; every client can read and \
                 publish every job. Configure --jwt-secret, --jwt-public-key or --jwks-file."
            );
            None
        }
    };
    Ok(AuthConfig {
        verifier,
        allowed_origins: a.allowed_origins.clone(),
    })
}

pub(crate) async fn run(a: ServeArgs) -> anyhow::Result<()> {
    init_logging(a.log_format, &a.log);
    let retention = Retention {
        terminal_ttl: a.terminal_ttl,
        max_events_per_job: a.max_events_per_job,
        sweep_interval: a.sweep_interval,
        replay_cache_bytes: a.replay_cache_mb.saturating_mul(1 << 20),
    };
    let hub_config = HubConfig {
        outbox_capacity: a.outbox_capacity,
    };
    let (hub, engine_name) = match &a.redis_url {
        None => {
            let durability = Durability {
                flush_window: a.flush_window,
            };
            let hub = Hub::open_embedded(a.data_dir.clone(), retention, durability, hub_config)
                .with_context(|| format!("opening the store in {}", a.data_dir.display()))?;
            (hub, "embedded")
        }
        Some(url) => {
            let metrics = Arc::new(Metrics::default());
            let registry = Arc::new(Registry::new(metrics.clone()));
            let config = RedisConfig {
                url: url.clone(),
                tls: RedisTls {
                    ca_file: a.redis_ca_file.clone(),
                    client_cert: a.redis_client_cert.clone(),
                    client_key: a.redis_client_key.clone(),
                },
                prefix: a.redis_prefix.clone(),
                retention,
                command_timeout: a.redis_timeout,
                sharded_pubsub: a.redis_sharded_pubsub,
            };
            let engine = RedisEngine::connect(config, registry.clone(), metrics.clone())
                .await
                .context("connecting to Redis")?;
            (Hub::new(engine, registry, metrics, hub_config), "redis")
        }
    };
    let config = ServerConfig {
        heartbeat_interval: a.heartbeat_interval,
        idle_timeout: a.idle_timeout,
        max_frame_bytes: a.max_frame_bytes,
        max_message_bytes: a.max_message_bytes,
        max_body_bytes: a.max_body_bytes,
        max_subscriptions: a.max_subscriptions,
        sse_keepalive: a.sse_keepalive,
        shutdown_grace: a.shutdown_grace,
        handshake_timeout: a.handshake_timeout,
        publish_limit: PublishLimit {
            rate: a.publish_rate,
            burst: f64::from(a.publish_burst),
        },
        write_timeout: a.write_timeout,
        body_timeout: a.body_timeout,
        compat: a.compat.0.clone(),
        dashboard_dir: a.dashboard_dir.clone(),
    };
    if !(a.publish_rate.is_finite() && a.publish_rate >= 0.0) {
        anyhow::bail!("--publish-rate must be a number of events per second, 0 or more");
    }
    let auth = auth_config(&a)?;
    let limits = ConnLimits {
        max_total: a.max_connections,
        max_per_ip: a.max_connections_per_ip,
        max_per_tenant: a.max_connections_per_tenant,
    };
    let listener = TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, engine = engine_name, "jobwire serving");
    // A stable line on stdout so scripts and tests can find the bound port.
    println!("jobwire listening on http://{addr}");
    let bridge = match &a.ingest_redis {
        None => None,
        Some(url) => {
            let patterns = jobwire_server::compat::ingest::patterns(&a.compat.0);
            if patterns.is_empty() {
                anyhow::bail!(
                    "--ingest-redis takes the messages of the a6hub and titan workers: enable one of them with --compat"
                );
            }
            if auth.verifier.is_some() && a.ingest_tenant.is_none() {
                anyhow::bail!("--ingest-redis with authentication needs --ingest-tenant (whose jobs they are)");
            }
            let access = match &a.ingest_tenant {
                Some(t) if jobwire_core::access::valid_tenant(t) => {
                    jobwire_core::Access::tenant(t.clone())
                }
                Some(t) => anyhow::bail!("--ingest-tenant {t:?} is not a valid tenant name"),
                None => jobwire_core::Access::open(),
            };
            Some((url.clone(), patterns, access))
        }
    };
    let state = AppState::new(hub, config)
        .with_auth(auth)
        .with_limits(limits);
    if let Some((url, patterns, access)) = bridge {
        let bridge = Arc::new(jobwire_server::compat::ingest::Bridge::new(
            state.hub.clone(),
            access,
        ));
        let stop = state.shutdown.clone().cancelled_owned();
        tokio::spawn(jobwire_redis::ingest::run(
            url,
            RedisTls::default(),
            patterns,
            stop,
            move |channel, payload| {
                let bridge = bridge.clone();
                async move { bridge.handle(&channel, &payload).await }
            },
        ));
    }
    jobwire_server::run(listener, state, shutdown_signal()).await?;
    Ok(())
}
