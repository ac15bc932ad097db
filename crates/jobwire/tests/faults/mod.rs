//! Fault injection against the real binary: a full disk (a small tmpfs), damaged
//! store files, Redis at `maxmemory`.

mod damaged_store;
mod disk_full;
mod redis_oom;
