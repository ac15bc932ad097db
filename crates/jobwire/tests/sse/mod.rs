//! Server-Sent Events scripts.

use crate::support::{Engine, Server, WAIT};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// One parsed SSE message.
#[derive(Debug, Default)]
struct Msg {
    id: Option<u64>,
    /// The epoch after the seq in `id: <seq>:<epoch>` (engines with epochs).
    epoch: Option<u64>,
    data: Option<Value>,
    comment: Option<String>,
    retry: Option<u64>,
}

/// A minimal SSE reader over a real streaming HTTP response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(s: &Server, path: &str, last_event_id: Option<u64>) -> (StatusCode, Option<Sse>) {
        let mut req = s
            .http
            .get(s.url(path))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.expect("GET sse");
        let status = resp.status();
        if status != StatusCode::OK {
            return (status, None);
        }
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        (
            status,
            Some(Sse {
                resp,
                buf: String::new(),
            }),
        )
    }

    /// The next message, or None when the server ended the stream.
    async fn next(&mut self) -> Option<Msg> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut m = Msg::default();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        let (seq, epoch) =
                            v.split_once(':').map_or((v, None), |(s, e)| (s, Some(e)));
                        m.id = seq.parse().ok();
                        m.epoch = epoch.and_then(|e| e.parse().ok());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        m.data = Some(serde_json::from_str(v).expect("data is JSON"));
                    } else if let Some(v) = line.strip_prefix("retry: ") {
                        m.retry = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix(':') {
                        m.comment = Some(v.trim().to_owned());
                    }
                }
                return Some(m);
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .expect("chunk in time")
                .expect("chunk");
            match chunk {
                Some(b) => self.buf.push_str(std::str::from_utf8(&b).expect("utf8")),
                None => return None,
            }
        }
    }

    /// The next message carrying data.
    async fn data(&mut self) -> (Option<u64>, Value) {
        let (id, _, d) = self.data_with_epoch().await;
        (id, d)
    }

    /// The next message carrying data, with the epoch of its id.
    async fn data_with_epoch(&mut self) -> (Option<u64>, Option<u64>, Value) {
        loop {
            let m = self.next().await.expect("stream open");
            if let Some(d) = m.data {
                return (m.id, m.epoch, d);
            }
        }
    }
}

async fn sse_streams_snapshot_history_and_live_events_with_ids(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    s.publish(
        "j",
        json!([{"type": "progress", "progress": 5}, {"type": "log", "line": "a"}]),
    )
    .await;
    let (_, sse) = Sse::open(&s, "/v1/jobs/j/events?since=1", None).await;
    let mut sse = sse.expect("stream");
    let first = sse.next().await.expect("retry");
    assert_eq!(first.retry, Some(2000));
    let (id, snap) = sse.data().await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["seq"], 3);
    assert_eq!(id, None, "the snapshot does not move Last-Event-ID");
    let (id, epoch, e) = sse.data_with_epoch().await;
    assert_eq!(
        (id, e["seq"].as_u64(), e["type"].as_str()),
        (Some(2), Some(2), Some("progress"))
    );
    // Event ids carry the snapshot's epoch where the engine has epochs.
    assert_eq!(epoch, snap["epoch"].as_u64());
    assert_eq!(engine != Engine::Redis, epoch.is_some());
    let (id, _) = sse.data().await;
    assert_eq!(id, Some(3));
    s.publish("j", json!({"type": "log", "line": "live"})).await;
    let (id, e) = sse.data().await;
    assert_eq!((id, e["line"].as_str()), (Some(4), Some("live")));
    s.publish("j", json!({"type": "failed", "error": "x"}))
        .await;
    let (id, e) = sse.data().await;
    assert_eq!((id, e["type"].as_str()), (Some(5), Some("failed")));
    assert!(
        sse.next().await.is_none(),
        "the stream ends after the terminal event"
    );
    // A client that has seen everything of a finished job is told to stop (204).
    let (st, _) = Sse::open(&s, "/v1/jobs/j/events", Some(5)).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
}

async fn sse_resumes_from_last_event_id(engine: Engine) {
    let s = Server::start_on(engine).await;
    s.create("j").await;
    for i in 0..6 {
        s.publish("j", json!({"type": "log", "line": format!("l{i}")}))
            .await;
    }
    // Last-Event-ID wins over ?since (that is what a browser sends on reconnect).
    let (_, sse) = Sse::open(&s, "/v1/jobs/j/events?since=0", Some(4)).await;
    let mut sse = sse.expect("stream");
    let (_, snap) = sse.data().await;
    assert_eq!(snap["seq"], 7);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(sse.data().await.0.expect("id"));
    }
    assert_eq!(got, vec![5, 6, 7]);
    let (st, _) = Sse::open(&s, "/v1/jobs/ghost/events", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

crate::on_both_engines!(
    sse_streams_snapshot_history_and_live_events_with_ids,
    sse_resumes_from_last_event_id,
);

crate::on_store_reads!(sse_resumes_from_last_event_id);
