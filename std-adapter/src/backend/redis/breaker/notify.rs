//! Pub/sub notification: a RESP3 connection subscribed to the breaker's
//! `…:events` channel wakes the reconciliation task as soon as any
//! instance changes the decision, so the periodic reconciliation is only
//! the backstop. Reconnects with backoff; a reconnect reconciles at once
//! (messages sent while it was away are lost, the decision is not).

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::{AsyncConnectionConfig, PushKind};
use tokio::sync::Notify;

use super::Inner;
use crate::redact::redact;

/// `url` with RESP3 asked for (push messages on a multiplexed connection).
pub(super) fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// Subscribes to `channel` with `client` (RESP3, see [`resp3`]) and
/// wakes `notify` on every message, until `inner` is gone.
pub(super) fn spawn(
    client: redis::Client,
    channel: String,
    inner: Weak<Inner>,
    notify: Arc<Notify>,
    timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            if inner.strong_count() == 0 {
                return;
            }
            match listen(&client, &channel, &inner, &notify, timeout).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::debug!(
                        channel = %channel,
                        error = %redact(&e.to_string()),
                        "breaker notifications unavailable; reconciliation continues"
                    );
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}

async fn listen(
    client: &redis::Client,
    channel: &str,
    inner: &Weak<Inner>,
    notify: &Notify,
    timeout: Duration,
) -> redis::RedisResult<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_push_sender(tx);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    conn.subscribe(channel).await?;
    // Subscribed: whatever was missed meanwhile is picked up now.
    notify.notify_one();
    while let Some(push) = rx.recv().await {
        if inner.strong_count() == 0 {
            return Ok(());
        }
        match push.kind {
            PushKind::Message | PushKind::SMessage => notify.notify_one(),
            PushKind::Disconnection => break,
            _ => {}
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Io,
        "notification connection closed",
    )))
}
