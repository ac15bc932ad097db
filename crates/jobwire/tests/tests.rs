//! jobwire's integration tests: one binary, each module a group of scripts that drive
//! a real server (in-process on an ephemeral port, or the real binary as a child
//! process) with real HTTP, WebSocket and SSE clients.
//!
//! `api`, `websocket` and `sse` are the protocol suite: every script runs twice, as
//! `<module>::embedded::<name>` and `<module>::redis::<name>` (on a shared
//! `redis-server` the harness starts), so both engines keep one contract.
//!
//! - `api`: HTTP endpoints: create (idempotent), publish (single, batch, atomic,
//!   idempotent), every class of bad input, history, list, cancel, retention, health,
//!   metrics, OpenAPI, docs/protocol.md agreeing with the code table.
//! - `websocket`: single-job and multiplexed sockets: snapshot + replay + live,
//!   ordering, publish/subscribe races without gap or duplicate, reconnect with
//!   `since`, bad frames, heartbeats and idle timeout, slow consumers (coalescing and
//!   close 4001), terminal close 1000, shutdown close 1012.
//! - `autobahn`: WebSocket conformance: the Autobahn cases (via `kosoku`) against
//!   `/v1/ws` and `/v1/jobs/{id}/ws`, diffed against committed expected outcomes.
//! - `channels`: project and notification channel sockets on both engines: what
//!   arrives, tenant/user isolation, allow-lists, lossless resume, two Redis instances.
//! - `isolation`: tenant and allow-list isolation of every id and cursor (list pages
//!   and `next`, history, project and every-project channels, notifications, keys).
//! - `sse`: Server-Sent Events stream, Last-Event-ID resume, end after terminal, 204.
//! - `compat`: the wire dialects (`--compat`): golden frames of each system built from
//!   v1 events (both engines), bad input per dialect, and each system's own client
//!   code (Python `websockets`, JavaScript in node) following a job to its end.
//! - `connections`: bad-day connections: a peer that stops reading (write deadline),
//!   trickling bodies (408, per-IP slots), client-initiated close, shutdown of the
//!   binary while sessions drain (every event, then 1012; newcomers get 503), and the
//!   small refusals (dev-mode `auth`, keys in `?token=`, weak secrets, bad paths).
//! - `durability`: the real binary killed with SIGKILL mid-publish and restarted:
//!   every acknowledged event is still there; SIGTERM closes sockets with 1012.
//! - `cluster`: several instances on one Redis: cross-instance delivery, concurrent
//!   publishers, an instance killed with SIGKILL, Redis killed and restarted; each
//!   script on classic and on sharded pub/sub (`--redis-sharded-pubsub`).
//! - `redis_tls`: `rediss://` against a TLS-only redis-server with a CA generated at
//!   run time: two instances, password in the URL, mutual TLS, and misconfigurations
//!   (no CA, another CA, wrong name, wrong password) failing fast with clear errors.
//! - `faults`: fault injection against the real binary: a full disk (an 8 MiB tmpfs:
//!   507 `storage_full`, `/readyz` 503, healing without a restart, every acknowledged
//!   event exactly once), damaged store files (cut, 0 bytes, garbled: refused at
//!   startup without a panic, `store check`, `store repair`), Redis at `maxmemory`.
//! - `cli`: the publishing commands, `watch` (exit codes, survives a restart), `demo`.
//! - `semantics`: liveness (`stalled`/`recovered`/`worker_lost`, heartbeats, deadlines
//!   across `kill -9` and across two instances on Redis), cancel routed to the worker
//!   (control stream, publish reply, `cancel_timeout`, `jobs:cancel`), rate and ETA.
//! - `keys`: worker API keys (create, list, revoke, tenant isolation, scopes, both
//!   engines, across instances, the `jobwire keys` CLI), publish rate limits (429 +
//!   Retry-After) and the handshake timeout against slow-loris clients.

mod support;

mod api;
mod auth;
mod autobahn;
mod channels;
mod cli;
mod cluster;
mod compat;
mod connections;
mod durability;
mod faults;
mod isolation;
mod keys;
mod redis_tls;
mod semantics;
mod sse;
mod websocket;
