//! What the embedded-engine benches share: a one-worker runtime and a hub on a
//! fresh store in a temporary directory.

use jobwire_core::engine::embedded::Retention;
use jobwire_core::{Hub, HubConfig};
use std::sync::Arc;
use tempfile::TempDir;
use tokio::runtime::Runtime;

pub(crate) struct Embedded {
    pub(crate) rt: Runtime,
    pub(crate) hub: Arc<Hub>,
    _dir: TempDir,
}

/// A hub on a new embedded store (its directory lives as long as the value).
pub(crate) fn embedded() -> Embedded {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let hub = rt
        .block_on(async {
            Hub::open_embedded(
                dir.path().to_path_buf(),
                Retention::default(),
                Default::default(),
                HubConfig::default(),
            )
        })
        .expect("opening the embedded store");
    Embedded { rt, hub, _dir: dir }
}
