//! `jobwire store check|repair`: the embedded store's startup damage check as an
//! operator tool, and the salvage of a damaged store into a fresh one.

use clap::{Args, Subcommand};
use jobwire_core::engine::embedded::check::{self, Health};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code: the store could not be checked (in use by a running server, unreadable).
const CANNOT_CHECK: u8 = 3;

#[derive(Subcommand)]
pub(crate) enum StoreCommand {
    /// Check the store the way `serve` does at startup (redb's page-by-page integrity
    /// check). Stop the server first: a running server holds the file.
    #[command(after_help = "Exit codes: 0 sound (or no store yet), 1 damaged, \
                            3 could not check (in use by a running server, unreadable).")]
    Check(StoreArgs),
    /// Move a damaged store aside (as jobwire.redb.damaged-<time>) and copy what can
    /// be read into a fresh one; prints how many jobs and events it kept. A sound store
    /// is left alone.
    #[command(after_help = "Exit codes: 0 repaired (or nothing to repair), \
                            3 could not repair (in use by a running server, unreadable).")]
    Repair(StoreArgs),
}

#[derive(Args)]
pub(crate) struct StoreArgs {
    /// Directory of the embedded store (as given to `serve`).
    #[arg(long, env = "JOBWIRE_DATA_DIR", default_value = "./jobwire-data")]
    data_dir: PathBuf,
}

pub(crate) fn run(c: StoreCommand) -> ExitCode {
    match c {
        StoreCommand::Check(a) => match check::check(&a.data_dir) {
            Ok(Health::Missing) => {
                println!(
                    "no store in {} (serve creates a fresh one)",
                    a.data_dir.display()
                );
                ExitCode::SUCCESS
            }
            Ok(Health::Sound { jobs, events }) => {
                println!("OK: {} jobs, {events} events", jobs);
                ExitCode::SUCCESS
            }
            Ok(Health::Damaged(m)) => {
                println!("DAMAGED: {m}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!(
                    "jobwire: cannot check the store in {}: {e}",
                    a.data_dir.display()
                );
                ExitCode::from(CANNOT_CHECK)
            }
        },
        StoreCommand::Repair(a) => match check::repair(&a.data_dir) {
            Ok(r) => {
                match &r.damaged_copy {
                    None => println!(
                        "nothing to repair: the store in {} is sound or absent",
                        a.data_dir.display()
                    ),
                    Some(aside) => {
                        println!(
                            "repaired: kept {} jobs, {} events, {} API keys in a fresh store; \
                             the damaged file is at {}",
                            r.jobs,
                            r.events,
                            r.keys,
                            aside.display()
                        );
                        if r.jobs_without_events > 0 {
                            println!(
                                "{} jobs kept their snapshot but no events (clients get history_truncated)",
                                r.jobs_without_events
                            );
                        }
                        if let Some(journal) = &r.journal_copy {
                            println!(
                                "the journal (the writes since the damaged store's last checkpoint, \
                                 at most a few hundred milliseconds of them) was not replayed; \
                                 it is kept at {}",
                                journal.display()
                            );
                        }
                        if let Some(why) = &r.unreadable {
                            println!("nothing could be read from the damaged file ({why}); restore it from a backup if you have one");
                        }
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "jobwire: cannot repair the store in {}: {e}",
                    a.data_dir.display()
                );
                ExitCode::from(CANNOT_CHECK)
            }
        },
    }
}
