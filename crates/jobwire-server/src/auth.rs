//! Authentication and the caller's rights: JWT verification (HS256 secret, RS256/ES256
//! public key, or a JWKS file reloaded when it changes), token extraction
//! (`Authorization: Bearer`, `?token=`, or the `bearer.<jwt>` WebSocket subprotocol),
//! scopes, tenant, allow-lists and the Origin allow-list. API keys (`jwk_…`) are
//! told apart by their prefix and checked by [`crate::apikeys`].
//!
//! Without a verifier the server runs in development mode: every caller is
//! anonymous with every scope, in the default namespace.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use jobwire_core::access::valid_tenant;
use jobwire_core::Access;
use jobwire_proto::ErrorCode;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

/// The subprotocol a browser offers next to `bearer.<jwt>`; the server selects it.
pub const WS_PROTOCOL: &str = "jobwire";
/// Prefix of the subprotocol that carries a token.
const WS_TOKEN_PREFIX: &str = "bearer.";

/// What a scope allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `jobs:watch`: read snapshots, history, lists; WebSocket and SSE.
    Watch,
    /// `jobs:publish`: create jobs, publish events, heartbeats, cancel.
    Publish,
    /// `jobs:cancel`: request a cancel (implied by `jobs:publish` and `jobs:admin`),
    /// so a tenant's users may cancel without being able to publish.
    Cancel,
    /// `jobs:admin`: both of the above, and managing the tenant's API keys.
    Admin,
}

/// The verified caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub access: Access,
    pub sub: Option<String>,
    watch: bool,
    publish: bool,
    cancel: bool,
    admin: bool,
    /// Token expiry (seconds since the epoch), if any.
    pub expires_at: Option<u64>,
    /// The id of the API key used, when the caller presented one (not a JWT).
    pub api_key: Option<String>,
}

impl Principal {
    /// Development mode: everything, default namespace.
    pub fn anonymous() -> Principal {
        Principal {
            access: Access::open(),
            sub: None,
            watch: true,
            publish: true,
            cancel: true,
            admin: true,
            expires_at: None,
            api_key: None,
        }
    }

    /// A caller with these scopes (`jobs:admin` implies the others).
    pub(crate) fn with_scopes(
        access: Access,
        sub: Option<String>,
        scopes: &[&str],
        expires_at: Option<u64>,
        api_key: Option<String>,
    ) -> Principal {
        let admin = scopes.contains(&"jobs:admin");
        Principal {
            access,
            sub,
            watch: admin || scopes.contains(&"jobs:watch"),
            publish: admin || scopes.contains(&"jobs:publish"),
            cancel: admin || scopes.contains(&"jobs:publish") || scopes.contains(&"jobs:cancel"),
            admin,
            expires_at,
            api_key,
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        match scope {
            Scope::Watch => self.watch,
            Scope::Publish => self.publish,
            Scope::Cancel => self.cancel,
            Scope::Admin => self.admin,
        }
    }

    /// `forbidden` unless the token carries `scope` (or `jobs:admin`).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            let name = match scope {
                Scope::Watch => "jobs:watch",
                Scope::Publish => "jobs:publish",
                Scope::Cancel => "jobs:cancel",
                Scope::Admin => "jobs:admin",
            };
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("the token lacks the `{name}` scope"),
            ))
        }
    }
}

/// Where verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// HS256 shared secret.
    Secret(Vec<u8>),
    /// A PEM public key: RSA (RS256) or EC P-256 (ES256).
    PublicKeyPem(Vec<u8>),
    /// A JWKS file, re-read when its modification time changes.
    JwksFile(PathBuf),
}

/// Why the auth configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the public key is neither an RSA nor an EC P-256 PEM key")]
    BadPem,
    #[error("the JWKS file is invalid: {0}")]
    BadJwks(String),
}

/// Verifies tokens against one key source.
pub struct Verifier {
    source: KeySource,
    /// Fixed keys (secret or PEM) with their one accepted algorithm.
    fixed: Option<(DecodingKey, Algorithm)>,
    /// JWKS cache: file mtime and the parsed set.
    jwks: Mutex<Option<(SystemTime, JwkSet)>>,
    audience: Option<String>,
    issuer: Option<String>,
    tenant_claim: String,
    /// Scopes of a token without a `scope` claim (space-separated).
    default_scope: Option<String>,
}

