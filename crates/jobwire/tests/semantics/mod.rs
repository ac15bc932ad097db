//! Job semantics beyond the event log (both engines): worker liveness (`stalled`,
//! `recovered`, `worker_lost`), cancel routed to the worker (`cancel_requested`, the
//! control stream, the publish reply, `cancel_timeout`, the `jobs:cancel` scope),
//! server-computed `rate`/`eta_seconds`, the bad inputs of each; deadlines that
//! survive a `kill -9` of the binary, and exactly one `stalled` per stall across two
//! instances on one Redis. Real time, short timeouts (the scanner runs every 200 ms).

use crate::support::{
    code, hs256, unix_now, AuthSpec, Engine, Options, Process, RedisServer, Server, Ws,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Reads a socket's frames until an event of type `ty`; panics after `within`.
async fn until_event(ws: &mut Ws, ty: &str, within: Duration) -> Value {
    tokio::time::timeout(within, async {
        loop {
            let v = ws.json().await;
            if v["type"] == ty {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `{ty}` event within {within:?}"))
}

async fn events(s: &Server, id: &str) -> Vec<Value> {
    let (st, v) = s.get(&format!("/v1/jobs/{id}/events")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["events"].as_array().cloned().unwrap_or_default()
}

fn count(events: &[Value], ty: &str) -> usize {
    events.iter().filter(|e| e["type"] == ty).count()
}

async fn start(s: &Server, id: &str, opts: Value) {
    let mut body = json!({"id": id});
    if let (Some(b), Some(o)) = (body.as_object_mut(), opts.as_object()) {
        b.extend(o.clone());
    }
    let (st, v) = s.post("/v1/jobs", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    s.publish(id, json!({"type": "progress", "progress": 10}))
        .await;
}

async fn a_silent_worker_is_stalled_within_its_timeout_and_recovers_on_a_heartbeat(engine: Engine) {
    let s = Server::start_on(engine).await;
    start(&s, "w", json!({"heartbeat_timeout": 0.6})).await;
    let mut ws = s.ws("/v1/jobs/w/ws").await;
    let began = Instant::now();
    let stalled = until_event(&mut ws, "stalled", Duration::from_secs(3)).await;
    assert!(
        began.elapsed() < Duration::from_millis(1500),
        "stalled late"
    );
    assert_eq!(stalled["heartbeat_timeout"], 0.6);
    assert_eq!(stalled["status"], "in_progress", "stalled is not terminal");
    let (_, snap) = s.get("/v1/jobs/w").await;
    assert!(snap["stalled_since"].is_string(), "{snap}");

    // A heartbeat ends the stall and is not stored as an event itself.
    let (st, hb) = s.post("/v1/jobs/w/heartbeat", Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{hb}");
    assert_eq!(hb["cancel_requested"], false);
    let rec = until_event(&mut ws, "recovered", Duration::from_secs(2)).await;
    assert!(
        rec["stalled_for"].as_f64().is_some_and(|t| t > 0.0),
        "{rec}"
    );
    let (_, snap) = s.get("/v1/jobs/w").await;
    assert!(snap.get("stalled_since").is_none(), "{snap}");
    for _ in 0..3 {
        let (st, _) = s.post("/v1/jobs/w/heartbeat", Value::Null).await;
        assert_eq!(st, StatusCode::OK);
    }
    let evs = events(&s, "w").await;
    assert_eq!((count(&evs, "stalled"), count(&evs, "recovered")), (1, 1));
    assert_eq!(
        evs.len(),
        4,
        "created, progress, stalled, recovered: {evs:?}"
    );

    // Heartbeats keep it alive; then silence stalls it again, and a publish (not
    // just a heartbeat) recovers it, atomically in front of the published event.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.post("/v1/jobs/w/heartbeat", Value::Null).await;
    }
    assert_eq!(
        count(&events(&s, "w").await, "stalled"),
        1,
        "heartbeats keep it alive"
    );
    until_event(&mut ws, "stalled", Duration::from_secs(3)).await;
    let seqs = s.publish("w", json!({"type": "log", "line": "back"})).await;
    let evs = events(&s, "w").await;
    let last: Vec<&str> = evs[evs.len() - 2..]
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(last, ["recovered", "log"]);
    assert_eq!(
        seqs,
        vec![evs.len() as u64],
        "the reply's seq is the log line's"
    );

    // A heartbeat with a checkpoint keeps it in the snapshot.
    let (st, _) = s
        .post(
            "/v1/jobs/w/heartbeat",
            json!({"progress": 40, "checkpoint": {"frame": 812}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, snap) = s.get("/v1/jobs/w").await;
    assert_eq!(
        (snap["progress"].as_f64(), &snap["checkpoint"]["frame"]),
        (Some(40.0), &json!(812))
    );
}

async fn a_job_stalled_past_stall_fail_after_fails_with_worker_lost(engine: Engine) {
    let s = Server::start_on(engine).await;
    start(
        &s,
        "lost",
        json!({"heartbeat_timeout": 0.4, "stall_fail_after": 0.6}),
    )
    .await;
    let mut ws = s.ws("/v1/jobs/lost/ws").await;
    until_event(&mut ws, "stalled", Duration::from_secs(3)).await;
    let failed = until_event(&mut ws, "failed", Duration::from_secs(3)).await;
    assert_eq!(failed["error"], "worker_lost");
    let (st, v) = s.post("/v1/jobs/lost/heartbeat", Value::Null).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "job_terminal"));
    assert_eq!(count(&events(&s, "lost").await, "failed"), 1);
}

async fn a_child_lost_by_the_scanner_moves_its_parent(engine: Engine) {
    let s = Server::start_on(engine).await;
    let (st, _) = s
        .post(
            "/v1/jobs",
            json!({"id": "book", "complete_when": "all_children", "on_child_failure": "continue"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s
        .post(
            "/v1/jobs",
            json!({"id": "chapter", "parent": "book", "heartbeat_timeout": 0.4, "stall_fail_after": 0.6}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    s.publish("chapter", json!({"type": "progress", "progress": 30}))
        .await;
    let mut ws = s.ws("/v1/jobs/book/ws").await;
    // The stall reaches the parent...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (_, book) = s.get("/v1/jobs/book").await;
        if book["child_jobs"]["chapter"]["stalled"] == true {
            assert_eq!(book["children"]["stalled"], 1, "{book}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stall at the parent: {book}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and so does the loss: the parent's only child ended, so it completes.
    let done = until_event(&mut ws, "completed", Duration::from_secs(3)).await;
    assert_eq!(done["result"]["children"]["failed"], 1, "{done}");
}

/// Reads a control stream's `data:` lines until one has type `ty`.
async fn control_until(resp: &mut reqwest::Response, buf: &mut String, ty: &str) -> Value {
    let want = format!("\"type\":\"{ty}\"");
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(line) = buf
                .lines()
                .find(|l| l.starts_with("data: ") && l.contains(&want))
            {
                let v: Value = serde_json::from_str(&line["data: ".len()..]).expect("json");
                let rest = buf
                    .split_once(line)
                    .map(|(_, r)| r.to_owned())
                    .unwrap_or_default();
                *buf = rest;
                return v;
            }
            match resp.chunk().await.expect("chunk") {
                Some(b) => buf.push_str(std::str::from_utf8(&b).expect("utf8")),
                None => panic!("control stream ended before `{ty}`: {buf}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `{ty}` on the control stream: {buf}"))
}

async fn a_cancel_reaches_the_worker_within_a_second_and_ends_when_it_confirms(engine: Engine) {
    let s = Server::start_on(engine).await;
    start(&s, "c", json!({})).await;
    let mut control = s
        .http
        .get(s.url("/v1/jobs/c/control"))
        .send()
        .await
        .expect("control");
    assert_eq!(control.status(), StatusCode::OK);
    let mut buf = String::new();
    let state = control_until(&mut control, &mut buf, "state").await;
    assert_eq!(
        (&state["status"], &state["cancel_requested"]),
        (&json!("in_progress"), &json!(false))
    );

    let clicked = Instant::now();
    let (st, reply) = s
        .post("/v1/jobs/c/cancel", json!({"reason": "user clicked"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{reply}");
    assert_eq!(
        (&reply["cancel_requested"], &reply["status"]),
        (&json!(true), &json!("in_progress"))
    );
    let pushed = control_until(&mut control, &mut buf, "cancel_requested").await;
    assert!(
        clicked.elapsed() < Duration::from_secs(1),
        "the worker heard late"
    );
    assert_eq!(pushed["reason"], "user clicked");
    assert_eq!(pushed["seq"], reply["seqs"][0]);
    // Asking again answers the same event; the worker's next publish says so too.
    let (_, again) = s.post("/v1/jobs/c/cancel", Value::Null).await;
    assert_eq!(again["seqs"], reply["seqs"]);
    let (_, published) = s
        .post(
            "/v1/jobs/c/events",
            json!({"type": "log", "line": "stopping"}),
        )
        .await;
    assert_eq!(published["cancel_requested"], true);
    let (_, hb) = s.post("/v1/jobs/c/heartbeat", Value::Null).await;
    assert_eq!(hb["cancel_requested"], true);
    let (_, snap) = s.get("/v1/jobs/c").await;
    assert_eq!(
        (
            snap["status"].as_str(),
            snap["cancel_requested"]["reason"].as_str()
        ),
        (Some("in_progress"), Some("user clicked"))
    );

    // The worker confirms: the job ends and the control stream says so, then closes.
    s.publish(
        "c",
        json!({"type": "cancelled", "reason": "stopped cleanly"}),
    )
    .await;
    let end = control_until(&mut control, &mut buf, "end").await;
    assert_eq!(end["status"], "cancelled");
    assert_eq!(count(&events(&s, "c").await, "cancel_requested"), 1);
    let (st, v) = s.post("/v1/jobs/c/cancel", Value::Null).await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "job_terminal"));
    let (st, v) = s.get("/v1/jobs/c/control").await;
    assert_eq!((st, code(&v)), (StatusCode::CONFLICT, "job_terminal"));

    // A job no worker has started ends at once; `force` ends a running one.
    s.create("queued").await;
    let (_, v) = s.post("/v1/jobs/queued/cancel", Value::Null).await;
    assert_eq!(
        (&v["status"], &v["cancel_requested"]),
        (&json!("cancelled"), &json!(false))
    );
    start(&s, "forced", json!({})).await;
    let (_, v) = s
        .post("/v1/jobs/forced/cancel", json!({"force": true}))
        .await;
    assert_eq!(v["status"], "cancelled");
}

async fn an_unanswered_cancel_ends_the_job_after_cancel_timeout(engine: Engine) {
    let s = Server::start_on(engine).await;
    start(&s, "deaf", json!({"cancel_timeout": 0.5})).await;
    let mut ws = s.ws("/v1/jobs/deaf/ws").await;
    s.post("/v1/jobs/deaf/cancel", Value::Null).await;
    until_event(&mut ws, "cancel_requested", Duration::from_secs(2)).await;
    let ended = until_event(&mut ws, "cancelled", Duration::from_secs(3)).await;
    assert_eq!(ended["error"], "cancel_timeout");
}

async fn progress_events_carry_a_smoothed_rate_and_an_eta(engine: Engine) {
    let s = Server::start_on(engine).await;
    start(&s, "eta", json!({})).await;
    for p in [20, 30, 40] {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.publish("eta", json!({"type": "progress", "progress": p}))
            .await;
    }
    let evs = events(&s, "eta").await;
    let last = &evs[evs.len() - 1];
    let rate = last["rate"].as_f64().expect("rate");
    let eta = last["eta_seconds"].as_f64().expect("eta");
    // ~10 % per 0.2 s = ~50 %/s; 60 % left = ~1.2 s (loose: a loaded machine).
    assert!((10.0..=120.0).contains(&rate), "{last}");
    assert!((0.4..=7.0).contains(&eta), "{last}");
    assert!(evs[2]["rate"].is_null() || evs[2]["rate"].is_number());
    let (_, snap) = s.get("/v1/jobs/eta").await;
    assert_eq!(snap["eta_seconds"], last["eta_seconds"]);
    // Going backwards makes both unknown.
    s.publish("eta", json!({"type": "progress", "progress": 5}))
        .await;
    let (_, snap) = s.get("/v1/jobs/eta").await;
    assert!(
        snap.get("rate").is_none() && snap.get("eta_seconds").is_none(),
        "{snap}"
    );
}

async fn bad_liveness_input_gets_documented_codes_and_changes_nothing(engine: Engine) {
    let s = Server::start_on(engine).await;
    let (st, v) = s.post("/v1/jobs/nope/heartbeat", Value::Null).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "job_not_found"));
    let (st, v) = s.post("/v1/jobs/nope/cancel", Value::Null).await;
    assert_eq!((st, code(&v)), (StatusCode::NOT_FOUND, "job_not_found"));
    for bad in [json!(-1), json!(0), json!("30"), json!(100_000)] {
        let (st, v) = s
            .post("/v1/jobs", json!({"id": "b", "heartbeat_timeout": bad}))
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(code(&v), "invalid_request");
    }
    start(&s, "b", json!({})).await;
    for ty in ["stalled", "recovered", "cancel_requested"] {
        let (st, v) = s
            .post(
                "/v1/jobs/b/events",
                json!({"type": ty, "heartbeat_timeout": 1}),
            )
            .await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_event"),
            "{ty}"
        );
    }
    let (st, v) = s
        .post("/v1/jobs/b/heartbeat", json!({"progress": 101}))
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    let (st, v) = s.post("/v1/jobs/b/heartbeat", json!({"pulse": 1})).await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    assert_eq!(events(&s, "b").await.len(), 2, "nothing was stored");
}

async fn a_parent_with_100_children_shows_live_counts_and_progress_and_completes_with_them(
    engine: Engine,
) {
    let s = Server::start_on(engine).await;
    let (st, v) = s
        .post(
            "/v1/jobs",
            json!({"id": "doc", "complete_when": "all_children"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let ids: Vec<String> = (0..100).map(|i| format!("page-{i:03}")).collect();
    for id in &ids {
        let (st, v) = s.post("/v1/jobs", json!({"id": id, "parent": "doc"})).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (_, snap) = s.get("/v1/jobs/doc").await;
    assert_eq!(
        (
            snap["children"]["total"].as_u64(),
            snap["children"]["pending"].as_u64()
        ),
        (Some(100), Some(100)),
        "{snap}"
    );
    let mut ws = s.ws("/v1/jobs/doc/ws").await;
    // Every child runs to 50 %, concurrently: the parent moves while they run.
    let run = ids.iter().map(|id| {
        let s = &s;
        async move {
            s.publish(id, json!({"type": "progress", "progress": 50}))
                .await;
        }
    });
    futures_util::future::join_all(run).await;
    let moving = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let v = ws.json().await;
            if v["type"] == "child" && v["status"] == "in_progress" {
                let (_, snap) = s.get("/v1/jobs/doc").await;
                if snap["children"]["in_progress"] == 100 && snap["progress"] == 50.0 {
                    return snap;
                }
            }
        }
    })
    .await
    .expect("the parent shows 100 running children at 50 %");
    assert_eq!(moving["status"], "in_progress");
    // Half complete, half fail (the default policy goes on): the parent completes.
    let finish = ids.iter().enumerate().map(|(i, id)| {
        let s = &s;
        async move {
            let ev = if i % 2 == 0 {
                json!({"type": "completed"})
            } else {
                json!({"type": "failed", "error": "bad page"})
            };
            s.publish(id, ev).await;
        }
    });
    futures_util::future::join_all(finish).await;
    let done = until_event(&mut ws, "completed", Duration::from_secs(5)).await;
    assert_eq!(done["result"]["children"]["completed"], 50);
    assert_eq!(done["result"]["children"]["failed"], 50);
    let (_, page) = s.get("/v1/jobs/doc/children?status=failed&limit=10").await;
    assert_eq!(page["children"].as_array().map(Vec::len), Some(10));
    assert_eq!(page["children"][0]["id"], "page-001");
    assert_eq!(page["next"], "page-019");
    assert_eq!(page["counts"]["total"], 100);
}

async fn parent_policies_and_cancel_reach_children_and_bad_parents_are_refused(engine: Engine) {
    let s = Server::start_on(engine).await;
    // on_child_failure: fail — the first failed child fails the parent.
    s.post(
        "/v1/jobs",
        json!({"id": "strict", "on_child_failure": "fail"}),
    )
    .await;
    for c in ["s1", "s2"] {
        s.post("/v1/jobs", json!({"id": c, "parent": "strict"}))
            .await;
    }
    s.publish("s1", json!({"type": "failed", "error": "disk"}))
        .await;
    let (_, snap) = s.get("/v1/jobs/strict").await;
    assert_eq!(
        (snap["status"].as_str(), snap["error"].as_str()),
        (Some("failed"), Some("child_failed")),
        "{snap}"
    );

    // Cancelling a parent requests the cancel of its running children.
    s.post("/v1/jobs", json!({"id": "batch"})).await;
    for c in ["b1", "b2"] {
        s.post("/v1/jobs", json!({"id": c, "parent": "batch"}))
            .await;
        s.publish(c, json!({"type": "progress", "progress": 5}))
            .await;
    }
    s.publish("batch", json!({"type": "progress", "progress": 1}))
        .await;
    let (st, v) = s.post("/v1/jobs/batch/cancel", Value::Null).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for c in ["b1", "b2"] {
        let (_, snap) = s.get(&format!("/v1/jobs/{c}")).await;
        assert!(snap["cancel_requested"].is_object(), "{c}: {snap}");
    }

    // Bad parents: missing, itself, finished, and nothing is created.
    for (body, why) in [
        (json!({"id": "o1", "parent": "nope"}), "not found"),
        (json!({"id": "o2", "parent": "o2"}), "own parent"),
        (json!({"id": "o3", "parent": "strict"}), "is failed"),
    ] {
        let (st, v) = s.post("/v1/jobs", body).await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parent"),
            "{why}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{v}"
        );
    }
    let (st, _) = s.get("/v1/jobs/o1").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s
        .post(
            "/v1/jobs",
            json!({"id": "w", "parent": "batch", "weight": -1}),
        )
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    // Depth limit: a chain of 8 below a root is the deepest.
    let mut parent = "batch".to_owned();
    for d in 1..=8 {
        let id = format!("d{d}");
        let (st, v) = s
            .post("/v1/jobs", json!({"id": id, "parent": parent}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "depth {d}: {v}");
        parent = id;
    }
    let (st, v) = s
        .post("/v1/jobs", json!({"id": "d9", "parent": parent}))
        .await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parent")
    );
}

crate::on_both_engines!(
    a_child_lost_by_the_scanner_moves_its_parent,
    a_parent_with_100_children_shows_live_counts_and_progress_and_completes_with_them,
    parent_policies_and_cancel_reach_children_and_bad_parents_are_refused,
    a_silent_worker_is_stalled_within_its_timeout_and_recovers_on_a_heartbeat,
    a_job_stalled_past_stall_fail_after_fails_with_worker_lost,
    a_cancel_reaches_the_worker_within_a_second_and_ends_when_it_confirms,
    an_unanswered_cancel_ends_the_job_after_cancel_timeout,
    progress_events_carry_a_smoothed_rate_and_an_eta,
    bad_liveness_input_gets_documented_codes_and_changes_nothing,
);

#[tokio::test]
async fn the_cancel_scope_lets_users_cancel_without_publishing() {
    let secret = "a-test-secret-that-is-long-enough-0123456789";
    let s = Server::start_with(Options {
        auth: Some(AuthSpec::secret(secret)),
        ..Default::default()
    })
    .await;
    let token = |scopes: &[&str]| {
        hs256(
            secret,
            json!({"sub": "u", "tenant": "t", "scope": scopes.join(" "), "exp": unix_now() + 600}),
        )
    };
    let worker = token(&["jobs:publish", "jobs:watch"]);
    let user = token(&["jobs:cancel", "jobs:watch"]);
    let viewer = token(&["jobs:watch"]);
    let (st, v) = s.post_as(&worker, "/v1/jobs", json!({"id": "j"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    s.post_as(
        &worker,
        "/v1/jobs/j/events",
        json!({"type": "progress", "progress": 1}),
    )
    .await;
    let (st, v) = s
        .post_as(
            &user,
            "/v1/jobs/j/events",
            json!({"type": "log", "line": "x"}),
        )
        .await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (st, v) = s.post_as(&viewer, "/v1/jobs/j/cancel", Value::Null).await;
    assert_eq!((st, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    let (st, v) = s.post_as(&user, "/v1/jobs/j/cancel", Value::Null).await;
    assert_eq!(
        (st, &v["cancel_requested"]),
        (StatusCode::OK, &json!(true)),
        "{v}"
    );
    let (_, snap) = s.get_as(&user, "/v1/jobs/j").await;
    assert_eq!(snap["cancel_requested"]["by"], "u");
}

#[tokio::test]
async fn a_deadline_that_passed_while_the_binary_was_down_stalls_the_job_once_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let http = reqwest::Client::new();
    let post = |base: String, path: &str, body: Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.post(url).json(&body).send().await.expect("post");
            assert!(
                r.status().is_success(),
                "{}",
                r.text().await.unwrap_or_default()
            );
        }
    };
    post(
        p.base.clone(),
        "/v1/jobs",
        json!({"id": "r", "heartbeat_timeout": 1}),
    )
    .await;
    post(
        p.base.clone(),
        "/v1/jobs/r/events",
        json!({"type": "progress", "progress": 3}),
    )
    .await;
    p.kill9();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let p = Process::start(dir.path(), "127.0.0.1:0", &[]);
    let began = Instant::now();
    loop {
        let v: Value = http
            .get(format!("{}/v1/jobs/r", p.base))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if v["stalled_since"].is_string() {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "not stalled after restart: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_instances_on_one_redis_write_exactly_one_stalled_per_stall() {
    let redis = RedisServer::start(false);
    let prefix = crate::support::unique_prefix();
    let instance = || {
        Server::start_with(Options {
            engine: Engine::Redis,
            redis_url: Some(redis.url()),
            prefix: Some(prefix.clone()),
            ..Default::default()
        })
    };
    let (a, b) = (instance().await, instance().await);
    for i in 0..20 {
        let id = format!("s{i}");
        start(&a, &id, json!({"heartbeat_timeout": 0.3})).await;
    }
    // Heartbeats through the other instance keep one job alive.
    for _ in 0..8 {
        b.post("/v1/jobs/s0/heartbeat", Value::Null).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for i in 1..20 {
        let evs = events(&b, &format!("s{i}")).await;
        assert_eq!(count(&evs, "stalled"), 1, "s{i}: {evs:?}");
    }
    assert_eq!(
        count(&events(&a, "s0").await, "stalled"),
        0,
        "heartbeats via B count on A"
    );
}
