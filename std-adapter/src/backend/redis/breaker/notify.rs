//! Pub/sub notification: a RESP3 connection subscribed to the breaker's
//! `…:events` channel wakes the reconciliation task as soon as any
//! instance changes the decision, so the periodic reconciliation is only
//! the backstop. On a Cluster the script `SPUBLISH`es and the subscriber
//! `SSUBSCRIBE`s (sharded pub/sub: the message stays on the shard that
//! owns the breaker's hash tag instead of being broadcast to every node).
//! Reconnects with backoff; a reconnect reconciles at once (messages sent
//! while it was away are lost, the decision is not). A standalone
//! subscription is checked with a `PING` every second, so one that fell
//! silent is replaced within about the timeout. A subscription the
//! server ends by itself (a Cluster sends `sunsubscribe` when the
//! channel's slot moves to another shard; the client then forgets the
//! channel and would never subscribe again) is made again the same way.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::{AsyncConnectionConfig, PushInfo, PushKind, TlsCertificates};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::Notify;

use super::super::cluster;
use super::Inner;
use crate::redact::Redacted;

/// Where the subscription is made.
pub(super) enum Subscriber {
    /// A standalone server: `SUBSCRIBE` (the client asks for RESP3).
    Single(redis::Client),
    /// A Cluster, through any of its nodes: `SSUBSCRIBE`, routed to the
    /// shard that owns the channel's slot.
    Cluster {
        nodes: Vec<String>,
        certificates: Option<TlsCertificates>,
    },
}

/// `url` with RESP3 asked for (push messages on a multiplexed connection):
/// its query's `protocol` is `resp3`, whatever it was, its other
/// parameters kept. The subscription needs RESP3 whatever the URL asks of
/// the commands' connection: `protocol=resp2` (or `protocol=` in a
/// password, or a `#` after which the parameter was appended) left it on
/// RESP2, where it failed at every attempt, logged at debug only. A URL
/// that does not parse is returned as it is, for the client to refuse.
pub(super) fn resp3(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(key, _)| key != "protocol")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("protocol", "resp3");
    parsed.into()
}

/// Subscribes to `channel` with `client` (RESP3, see [`resp3`]) and
/// wakes `notify` on every message, until `inner` is gone.
pub(super) fn spawn(
    subscriber: Subscriber,
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
            match listen(&subscriber, &channel, &inner, &notify, timeout).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::debug!(
                        channel = %Redacted(&channel),
                        error = %Redacted(&e.to_string()),
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
    subscriber: &Subscriber,
    channel: &str,
    inner: &Weak<Inner>,
    notify: &Notify,
    timeout: Duration,
) -> redis::RedisResult<()> {
    let (tx, rx) = unbounded_channel();
    match subscriber {
        Subscriber::Single(client) => {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_push_sender(tx);
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            conn.subscribe(channel).await?;
            // A subscription receives and sends nothing of its own: one
            // that fell silent (an expired NAT entry, a partition; no
            // reset) would wait for messages for good, every change then
            // reaching this instance only at its sync interval (found by
            // a hostile review). A PING every heartbeat (RESP3 takes
            // commands while subscribed) finds it out within the timeout.
            tokio::select! {
                r = wake_on_messages(rx, || inner.strong_count() != 0, notify) => r,
                r = heartbeat(conn, timeout) => r,
            }
        }
        Subscriber::Cluster {
            nodes,
            certificates,
        } => {
            let mut conn = cluster::subscriber(nodes, certificates.clone(), timeout, tx).await?;
            conn.ssubscribe(channel).await?;
            wake_on_messages(rx, || inner.strong_count() != 0, notify).await
        }
    }
}

/// How often a subscribed standalone connection is checked with `PING`.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// `PING`s `conn` every [`HEARTBEAT`]; an error, or no answer within
/// `timeout`, ends it (the caller subscribes again on a new connection).
async fn heartbeat(
    mut conn: redis::aio::MultiplexedConnection,
    timeout: Duration,
) -> redis::RedisResult<()> {
    let ping = redis::cmd("PING");
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let answer = ping.query_async::<redis::Value>(&mut conn);
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "notification connection silent",
                )));
            }
        }
    }
}

