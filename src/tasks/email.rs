//! Email tasks: one message per task, sent over SMTP (`SMTP_URL`) or, without a server,
//! written to `MAIL_DIR/<task id>.eml`. The task id is in the `Message-ID` and an
//! `X-Correlation-ID` header, so a retried delivery is recognisable as the same message.

use std::{
    error::Error as StdError,
    path::{Path, PathBuf},
};

use anyhow::Context;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox,
        header::{ContentType, Header, HeaderName, HeaderValue},
    },
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::queue::TaskError;

/// An email task's payload, as the HTTP layer enqueues it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPayload {
    pub to: String,
    #[serde(default)]
    pub cc: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// The `X-Correlation-ID` header: the task id, for matching a delivered message to its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(pub String);

impl Header for CorrelationId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Correlation-ID")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn StdError + Send + Sync>> {
        Ok(CorrelationId(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

enum Delivery {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Dir(PathBuf),
}

/// Sends email tasks. Cheap to share: one per worker process.
pub struct Mailer {
    from: Mailbox,
    delivery: Delivery,
}

impl Mailer {
    /// SMTP delivery when `smtp_url` is set (`smtp://`, `smtp://…?tls=required` for STARTTLS,
    /// `smtps://`; see lettre's `from_url`), otherwise `.eml` files in `dir` (created on first
    /// use). Every message is sent from `from`.
    pub fn new(smtp_url: Option<&str>, from: &str, dir: &Path) -> anyhow::Result<Mailer> {
        let from: Mailbox = from.parse().with_context(|| format!("MAIL_FROM {from:?} is not an email address"))?;
        let delivery = match smtp_url {
            Some(url) => {
                // The URL may carry a password: never echo it in the error.
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("SMTP_URL is not a valid smtp:// or smtps:// URL: {e}"))?
                    .build();
                Delivery::Smtp(transport)
            }
            None => {
                tracing::info!(dir = %dir.display(), "SMTP_URL is not set: email tasks are written to MAIL_DIR");
                Delivery::Dir(dir.to_owned())
            }
        };
        Ok(Mailer { from, delivery })
    }

    /// The message of task `task_id`. Invalid addresses are permanent failures.
    pub fn message(&self, task_id: Uuid, p: &EmailPayload) -> Result<Message, TaskError> {
        let address = |field: &str, s: &str| -> Result<Mailbox, TaskError> {
            s.parse().map_err(|e| TaskError::permanent(format!("invalid {field} address {s:?}: {e}")))
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(address("to", &p.to)?)
            .subject(p.subject.clone())
            // Derived from the task id, so every attempt of a task sends the same Message-ID
            // and a receiver (or a person) can recognise a repeat delivery.
            .message_id(Some(format!("<{task_id}@{}>", self.from.email.domain())))
            .header(CorrelationId(task_id.to_string()))
            .header(ContentType::TEXT_PLAIN);
        for cc in &p.cc {
            builder = builder.cc(address("cc", cc)?);
        }
        builder.body(p.body.clone()).map_err(|e| TaskError::permanent(format!("cannot build the message: {e}")))
    }

    /// Delivers task `task_id`'s message. The result (stored with the completed task) says how.
    pub async fn run(&self, task_id: Uuid, p: EmailPayload) -> Result<Option<String>, TaskError> {
        let message = self.message(task_id, &p)?;
        let result = match &self.delivery {
            Delivery::Smtp(transport) => {
                let response = transport.send(message).await.map_err(smtp_error)?;
                let reply = response.message().collect::<Vec<_>>().join(" ");
                json!({ "delivery": "smtp", "reply": format!("{} {reply}", response.code()) })
            }
            Delivery::Dir(dir) => {
                let path = write_eml(dir, task_id, message.formatted()).await?;
                json!({ "delivery": "file", "path": path.display().to_string() })
            }
        };
        Ok(Some(result.to_string()))
    }
}

/// A 5xx reply is the server's final word on this message: no retry can change it. Everything
/// else (4xx, connection, TLS, timeouts, garbled replies) may pass, so it is retried.
fn smtp_error(e: lettre::transport::smtp::Error) -> TaskError {
    if e.is_permanent() {
        TaskError::permanent(format!("SMTP server rejected the message: {e}"))
    } else {
        TaskError::retry(format!("SMTP delivery failed: {e}"))
    }
}

/// Writes `dir/<task id>.eml` through a temporary file and a rename, so a reader never sees
/// half a message and a retry replaces the file instead of adding one.
async fn write_eml(dir: &Path, task_id: Uuid, bytes: Vec<u8>) -> Result<PathBuf, TaskError> {
    let dir = dir.to_owned();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<PathBuf> {
        use std::io::Write;
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{task_id}.eml"));
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    })
    .await;
    match written {
        Ok(Ok(path)) => Ok(path),
        // A full or read-only disk may be fixed before the next attempt.
        Ok(Err(e)) => Err(TaskError::retry(format!("cannot write the message to MAIL_DIR: {e}"))),
        Err(e) => Err(TaskError::retry(format!("the mail writer task failed: {e}"))),
    }
}
