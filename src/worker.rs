//! The worker: the task handlers of [`crate::tasks`] over the queue, until shutdown. Run by the
//! `worker` subcommand on its own and by `dev` inside the server process.

use std::{future::Future, sync::Arc};

use crate::{
    config::Config,
    queue::{Worker, WorkerConfig},
    server::Pools,
    tasks::Tasks,
};

/// `WORKER_CONCURRENCY` and `WORKER_GRACE_SECS`; the lease is in [`Config::queue_config`].
pub fn worker_config(cfg: &Config) -> WorkerConfig {
    WorkerConfig { concurrency: cfg.worker_concurrency.max(1), grace: cfg.worker_grace(), ..WorkerConfig::default() }
}

/// Processes tasks until `shutdown` resolves, then lets running tasks finish for up to
/// `WORKER_GRACE_SECS` and requeues the rest. Fails only on bad configuration; Redis and
/// database outages are waited out.
pub async fn run(pools: &Pools, cfg: &Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let handler = Arc::new(Tasks::from_config(cfg, pools.pg.clone())?);
    let queue = pools.queue(cfg)?;
    let wc = worker_config(cfg);
    tracing::info!(concurrency = wc.concurrency, lease_secs = queue.config().lease.as_secs(), "worker started");
    Worker::run(queue, handler, wc, shutdown).await;
    tracing::info!("worker stopped");
    Ok(())
}
