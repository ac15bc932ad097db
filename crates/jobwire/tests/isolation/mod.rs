//! Tenant and allow-list isolation of everything that returns ids or cursors, on both
//! engines: job lists (every page and every `next` cursor), history, the project and
//! every-project channels, notifications and API keys. Two tenants share one store
//! (one Redis prefix), with interleaved ids so that a range read that runs past a
//! tenant's end would show the other tenant's ids.

use crate::support::{code, hs256, AuthSpec, Engine, Options, Server, Ws};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const SECRET: &str = "isolation-secret-0123456789abcdef";

fn tok(claims: Value) -> String {
    hs256(SECRET, claims)
}

fn admin(tenant: &str, sub: &str) -> String {
    tok(json!({"sub": sub, "tenant": tenant, "scope": "jobs:admin"}))
}

async fn secured(engine: Engine) -> Server {
    Server::start_with(Options {
        engine,
        auth: Some(AuthSpec::secret(SECRET)),
        ..Default::default()
    })
    .await
}

/// Follows `next` from the first page to the end; fails on a cursor loop.
async fn list_all(s: &Server, token: &str, query: &str) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut cursors = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let q = match &after {
            Some(a) => format!("/v1/jobs?{query}&after={a}"),
            None => format!("/v1/jobs?{query}"),
        };
        let (st, v) = s.get_as(token, &q).await;
        assert_eq!(st, StatusCode::OK, "{q}: {v}");
        for j in v["jobs"].as_array().into_iter().flatten() {
            ids.push(j["id"].as_str().unwrap_or("?").to_owned());
        }
        match v["next"].as_str() {
            Some(n) => {
                assert!(!cursors.contains(&n.to_owned()), "cursor loop at {n}");
                cursors.push(n.to_owned());
                after = Some(n.to_owned());
            }
            None => return (ids, cursors),
        }
    }
    panic!("pagination did not end after 100 pages: {cursors:?}");
}

