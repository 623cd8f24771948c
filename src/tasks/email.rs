//! Email tasks: one message per task, sent over SMTP (`SMTP_URL`) or, without a server,
//! written to `MAIL_DIR/<task id>.eml`. The task id is in the `Message-ID` and an
//! `X-Correlation-ID` header, so a retried delivery is recognisable as the same message.
//! Failures say what failed in plain words; the SMTP server's reply text, connection details
//! and file paths go only to the log (see [`Failure`]).

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

use super::Failure;

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
    pub fn message(&self, task_id: Uuid, p: &EmailPayload) -> Result<Message, Failure> {
        // The address is the client's own input: fine to show back.
        let address = |field: &str, s: &str| -> Result<Mailbox, Failure> {
            s.parse().map_err(|e| Failure::permanent_plain(format!("invalid {field} address {s:?}: {e}")))
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
        builder.body(p.body.clone()).map_err(|e| Failure::permanent_plain(format!("cannot build the message: {e}")))
    }

    /// Delivers task `task_id`'s message. The result (stored with the completed task, and shown
    /// to API clients) says how: the SMTP reply code, or the file's name within `MAIL_DIR`.
    pub async fn run(&self, task_id: Uuid, p: EmailPayload) -> Result<Option<String>, Failure> {
        let message = self.message(task_id, &p)?;
        let result = match &self.delivery {
            Delivery::Smtp(transport) => {
                let response = transport.send(message).await.map_err(smtp_error)?;
                let reply = response.message().collect::<Vec<_>>().join(" ");
                tracing::info!(task = %task_id, reply = %format!("{} {reply}", response.code()), "email accepted");
                json!({ "delivery": "smtp", "reply": response.code().to_string() })
            }
            Delivery::Dir(dir) => {
                let path = write_eml(dir, task_id, message.formatted()).await?;
                tracing::info!(task = %task_id, path = %path.display(), "email written to MAIL_DIR");
                let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                json!({ "delivery": "file", "file": file })
            }
        };
        Ok(Some(result.to_string()))
    }
}

/// A 5xx reply is the server's final word on this message: no retry can change it. Everything
/// else (4xx, connection, TLS, timeouts, garbled replies) may pass, so it is retried. The reply
/// code is shown; the reply text (which may name hosts or mailboxes) and I/O errors are not.
fn smtp_error(e: lettre::transport::smtp::Error) -> Failure {
    let detail = format!("SMTP delivery failed: {}", crate::error_chain(&e));
    match e.status() {
        Some(code) if e.is_permanent() => {
            Failure::permanent(format!("SMTP server refused the message (reply {code}, permanent)"), detail)
        }
        Some(code) => {
            Failure::retry(format!("SMTP server refused the message for now (reply {code}, temporary)"), detail)
        }
        None if e.is_permanent() => Failure::permanent("SMTP server refused the message (permanent)", detail),
        None => Failure::retry("could not hand the message to the SMTP server (temporary)", detail),
    }
}

/// Writes `dir/<task id>.eml` through a temporary file and a rename, so a reader never sees
/// half a message and a retry replaces the file instead of adding one.
async fn write_eml(dir: &Path, task_id: Uuid, bytes: Vec<u8>) -> Result<PathBuf, Failure> {
    let shown = dir.display().to_string();
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
        Ok(Err(e)) => Err(Failure::retry(
            "could not write the message file (temporary)",
            format!("cannot write the message to {shown}: {e}"),
        )),
        Err(e) => Err(Failure::retry(
            "could not write the message file (temporary)",
            format!("the mail writer task failed: {e}"),
        )),
    }
}
