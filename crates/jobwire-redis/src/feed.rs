//! The subscriber's connection, in one of two modes:
//! - classic: redis-rs's dedicated pub/sub connection (RESP2), `SUBSCRIBE`/`PUBLISH`;
//! - sharded: a RESP3 connection whose push messages go to a channel, with
//!   `SSUBSCRIBE`/`SPUBLISH` (Redis 7+). redis-rs 1.x offers `ssubscribe` only on its
//!   cluster client, so the commands are sent raw, one channel each: RESP3 answers
//!   each with one `ssubscribe` push, which redis-rs takes as that command's reply.

use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Msg, PushInfo, PushKind, RedisResult, Value};
use std::time::Duration;
use tokio::sync::mpsc;

/// The sending half: subscriptions and pings.
pub(crate) enum Sink {
    Classic(PubSubSink),
    Sharded(MultiplexedConnection),
}

/// The receiving half: channel messages.
pub(crate) enum Messages {
    Classic(PubSubStream),
    Sharded(mpsc::UnboundedReceiver<PushInfo>),
}

/// Opens a connection; `client` must speak RESP3 when `sharded`.
pub(crate) async fn open(
    client: &redis::Client,
    sharded: bool,
    timeout: Duration,
) -> RedisResult<(Sink, Messages)> {
    if !sharded {
        let (sink, stream) = client.get_async_pubsub().await?.split();
        return Ok((Sink::Classic(sink), Messages::Classic(stream)));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_push_sender(tx);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    Ok((Sink::Sharded(conn), Messages::Sharded(rx)))
}

impl Sink {
    pub(crate) async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Sink::Classic(s) => s.subscribe(channels).await,
            Sink::Sharded(c) => {
                let mut pipe = redis::pipe();
                for ch in channels {
                    pipe.cmd("SSUBSCRIBE").arg(ch).ignore();
                }
                pipe.query_async::<()>(c).await
            }
        }
    }

    pub(crate) async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Sink::Classic(s) => s.unsubscribe(channel).await,
            Sink::Sharded(c) => redis::cmd("SUNSUBSCRIBE")
                .arg(channel)
                .query_async::<Value>(c)
                .await
                .map(drop),
        }
    }

    pub(crate) async fn ping(&mut self) -> RedisResult<()> {
        match self {
            Sink::Classic(s) => s.ping::<Value>().await.map(drop),
            Sink::Sharded(c) => redis::cmd("PING").query_async::<Value>(c).await.map(drop),
        }
    }
}

impl Messages {
    /// The next channel message; `None` when the connection is gone.
    pub(crate) async fn next(&mut self) -> Option<Msg> {
        match self {
            Messages::Classic(s) => futures_util::StreamExt::next(s).await,
            Messages::Sharded(rx) => loop {
                let push = rx.recv().await?;
                if push.kind == PushKind::Disconnection {
                    return None;
                }
                // Subscription confirmations are copied here too; skip them.
                if let Some(msg) = Msg::from_push_info(push) {
                    return Some(msg);
                }
            },
        }
    }
}
