//! The watcher side: open a subscription (single-job socket or multiplexed socket),
//! read the snapshot, then either stay live (counting deliveries, checking seq
//! continuity, measuring publish -> receive latency from the event's `data.t`) or
//! read history until caught up (replay). With `--peer nchan`, the subscription is
//! nchan's (no snapshot) and seqs are counted with a set (see `peer`).

use crate::net::{connect_ws, Target, Ws};
use crate::peer::{nchan_payload, nchan_sub_path, Admit, Peer, SeqSet};
use crate::publish::now_ns;
use crate::report::{histogram, record, Errors};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use memchr::memmem::Finder;
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Which WebSocket endpoint watchers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Endpoint {
    /// `GET /v1/jobs/{id}/ws?since=N`
    Single,
    /// `GET /v1/ws` + a `subscribe` frame.
    Mux,
}

impl Endpoint {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Endpoint::Single => "single",
            Endpoint::Mux => "mux",
        }
    }
}

/// An open subscription, past its snapshot frame (nchan: past the upgrade, with
/// `snap_seq` 0).
pub(crate) struct Conn {
    pub(crate) ws: Ws,
    pub(crate) snap_seq: u64,
    pub(crate) peer: Peer,
}

/// Most non-snapshot frames tolerated before the snapshot (pings, pongs).
const MAX_FRAMES_BEFORE_SNAPSHOT: usize = 16;

/// Connects, subscribes to `job` and reads the snapshot frame. On nchan the
/// subscription is the upgrade itself (`endpoint` and `since` do not apply).
pub(crate) async fn open(
    target: &Target,
    src: Ipv4Addr,
    job: &str,
    endpoint: Endpoint,
    since: Option<u64>,
    cfg: WebSocketConfig,
    peer: Peer,
) -> Result<Conn> {
    if peer == Peer::Nchan {
        let ws = connect_ws(target, src, &nchan_sub_path(job), cfg).await?;
        return Ok(Conn {
            ws,
            snap_seq: 0,
            peer,
        });
    }
    let path = match (endpoint, since) {
        (Endpoint::Single, Some(s)) => format!("/v1/jobs/{job}/ws?since={s}"),
        (Endpoint::Single, None) => format!("/v1/jobs/{job}/ws"),
        (Endpoint::Mux, _) => "/v1/ws".to_owned(),
    };
    let mut ws = connect_ws(target, src, &path, cfg).await?;
    if endpoint == Endpoint::Mux {
        let mut f = json!({"type": "subscribe", "job_id": job});
        if let Some(s) = since {
            f["since"] = json!(s);
        }
        ws.send(Message::text(f.to_string()))
            .await
            .context("sending subscribe")?;
    }
    for _ in 0..MAX_FRAMES_BEFORE_SNAPSHOT {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).context("first frame")?;
                match v.get("type").and_then(Value::as_str) {
                    Some("snapshot") => {
                        let snap_seq = v
                            .get("seq")
                            .and_then(Value::as_u64)
                            .context("snapshot without seq")?;
                        return Ok(Conn { ws, snap_seq, peer });
                    }
                    Some("error") => bail!(
                        "error frame {}",
                        v.get("code").and_then(Value::as_str).unwrap_or("?")
                    ),
                    other => bail!("expected a snapshot frame, got {other:?}"),
                }
            }
            Some(Ok(Message::Close(c))) => bail!("closed before snapshot: {}", close_kind(c)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("reading the snapshot"),
            None => bail!("connection ended before snapshot"),
        }
    }
    bail!("no snapshot frame")
}

fn close_kind(c: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match c {
        Some(f) => format!("close {} {}", u16::from(f.code), f.reason.as_str()),
        None => "close (no code)".to_owned(),
    }
}

/// `"seq":` and the bench's timestamp key, searched with prebuilt SIMD finders: the
/// bench parses millions of frames per second on one core (a `str::find` per key
/// was a third of its CPU in the replay scenario).
static SEQ_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\":"));
static T_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"data\":{\"t\":"));

