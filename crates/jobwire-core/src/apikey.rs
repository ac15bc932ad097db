//! API keys for workers, as the engines store them: the [`ApiKey`] record. It holds
//! the SHA-256 of the secret, never the secret itself; generating, hashing and
//! checking presented keys is the server's job (`jobwire-server/src/apikeys.rs`).

use jobwire_proto::Timestamp;
use serde::{Deserialize, Serialize};

/// One API key of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id (12 characters of `[a-z0-9]`), part of the key string.
    pub id: String,
    /// The tenant whose namespace the key acts in.
    pub tenant: String,
    /// Scopes granted (`jobs:publish`, `jobs:watch`, `jobs:admin`).
    pub scopes: Vec<String>,
    /// When set, the key reaches only jobs in these projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
    /// Free text for humans ("render farm, rack 3").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub created_at: Timestamp,
    /// A revoked key is kept (so `list` shows it) but never accepted again.
    #[serde(default)]
    pub revoked: bool,
    /// Lowercase hex SHA-256 of the whole key string. Never sent to clients.
    pub hash: String,
}