fn unauthorized(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, msg)
}

impl Verifier {
    /// Scopes for tokens that carry no `scope` claim (`--default-scope`).
    pub fn with_default_scope(mut self, scopes: Option<String>) -> Verifier {
        self.default_scope = scopes;
        self
    }

    pub fn new(
        source: KeySource,
        audience: Option<String>,
        issuer: Option<String>,
        tenant_claim: String,
    ) -> Result<Verifier, AuthSetupError> {
        let fixed = match &source {
            KeySource::Secret(s) => Some((DecodingKey::from_secret(s), Algorithm::HS256)),
            KeySource::PublicKeyPem(pem) => match DecodingKey::from_rsa_pem(pem) {
                Ok(k) => Some((k, Algorithm::RS256)),
                Err(_) => Some((
                    DecodingKey::from_ec_pem(pem).map_err(|_| AuthSetupError::BadPem)?,
                    Algorithm::ES256,
                )),
            },
            KeySource::JwksFile(_) => None,
        };
        let v = Verifier {
            source,
            fixed,
            jwks: Mutex::new(None),
            audience,
            issuer,
            tenant_claim,
            default_scope: None,
        };
        if let KeySource::JwksFile(path) = &v.source {
            v.load_jwks(path)?;
        }
        Ok(v)
    }

    /// Re-reads the JWKS file when it changed; returns the current set.
    fn load_jwks(&self, path: &PathBuf) -> Result<JwkSet, AuthSetupError> {
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| AuthSetupError::Read(path.clone(), e))?;
        let mut cache = self.jwks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, set)) = cache.as_ref() {
            if *seen == mtime {
                return Ok(set.clone());
            }
        }
        let text = std::fs::read(path).map_err(|e| AuthSetupError::Read(path.clone(), e))?;
        let set: JwkSet =
            serde_json::from_slice(&text).map_err(|e| AuthSetupError::BadJwks(e.to_string()))?;
        tracing::info!(keys = set.keys.len(), path = %path.display(), "JWKS loaded");
        *cache = Some((mtime, set.clone()));
        Ok(set)
    }

    /// The key and algorithm for a token's header.
    fn key_for(&self, token: &str) -> Result<(DecodingKey, Algorithm), ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            if crate::apikeys::looks_like_key(token) {
                unauthorized(
                    "this is an API key: send it in the Authorization: Bearer or X-Api-Key \
                     header (keys are refused in ?token= and in auth frames, where URLs and \
                     logs could keep them)",
                )
            } else {
                unauthorized("malformed token")
            }
        })?;
        if let Some((key, alg)) = &self.fixed {
            if header.alg != *alg {
                return Err(unauthorized(format!(
                    "algorithm {:?} is not accepted",
                    header.alg
                )));
            }
            return Ok((key.clone(), *alg));
        }
        let KeySource::JwksFile(path) = &self.source else {
            return Err(unauthorized("no verification key configured"));
        };
        let set = self.load_jwks(path).map_err(|e| {
            tracing::error!(error = %e, "JWKS unavailable");
            unauthorized("verification keys unavailable")
        })?;
        let jwk = match &header.kid {
            Some(kid) => set.find(kid),
            None if set.keys.len() == 1 => set.keys.first(),
            None => None,
        }
        .ok_or_else(|| unauthorized("no key matches the token's kid"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| unauthorized("unusable key in JWKS"))?;
        let alg = match header.alg {
            a @ (Algorithm::RS256 | Algorithm::ES256 | Algorithm::HS256) => a,
            other => return Err(unauthorized(format!("algorithm {other:?} is not accepted"))),
        };
        Ok((key, alg))
    }

    /// Verifies a token and turns its claims into a [`Principal`].
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let (key, alg) = self.key_for(token)?;
        let mut validation = Validation::new(alg);
        validation.validate_nbf = true;
        validation.leeway = 5;
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => ApiError::new(
                        ErrorCode::TokenExpired,
                        "the token is expired or not valid yet",
                    ),
                    ErrorKind::InvalidAudience => unauthorized("wrong audience"),
                    ErrorKind::InvalidIssuer => unauthorized("wrong issuer"),
                    ErrorKind::InvalidAlgorithm => unauthorized("wrong algorithm"),
                    ErrorKind::InvalidSignature => unauthorized("bad signature"),
                    ErrorKind::MissingRequiredClaim(c) => {
                        unauthorized(format!("the token has no `{c}` claim"))
                    }
                    _ => unauthorized("invalid token"),
                }
            })?;
        self.principal(data.claims)
    }

    fn principal(&self, claims: Map<String, Value>) -> Result<Principal, ApiError> {
        let tenant = match claims.get(&self.tenant_claim) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let Some(tenant) = tenant.filter(|t| valid_tenant(t)) else {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "the token has no usable `{}` (tenant) claim",
                    self.tenant_claim
                ),
            ));
        };
        // A token without a `scope` claim gets `--default-scope` (tokens made for
        // other systems often carry none); an empty `scope` stays empty.
        let scopes: Vec<&str> = match claims.get("scope").and_then(Value::as_str) {
            Some(s) => s.split_whitespace().collect(),
            None => self
                .default_scope
                .as_deref()
                .map(|s| s.split_whitespace().collect())
                .unwrap_or_default(),
        };
        let list = |name: &str| -> Option<Vec<String>> {
            claims.get(name).and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
        };
        Ok(Principal::with_scopes(
            Access {
                tenant: Some(tenant),
                jobs: list("jobs"),
                projects: list("projects"),
            },
            // An empty subject is no subject: it must not name the owner of every
            // job created without one.
            claims
                .get("sub")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            &scopes,
            claims.get("exp").and_then(Value::as_u64),
            None,
        ))
    }
}