/// Reads the unsigned integer right after `key`, if present.
fn field_u64(s: &str, key: &Finder<'_>) -> Option<u64> {
    let start = key.find(s.as_bytes())? + key.needle().len();
    let n = s.as_bytes()[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    s.get(start..start + n)?.parse().ok()
}

/// The seq of a wire event, or `None` for a control frame.
pub(crate) fn seq_of(s: &str) -> Option<u64> {
    field_u64(s, &SEQ_KEY)
}

/// A server frame after the snapshot, classified without a full JSON parse (the
/// bench must keep up with 100,000+ frames/s on one core). Control frames carry no
/// `"seq":` key; an unescaped `"seq":` cannot occur inside a JSON string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A wire event, with the bench timestamp if it is one of ours.
    Event {
        seq: u64,
        t_ns: Option<u64>,
    },
    Other,
}

pub(crate) fn classify(s: &str) -> Frame {
    match seq_of(s) {
        Some(seq) => Frame::Event {
            seq,
            t_ns: field_u64(s, &T_KEY),
        },
        None => Frame::Other,
    }
}

/// Totals shared by every live watcher of a run.
pub(crate) struct Live {
    /// Event frames with seq above the watcher's snapshot, not repeated.
    pub(crate) received: AtomicU64,
    /// Seqs skipped between consecutive frames of one watcher.
    pub(crate) gaps: AtomicU64,
    /// Frames with a seq not above the last one (nchan: a seq seen before).
    pub(crate) dups: AtomicU64,
    /// nchan only: new seqs that arrived after a higher one (not a failure).
    pub(crate) reordered: AtomicU64,
    /// Unix ns of the last delivery.
    pub(crate) last_ns: AtomicU64,
    /// Events with `t` below this (warm-up) are counted but not timed.
    pub(crate) measure_from_ns: AtomicU64,
    pub(crate) latency: Mutex<Histogram<u64>>,
    /// Why watchers stopped before being told to (close codes, errors).
    pub(crate) ended: Errors,
}

impl Live {
    pub(crate) fn new() -> Result<Live> {
        Ok(Live {
            received: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            dups: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            measure_from_ns: AtomicU64::new(u64::MAX),
            latency: Mutex::new(histogram()?),
            ended: Errors::default(),
        })
    }

    fn flush(&self, buf: &mut Vec<u64>) {
        if buf.is_empty() {
            return;
        }
        let mut h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        for us in buf.drain(..) {
            record(&mut h, us);
        }
    }
}

/// What one live watcher saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watched {
    pub(crate) job: usize,
    pub(crate) snap_seq: u64,
    pub(crate) received: u64,
    pub(crate) ended_early: bool,
}

/// Latency samples a watcher keeps before taking the shared histogram's lock.
const LOCAL_SAMPLES: usize = 256;

/// How a watcher admits seqs: jobwire's arrive in order, nchan's may not.
enum Track {
    /// The last seq received (starts at the snapshot's).
    Ordered(u64),
    Set(SeqSet),
}

