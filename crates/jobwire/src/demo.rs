//! `jobwire demo`: creates three jobs on a running server and drives them through
//! steps, progress, logs, a custom event and a failure, printing how to watch them.

use crate::client::{Client, ServerArg};
use clap::Args;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Pause between updates, in milliseconds.
    #[arg(long, default_value_t = 400)]
    delay_ms: u64,
    #[command(flatten)]
    server: ServerArg,
}

struct Plan {
    name: &'static str,
    project: &'static str,
    steps: &'static [(&'static str, &'static str)],
    /// Fail during this step (index), if any.
    fail_at: Option<usize>,
}

const PLANS: [Plan; 3] = [
    Plan {
        name: "render",
        project: "video",
        steps: &[
            ("decode", "Decode"),
            ("render", "Render frames"),
            ("encode", "Encode"),
        ],
        fail_at: None,
    },
    Plan {
        name: "build",
        project: "hardware",
        steps: &[
            ("synthesis", "Synthesis"),
            ("place", "Place & route"),
            ("bitstream", "Bitstream"),
        ],
        fail_at: Some(1),
    },
    Plan {
        name: "docs",
        project: "ai",
        steps: &[("ocr", "OCR"), ("embed", "Embeddings"), ("index", "Index")],
        fail_at: None,
    },
];

async fn drive(client: &Client, id: &str, plan: &Plan, delay: Duration) -> anyhow::Result<()> {
    client
        .publish(id, &json!({"type": "status", "status": "queued"}))
        .await?;
    tokio::time::sleep(delay).await;
    let n = plan.steps.len() as f64;
    for (i, (step, label)) in plan.steps.iter().enumerate() {
        client
            .publish(id, &json!({"type": "step", "step": step, "label": label}))
            .await?;
        for k in 1..=4 {
            let pct = ((i as f64 + k as f64 / 4.0) / n * 100.0).min(99.0);
            let batch = json!([
                {"type": "progress", "progress": (pct * 10.0).round() / 10.0, "stage": step, "message": format!("{label}: part {k}/4")},
                {"type": "log", "line": format!("[{step}] finished part {k} of 4")}
            ]);
            client.publish(id, &batch).await?;
            if plan.fail_at == Some(i) && k == 2 {
                client
                    .publish(id, &json!({"type": "failed", "error": format!("{label} ran out of resources")}))
                    .await?;
                return Ok(());
            }
            tokio::time::sleep(delay).await;
        }
        if plan.name == "docs" && *step == "embed" {
            client
                .publish(id, &json!({"type": "custom", "name": "rc_analysis_progress", "data": {"chunks": 128}}))
                .await?;
        }
    }
    client
        .publish(
            id,
            &json!({"type": "completed", "result": {"artifact": format!("{}.out", plan.name)}}),
        )
        .await?;
    Ok(())
}

pub(crate) async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let client = Client::new(&a.server);
    let stamp = jobwire_proto::Timestamp::now().as_millis();
    let mut jobs = Vec::new();
    for plan in &PLANS {
        let id = format!("demo-{}-{stamp}", plan.name);
        let v: Value = client
            .post(
                "/v1/jobs",
                &json!({"id": id, "project": plan.project, "metadata": {"demo": true}}),
            )
            .await?;
        println!("created {id}");
        println!("  watch:    jobwire watch {id} --server {}", client.base());
        println!(
            "  ws:       {}",
            v["urls"]["ws"].as_str().unwrap_or_default()
        );
        println!(
            "  sse:      curl -N -H 'Accept: text/event-stream' {}",
            v["urls"]["sse"].as_str().unwrap_or_default()
        );
        jobs.push(id);
    }
    let delay = Duration::from_millis(a.delay_ms);
    let runs = jobs
        .iter()
        .zip(PLANS.iter())
        .map(|(id, plan)| drive(&client, id, plan, delay));
    for r in futures_util::future::join_all(runs).await {
        r?;
    }
    for id in &jobs {
        let job = client.get(&format!("/v1/jobs/{id}")).await?;
        println!("{id}: {}", job["status"].as_str().unwrap_or_default());
    }
    Ok(())
}
