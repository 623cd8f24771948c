//! One Redis pub/sub subscription kept up for the life of its owner: the token revocations
//! (`auth.rs`) and the replicas' write markers (`db/replicas.rs`) share this loop, so both
//! reconnect, back off and report a lost subscription the same way. A subscriber is told when
//! it is (again) subscribed and when it is not, because messages published in between are
//! lost and each owner must then stop trusting what they would have told it.

use std::{sync::Weak, time::Duration};

use bb8_redis::redis;

/// What the owner of a subscription does with its events. Called on the listener's task.
pub trait Subscriber: Send + Sync + 'static {
    /// Subscribed: every message published from now on arrives.
    fn subscribed(&self);
    fn message(&self, msg: &redis::Msg);
    /// Not subscribed (not yet, or no more): messages published now are lost.
    fn unsubscribed(&self);
}

/// Keeps `owner` subscribed to `channel` until it is dropped, reconnecting with backoff
/// (50 ms doubling to 2 s). `what` names the channel in logs (`token revocations`).
pub async fn follow<S: Subscriber>(client: redis::Client, channel: String, what: &'static str, owner: Weak<S>) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(50);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    let Some(o) = owner.upgrade() else { return };
                    o.subscribed();
                    drop(o);
                    backoff = Duration::from_millis(50);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(o) = owner.upgrade() else { return };
                        o.message(&msg);
                    }
                    tracing::warn!(channel = %channel, "subscription to {what} lost; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, channel = %channel, "cannot subscribe to {what}"),
            },
            Err(e) => tracing::debug!(error = %e, "cannot connect the listener for {what}"),
        }
        let Some(o) = owner.upgrade() else { return };
        o.unsubscribed();
        drop(o);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
