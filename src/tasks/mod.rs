//! Task handlers: [`Tasks`] is the queue's [`Handler`], dispatching each leased task on its
//! kind to [`email`] or [`sync`]. Delivery is at-least-once, so both key their side effects by
//! the task id; a task of an unknown kind, or with a payload that does not parse, goes to dead.

pub mod email;
pub mod sync;

#[cfg(test)]
mod tests;

use anyhow::Context;
use serde::de::DeserializeOwned;

use crate::{
    config::Config,
    db,
    queue::{Handler, HandlerFuture, Leased, TaskError},
};

/// Task kinds, as enqueued by the HTTP layer.
pub const EMAIL: &str = "email";
pub const SYNC: &str = "sync";

/// The handler of every task kind this service enqueues.
pub struct Tasks {
    pub mailer: email::Mailer,
    pub syncer: sync::Syncer,
}

impl Tasks {
    /// Handlers configured from `SMTP_URL`/`MAIL_FROM`/`MAIL_DIR` and `SYNC_SOURCE_URL`;
    /// sync runs are recorded through `pg`.
    pub fn from_config(cfg: &Config, pg: db::Pool) -> anyhow::Result<Tasks> {
        let mailer = email::Mailer::new(cfg.smtp_url.as_deref(), &cfg.mail_from, &cfg.mail_dir)
            .context("configuring email delivery")?;
        let syncer = sync::Syncer::new(pg, cfg.sync_source_url.as_deref(), cfg.sync_http_timeout())
            .context("configuring the sync source")?;
        Ok(Tasks { mailer, syncer })
    }
}

impl Handler for Tasks {
    fn handle<'a>(&'a self, task: &'a Leased) -> HandlerFuture<'a> {
        Box::pin(async move {
            let outcome = async {
                match task.kind.as_str() {
                    EMAIL => self.mailer.run(task.id, payload(task)?).await,
                    SYNC => self.syncer.run(task.id, payload(task)?).await,
                    other => Err(TaskError::permanent(format!("unknown task kind {other:?}"))),
                }
            }
            .await;
            if let Err(e) = &outcome {
                tracing::warn!(task = %task.id, kind = %task.kind, attempt = task.attempt, permanent = e.permanent,
                    error = %e.message, "task failed");
            }
            outcome
        })
    }
}

/// The task's payload as `T`; one that does not parse will never parse, so it is permanent.
fn payload<T: DeserializeOwned>(task: &Leased) -> Result<T, TaskError> {
    serde_json::from_value(task.payload.clone())
        .map_err(|e| TaskError::permanent(format!("invalid {} task payload: {e}", task.kind)))
}
