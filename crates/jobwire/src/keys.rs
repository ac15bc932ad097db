//! `jobwire keys create|list|revoke`: manage a tenant's worker API keys through a
//! running server (`/v1/keys`), with a `jobs:admin` token in `--token` /
//! `JOBWIRE_TOKEN`. Each prints the server's JSON reply; `create --quiet` prints only
//! the new key, which the server shows this once.

use crate::client::{Client, ServerArg};
use clap::Subcommand;
use serde_json::{json, Map, Value};

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key; the secret is printed once and cannot be shown again.
    Create {
        /// A scope to grant (repeatable): jobs:publish (default), jobs:watch, jobs:admin.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Limit the key to this project (repeatable).
        #[arg(long = "project")]
        projects: Vec<String>,
        /// A note for humans, e.g. where the key is deployed.
        #[arg(long)]
        label: Option<String>,
        /// Print only the key (for `export JOBWIRE_TOKEN=$(jobwire keys create -q)`).
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List the tenant's keys (never their secrets).
    List {
        #[command(flatten)]
        server: ServerArg,
    },
    /// Revoke a key by id; it is refused from then on.
    Revoke {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

pub(crate) async fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            scopes,
            projects,
            label,
            quiet,
            server,
        } => {
            let mut body = Map::new();
            if !scopes.is_empty() {
                body.insert("scopes".into(), json!(scopes));
            }
            if !projects.is_empty() {
                body.insert("projects".into(), json!(projects));
            }
            if let Some(l) = label {
                body.insert("label".into(), json!(l));
            }
            let v = Client::new(&server)
                .post("/v1/keys", &Value::Object(body))
                .await?;
            if quiet {
                println!("{}", v["secret"].as_str().unwrap_or_default());
            } else {
                println!("{v:#}");
                eprintln!("jobwire: store the secret now; the server does not show it again");
            }
        }
        KeysCommand::List { server } => {
            println!("{:#}", Client::new(&server).get("/v1/keys").await?);
        }
        KeysCommand::Revoke { id, server } => {
            let path = format!("/v1/keys/{id}");
            println!("{:#}", Client::new(&server).delete(&path).await?);
        }
    }
    Ok(())
}
