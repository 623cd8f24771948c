//! One Redis pub/sub subscription kept up for the life of its owner: the token revocations
//! (`auth.rs`) and the replicas' write markers (`db/replicas.rs`) share this loop, so both
//! reconnect, back off and report a lost subscription the same way. A subscriber is told when
//! it is (again) subscribed and when it is not, because messages published in between are
//! lost and each owner must then stop trusting what they would have told it.
//!
//! On a Redis Cluster (`REDIS_URL=redis+cluster://…`) the subscription is sharded: SSUBSCRIBE
//! through an async cluster connection speaking RESP3, which sends it to the master owning the
//! channel's slot and delivers messages as push frames; publishers SPUBLISH there
//! ([`crate::redis_pool::RedisConn::publish`]). Before Redis 7 (no SSUBSCRIBE) plain SUBSCRIBE,
//! which the cluster bus broadcasts from any node. When the slot moves (failover, resharding)
//! the server ends the subscription with an SUNSUBSCRIBE push and a dropped node shows up as a
//! disconnection push: both count as unsubscribed until the channel is subscribed again.

use std::{sync::Weak, time::Duration};

use anyhow::Context;
use bb8_redis::redis;

use crate::redis_pool::RedisTarget;

/// What the owner of a subscription does with its events. Called on the listener's task.
pub trait Subscriber: Send + Sync + 'static {
    /// Subscribed: every message published from now on arrives.
    fn subscribed(&self);
    fn message(&self, msg: &redis::Msg);
    /// Not subscribed (not yet, or no more): messages published now are lost.
    fn unsubscribed(&self);
}

/// Where subscriptions connect: `REDIS_URL`, parsed.
#[derive(Clone)]
pub enum Source {
    Single(redis::Client),
    Cluster(Vec<String>),
}

impl Source {
    pub fn open(redis_url: &str) -> anyhow::Result<Source> {
        Ok(match RedisTarget::parse(redis_url)? {
            RedisTarget::Single(url) => Source::Single(redis::Client::open(url).context("parsing REDIS_URL")?),
            RedisTarget::Cluster(seeds) => Source::Cluster(seeds),
        })
    }
}

/// The server does not know the command (SSUBSCRIBE/SPUBLISH before Redis 7).
pub fn is_unknown_command(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("unknown command") || text.contains("ERR unknown")
}

/// Keeps `owner` subscribed to `channel` until it is dropped, reconnecting with backoff
/// (50 ms doubling to 2 s). `what` names the channel in logs (`token revocations`).
pub async fn follow<S: Subscriber>(source: Source, channel: String, what: &'static str, owner: Weak<S>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let subscribed_once = match &source {
            Source::Single(client) => follow_single(client, &channel, what, &owner).await,
            Source::Cluster(seeds) => follow_cluster(seeds, &channel, what, &owner).await,
        };
        let Some(o) = owner.upgrade() else { return };
        o.unsubscribed();
        drop(o);
        if subscribed_once {
            backoff = Duration::from_millis(50);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One connection's life; true if it was subscribed at some point. Returns when it is lost
/// (or the owner is gone).
async fn follow_single<S: Subscriber>(client: &redis::Client, channel: &str, what: &str, owner: &Weak<S>) -> bool {
    use futures_util::StreamExt;
    let mut pubsub = match client.get_async_pubsub().await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "cannot connect the listener for {what}");
            return false;
        }
    };
    if let Err(e) = pubsub.subscribe(channel).await {
        tracing::warn!(error = %e, channel = %channel, "cannot subscribe to {what}");
        return false;
    }
    let Some(o) = owner.upgrade() else { return true };
    tracing::debug!(channel = %channel, "subscribed to {what}");
    o.subscribed();
    drop(o);
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        let Some(o) = owner.upgrade() else { return true };
        o.message(&msg);
    }
    tracing::warn!(channel = %channel, "subscription to {what} lost; reconnecting");
    true
}

