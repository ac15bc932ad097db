//! Worker API keys: the key format, generation, hashing and the check of a
//! presented key. A key is `jwk_<id>_<secret>`: `jwk_`, a 12-character public id of
//! `[a-z0-9]`, `_`, and 43 characters of base64url (32 random bytes). Engines store
//! only the SHA-256 of the whole string ([`ApiKey::hash`]); a random 256-bit secret
//! cannot be guessed or brute-forced from its hash, so no slow KDF is needed.
//!
//! A key is presented as `Authorization: Bearer jwk_…` or `X-Api-Key: jwk_…` (never
//! in the URL, so it stays out of logs) and yields the same [`Principal`] a JWT does.
//! Records are cached for [`KEY_CACHE_TTL`]: a revocation made on another instance
//! takes effect here within that bound (at once on the instance that revoked).

use crate::auth::Principal;
use crate::error::ApiError;
use axum::http::{header, HeaderMap};
use base64::Engine as _;
use jobwire_core::apikey::ApiKey;
use jobwire_core::{Access, Hub};
use jobwire_proto::ErrorCode;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Every key string starts with this; the verifier tells keys from JWTs by it.
pub const KEY_PREFIX: &str = "jwk_";
/// Length of the public id part.
const ID_LEN: usize = 12;
/// Length of the secret part: base64url (no padding) of 32 bytes.
const SECRET_LEN: usize = 43;
/// How long a key record read from the engine is trusted before it is read again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Cached records kept at most; past it the cache is emptied (records are re-read).
const KEY_CACHE_MAX: usize = 10_000;
/// Alphabet of key ids: lowercase, so ids are safe in paths and case-insensitive UIs.
const ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Why a key could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum KeyGenError {
    #[error("the system random number generator failed: {0}")]
    Random(getrandom::Error),
}

impl From<KeyGenError> for ApiError {
    fn from(e: KeyGenError) -> ApiError {
        tracing::error!(error = %e, "API key generation failed");
        ApiError::new(ErrorCode::Internal, "could not generate a key; retry")
    }
}

/// A freshly generated key: its id and the full string (shown to the caller once).
pub(crate) struct NewKey {
    pub(crate) id: String,
    pub(crate) secret: String,
}

/// Generates a new key from the operating system's random generator.
pub(crate) fn generate() -> Result<NewKey, KeyGenError> {
    let mut raw = [0u8; ID_LEN + 32];
    getrandom::fill(&mut raw).map_err(KeyGenError::Random)?;
    let (id_bytes, secret) = raw.split_at(ID_LEN);
    // The modulo bias only skews the public id, never the secret.
    let id: String = id_bytes
        .iter()
        .map(|b| char::from(ID_ALPHABET[usize::from(*b) % ID_ALPHABET.len()]))
        .collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    Ok(NewKey {
        secret: format!("{KEY_PREFIX}{id}_{secret}"),
        id,
    })
}

/// Lowercase hex SHA-256 of a key string, as stored.
pub(crate) fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The id of a well-formed key string, `None` when malformed.
pub(crate) fn parse(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    if rest.len() != ID_LEN + 1 + SECRET_LEN || !rest.is_ascii() {
        return None;
    }
    let (id, tail) = rest.split_at(ID_LEN);
    let secret = tail.strip_prefix('_')?;
    let id_ok = id.bytes().all(|b| ID_ALPHABET.contains(&b));
    let secret_ok = secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(id)
}

/// Whether `id` has the shape of a key id (checked before any engine lookup).
pub(crate) fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b))
}

/// Whether a presented token is shaped like an API key (`jwk_…`), e.g. one put in
/// `?token=` by mistake.
pub(crate) fn looks_like_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

/// The key a request presents: `X-Api-Key`, or `Authorization: Bearer jwk_…`.
pub(crate) fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(v.to_str().unwrap_or_default().trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))?
        .trim();
    token.starts_with(KEY_PREFIX).then_some(token)
}

/// The caller a key stands for.
pub(crate) fn principal(key: &ApiKey) -> Principal {
    let scopes: Vec<&str> = key.scopes.iter().map(String::as_str).collect();
    Principal::with_scopes(
        Access {
            tenant: Some(key.tenant.clone()),
            jobs: None,
            projects: key.projects.clone(),
        },
        Some(format!("key:{}", key.id)),
        &scopes,
        None,
        Some(key.id.clone()),
    )
}

fn invalid(msg: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidApiKey, msg)
}

/// Checks presented keys against the engine's records, with a short cache.
#[derive(Default)]
pub struct KeyVerifier {
    // Short critical sections (a lookup or an insert); never held across an await.
    cache: Mutex<HashMap<String, (Instant, ApiKey)>>,
}

impl KeyVerifier {
    fn cached(&self, id: &str) -> Option<ApiKey> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(id)
            .filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(_, k)| k.clone())
    }

    fn remember(&self, key: &ApiKey) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.id.clone(), (Instant::now(), key.clone()));
    }

    /// Drops a cached record (after a revocation on this instance).
    pub(crate) fn forget(&self, id: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(id);
    }

    /// The caller behind a presented key, or `401 invalid_api_key`.
    pub(crate) async fn verify(&self, hub: &Hub, presented: &str) -> Result<Principal, ApiError> {
        let Some(id) = parse(presented) else {
            return Err(invalid("malformed API key"));
        };
        let key = match self.cached(id) {
            Some(k) => k,
            None => {
                let Some(k) = hub.key_by_id(id).await? else {
                    return Err(invalid("unknown or revoked API key"));
                };
                self.remember(&k);
                k
            }
        };
        let matches: bool = hash(presented).as_bytes().ct_eq(key.hash.as_bytes()).into();
        if !matches || key.revoked {
            return Err(invalid("unknown or revoked API key"));
        }
        Ok(principal(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = generate().unwrap_or_else(|e| panic!("{e}"));
        let b = generate().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN);
        assert_eq!(parse(&a.secret), Some(a.id.as_str()));
        assert!(valid_id(&a.id));
        assert_eq!(hash(&a.secret).len(), 64);
        assert_ne!(hash(&a.secret), hash(&b.secret));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let good = generate().unwrap_or_else(|e| panic!("{e}")).secret;
        assert!(parse(&good[..good.len() - 1]).is_none());
        assert!(parse(&good.replacen("jwk_", "jwt_", 1)).is_none());
        assert!(parse(&format!("{good}x")).is_none());
        assert!(parse(&good.replacen('_', ".", 2)).is_none());
        assert!(parse("jwk_").is_none());
    }
}
