//! The command-line client against the real binary.

use crate::support::{cli, Process};
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn publishing_commands_drive_a_job_and_watch_exits_by_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let server = p.base.as_str();
    let (code, id) = cli(&[
        "job",
        "create",
        "--id",
        "cli-1",
        "--project",
        "ci",
        "--quiet",
        "--server",
        server,
    ])
    .await;
    assert_eq!((code, id.trim()), (0, "cli-1"));
    // Watch from the start in the background; it must end with status 0 on completion.
    let watch = tokio::spawn({
        let server = server.to_owned();
        async move {
            cli(&[
                "watch", "cli-1", "--since", "0", "--json", "--server", &server,
            ])
            .await
        }
    });
    let steps: Vec<Vec<&str>> = vec![
        vec!["status", "cli-1", "queued"],
        vec!["step", "cli-1", "build", "--label", "Build"],
        vec![
            "progress",
            "cli-1",
            "45",
            "--stage",
            "render",
            "--message",
            "frame 900/2000",
        ],
        vec!["log", "cli-1", "hello", "from", "bash"],
        vec!["log", "cli-1", "retry-safe", "--event-id", "k1"],
        vec!["log", "cli-1", "retry-safe", "--event-id", "k1"],
        vec!["complete", "cli-1", "--result", r#"{"artifact":"a.bin"}"#],
    ];
    for args in steps {
        let mut full = args.clone();
        full.extend(["--server", server]);
        let (code, out) = cli(&full).await;
        assert_eq!(code, 0, "{args:?}: {out}");
    }
    let (code, out) = tokio::time::timeout(Duration::from_secs(20), watch)
        .await
        .expect("watch ends")
        .expect("join");
    assert_eq!(code, 0, "watch exits 0 on completed");
    let lines: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let seqs: Vec<u64> = lines
        .iter()
        .filter(|v| v["type"] != "snapshot")
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert_eq!(
        seqs,
        (1..=7).collect::<Vec<_>>(),
        "watch saw every event once (the retried k1 log is stored once): {out}"
    );

    let (code, out) = cli(&["job", "get", "cli-1", "--server", server]).await;
    assert_eq!(code, 0);
    let job: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(job["result"]["artifact"], "a.bin");
    assert_eq!(job["log_count"], 2);

    // Refusals reach the script as a non-zero exit with the error code.
    let out = tokio::process::Command::new(crate::support::bin())
        .args(["progress", "cli-1", "50", "--server", server])
        .output()
        .await
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("job_terminal"));

    // Failed and cancelled jobs make watch exit non-zero; unknown jobs exit 3.
    cli(&["job", "create", "--id", "cli-2", "--server", server]).await;
    cli(&["fail", "cli-2", "--error", "boom", "--server", server]).await;
    assert_eq!(cli(&["watch", "cli-2", "--server", server]).await.0, 1);
    cli(&["job", "create", "--id", "cli-3", "--server", server]).await;
    cli(&["cancel", "cli-3", "--server", server]).await;
    assert_eq!(cli(&["watch", "cli-3", "--server", server]).await.0, 2);
    assert_eq!(cli(&["watch", "nope", "--server", server]).await.0, 3);

    // `cancel` of a running job asks its worker; `--force` ends it.
    cli(&["job", "create", "--id", "cli-4", "--server", server]).await;
    cli(&["progress", "cli-4", "5", "--server", server]).await;
    let (code, out) = cli(&["cancel", "cli-4", "--reason", "stop", "--server", server]).await;
    assert_eq!(code, 0, "{out}");
    let reply: serde_json::Value = serde_json::from_str(out.trim()).expect("json reply");
    assert_eq!(
        (&reply["cancel_requested"], &reply["status"]),
        (&serde_json::json!(true), &serde_json::json!("in_progress"))
    );
    let (_, out) = cli(&["cancel", "cli-4", "--force", "--server", server]).await;
    assert!(out.contains("\"status\":\"cancelled\""), "{out}");
    assert_eq!(cli(&["watch", "cli-4", "--server", server]).await.0, 2);
}

