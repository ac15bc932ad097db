//! API key management: `POST /v1/keys` (the only answer that ever holds the secret),
//! `GET /v1/keys` and `DELETE /v1/keys/{id}`. Each needs scope `jobs:admin` and acts
//! in the caller's tenant only: another tenant's key id is answered like an unknown
//! one (`404 key_not_found`). Without authentication (development mode) there are
//! no tenants to scope keys to, so these endpoints answer `409 auth_disabled`.

use crate::apikeys;
use crate::auth::{Caller, Principal, Scope};
use crate::error::ApiError;
use crate::extract::{json_body, ApiPath};
use crate::AppState;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use jobwire_core::apikey::ApiKey;
use jobwire_proto::{ErrorCode, JobId, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};

/// Scopes a key may carry.
const SCOPES: [&str; 4] = ["jobs:publish", "jobs:watch", "jobs:cancel", "jobs:admin"];
/// Scope of a key created without `scopes`.
const DEFAULT_SCOPE: &str = "jobs:publish";
/// Longest label, in characters.
const MAX_LABEL_CHARS: usize = 200;
/// Most projects in a key's allow-list.
const MAX_PROJECTS: usize = 100;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    scopes: Option<Vec<String>>,
    projects: Option<Vec<String>>,
    label: Option<String>,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, msg)
}

fn key_not_found() -> ApiError {
    ApiError::new(ErrorCode::KeyNotFound, "no such API key")
}

/// The caller's tenant, once it is known to be a tenant admin on a secured server.
fn admin_tenant(st: &AppState, caller: &Principal) -> Result<String, ApiError> {
    let disabled = || {
        ApiError::new(
            ErrorCode::AuthDisabled,
            "API keys need authentication; this server runs in development mode \
             (configure --jwt-secret, --jwt-public-key or --jwks-file)",
        )
    };
    if st.auth.verifier.is_none() {
        return Err(disabled());
    }
    caller.require(Scope::Admin)?;
    caller.access.tenant.clone().ok_or_else(disabled)
}

/// A key as clients see it: everything but the hash.
fn view(key: &ApiKey) -> Value {
    let mut v = serde_json::to_value(key).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("hash");
    }
    v
}

/// Checks the requested projects against the creator's own allow-list: a key never
/// reaches more than the caller who made it.
fn key_projects(
    caller: &Principal,
    requested: Option<Vec<String>>,
) -> Result<Option<Vec<String>>, ApiError> {
    if let Some(list) = &requested {
        if list.is_empty() || list.len() > MAX_PROJECTS {
            return Err(invalid(format!(
                "projects must list 1-{MAX_PROJECTS} projects"
            )));
        }
        for p in list {
            JobId::validate(p)
                .map_err(|_| invalid("project must be 1-128 characters of [A-Za-z0-9._:-]"))?;
        }
    }
    match (&caller.access.projects, requested) {
        (None, r) => Ok(r),
        (Some(allowed), None) => Ok(Some(allowed.clone())),
        (Some(allowed), Some(r)) => {
            if r.iter().all(|p| allowed.contains(p)) {
                Ok(Some(r))
            } else {
                Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "a key cannot reach projects outside your token's allow-list",
                ))
            }
        }
    }
}

/// `POST /v1/keys`
pub(super) async fn create(
    State(st): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = admin_tenant(&st, &caller)?;
    if caller.access.jobs.is_some() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a token limited to a list of jobs cannot create API keys",
        ));
    }
    let value = json_body(body)?;
    let body: CreateBody = if value.is_null() {
        CreateBody::default()
    } else {
        serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?
    };
    let mut scopes = body
        .scopes
        .unwrap_or_else(|| vec![DEFAULT_SCOPE.to_owned()]);
    if scopes.is_empty() {
        return Err(invalid("scopes must not be empty"));
    }
    if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(invalid(format!(
            "unknown scope `{bad}`; use jobs:publish, jobs:watch or jobs:admin"
        )));
    }
    scopes.sort();
    scopes.dedup();
    let projects = key_projects(&caller, body.projects)?;
    if body
        .label
        .as_ref()
        .is_some_and(|l| l.chars().count() > MAX_LABEL_CHARS || l.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "label must be at most {MAX_LABEL_CHARS} characters, without control characters"
        )));
    }
    let new = apikeys::generate()?;
    let key = ApiKey {
        id: new.id,
        tenant,
        scopes,
        projects,
        label: body.label,
        created_at: Timestamp::now(),
        revoked: false,
        hash: apikeys::hash(&new.secret),
    };
    st.hub.put_key(key.clone()).await?;
    tracing::info!(key_id = %key.id, tenant = %key.tenant, by = ?caller.sub, "API key created");
    let out = json!({"key": view(&key), "secret": new.secret});
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(out),
    )
        .into_response())
}

/// `GET /v1/keys`
pub(super) async fn list(
    State(st): State<AppState>,
    Caller(caller): Caller,
) -> Result<Response, ApiError> {
    let tenant = admin_tenant(&st, &caller)?;
    let keys = st.hub.list_keys(&tenant).await?;
    let keys: Vec<Value> = keys.iter().map(view).collect();
    Ok(Json(json!({"keys": keys})).into_response())
}

/// `DELETE /v1/keys/{id}`
pub(super) async fn revoke(
    State(st): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant = admin_tenant(&st, &caller)?;
    if !apikeys::valid_id(&id) || !st.hub.revoke_key(&tenant, &id).await? {
        return Err(key_not_found());
    }
    st.keys.forget(&id);
    tracing::info!(key_id = %id, %tenant, by = ?caller.sub, "API key revoked");
    let key = st.hub.key_by_id(&id).await?.ok_or_else(key_not_found)?;
    Ok(Json(json!({"key": view(&key)})).into_response())
}
