//! Publish rate limits: one token bucket per API key (or per tenant for JWT callers,
//! or per client IP in development mode). Creates, publishes and cancels take one
//! token per event; over the limit they get `429 rate_limited` with `Retry-After`,
//! counted in `jobwire_rate_limited_total`. A rate of 0 turns the limit off.

use crate::auth::Principal;
use crate::error::ApiError;
use jobwire_core::metrics::Metrics;
use jobwire_proto::ErrorCode;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Independent locks, so publishers of different keys rarely contend.
const SHARDS: usize = 16;
/// Buckets per shard before full (idle) ones are dropped.
const SHARD_SOFT_MAX: usize = 4096;

/// Limit settings: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PublishLimit {
    /// Events per second; `0.0`: no limit.
    pub rate: f64,
    /// Bucket size: events that may be sent at once after a quiet period.
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by caller.
pub struct PublishLimiter {
    limit: PublishLimit,
    // One short critical section per publish; never held across an await.
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
    metrics: Arc<Metrics>,
}

impl PublishLimiter {
    pub fn new(limit: PublishLimit, metrics: Arc<Metrics>) -> PublishLimiter {
        PublishLimiter {
            limit,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            metrics,
        }
    }

    /// Whether limits are on.
    pub fn enabled(&self) -> bool {
        self.limit.rate > 0.0
    }

    /// Takes `cost` tokens for `who`, or says how long to wait. A request is let
    /// through when the bucket holds enough for it (or is full, for a batch larger
    /// than the burst); it may then go below zero, which later callers wait out.
    pub fn check(&self, who: &str, cost: u32) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let r = self.check_at(who, f64::from(cost.max(1)), Instant::now());
        if r.is_err() {
            self.metrics.rate_limited.inc();
        }
        r
    }

    fn check_at(&self, who: &str, cost: f64, now: Instant) -> Result<(), Duration> {
        let PublishLimit { rate, burst } = self.limit;
        let burst = burst.max(1.0);
        let mut h = DefaultHasher::new();
        who.hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SHARD_SOFT_MAX && !map.contains_key(who) {
            // A bucket that has refilled is the same as no bucket: drop those.
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(who.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        let need = cost.min(burst);
        if b.tokens >= need {
            b.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((need - b.tokens) / rate))
        }
    }
}

/// Whose bucket a publish is charged to: the API key, else the tenant, else the
/// client IP (development mode).
fn bucket_of(caller: &Principal, ip: Option<IpAddr>) -> String {
    match (&caller.api_key, &caller.access.tenant, ip) {
        (Some(k), _, _) => format!("key:{k}"),
        (None, Some(t), _) => format!("tenant:{t}"),
        (None, None, Some(ip)) => format!("ip:{ip}"),
        (None, None, None) => "anonymous".to_owned(),
    }
}

impl PublishLimiter {
    /// Charges `events` to the caller's bucket, or refuses with `429 rate_limited`
    /// and `Retry-After` (whole seconds, at least 1).
    pub(crate) fn charge(
        &self,
        caller: &Principal,
        ip: Option<IpAddr>,
        events: usize,
    ) -> Result<(), ApiError> {
        if !self.enabled() {
            return Ok(());
        }
        let cost = u32::try_from(events).unwrap_or(u32::MAX);
        self.check(&bucket_of(caller, ip), cost).map_err(|wait| {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::new(
                ErrorCode::RateLimited,
                format!("publish rate limit exceeded; retry in {secs} s"),
            )
            .retry_after(secs.max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: f64) -> PublishLimiter {
        PublishLimiter::new(PublishLimit { rate, burst }, Arc::default())
    }

    #[test]
    fn a_bucket_allows_its_burst_then_the_rate() {
        let l = limiter(10.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("k", 1.0, t0).is_ok());
        }
        let wait = l.check_at("k", 1.0, t0).err();
        assert!(
            wait.is_some_and(|w| w > Duration::from_millis(90) && w <= Duration::from_millis(100))
        );
        // Other callers have their own bucket.
        assert!(l.check_at("other", 1.0, t0).is_ok());
        // After 100 ms one token is back.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.check_at("k", 1.0, t1).is_ok());
        assert!(l.check_at("k", 1.0, t1).is_err());
    }

    #[test]
    fn a_batch_larger_than_the_burst_passes_when_full_and_is_paid_back() {
        let l = limiter(10.0, 5.0);
        let t0 = Instant::now();
        assert!(l.check_at("k", 20.0, t0).is_ok());
        // 15 tokens of debt + 1 needed: 1.6 s.
        let wait = l.check_at("k", 1.0, t0).err();
        assert!(wait.is_some_and(|w| (w.as_secs_f64() - 1.6).abs() < 0.01));
        assert!(l
            .check_at("k", 1.0, t0 + Duration::from_millis(1600))
            .is_ok());
    }

    #[test]
    fn rate_zero_is_off() {
        let l = limiter(0.0, 0.0);
        for _ in 0..1000 {
            assert!(l.check("k", 100).is_ok());
        }
    }
}
