//! The store file: opening it with the damage check, the handle the writer reopens
//! after an I/O error, and what redb's errors mean for the hub.
//!
//! redb refuses every read and write after one I/O error ("Previous I/O error
//! occurred. Please close and re-open the database."), so after a failed commit the
//! writer closes the database and opens it again ([`Store::reopen`]); redb's recovery
//! on open rolls the file back to the last durable commit.

use crate::error::HubError;
use redb::Database;
use std::cell::Cell;
use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, RwLock};
use std::time::{Duration, Instant};

/// The store's file name inside the data directory.
pub const FILE: &str = "jobwire.redb";

/// How long a reopen waits for in-flight reads to let go of the old database.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Whether an I/O error means "out of space" (ENOSPC, EDQUOT).
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(28 | 122))
}

/// Maps a redb error: out of space is [`HubError::StorageFull`], the rest
/// [`HubError::Storage`].
pub(crate) fn db_err(e: impl Into<redb::Error>) -> HubError {
    let e: redb::Error = e.into();
    match &e {
        redb::Error::Io(io) if is_full(io) => HubError::StorageFull(e.to_string()),
        _ => HubError::Storage(e.to_string()),
    }
}

/// Maps an I/O error of the journal or the space probe like [`db_err`].
pub(crate) fn io_err(e: std::io::Error) -> HubError {
    if is_full(&e) {
        HubError::StorageFull(e.to_string())
    } else {
        HubError::Storage(e.to_string())
    }
}

thread_local! {
    /// Set while [`quietly`] runs on this thread: its panics are expected.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(message)` without printing it. redb asserts
/// on some damaged files (truncated, garbled allocator pages) instead of returning
/// an error; such a panic is a finding about the file, not a bug to report.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let out = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    out.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "redb panicked".to_owned())
    })
}

/// A redb panic on open, in words: most come from a cut file or garbled pages.
fn explain(panic: &str) -> String {
    if panic.contains("raw_file_len") {
        format!("truncated: the file is shorter than its header says ({panic})")
    } else {
        format!("unreadable pages ({panic})")
    }
}

/// The text of a damaged-store refusal: the file, what is wrong, what to do.
pub(crate) fn damaged(path: &Path, what: &str) -> HubError {
    let dir = path.parent().unwrap_or(Path::new("."));
    HubError::Damaged(format!(
        "the store file {} is damaged ({what}). Restore it from a backup (with the server \
         stopped), or run `jobwire store repair --data-dir {}` to move it aside and keep \
         what can be read",
        path.display(),
        dir.display()
    ))
}

/// How a store file looks before opening.
pub(crate) enum Found {
    /// No file: a fresh store will be created.
    Missing,
    /// A file with data in it.
    Present,
}

/// Checks the file exists with data: a 0-byte file is damage (the server never
/// leaves one behind: redb writes its header when it creates the file).
pub(crate) fn inspect(path: &Path) -> Result<Found, HubError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Found::Missing),
        Err(e) => Err(HubError::Storage(format!("{}: {e}", path.display()))),
        Ok(m) if !m.is_file() => Err(damaged(path, "not a regular file")),
        Ok(m) if m.len() == 0 => Err(damaged(path, "the file is empty (0 bytes)")),
        Ok(_) => Ok(Found::Present),
    }
}

/// Opens (or creates) the store at `path`. With `verify`, an existing file is
/// checked page by page (redb's `check_integrity`) before it is used. Damage is
/// [`HubError::Damaged`]; never panics.
pub(crate) fn open_checked(path: &Path, verify: bool) -> Result<Database, HubError> {
    let found = inspect(path)?;
    let opened = quietly(|| Database::create(path)).map_err(|p| damaged(path, &explain(&p)))?;
    let mut db = match opened {
        Ok(db) => db,
        Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(what))) => {
            return Err(damaged(path, &what))
        }
        Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            if e.kind() == ErrorKind::UnexpectedEof =>
        {
            return Err(damaged(path, &format!("truncated: {e}")))
        }
        Err(e) => {
            let e = db_err(e);
            return Err(match e {
                HubError::Storage(d) => HubError::Storage(format!("{}: {d}", path.display())),
                other => other,
            });
        }
    };
    if verify && matches!(found, Found::Present) {
        let started = Instant::now();
        match quietly(|| db.check_integrity()) {
            Err(p) => return Err(damaged(path, &explain(&p))),
            Ok(Err(e)) => return Err(damaged(path, &redb::Error::from(e).to_string())),
            Ok(Ok(clean)) => {
                if !clean {
                    tracing::warn!(file = %path.display(), "store integrity check repaired the file's allocator state");
                }
                tracing::info!(file = %path.display(), took = ?started.elapsed(), "store integrity check passed");
            }
        }
    }
    Ok(db)
}

/// The database, shared by the writer (which reopens it) and readers. Empty while a
/// reopen is under way or has failed; readers then answer from the replay tail or
/// fail with `storage_unavailable`.
pub(crate) struct Store {
    pub(crate) path: PathBuf,
    slot: RwLock<Option<Arc<Database>>>,
}

impl Store {
    pub(crate) fn new(path: PathBuf, db: Database) -> Store {
        Store {
            path,
            slot: RwLock::new(Some(Arc::new(db))),
        }
    }

    /// The open database, or an error while it is being reopened.
    pub(crate) fn db(&self) -> Result<Arc<Database>, HubError> {
        self.slot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                HubError::Storage("the store is being reopened after an I/O error".into())
            })
    }

    /// Closes the database and opens it again (redb recovers the file to its last
    /// durable commit). Waits up to [`DRAIN_WAIT`] for in-flight reads to release the
    /// old handle; on failure the slot stays empty and the next call tries again.
    pub(crate) fn reopen(&self, draining: &mut Option<Arc<Database>>) -> Result<(), HubError> {
        if let Some(old) = self.slot.write().unwrap_or_else(|e| e.into_inner()).take() {
            *draining = Some(old);
        }
        if let Some(old) = draining.take() {
            let deadline = Instant::now() + DRAIN_WAIT;
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) if Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(still) => {
                        *draining = Some(still);
                        return Err(HubError::Storage(
                            "reads still hold the store; reopen postponed".into(),
                        ));
                    }
                }
            }
        }
        let db = open_checked(&self.path, false)?;
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
        Ok(())
    }
}
