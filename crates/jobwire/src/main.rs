//! The `jobwire` binary: command-line parsing only. `serve` runs the hub
//! (jobwire-server + jobwire-core); the other commands are HTTP/WebSocket clients of a
//! running server, for shell scripts, CI jobs and humans (`keys` manages worker API keys).

mod client;
mod demo;
mod keys;
mod publish;
mod serve;
mod store;
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "jobwire", version, about = "Real-time job-progress hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded durable store by default).
    Serve(Box<serve::ServeArgs>),
    /// Create a few demo jobs on a running server and drive them to the end.
    Demo(demo::DemoArgs),
    /// Watch one job live in the terminal; exits 0 on completed, 1 on failed, 2 on cancelled (more in --help).
    Watch(watch::WatchArgs),
    /// Create, get or list jobs.
    #[command(subcommand)]
    Job(publish::JobCommand),
    /// Set a job's status (queued or in_progress).
    Status(publish::StatusArgs),
    /// Report progress: `jobwire progress <job> 45 --stage render`.
    Progress(publish::ProgressArgs),
    /// Enter a step: `jobwire step <job> synthesis --label Synthesis`.
    Step(publish::StepArgs),
    /// Append a log line.
    Log(publish::LogArgs),
    /// Mark a job completed, with an optional JSON result.
    Complete(publish::CompleteArgs),
    /// Mark a job failed.
    Fail(publish::FailArgs),
    /// Cancel a job.
    Cancel(publish::CancelArgs),
    /// Publish raw event JSON (an object or an array); `-` reads standard input.
    Publish(publish::RawArgs),
    /// Manage worker API keys of your tenant (needs a `jobs:admin` token).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check or repair the embedded store (stop the server first).
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Print a shell completion script: `jobwire completions bash > /etc/bash_completion.d/jobwire`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jobwire: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve::run(*a).await.map(|()| ExitCode::SUCCESS),
            Command::Demo(a) => demo::run(a).await.map(|()| ExitCode::SUCCESS),
            Command::Watch(a) => watch::run(a).await,
            Command::Job(c) => publish::job(c).await.map(|()| ExitCode::SUCCESS),
            Command::Status(a) => publish::status(a).await.map(|()| ExitCode::SUCCESS),
            Command::Progress(a) => publish::progress(a).await.map(|()| ExitCode::SUCCESS),
            Command::Step(a) => publish::step(a).await.map(|()| ExitCode::SUCCESS),
            Command::Log(a) => publish::log(a).await.map(|()| ExitCode::SUCCESS),
            Command::Complete(a) => publish::complete(a).await.map(|()| ExitCode::SUCCESS),
            Command::Fail(a) => publish::fail(a).await.map(|()| ExitCode::SUCCESS),
            Command::Cancel(a) => publish::cancel(a).await.map(|()| ExitCode::SUCCESS),
            Command::Publish(a) => publish::raw(a).await.map(|()| ExitCode::SUCCESS),
            Command::Keys(c) => keys::run(c).await.map(|()| ExitCode::SUCCESS),
            Command::Store(c) => Ok(store::run(c)),
            Command::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut cmd, "jobwire", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jobwire: {e:#}");
            ExitCode::FAILURE
        }
    }
}
