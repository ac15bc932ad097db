//! Publishing commands for shell scripts and CI: `job create|get|list`, `status`,
//! `progress`, `step`, `log`, `complete`, `fail`, `cancel`, `publish`. Each prints the
//! server's JSON reply (or the new job id for `job create --quiet`).

use crate::client::{Client, ServerArg};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::io::Read;

#[derive(Subcommand)]
pub(crate) enum JobCommand {
    /// Create a job; prints it (or only its id with --quiet).
    Create {
        /// Job id (1-128 of [A-Za-z0-9._:-]); generated when absent.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        project: Option<String>,
        /// Metadata as a JSON object.
        #[arg(long)]
        metadata: Option<String>,
        /// Print only the job id.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Print a job's snapshot.
    Get {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List jobs (one page, in id order; `next` in the reply is the next page's --after).
    List {
        /// Only jobs in this status (pending, queued, in_progress, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only jobs of this project.
        #[arg(long)]
        project: Option<String>,
        /// Jobs per page (the server's default and maximum apply).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this job id (the previous page's `next`).
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// Options every event command shares.
#[derive(Args)]
pub(crate) struct Common {
    /// Idempotency key: a retry with the same key is stored once.
    #[arg(long)]
    event_id: Option<String>,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    job: String,
    /// queued or in_progress
    status: String,
    #[arg(long)]
    message: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub(crate) struct ProgressArgs {
    job: String,
    /// Percent, 0-100.
    percent: f64,
    #[arg(long)]
    stage: Option<String>,
    #[arg(long)]
    message: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub(crate) struct StepArgs {
    job: String,
    step: String,
    #[arg(long)]
    label: Option<String>,
    #[arg(long)]
    message: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub(crate) struct LogArgs {
    job: String,
    /// The line (several words are joined with spaces).
    #[arg(required = true)]
    line: Vec<String>,
    #[arg(long)]
    level: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub(crate) struct CompleteArgs {
    job: String,
    /// Result as JSON.
    #[arg(long)]
    result: Option<String>,
    #[arg(long)]
    message: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub(crate) struct FailArgs {
    job: String,
    #[arg(long)]
    error: String,
    #[arg(long)]
    message: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub(crate) struct CancelArgs {
    job: String,
    #[arg(long)]
    reason: Option<String>,
    /// End the job now instead of asking its worker to stop (a running job otherwise
    /// gets `cancel_requested` and ends when the worker confirms).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub(crate) struct RawArgs {
    job: String,
    /// Event JSON (object or array), or `-` for standard input.
    json: String,
    #[command(flatten)]
    server: ServerArg,
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON"))
}

/// Builds `{"type": ty, fields…}` leaving out absent options, adds the event id,
/// publishes, and prints the reply.
async fn send(
    job: &str,
    ty: &str,
    fields: Vec<(&str, Option<Value>)>,
    common: &Common,
) -> anyhow::Result<()> {
    let mut ev = Map::new();
    ev.insert("type".into(), Value::String(ty.into()));
    for (k, v) in fields {
        if let Some(v) = v {
            ev.insert(k.into(), v);
        }
    }
    if let Some(id) = &common.event_id {
        ev.insert("event_id".into(), Value::String(id.clone()));
    }
    let seqs = Client::new(&common.server)
        .publish(job, &Value::Object(ev))
        .await?;
    println!("{}", json!({"job_id": job, "seqs": seqs}));
    Ok(())
}

fn s(v: &Option<String>) -> Option<Value> {
    v.clone().map(Value::String)
}

pub(crate) async fn job(cmd: JobCommand) -> anyhow::Result<()> {
    match cmd {
        JobCommand::Create {
            id,
            project,
            metadata,
            quiet,
            server,
        } => {
            let mut body = json!({});
            if let Some(id) = id {
                body["id"] = json!(id);
            }
            if let Some(p) = project {
                body["project"] = json!(p);
            }
            if let Some(m) = metadata {
                body["metadata"] = parse_json("--metadata", &m)?;
            }
            let v = Client::new(&server).post("/v1/jobs", &body).await?;
            if quiet {
                println!("{}", v["job"]["id"].as_str().unwrap_or_default());
            } else {
                println!("{v:#}");
            }
        }
        JobCommand::Get { id, server } => {
            println!(
                "{:#}",
                Client::new(&server).get(&format!("/v1/jobs/{id}")).await?
            );
        }
        JobCommand::List {
            status,
            project,
            limit,
            after,
            server,
        } => {
            let mut q = Vec::new();
            if let Some(s) = status {
                q.push(format!("status={s}"));
            }
            if let Some(p) = project {
                q.push(format!("project={p}"));
            }
            if let Some(l) = limit {
                q.push(format!("limit={l}"));
            }
            if let Some(a) = after {
                q.push(format!("after={a}"));
            }
            let path = format!("/v1/jobs?{}", q.join("&"));
            println!("{:#}", Client::new(&server).get(&path).await?);
        }
    }
    Ok(())
}

pub(crate) async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let f = vec![
        ("status", Some(json!(a.status))),
        ("message", s(&a.message)),
    ];
    send(&a.job, "status", f, &a.common).await
}

pub(crate) async fn progress(a: ProgressArgs) -> anyhow::Result<()> {
    let f = vec![
        ("progress", Some(json!(a.percent))),
        ("stage", s(&a.stage)),
        ("message", s(&a.message)),
    ];
    send(&a.job, "progress", f, &a.common).await
}

pub(crate) async fn step(a: StepArgs) -> anyhow::Result<()> {
    let f = vec![
        ("step", Some(json!(a.step))),
        ("label", s(&a.label)),
        ("message", s(&a.message)),
    ];
    send(&a.job, "step", f, &a.common).await
}

pub(crate) async fn log(a: LogArgs) -> anyhow::Result<()> {
    let f = vec![
        ("line", Some(json!(a.line.join(" ")))),
        ("level", s(&a.level)),
    ];
    send(&a.job, "log", f, &a.common).await
}

pub(crate) async fn complete(a: CompleteArgs) -> anyhow::Result<()> {
    let result = match &a.result {
        Some(r) => Some(parse_json("--result", r)?),
        None => None,
    };
    let f = vec![("result", result), ("message", s(&a.message))];
    send(&a.job, "completed", f, &a.common).await
}

pub(crate) async fn fail(a: FailArgs) -> anyhow::Result<()> {
    let f = vec![("error", Some(json!(a.error))), ("message", s(&a.message))];
    send(&a.job, "failed", f, &a.common).await
}

/// `POST /v1/jobs/{id}/cancel`: prints the reply (`cancel_requested`, `status`).
pub(crate) async fn cancel(a: CancelArgs) -> anyhow::Result<()> {
    jobwire_proto::JobId::validate(&a.job).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut body = Map::new();
    if let Some(r) = &a.reason {
        body.insert("reason".into(), json!(r));
    }
    if let Some(e) = &a.common.event_id {
        body.insert("event_id".into(), json!(e));
    }
    if a.force {
        body.insert("force".into(), json!(true));
    }
    let reply = Client::new(&a.common.server)
        .post(&format!("/v1/jobs/{}/cancel", a.job), &Value::Object(body))
        .await?;
    println!("{reply}");
    Ok(())
}

pub(crate) async fn raw(a: RawArgs) -> anyhow::Result<()> {
    let text = if a.json == "-" {
        let mut buf = String::new();
        std::io::stdin().read_to_string(&mut buf)?;
        buf
    } else {
        a.json
    };
    let events = parse_json("the event", &text)?;
    let seqs = Client::new(&a.server).publish(&a.job, &events).await?;
    println!("{}", json!({"job_id": a.job, "seqs": seqs}));
    Ok(())
}