/// Auth settings of a server.
#[derive(Default)]
pub struct AuthConfig {
    /// `None`: development mode, no authentication.
    pub verifier: Option<Verifier>,
    /// When set, browsers from other Origins are refused (WebSocket, SSE, CORS).
    pub allowed_origins: Option<Vec<String>>,
}

impl AuthConfig {
    /// Checks the Origin header against the allow-list (absent Origin: not a browser).
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let (Some(allowed), Some(origin)) = (&self.allowed_origins, headers.get(header::ORIGIN))
        else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        if allowed.iter().any(|a| a == origin || a == "*") {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::OriginNotAllowed,
                format!("origin {origin} is not allowed"),
            ))
        }
    }

    /// Authenticates a request from its token (development mode: anonymous).
    pub fn authenticate(&self, parts: &Parts) -> Result<Principal, ApiError> {
        self.check_origin(&parts.headers)?;
        let Some(verifier) = &self.verifier else {
            return Ok(Principal::anonymous());
        };
        let token = token_from(parts).ok_or_else(|| {
            unauthorized("a token is required: Authorization: Bearer, ?token=, or the bearer.<token> WebSocket subprotocol")
        })?;
        verifier.verify(&token)
    }

    /// Verifies a token sent later on an open WebSocket (`{"type":"auth"}`). In
    /// development mode there is nothing to verify it against: `auth_disabled`.
    pub fn reauthenticate(&self, token: &str) -> Result<Principal, ApiError> {
        match &self.verifier {
            Some(v) => v.verify(token),
            None => Err(ApiError::new(
                ErrorCode::AuthDisabled,
                "the server runs without authentication (development mode): auth frames are not used",
            )),
        }
    }
}

/// The token of a request: `Authorization: Bearer`, `?token=`, or a
/// `bearer.<jwt>` entry of `Sec-WebSocket-Protocol`.
fn token_from(parts: &Parts) -> Option<String> {
    if let Some(h) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    {
        if let Some(t) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        {
            return Some(t.trim().to_owned());
        }
    }
    if let Some(q) = parts.uri.query() {
        for (k, v) in form_pairs(q) {
            if k == "token" {
                return Some(v);
            }
        }
    }
    parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .find_map(|p| p.trim().strip_prefix(WS_TOKEN_PREFIX).map(str::to_owned))
}

/// `k=v&k2=v2` pairs, percent-decoded.
fn form_pairs(q: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{q}").parse().unwrap_or_default(),
    )
    .map(|axum::extract::Query(v)| v)
    .unwrap_or_default()
}

/// Extractor: the verified caller of this request.
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        if st.auth.verifier.is_some() {
            if let Some(key) = crate::apikeys::presented(&parts.headers) {
                st.auth.check_origin(&parts.headers)?;
                return st.keys.verify(&st.hub, key).await.map(Caller);
            }
        }
        st.auth.authenticate(parts).map(Caller)
    }
}