impl Track {
    /// Counts a duplicate, gap or reorder into `shared`; false for a duplicate.
    fn admit(&mut self, seq: u64, shared: &Live) -> bool {
        match self {
            Track::Ordered(last) => {
                if seq <= *last {
                    shared.dups.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                if seq > *last + 1 {
                    shared.gaps.fetch_add(seq - *last - 1, Ordering::Relaxed);
                }
                *last = seq;
                true
            }
            Track::Set(set) => match set.insert(seq) {
                Admit::Duplicate => {
                    shared.dups.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Admit::Reordered => {
                    shared.reordered.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Admit::InOrder => true,
            },
        }
    }

    /// At the end: the seqs a set never saw below its highest are gaps.
    fn finish(&self, shared: &Live) {
        if let Track::Set(set) = self {
            shared.gaps.fetch_add(set.missing(), Ordering::Relaxed);
        }
    }
}

/// The text of a data frame, as the server under test sends it.
fn frame_text(msg: &Message, peer: Peer) -> Option<&str> {
    match (msg, peer) {
        (Message::Text(t), Peer::Jobwire) => Some(t.as_str()),
        (_, Peer::Jobwire) => None,
        (_, Peer::Nchan) => nchan_payload(msg),
    }
}

/// Reads live frames until `stop` turns true (or the server ends the connection).
pub(crate) async fn live(
    conn: Conn,
    job: usize,
    shared: &Live,
    mut stop: watch::Receiver<bool>,
) -> Watched {
    let Conn {
        mut ws,
        snap_seq,
        peer,
    } = conn;
    let mut track = match peer {
        Peer::Jobwire => Track::Ordered(snap_seq),
        Peer::Nchan => Track::Set(SeqSet::default()),
    };
    let mut received = 0u64;
    let mut ended_early = false;
    let mut samples = Vec::new();
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(Message::Close(c))) => {
                shared.ended.add(close_kind(c));
                ended_early = true;
                break;
            }
            Some(Ok(m)) => {
                let Some(Frame::Event { seq, t_ns }) = frame_text(&m, peer).map(classify) else {
                    continue;
                };
                if !track.admit(seq, shared) {
                    continue;
                }
                let now = now_ns();
                received += 1;
                shared.received.fetch_add(1, Ordering::Relaxed);
                shared.last_ns.fetch_max(now, Ordering::Relaxed);
                if let Some(t) = t_ns {
                    if t >= shared.measure_from_ns.load(Ordering::Relaxed) {
                        samples.push(now.saturating_sub(t) / 1000);
                        if samples.len() >= LOCAL_SAMPLES {
                            shared.flush(&mut samples);
                        }
                    }
                }
            }
            Some(Err(e)) => {
                shared.ended.add(format!("read error: {e}"));
                ended_early = true;
                break;
            }
            None => {
                shared.ended.add("connection ended");
                ended_early = true;
                break;
            }
        }
    }
    track.finish(shared);
    shared.flush(&mut samples);
    if !ended_early {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    Watched {
        job,
        snap_seq,
        received,
        ended_early,
    }
}

/// What one replaying client saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CaughtUp {
    pub(crate) events: u64,
    pub(crate) gaps: u64,
    pub(crate) snap_seq: u64,
}

/// Reads events until the snapshot's seq has arrived.
pub(crate) async fn catch_up(conn: Conn, since: u64) -> Result<CaughtUp> {
    let Conn {
        mut ws, snap_seq, ..
    } = conn;
    let mut last = since;
    let mut events = 0;
    let mut gaps = 0;
    while last < snap_seq {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if let Some(seq) = seq_of(t.as_str()) {
                    if seq <= last {
                        continue;
                    }
                    gaps += seq - last - 1;
                    last = seq;
                    events += 1;
                }
            }
            Some(Ok(Message::Close(c))) => bail!("closed during replay: {}", close_kind(c)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("reading the replay"),
            None => bail!("connection ended during replay"),
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Ok(CaughtUp {
        events,
        gaps,
        snap_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_frames() {
        let ev = r#"{"type":"custom","name":"bench","data":{"t":1732350000123456789},"job_id":"b-1","seq":42,"timestamp":"2026-11-23T09:22:36.757Z","status":"pending"}"#;
        assert_eq!(
            classify(ev),
            Frame::Event {
                seq: 42,
                t_ns: Some(1732350000123456789)
            }
        );
        let created =
            r#"{"type":"created","job_id":"b-1","seq":1,"timestamp":"x","status":"pending"}"#;
        assert_eq!(classify(created), Frame::Event { seq: 1, t_ns: None });
        let hb = r#"{"type":"heartbeat","timestamp":"2026-11-23T09:23:20.160Z"}"#;
        assert_eq!(classify(hb), Frame::Other);
        let err = r#"{"type":"error","code":"bad_request","message":"no \"seq\": here"}"#;
        assert_eq!(classify(err), Frame::Other);
    }
}
