//! Task handlers: [`Tasks`] is the queue's [`Handler`], dispatching each leased task on its
//! kind to [`email`] or [`sync`]. Delivery is at-least-once, so both key their side effects by
//! the task id; a task of an unknown kind, or with a payload that does not parse, goes to dead.
//! A handler fails with a [`Failure`]: its plain-words message is what the task records (and
//! API clients see); the technical detail is logged here, tagged with the task id.

pub mod email;
pub mod redact;
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

/// Why an attempt failed. The task records `message` and `GET /tasks/{id}` shows it to API
/// clients, so it says what failed in plain words and never carries SQL errors, hosts,
/// upstream bodies or file paths: those are in `detail`, which only the log gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub detail: String,
    /// Skip remaining retries and move the task straight to dead.
    pub permanent: bool,
}

impl Failure {
    /// A failure worth retrying.
    pub fn retry(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure { message: message.into(), detail: detail.into(), permanent: false }
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure { message: message.into(), detail: detail.into(), permanent: true }
    }

    /// When the plain words are all there is to say (about the task's own payload, say).
    pub fn permanent_plain(message: impl Into<String>) -> Self {
        let message = message.into();
        Failure { detail: message.clone(), message, permanent: true }
    }
}

impl Handler for Tasks {
    fn handle<'a>(&'a self, task: &'a Leased) -> HandlerFuture<'a> {
        Box::pin(async move {
            let outcome = async {
                match task.kind.as_str() {
                    EMAIL => self.mailer.run(task.id, payload(task)?).await,
                    SYNC => self.syncer.run(task.id, payload(task)?).await,
                    other => Err(Failure::permanent_plain(format!("unknown task kind {other:?}"))),
                }
            }
            .await;
            outcome.map_err(|e| {
                tracing::warn!(task = %task.id, kind = %task.kind, attempt = task.attempt, permanent = e.permanent,
                    error = %e.message, detail = %e.detail, "task failed");
                TaskError { message: e.message, permanent: e.permanent }
            })
        })
    }
}

/// The task's payload as `T`; one that does not parse will never parse, so it is permanent.
/// The parser's words are about the client's own payload, so the client may see them.
fn payload<T: DeserializeOwned>(task: &Leased) -> Result<T, Failure> {
    serde_json::from_value(task.payload.clone())
        .map_err(|e| Failure::permanent_plain(format!("invalid {} task payload: {e}", task.kind)))
}
