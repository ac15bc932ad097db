//! A pattern subscriber for the Redis bridge (`jobwire serve --ingest-redis`):
//! `PSUBSCRIBE`s to the given patterns on a Redis that other systems' workers publish
//! to, and hands each message (channel, payload) to a handler in order. It
//! reconnects with backoff until `stop` resolves. Pub/sub is at-most-once: what is
//! published while this connection is down never reaches it (the SDKs are the
//! lossless path).

use crate::tls;
use futures_util::StreamExt;
use std::future::Future;
use std::time::Duration;

/// First and longest pause between reconnect attempts.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `stop` resolves. `handle` is awaited for each message before the next
/// is read, so every channel's messages keep their order.
pub async fn run<F, Fut>(
    url: String,
    tls_config: crate::RedisTls,
    patterns: Vec<String>,
    stop: impl Future<Output = ()>,
    mut handle: F,
) where
    F: FnMut(String, Vec<u8>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut stop = std::pin::pin!(stop);
    let mut backoff = MIN_BACKOFF;
    loop {
        let mut subscribed = false;
        let session = async {
            let client = tls::client(&url, &tls_config, redis::ProtocolVersion::RESP2)
                .map_err(|e| e.to_string())?;
            let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
            for p in &patterns {
                pubsub.psubscribe(p).await.map_err(|e| e.to_string())?;
            }
            subscribed = true;
            tracing::info!(?patterns, "Redis bridge subscribed");
            let mut stream = pubsub.on_message();
            while let Some(msg) = stream.next().await {
                let channel = msg.get_channel_name().to_owned();
                handle(channel, msg.get_payload_bytes().to_vec()).await;
            }
            Err::<(), String>("connection closed".into())
        };
        tokio::select! {
            _ = &mut stop => return,
            r = session => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "Redis bridge disconnected; reconnecting (messages published meanwhile are lost)");
                }
            }
        }
        if subscribed {
            backoff = MIN_BACKOFF;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