#[tokio::test]
async fn watch_survives_a_server_restart_without_missing_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let server = p.base.clone();
    let listen = p.addr.to_string();
    cli(&["job", "create", "--id", "r", "--server", &server]).await;
    let watch = tokio::spawn({
        let server = server.clone();
        async move { cli(&["watch", "r", "--since", "0", "--json", "--server", &server]).await }
    });
    cli(&["progress", "r", "10", "--server", &server]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.kill9();
    // While the server is down the watcher keeps retrying; bring it back on the same port.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _p2 = Process::start(dir.path(), &listen, &[]);
    cli(&["log", "r", "after restart", "--server", &server]).await;
    cli(&["progress", "r", "90", "--server", &server]).await;
    cli(&["complete", "r", "--server", &server]).await;
    let (code, out) = tokio::time::timeout(Duration::from_secs(30), watch)
        .await
        .expect("watch ends")
        .expect("join");
    assert_eq!(code, 0, "{out}");
    let seqs: Vec<u64> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] != "snapshot")
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5], "{out}");
}

#[tokio::test]
async fn demo_drives_three_jobs_to_their_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let (code, out) = cli(&["demo", "--delay-ms", "0", "--server", &p.base]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("jobwire watch demo-render-"), "{out}");
    let (_, list) = cli(&["job", "list", "--server", &p.base]).await;
    let v: Value = serde_json::from_str(&list).expect("json");
    let mut statuses: Vec<(String, String)> = v["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            (
                j["project"].as_str().unwrap_or("").to_owned(),
                j["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            ("ai".into(), "completed".into()),
            ("hardware".into(), "failed".into()),
            ("video".into(), "completed".into())
        ]
    );
}

/// Runs the CLI and returns (exit code, stdout, stderr).
async fn cli_all(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(crate::support::bin())
        .args(args)
        .output()
        .await
        .expect("run jobwire");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn watch_says_what_went_wrong_once_and_plainly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    // `host:port` is a server URL too.
    let hostport = p.addr.to_string();
    let (code, id) = cli(&[
        "job", "create", "--id", "hp-1", "--quiet", "--server", &hostport,
    ])
    .await;
    assert_eq!((code, id.trim()), (0, "hp-1"));
    // An invalid id is said to be one, not a route error.
    let (code, out, err) = cli_all(&["watch", "a/b", "--server", &hostport]).await;
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("invalid job id"), "{err}");
    // An unknown job: exit 3, said once (stderr), nothing on stdout.
    let (code, out, err) = cli_all(&["watch", "nope", "--server", &hostport]).await;
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(err.matches("not found").count(), 1, "{err}");
    assert!(!out.contains("not found"), "{out}");
    // Nothing listening: give up after the bound, plain text when not a terminal.
    let (code, _, err) = cli_all(&[
        "watch",
        "x",
        "--server",
        "127.0.0.1:9",
        "--give-up-after",
        "1s",
    ])
    .await;
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("cannot reach") && err.contains("--forever"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no escape sequences when stderr is not a terminal: {err:?}"
    );
    // The exit codes are in --help.
    let (_, help, _) = cli_all(&["watch", "--help"]).await;
    assert!(
        help.contains("3 no such job") && help.contains("5 the server could not be reached"),
        "{help}"
    );
}

#[tokio::test]
async fn publishing_commands_retry_429_with_one_event_id_and_list_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(
        dir.path(),
        "127.0.0.1:0",
        &["--publish-rate", "2", "--publish-burst", "1"],
    );
    let server = p.base.as_str();
    let (code, _) = cli(&[
        "job", "create", "--id", "rl-1", "--quiet", "--server", server,
    ])
    .await;
    assert_eq!(code, 0);
    // The bucket is empty: each command is refused with 429, waits, and is stored once.
    for line in ["one", "two"] {
        let (code, out, err) = cli_all(&["log", "rl-1", line, "--server", server]).await;
        assert_eq!(code, 0, "{out}{err}");
    }
    let hist: Value = reqwest::get(format!("{server}/v1/jobs/rl-1/events?since=0"))
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let lines: Vec<&str> = hist["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["line"].as_str())
        .collect();
    assert_eq!(lines, ["one", "two"]);
    assert!(hist["events"][1]["event_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("cli-")));
    // `job list` pages with --limit and --after.
    let (_, page) = cli(&["job", "list", "--limit", "1", "--server", server]).await;
    let page: Value = serde_json::from_str(&page).expect("json");
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn completions_and_host_names_for_listen() {
    let (code, script) = cli(&["completions", "bash"]).await;
    assert_eq!(code, 0);
    assert!(
        script.contains("_jobwire") && script.contains("watch"),
        "{script}"
    );
    // `--listen localhost:0` is resolved, not refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Process::start(dir.path(), "localhost:0", &[]);
    assert!(p.addr.ip().is_loopback());
    let r = reqwest::get(format!("{}/healthz", p.base))
        .await
        .expect("healthz");
    assert!(r.status().is_success());
}
