//! Connection limits: total, per client IP, per tenant. A WebSocket or SSE request
//! takes a [`Permit`] before it is accepted; dropping the permit (when the session
//! ends) gives the slot back. Over a limit: HTTP 429 `too_many_connections`, counted
//! in `jobwire_limit_rejections_total`.

use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use jobwire_core::metrics::Metrics;
use jobwire_proto::ErrorCode;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

/// Limits; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnLimits {
    pub max_total: usize,
    pub max_per_ip: usize,
    pub max_per_tenant: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    per_tenant: HashMap<String, usize>,
}

/// Counts open streaming connections against [`ConnLimits`].
pub struct Limiter {
    limits: ConnLimits,
    // One short critical section per connect/disconnect; never held across an await.
    counts: Mutex<Counts>,
    metrics: Arc<Metrics>,
}

/// A held connection slot.
pub struct Permit {
    limiter: Arc<Limiter>,
    /// Whether this slot counts in the total (request-body slots count per IP only).
    total: bool,
    ip: Option<IpAddr>,
    tenant: Option<String>,
}

fn dec<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = map.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            map.remove(k);
        }
    }
}

impl Limiter {
    pub fn new(limits: ConnLimits, metrics: Arc<Metrics>) -> Arc<Limiter> {
        Arc::new(Limiter {
            limits,
            counts: Mutex::new(Counts::default()),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a connection from `ip` of `tenant`, or refuses with 429.
    pub fn acquire(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        tenant: Option<&str>,
    ) -> Result<Permit, ApiError> {
        let l = self.limits;
        let mut c = self.lock();
        let over = |max: usize, n: usize| max > 0 && n >= max;
        let which = if over(l.max_total, c.total) {
            Some("the server's connection limit")
        } else if ip.is_some_and(|ip| over(l.max_per_ip, c.per_ip.get(&ip).copied().unwrap_or(0))) {
            Some("the per-IP connection limit")
        } else if tenant
            .is_some_and(|t| over(l.max_per_tenant, c.per_tenant.get(t).copied().unwrap_or(0)))
        {
            Some("the per-tenant connection limit")
        } else {
            None
        };
        if let Some(which) = which {
            drop(c);
            self.metrics.limit_rejections.inc();
            return Err(ApiError::new(
                ErrorCode::TooManyConnections,
                format!("{which} is reached; retry later"),
            ));
        }
        c.total += 1;
        if let Some(ip) = ip {
            *c.per_ip.entry(ip).or_default() += 1;
        }
        if let Some(t) = tenant {
            *c.per_tenant.entry(t.to_owned()).or_default() += 1;
        }
        Ok(Permit {
            limiter: self.clone(),
            total: true,
            ip,
            tenant: tenant.map(str::to_owned),
        })
    }

    /// Takes a per-IP slot for a request whose body is still arriving (a trickling
    /// body holds a connection just like a stream does), or refuses with 429.
    pub fn acquire_body(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Permit, ApiError> {
        let max = self.limits.max_per_ip;
        let mut c = self.lock();
        if let Some(ip) = ip {
            if max > 0 && c.per_ip.get(&ip).copied().unwrap_or(0) >= max {
                drop(c);
                self.metrics.limit_rejections.inc();
                return Err(ApiError::new(
                    ErrorCode::TooManyConnections,
                    "the per-IP connection limit is reached; retry later",
                ));
            }
            *c.per_ip.entry(ip).or_default() += 1;
        }
        Ok(Permit {
            limiter: self.clone(),
            total: false,
            ip,
            tenant: None,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.limiter.lock();
        if self.total {
            c.total = c.total.saturating_sub(1);
        }
        if let Some(ip) = &self.ip {
            dec(&mut c.per_ip, ip);
        }
        if let Some(t) = &self.tenant {
            dec(&mut c.per_tenant, t);
        }
    }
}

/// Extractor: the client's IP, when the server was started with connect info.
pub(crate) struct PeerIp(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