/// SSUBSCRIBE (or SUBSCRIBE before Redis 7) through a RESP3 cluster connection of its own.
async fn follow_cluster<S: Subscriber>(seeds: &[String], channel: &str, what: &str, owner: &Weak<S>) -> bool {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Subscribing waits for the node's confirmation; a few seconds covers a slow node.
    let client = match RedisTarget::cluster_client(seeds, Duration::from_secs(5), Some(tx)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the cluster client for {what}");
            return false;
        }
    };
    let mut conn = match client.get_async_connection().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "cannot connect the listener for {what}");
            return false;
        }
    };
    let mut sharded = true;
    let mut subscribed_once = false;
    loop {
        let r = if sharded { conn.ssubscribe(channel).await } else { conn.subscribe(channel).await };
        match r {
            Ok(()) => {}
            Err(e) if sharded && is_unknown_command(&e) => {
                tracing::info!("Redis Cluster without sharded pub/sub (before Redis 7): {what} use SUBSCRIBE");
                sharded = false;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, channel = %channel, "cannot subscribe to {what}");
                return subscribed_once;
            }
        }
        let Some(o) = owner.upgrade() else { return true };
        // Logged at info: on a cluster, which kind and when (again, after a failover) matters.
        tracing::info!(channel = %channel, sharded, "subscribed to {what}");
        o.subscribed();
        drop(o);
        subscribed_once = true;
        // Until the subscription ends: then subscribe again (the slot's new owner, after a
        // failover) on the same connection, which has re-read the topology by then.
        loop {
            let Some(push) = rx.recv().await else { return true };
            let Some(o) = owner.upgrade() else { return true };
            match push.kind {
                redis::PushKind::Message | redis::PushKind::SMessage => {
                    if let Some(msg) = redis::Msg::from_push_info(push) {
                        o.message(&msg);
                    }
                }
                redis::PushKind::Disconnection | redis::PushKind::SUnsubscribe | redis::PushKind::Unsubscribe => {
                    tracing::warn!(channel = %channel, kind = ?push.kind, "subscription to {what} lost; subscribing again");
                    o.unsubscribed();
                    break;
                }
                _ => {}
            }
        }
        // Give a failover a moment to settle before asking for the slot's owner.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::*;
    use crate::devsvc::PrivateRedisCluster;
    use crate::redis_pool::{RedisManager, RedisPool};

    #[derive(Default)]
    struct Recorder(Mutex<(bool, Vec<String>)>);

    impl Subscriber for Recorder {
        fn subscribed(&self) {
            self.0.lock().unwrap().0 = true;
        }
        fn message(&self, msg: &redis::Msg) {
            self.0.lock().unwrap().1.push(msg.get_payload().unwrap());
        }
        fn unsubscribed(&self) {
            self.0.lock().unwrap().0 = false;
        }
    }

    async fn until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes `payload` until the recorder has it (a message published while the
    /// subscription moves is lost by design; the owner is told it is unsubscribed meanwhile).
    async fn delivered(pool: &RedisPool, channel: &str, rec: &Recorder, payload: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut conn) = pool.get().await {
                let _ = conn.publish(channel, payload).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if rec.0.lock().unwrap().1.iter().any(|p| p == payload) {
                return;
            }
            assert!(Instant::now() < deadline, "{payload} never arrived");
        }
    }

    /// Sharded pub/sub on a cluster, and again after the master owning the channel's slot
    /// is SIGKILLed and its replica promoted: the owner is told it was unsubscribed, then
    /// subscribed again, and messages flow once more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cluster_subscription_survives_a_failover() {
        let mut cluster = tokio::task::spawn_blocking(|| PrivateRedisCluster::start(3, 1)).await.unwrap().unwrap();
        let url = cluster.url();
        let RedisTarget::Cluster(seeds) = RedisTarget::parse(&url).unwrap() else { panic!("{url} is a cluster") };
        let channel = format!("t{}:chan", uuid::Uuid::new_v4().simple());
        let rec = Arc::new(Recorder::default());
        tokio::spawn(follow(Source::open(&url).unwrap(), channel.clone(), "test messages", Arc::downgrade(&rec)));
        let manager = RedisManager::for_target(&RedisTarget::Cluster(seeds), Duration::from_secs(2)).unwrap();
        let pool: RedisPool = bb8::Pool::builder().max_size(2).build_unchecked(manager);
        until("subscribed", 10, || rec.0.lock().unwrap().0).await;
        delivered(&pool, &channel, &rec, "before").await;

        // The master that answers PUBSUB SHARDNUMSUB for the channel with 1 holds it.
        let owner = cluster
            .nodes
            .iter()
            .position(|n| {
                let mut c = redis::Client::open(n.url()).unwrap().get_connection().unwrap();
                let v: Vec<redis::Value> =
                    redis::cmd("PUBSUB").arg("SHARDNUMSUB").arg(&channel).query(&mut c).unwrap_or_default();
                matches!(v.get(1), Some(redis::Value::Int(1)))
            })
            .expect("a node has the subscriber");
        let pid = cluster.nodes[owner].pid().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()), nix::sys::signal::SIGKILL)
            .unwrap();
        until("told it is unsubscribed", 10, || !rec.0.lock().unwrap().0).await;
        let killed = Instant::now();
        delivered(&pool, &channel, &rec, "after").await;
        assert!(rec.0.lock().unwrap().0, "subscribed again");
        println!("messages flow again {:?} after the subscription was lost", killed.elapsed());
        cluster.nodes[owner].stop().ok();
    }
}
