//! WebSocket conformance: the Autobahn TestSuite's cases (run natively by `kosoku`,
//! installed into clients/python/.venv by `make deps`) against `/v1/ws` and
//! `/v1/jobs/{id}/ws`. jobwire is not an echo server, so the cases that expect their
//! message echoed back fail by design; what matters is that each case's outcome
//! (behavior / close behavior) stays what the committed `expected-*.json` says. A
//! change in either direction fails the test: look at the case's report, then
//! regenerate with `JOBWIRE_BLESS=1 cargo test -p jobwire --test tests autobahn`.
//! Cases 9 (performance), 12 and 13 (compression, which jobwire does not offer) are
//! left out.

use crate::support::Server;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn kosoku() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python/.venv/bin/kosoku");
    assert!(
        p.exists(),
        "{} is missing: run `make deps` (it installs the kosoku Autobahn runner)",
        p.display()
    );
    p
}

/// Runs the cases against `url`; returns case id -> "behavior/behaviorClose".
async fn run(url: &str) -> BTreeMap<String, String> {
    let out = tempfile::tempdir().expect("tempdir");
    let status = tokio::process::Command::new(kosoku())
        .arg(url)
        .args(["-x", "9.*", "-x", "12.*", "-x", "13.*", "-p", "4", "-o"])
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("run kosoku");
    // kosoku exits non-zero when any case failed; the reports say which.
    assert!(status.code().is_some(), "kosoku was killed: {status:?}");
    let mut results = BTreeMap::new();
    for entry in std::fs::read_dir(out.path()).expect("reports").flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(v) =
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap_or_default())
        else {
            continue;
        };
        if let (Some(id), Some(b), Some(c)) = (
            v["id"].as_str(),
            v["behavior"].as_str(),
            v["behaviorClose"].as_str(),
        ) {
            results.insert(id.to_owned(), format!("{b}/{c}"));
        }
    }
    assert!(results.len() > 200, "only {} case reports", results.len());
    results
}

fn check(name: &str, got: &BTreeMap<String, String>) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/autobahn/expected-{name}.json"));
    let text = serde_json::to_string_pretty(got).unwrap_or_default() + "\n";
    if std::env::var_os("JOBWIRE_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write expected results");
    }
    let want: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
            .unwrap_or_default();
    let changed: Vec<String> = want
        .keys()
        .chain(got.keys())
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| format!("{k}: expected {:?}, got {:?}", want.get(k), got.get(k)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        changed.is_empty(),
        "Autobahn outcomes on {name} changed ({} cases):\n{}\n(regenerate with JOBWIRE_BLESS=1 after reading the case reports)",
        changed.len(),
        changed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_cases_on_the_multiplexed_socket() {
    let s = Server::start().await;
    let got = run(&s.ws_url("/v1/ws")).await;
    check("v1-ws", &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_cases_on_the_single_job_socket() {
    let s = Server::start().await;
    s.create("autobahn").await;
    let got = run(&s.ws_url("/v1/jobs/autobahn/ws")).await;
    check("v1-job-ws", &got);
}
