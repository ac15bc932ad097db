//! Liveness deadlines on Redis: one sorted set per prefix (`<prefix>deadlines`),
//! members `b:<job key>` / `t:<job key>` scored by their time in ms, shared by every
//! instance (see `jobwire_core::liveness` for what the members mean and why several
//! instances scanning the same set write each event once).

use crate::RedisEngine;
use jobwire_core::HubError;
use jobwire_proto::Timestamp;

impl RedisEngine {
    pub(crate) async fn put_deadline(
        &self,
        member: &str,
        at: Option<Timestamp>,
    ) -> Result<(), HubError> {
        let mut conn = self.conn.clone();
        let key = self.keys.deadlines();
        let r: redis::RedisResult<i64> = match at {
            Some(at) => {
                redis::cmd("ZADD")
                    .arg(&key)
                    .arg(at.as_millis())
                    .arg(member)
                    .query_async(&mut conn)
                    .await
            }
            None => {
                redis::cmd("ZREM")
                    .arg(&key)
                    .arg(member)
                    .query_async(&mut conn)
                    .await
            }
        };
        self.track(r).map(|_| ())
    }

    pub(crate) async fn read_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<String>, HubError> {
        self.writable()?;
        let mut conn = self.conn.clone();
        let r = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.deadlines())
            .arg("-inf")
            .arg(now.as_millis())
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await;
        self.track(r)
    }
}
