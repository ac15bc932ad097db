//! The Redis bridge's side in the server: which channels the enabled dialects'
//! workers publish to, and how each message becomes jobwire events. a6hub's workers
//! publish the frame their WebSocket forwarded on `job:{id}:updates`; titan's publish
//! theirs on `job_progress:{job_id}`. Each message is decoded with that dialect's
//! decoder and published on the job (created when unknown), so it becomes durable,
//! numbered and replayable for every client, v1 and dialect alike. A message that
//! cannot be decoded or is refused is counted and logged (once a minute), never fatal.

use super::DialectName;
use jobwire_core::{Access, CreateJob, Hub, HubError};
use jobwire_proto::{ErrorCode, EventInput};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a refused message is logged (the rest are only counted).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The Redis channel patterns the enabled dialects' workers publish on.
pub fn patterns(enabled: &[DialectName]) -> Vec<String> {
    let mut out = Vec::new();
    if enabled.contains(&DialectName::A6hub) {
        out.push("job:*:updates".to_owned());
    }
    if enabled.contains(&DialectName::Titan) {
        out.push("job_progress:*".to_owned());
    }
    out
}

/// Publishes decoded messages through the hub, in `access`'s namespace.
pub struct Bridge {
    hub: Arc<Hub>,
    access: Access,
    last_warning: Mutex<Option<Instant>>,
}

impl Bridge {
    pub fn new(hub: Arc<Hub>, access: Access) -> Bridge {
        Bridge {
            hub,
            access,
            last_warning: Mutex::new(None),
        }
    }

    /// Handles one message of `channel`.
    pub async fn handle(&self, channel: &str, payload: &[u8]) {
        let result = match decode(channel, payload) {
            Ok((job, events)) => self.publish(&job, events).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let metrics = self.hub.metrics();
        match result {
            Ok(()) => metrics.ingested.inc(),
            Err(reason) => {
                metrics.ingest_rejected.inc();
                let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    *last = Some(Instant::now());
                    tracing::warn!(channel, %reason, "Redis bridge refused a message (counted in jobwire_ingest_rejected_total; logged once a minute)");
                }
            }
        }
    }

    /// Publishes `events` on `job`, creating it first when unknown; a terminal event
    /// on a job that never started gets the `in_progress` it implies first.
    async fn publish(&self, job: &str, events: Vec<EventInput>) -> Result<(), HubError> {
        match self.hub.publish(&self.access, job, events.clone()).await {
            Ok(_) => Ok(()),
            Err(HubError::NotFound) => {
                let create = CreateJob {
                    id: Some(job.to_owned()),
                    project: None,
                    metadata: Map::new(),
                    created_by: None,
                    options: Default::default(),
                    parent: None,
                    weight: None,
                };
                self.hub.create_job(&self.access, create).await?;
                self.publish_started(job, events).await
            }
            Err(e) if e.code() == ErrorCode::InvalidTransition => {
                self.publish_started(job, events).await
            }
            Err(e) => Err(e),
        }
    }

    async fn publish_started(&self, job: &str, events: Vec<EventInput>) -> Result<(), HubError> {
        match self.hub.publish(&self.access, job, events.clone()).await {
            Err(e) if e.code() == ErrorCode::InvalidTransition => {
                let mut with_start =
                    vec![input(json!({"type": "status", "status": "in_progress"}))?];
                with_start.extend(events);
                self.hub
                    .publish(&self.access, job, with_start)
                    .await
                    .map(drop)
            }
            other => other.map(drop),
        }
    }
}

fn input(v: Value) -> Result<EventInput, HubError> {
    EventInput::from_value(v).map_err(HubError::from)
}

