//! Which server the bench drives (`--peer`): jobwire (the default) or a peer used
//! for side-by-side figures, nginx + nchan. This module owns everything that differs
//! for the peer: its URLs, its publish request and answer, its frames, and the
//! client-side seq accounting that a server without seqs needs.
//!
//! nchan (memory-only channels, set up by `peers/run.py`):
//! - nothing to create: a channel exists once published to or subscribed;
//! - publish: `POST /pub/<id>` with one bench event, answered 201 (delivered to at
//!   least one subscriber) or 202 (queued, no subscriber);
//! - subscribe: a WebSocket to `/sub/<id>`, connected once the upgrade succeeds (no
//!   snapshot); each message is the published body, byte for byte.
//!
//! nchan assigns no seq of its own, so the bench puts one in the body (per job,
//! counted by the publisher). Publishes to one job travel over several keep-alive
//! connections, so nchan may deliver them out of order: a watcher keeps the set of
//! seqs it has seen ([`SeqSet`]) and counts reordered, duplicate and missing seqs.

use crate::publish::now_ns;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use tokio_tungstenite::tungstenite::Message;

/// The server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Peer {
    /// jobwire: jobs are created, events get server seqs, watchers get a snapshot.
    Jobwire,
    /// nginx + nchan: `POST /pub/<id>`, WebSocket `/sub/<id>`, seqs from the bench.
    Nchan,
}

impl Peer {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Peer::Jobwire => "jobwire",
            Peer::Nchan => "nchan",
        }
    }
}

/// The WebSocket path of a watcher of `job` on nchan.
pub(crate) fn nchan_sub_path(job: &str) -> String {
    format!("/sub/{job}")
}

/// One bench event for nchan: the body jobwire gets for a single event, plus the
/// bench's own `seq` (what jobwire's wire event carries as its server seq).
pub(crate) fn nchan_body(seq: u64) -> String {
    format!(
        r#"{{"type":"custom","name":"bench","data":{{"t":{}}},"seq":{seq}}}"#,
        now_ns()
    )
}

/// Whether nchan accepted a publish: 201 (delivered) or 202 (queued).
pub(crate) fn nchan_accepted(status: u16) -> bool {
    status == 201 || status == 202
}

/// Publishes bench event `seq` to channel `job`; returns `seq` once accepted.
pub(crate) async fn nchan_publish(
    client: &reqwest::Client,
    base: &str,
    job: &str,
    seq: u64,
) -> Result<u64> {
    let r = client
        .post(format!("{base}/pub/{job}"))
        .header("content-type", "application/json")
        .body(nchan_body(seq))
        .send()
        .await
        .context("publish request")?;
    let st = r.status().as_u16();
    // Read the (plain-text channel info) answer so the connection is reused.
    r.bytes().await.context("publish response")?;
    if !nchan_accepted(st) {
        bail!("publish HTTP {st}");
    }
    Ok(seq)
}

/// The text of an nchan message frame: nchan sends a text frame for a UTF-8 body,
/// but a binary frame is read the same way. `None` for control frames.
pub(crate) fn nchan_payload(msg: &Message) -> Option<&str> {
    match msg {
        Message::Text(t) => Some(t.as_str()),
        Message::Binary(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// Highest seq a watcher tracks (2 MiB of bits); above it a seq is not ours.
const MAX_TRACKED_SEQ: u64 = 1 << 24;

/// What [`SeqSet::insert`] made of a seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// First time seen, above every seq seen before.
    InOrder,
    /// First time seen, below a seq seen before (delivered out of order).
    Reordered,
    /// Seen before (or 0, or above [`MAX_TRACKED_SEQ`]): not a delivery.
    Duplicate,
}

/// The seqs (1, 2, ...) one watcher has received, as a bit set.
#[derive(Debug, Default)]
pub(crate) struct SeqSet {
    bits: Vec<u64>,
    distinct: u64,
    max: u64,
}

impl SeqSet {
    pub(crate) fn insert(&mut self, seq: u64) -> Admit {
        if seq == 0 || seq > MAX_TRACKED_SEQ {
            return Admit::Duplicate;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.bits[word] & mask != 0 {
            return Admit::Duplicate;
        }
        self.bits[word] |= mask;
        self.distinct += 1;
        if seq > self.max {
            self.max = seq;
            Admit::InOrder
        } else {
            Admit::Reordered
        }
    }

    /// Seqs below the highest one seen that never arrived.
    pub(crate) fn missing(&self) -> u64 {
        self.max - self.distinct
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::{classify, Frame};
    use tokio_tungstenite::tungstenite::Bytes;

    #[test]
    fn nchan_frames_carry_seq_and_timestamp() {
        // Exactly what nchan hands a WebSocket subscriber: the published body.
        let body = nchan_body(7);
        let msg = Message::text(body.clone());
        let text = nchan_payload(&msg).unwrap_or_default();
        assert_eq!(text, body);
        match classify(text) {
            Frame::Event { seq, t_ns } => {
                assert_eq!(seq, 7);
                assert!(t_ns.is_some_and(|t| t > 1_600_000_000_000_000_000));
            }
            Frame::Other => panic!("not classified as an event: {text}"),
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["type"], "custom");
        assert_eq!(v["name"], "bench");
    }

    #[test]
    fn nchan_binary_and_control_frames() {
        let raw = r#"{"type":"custom","name":"bench","data":{"t":5},"seq":3}"#;
        let bin = Message::Binary(Bytes::from_static(raw.as_bytes()));
        assert_eq!(nchan_payload(&bin), Some(raw));
        assert_eq!(
            classify(raw),
            Frame::Event {
                seq: 3,
                t_ns: Some(5)
            }
        );
        let bad = Message::Binary(Bytes::from_static(&[0xff, 0xfe]));
        assert_eq!(nchan_payload(&bad), None);
        assert_eq!(nchan_payload(&Message::Ping(Bytes::new())), None);
        // A foreign message on the channel has no seq: not counted.
        assert_eq!(classify(r#"{"hello":"world"}"#), Frame::Other);
    }

    #[test]
    fn nchan_statuses() {
        assert!(nchan_accepted(201));
        assert!(nchan_accepted(202));
        assert!(!nchan_accepted(200));
        assert!(!nchan_accepted(403));
        assert!(!nchan_accepted(500));
        assert_eq!(nchan_sub_path("b-1"), "/sub/b-1");
    }

    #[test]
    fn seq_set_counts_reorders_duplicates_and_holes() {
        let mut s = SeqSet::default();
        assert_eq!(s.insert(1), Admit::InOrder);
        assert_eq!(s.insert(3), Admit::InOrder);
        assert_eq!(s.insert(2), Admit::Reordered);
        assert_eq!(s.insert(2), Admit::Duplicate);
        assert_eq!(s.missing(), 0);
        assert_eq!(s.insert(130), Admit::InOrder);
        assert_eq!(s.missing(), 126);
        assert_eq!(s.insert(64), Admit::Reordered);
        assert_eq!(s.missing(), 125);
        assert_eq!(s.insert(0), Admit::Duplicate);
        assert_eq!(s.insert(MAX_TRACKED_SEQ + 1), Admit::Duplicate);
        assert_eq!(s.distinct, 5);
    }
}