async fn lists_and_cursors_stay_in_the_tenant_and_allow_list(engine: Engine) {
    let s = secured(engine).await;
    let a = admin("acme", "ana");
    let b = admin("acmf", "bob"); // sorts right after `acme/` in a shared index
    for id in ["j1", "j3", "j5"] {
        let (st, v) = s
            .post_as(&a, "/v1/jobs", json!({"id": id, "project": "P"}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    for id in ["j2", "j4", "j6", "zz"] {
        let (st, v) = s.post_as(&b, "/v1/jobs", json!({"id": id})).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    // A tenant with no jobs at all, sorting between the two.
    let empty = admin("acmez", "eve");
    let (ids, cursors) = list_all(&s, &empty, "limit=2").await;
    assert!(ids.is_empty() && cursors.is_empty(), "{ids:?} {cursors:?}");

    for limit in [1, 2, 3, 50] {
        let (ids, cursors) = list_all(&s, &a, &format!("limit={limit}")).await;
        assert_eq!(ids, ["j1", "j3", "j5"], "limit {limit}");
        assert!(cursors.iter().all(|c| ids.contains(c)), "{cursors:?}");
        let (ids, _) = list_all(&s, &b, &format!("limit={limit}")).await;
        assert_eq!(ids, ["j2", "j4", "j6", "zz"], "limit {limit}");
    }

    // A `jobs` allow-list: only those ids, and no cursor naming another.
    let narrow = tok(
        json!({"sub": "ana", "tenant": "acme", "scope": "jobs:watch", "jobs": ["j3", "j2", "nope"]}),
    );
    for limit in [1, 2, 50] {
        let (ids, cursors) = list_all(&s, &narrow, &format!("limit={limit}")).await;
        assert_eq!(ids, ["j3"], "limit {limit}");
        assert!(cursors.iter().all(|c| c == "j3"), "{cursors:?}");
    }
    // A `projects` allow-list excluding every job: an empty last page, no cursor.
    let other_project =
        tok(json!({"sub": "ana", "tenant": "acme", "scope": "jobs:watch", "projects": ["Q"]}));
    for limit in [1, 2] {
        let (ids, cursors) = list_all(&s, &other_project, &format!("limit={limit}")).await;
        assert!(ids.is_empty() && cursors.is_empty(), "{ids:?} {cursors:?}");
    }

    // History and snapshots of the other tenant's ids are unknown jobs.
    for path in ["/v1/jobs/j2", "/v1/jobs/j2/events?since=0"] {
        let (st, v) = s.get_as(&a, path).await;
        assert_eq!(
            (st, code(&v)),
            (StatusCode::NOT_FOUND, "job_not_found"),
            "{path}: {v}"
        );
    }
    let (st, v) = s.get_as(&narrow, "/v1/jobs/j1/events?since=0").await;
    assert_eq!(
        (st, code(&v)),
        (StatusCode::NOT_FOUND, "job_not_found"),
        "{v}"
    );
}

async fn every_project_channel_streams_the_whole_tenant_only(engine: Engine) {
    let s = secured(engine).await;
    let a = admin("acme", "ana");
    let b = admin("acmf", "bob");
    s.post_as(&a, "/v1/jobs", json!({"id": "p1", "project": "P"}))
        .await;
    s.post_as(&a, "/v1/jobs", json!({"id": "n1"})).await;
    s.post_as(&b, "/v1/jobs", json!({"id": "p1", "project": "P"}))
        .await;

    let mut ws = Ws::connect(&s.ws_url(&format!("/v1/projects/*/ws?token={a}"))).await;
    ws.send(json!({"type": "resume"})).await;
    let mut snaps = BTreeSet::new();
    loop {
        let v = ws.json().await;
        if v["type"] == "ready" {
            assert_eq!(v["jobs"], 2, "{v}");
            break;
        }
        assert_eq!(v["type"], "snapshot", "{v}");
        snaps.insert(v["job_id"].as_str().unwrap_or("?").to_owned());
    }
    assert_eq!(snaps, BTreeSet::from(["n1".to_owned(), "p1".to_owned()]));
    let log = |line: &str| json!({"type": "log", "line": line});
    s.post_as(&b, "/v1/jobs/p1/events", log("other tenant"))
        .await;
    s.post_as(&a, "/v1/jobs/n1/events", log("no project")).await;
    s.post_as(&a, "/v1/jobs", json!({"id": "q9", "project": "Q"}))
        .await;
    s.post_as(&a, "/v1/jobs/p1/events", log("last")).await;
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("p1:2:log") {
        let v = ws.json().await;
        assert_ne!(v["line"], "other tenant", "{v}");
        got.push(format!(
            "{}:{}:{}",
            v["job_id"].as_str().unwrap_or("?"),
            v["seq"],
            v["type"].as_str().unwrap_or("?")
        ));
    }
    assert_eq!(got, ["n1:2:log", "q9:1:created", "p1:2:log"]);

    // A token narrowed to some projects cannot open the every-project channel.
    let narrow =
        tok(json!({"sub": "ana", "tenant": "acme", "scope": "jobs:watch", "projects": ["P"]}));
    let r = Ws::try_connect(&s.ws_url(&format!("/v1/projects/*/ws?token={narrow}")), &[]).await;
    assert_eq!(r.err(), Some(403));
}

async fn an_empty_subject_owns_no_one_elses_notifications(engine: Engine) {
    let s = secured(engine).await;
    // A job created by a token without `sub`.
    let nosub = tok(json!({"tenant": "acme", "scope": "jobs:admin"}));
    let (st, v) = s.post_as(&nosub, "/v1/jobs", json!({"id": "orphan"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // `"sub": ""` is no subject: refused like a token without one.
    let empty = tok(json!({"sub": "", "tenant": "acme", "scope": "jobs:admin"}));
    let r = Ws::try_connect(
        &s.ws_url(&format!("/v1/notifications/ws?token={empty}")),
        &[],
    )
    .await;
    assert_eq!(r.err(), Some(403));
    // And a job it creates belongs to nobody: another user's stream stays empty.
    let (st, _) = s
        .post_as(&empty, "/v1/jobs", json!({"id": "by-empty"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v) = s.get_as(&empty, "/v1/jobs/by-empty").await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["created_by"].is_null(), "{v}");
}

async fn api_keys_are_listed_and_revoked_per_tenant(engine: Engine) {
    let s = secured(engine).await;
    let a = admin("acme", "ana");
    let b = admin("acmf", "bob");
    let (st, ka) = s.post_as(&a, "/v1/keys", json!({"label": "a"})).await;
    assert_eq!(st, StatusCode::CREATED, "{ka}");
    let (st, kb) = s.post_as(&b, "/v1/keys", json!({"label": "b"})).await;
    assert_eq!(st, StatusCode::CREATED, "{kb}");
    let ids = |v: &Value| -> Vec<String> {
        v["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| k["id"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let (_, la) = s.get_as(&a, "/v1/keys").await;
    assert_eq!(ids(&la), [ka["key"]["id"].as_str().unwrap_or("?")]);
    let r = reqwest::Client::new()
        .delete(s.url(&format!(
            "/v1/keys/{}",
            kb["key"]["id"].as_str().unwrap_or("?")
        )))
        .bearer_auth(&a)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (_, lb) = s.get_as(&b, "/v1/keys").await;
    assert_eq!(ids(&lb), [kb["key"]["id"].as_str().unwrap_or("?")]);
}

crate::on_both_engines!(
    lists_and_cursors_stay_in_the_tenant_and_allow_list,
    every_project_channel_streams_the_whole_tenant_only,
    an_empty_subject_owns_no_one_elses_notifications,
    api_keys_are_listed_and_revoked_per_tenant,
);
