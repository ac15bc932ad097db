//! Where the load goes and where it comes from: loopback-only targets, source
//! addresses rotating over 127.0.0.1..127.0.0.N (so one machine can open more
//! sockets than one source address has ephemeral ports), WebSocket and HTTP clients.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// A jobwire server on the loopback network.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub(crate) http: String,
    /// `ws://127.0.0.1:PORT`, no trailing slash.
    pub(crate) ws: String,
}

impl Target {
    /// Parses `http://HOST:PORT`; refuses anything outside 127.0.0.0/8.
    pub(crate) fn parse(url: &str) -> Result<Target> {
        let u = reqwest::Url::parse(url).with_context(|| format!("bad server URL `{url}`"))?;
        if u.scheme() != "http" {
            bail!("only http:// servers are supported, got `{url}`");
        }
        if !(u.path().is_empty() || u.path() == "/") || u.query().is_some() {
            bail!("give the server as http://HOST:PORT without a path, got `{url}`");
        }
        let host = u.host_str().unwrap_or_default();
        let ip: Ipv4Addr = if host == "localhost" {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse().with_context(|| {
                format!("`{host}` is not an IPv4 address; this tool only targets 127.0.0.0/8")
            })?
        };
        if !ip.is_loopback() {
            bail!("refusing to load {ip}: this tool only targets 127.0.0.0/8");
        }
        let port = u.port_or_known_default().unwrap_or(80);
        let addr = SocketAddr::new(IpAddr::V4(ip), port);
        Ok(Target {
            addr,
            http: format!("http://{addr}"),
            ws: format!("ws://{addr}"),
        })
    }
}

/// Client source addresses 127.0.0.1 ..= 127.0.0.N, handed out round-robin.
pub(crate) struct Sources {
    n: usize,
    next: AtomicUsize,
}

impl Sources {
    pub(crate) fn new(n: u8) -> Result<Sources> {
        if n == 0 || n > 254 {
            bail!("--source-ips must be 1..=254");
        }
        Ok(Sources {
            n: n as usize,
            next: AtomicUsize::new(0),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    pub(crate) fn get(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, 1 + (i % self.n) as u8)
    }

    pub(crate) fn next(&self) -> Ipv4Addr {
        self.get(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// The client-side WebSocket settings: a small read buffer, since tungstenite zeroes
/// (and so touches) its whole read buffer on the first read; at 128 KiB (the default)
/// 19,000 client sockets would cost the bench 2.4 GiB.
pub(crate) fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer.max(4096))
        .write_buffer_size(0)
}

/// Opens a WebSocket to `target` + `path` from source address `src`.
pub(crate) async fn connect_ws(
    target: &Target,
    src: Ipv4Addr,
    path: &str,
    cfg: WebSocketConfig,
) -> Result<Ws> {
    let sock = TcpSocket::new_v4().context("socket")?;
    sock.bind(SocketAddr::new(IpAddr::V4(src), 0))
        .with_context(|| format!("bind {src}"))?;
    let stream = sock.connect(target.addr).await.context("connect")?;
    stream.set_nodelay(true).context("nodelay")?;
    let url = format!("{}{}", target.ws, path);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(cfg))
        .await
        .context("websocket handshake")?;
    Ok(ws)
}

/// HTTP clients, one per source address, each with its own connection pool.
pub(crate) struct Http {
    clients: Vec<reqwest::Client>,
    next: AtomicUsize,
    pub(crate) base: String,
}

impl Http {
    pub(crate) fn new(target: &Target, sources: &Sources) -> Result<Http> {
        let clients = (0..sources.len())
            .map(|i| {
                reqwest::Client::builder()
                    .no_proxy()
                    .local_address(IpAddr::V4(sources.get(i)))
                    .tcp_nodelay(true)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .context("building the HTTP client")
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Http {
            clients,
            next: AtomicUsize::new(0),
            base: target.http.clone(),
        })
    }

    /// The next client, round-robin over source addresses.
    pub(crate) fn client(&self) -> &reqwest::Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i]
    }

    /// A fixed client (e.g. one per worker).
    pub(crate) fn client_for(&self, i: usize) -> &reqwest::Client {
        &self.clients[i % self.clients.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(Target::parse("http://127.0.0.1:8000").is_ok());
        assert!(Target::parse("http://127.0.0.9:8000/").is_ok());
        assert!(Target::parse("http://localhost:8000").is_ok());
        assert!(Target::parse("http://10.0.0.1:8000").is_err());
        assert!(Target::parse("http://example.com:8000").is_err());
        assert!(Target::parse("https://127.0.0.1:8000").is_err());
        assert!(Target::parse("http://127.0.0.1:8000/v1").is_err());
    }

    #[test]
    fn sources_rotate() {
        let s = Sources::new(3).ok();
        let s = s.as_ref();
        let got: Vec<_> = (0..4).filter_map(|_| s.map(Sources::next)).collect();
        assert_eq!(
            got,
            vec![
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 3),
                Ipv4Addr::new(127, 0, 0, 1)
            ]
        );
        assert!(Sources::new(0).is_err());
    }
}