/// Wakes `notify` now (whatever was missed while unsubscribed is picked
/// up) and on every message, until the connection or the subscription
/// ends (an error: the caller subscribes again) or the breaker is gone
/// (`alive` says no: `Ok`).
async fn wake_on_messages(
    mut rx: UnboundedReceiver<PushInfo>,
    alive: impl Fn() -> bool,
    notify: &Notify,
) -> redis::RedisResult<()> {
    notify.notify_one();
    while let Some(push) = rx.recv().await {
        if !alive() {
            return Ok(());
        }
        match push.kind {
            PushKind::Message | PushKind::SMessage => notify.notify_one(),
            PushKind::Disconnection => break,
            // Never asked for here: the server ended the subscription.
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "notification subscription ended by the server",
                )));
            }
            _ => {}
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::Io,
        "notification connection closed",
    )))
}

#[cfg(test)]
mod tests {
    use super::{resp3, wake_on_messages};

    /// The subscription asks for RESP3 whatever the URL holds: `protocol=`
    /// was looked for anywhere in it (a password holding it, or the
    /// commands' own `protocol=resp2`, kept the subscription on RESP2,
    /// failing at every attempt), and the parameter was appended after a
    /// fragment, where no client reads it (noticed by a hostile review).
    #[test]
    fn the_subscription_url_asks_for_resp3_whatever_the_url_holds() {
        for (url, want) in [
            (
                "redis://127.0.0.1:6379",
                "redis://127.0.0.1:6379?protocol=resp3",
            ),
            (
                "redis://h:1/2?protocol=resp2",
                "redis://h:1/2?protocol=resp3",
            ),
            (
                "redis://:pw%3Fprotocol%3D@h:1/0?db=1&protocol=RESP2",
                "redis://:pw%3Fprotocol%3D@h:1/0?db=1&protocol=resp3",
            ),
            ("redis://h:1/0#frag", "redis://h:1/0?protocol=resp3#frag"),
            ("rediss://u:p@h:1", "rediss://u:p@h:1?protocol=resp3"),
        ] {
            assert_eq!(resp3(url), want, "{url}");
            let info: redis::ConnectionInfo =
                redis::IntoConnectionInfo::into_connection_info(resp3(url).as_str()).unwrap();
            assert_eq!(
                info.redis_settings().protocol(),
                redis::ProtocolVersion::RESP3,
                "{url}"
            );
        }
        assert_eq!(resp3("not a url"), "not a url");
    }

    use redis::{PushInfo, PushKind};
    use tokio::sync::mpsc::unbounded_channel;
    use tokio::sync::Notify;

    fn push(kind: PushKind) -> PushInfo {
        PushInfo {
            kind,
            data: Vec::new(),
        }
    }

    /// A subscription the server ends (a Cluster's `sunsubscribe` when the
    /// slot moves) is an error, so that `spawn` subscribes again; before,
    /// it was ignored and the connection stayed up, deaf.
    #[tokio::test]
    async fn a_subscription_the_server_ends_is_made_again() {
        for ended in [PushKind::SUnsubscribe, PushKind::Unsubscribe] {
            let (tx, rx) = unbounded_channel();
            tx.send(push(PushKind::SMessage)).unwrap();
            tx.send(push(ended.clone())).unwrap();
            tx.send(push(PushKind::Message)).unwrap();
            let notify = Notify::new();
            // The sender stays open: only the push can end the listening.
            let outcome = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                wake_on_messages(rx, || true, &notify),
            )
            .await
            .unwrap_or_else(|_| panic!("{ended:?} left the connection listening, deaf"));
            assert!(outcome.is_err(), "{ended:?} must end the listening");
            drop(tx);
        }
    }

    #[tokio::test]
    async fn messages_wake_and_a_closed_connection_or_a_gone_breaker_ends() {
        let (tx, rx) = unbounded_channel();
        tx.send(push(PushKind::Message)).unwrap();
        tx.send(push(PushKind::Disconnection)).unwrap();
        let notify = Notify::new();
        assert!(wake_on_messages(rx, || true, &notify).await.is_err());
        // Woken (at the start and by the message): a permit is stored.
        tokio::time::timeout(std::time::Duration::from_secs(1), notify.notified())
            .await
            .expect("woken");

        let (tx, rx) = unbounded_channel();
        tx.send(push(PushKind::SUnsubscribe)).unwrap();
        assert!(
            wake_on_messages(rx, || false, &notify).await.is_ok(),
            "a breaker gone ends quietly, whatever comes"
        );
    }
}