/// The job id and v1 events of one message.
pub fn decode(channel: &str, payload: &[u8]) -> Result<(String, Vec<EventInput>), String> {
    let msg: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    let (job, events) = if let Some(id) = channel
        .strip_prefix("job:")
        .and_then(|r| r.strip_suffix(":updates"))
    {
        (id.to_owned(), a6hub(&msg)?)
    } else if let Some(id) = channel.strip_prefix("job_progress:") {
        (id.to_owned(), titan(&msg)?)
    } else {
        return Err(format!("no dialect publishes on {channel}"));
    };
    let events = events
        .into_iter()
        .map(|v| EventInput::from_value(v).map_err(|e| e.message.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((job, events))
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// a6hub's `{"type","data","timestamp"}` frames.
fn a6hub(msg: &Value) -> Result<Vec<Value>, String> {
    let data = msg.get("data").cloned().unwrap_or(Value::Null);
    let kind = msg.get("type").and_then(Value::as_str).ok_or("no `type`")?;
    Ok(match kind {
        "status" => {
            let s = text(&data, "status").ok_or("status without `data.status`")?;
            vec![a6hub_status(&s, None)]
        }
        "progress" => {
            let p = data
                .get("progress")
                .and_then(Value::as_f64)
                .ok_or("progress without a number")?;
            let mut ev = json!({"type": "progress", "progress": p.clamp(0.0, 100.0)});
            if let Some(step) = text(&data, "current_step") {
                ev["stage"] = Value::String(step);
            }
            vec![ev]
        }
        "log" => vec![
            json!({"type": "log", "line": text(&data, "log_line").ok_or("log without `log_line`")?}),
        ],
        "step" => {
            let name = text(&data, "step_name").ok_or("step without `step_name`")?;
            let mut ev = json!({"type": "step", "step": name});
            if let Some(label) = text(&data, "step_label") {
                ev["label"] = Value::String(label);
            }
            vec![ev]
        }
        "complete" => {
            let s = text(&data, "status").unwrap_or_else(|| "completed".into());
            vec![a6hub_status(&s, text(&data, "message"))]
        }
        "error" => vec![
            json!({"type": "failed", "error": text(&data, "error_message").unwrap_or_else(|| "failed".into())}),
        ],
        other => return Err(format!("unknown a6hub message type `{other}`")),
    })
}

/// An a6hub status word as an event (terminal words are terminal events).
fn a6hub_status(word: &str, message: Option<String>) -> Value {
    let mut ev = match word {
        "running" | "in_progress" => json!({"type": "status", "status": "in_progress"}),
        "completed" | "success" => json!({"type": "completed"}),
        "failed" | "error" => {
            json!({"type": "failed", "error": message.clone().unwrap_or_else(|| "failed".into())})
        }
        "cancelled" | "canceled" => json!({"type": "cancelled"}),
        other => json!({"type": "status", "status": other}),
    };
    if let (Some(m), Some(obj)) = (message, ev.as_object_mut()) {
        if obj.get("type").and_then(Value::as_str) != Some("cancelled") {
            obj.insert("message".into(), Value::String(m));
        }
    }
    ev
}

/// titan's `{"job_id","status","stage","progress" (0–1),"message",…}` messages.
fn titan(msg: &Value) -> Result<Vec<Value>, String> {
    let status = msg
        .get("status")
        .and_then(Value::as_str)
        .ok_or("no `status`")?;
    let message = text(msg, "message");
    Ok(match status {
        "processing" => {
            let p = msg.get("progress").and_then(Value::as_f64).unwrap_or(0.0);
            let mut ev = json!({"type": "progress", "progress": (p * 100.0).clamp(0.0, 100.0)});
            if let Some(stage) = text(msg, "stage") {
                ev["stage"] = Value::String(stage);
            }
            if let Some(m) = message {
                ev["message"] = Value::String(m);
            }
            if let Some(Value::Object(meta)) = msg.get("metadata") {
                ev["metadata"] = Value::Object(meta.clone());
            }
            vec![ev]
        }
        "completed" => {
            let mut ev = json!({"type": "completed"});
            if let Some(r) = msg.get("result").filter(|r| !r.is_null()) {
                ev["result"] = r.clone();
            }
            if let Some(m) = message {
                ev["message"] = Value::String(m);
            }
            vec![ev]
        }
        "failed" => {
            let error = text(msg, "error").unwrap_or_else(|| "failed".into());
            vec![json!({"type": "failed", "error": error})]
        }
        other => return Err(format!("unknown titan status `{other}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_systems_messages() {
        let (job, ev) = decode(
            "job:123:updates",
            br#"{"type":"progress","data":{"progress":45,"current_step":"synthesis","completed_steps":["a"]},"timestamp":"t"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((job.as_str(), ev.len()), ("123", 1));
        let (job, ev) = decode(
            "job_progress:job_1",
            br#"{"job_id":"job_1","status":"processing","stage":"rendering","progress":0.5,"message":"m","metadata":{"f":1}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((job.as_str(), ev.len()), ("job_1", 1));
        assert!(decode("job:1:updates", b"{nope").is_err());
        assert!(decode("job:1:updates", br#"{"type":"weird","data":{}}"#).is_err());
        assert!(decode("other", br#"{}"#).is_err());
        assert!(decode("job_progress:x", br#"{"status":"processing","progress":7}"#).is_ok());
    }
}
