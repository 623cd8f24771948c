//! Email tasks against a real (in-process) SMTP server, and the `.eml` fallback.

use serde_json::json;

use super::{Harness, Setup, smtp::SmtpServer};
use crate::{
    queue::{NewTask, TaskState},
    tasks::{
        EMAIL,
        email::{EmailPayload, Mailer},
    },
};

fn email_task() -> NewTask {
    NewTask::new(
        EMAIL,
        json!({
            "to": "user@example.com", "cc": ["boss@example.com", "audit@example.org"],
            "subject": "Welcome to our service", "body": "Thank you for signing up!",
        }),
    )
}

#[tokio::test]
async fn a_message_is_delivered_once_with_its_headers() {
    let smtp = SmtpServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(Setup { smtp_url: Some(&smtp.url()), mail_dir: dir.path(), sync_url: None }).await;
    let id = h.enqueue(email_task()).await;
    let r = h.finished(id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Completed, 1), "{r:?}");
    assert!(r.result.as_deref().unwrap().contains("\"delivery\":\"smtp\""), "{r:?}");

    let got = smtp.accepted();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.mail_from, "sender@example.com");
    let mut rcpt = m.rcpt_to.clone();
    rcpt.sort();
    assert_eq!(rcpt, ["audit@example.org", "boss@example.com", "user@example.com"]);
    assert_eq!(m.header("To").as_deref(), Some("user@example.com"));
    assert_eq!(m.header("Cc").as_deref(), Some("boss@example.com, audit@example.org"));
    assert_eq!(m.header("Subject").as_deref(), Some("Welcome to our service"));
    assert_eq!(m.header("X-Correlation-ID"), Some(id.to_string()));
    assert_eq!(m.header("Message-ID"), Some(format!("<{id}@example.com>")));
    assert!(m.data.contains("Thank you for signing up!"), "{}", m.data);
    // Nothing was written to the fallback directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_transient_rejection_is_retried_and_then_delivered() {
    let smtp = SmtpServer::start(&["451 4.3.0 mailbox busy, try again later"]).await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(Setup { smtp_url: Some(&smtp.url()), mail_dir: dir.path(), sync_url: None }).await;
    let id = h.enqueue(email_task()).await;
    let r = h.finished(id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Completed, 2), "{r:?}");
    assert_eq!(r.history.len(), 1, "{r:?}");
    assert_eq!(r.history[0].error, "SMTP server refused the message for now (reply 451, temporary)");
    assert_eq!(smtp.transfers(), 2);
    let got = smtp.accepted();
    assert_eq!(got.len(), 1, "delivered exactly once: {got:?}");
    assert_eq!(got[0].header("X-Correlation-ID"), Some(id.to_string()));
}

#[tokio::test]
async fn a_permanent_rejection_goes_to_dead_without_retries() {
    let smtp = SmtpServer::start(&["550 5.1.1 no such user here"]).await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(Setup { smtp_url: Some(&smtp.url()), mail_dir: dir.path(), sync_url: None }).await;
    let id = h.enqueue(email_task()).await;
    let r = h.finished(id).await;
    assert_eq!((r.state, r.attempts, r.max_retries), (TaskState::Dead, 1, 5), "{r:?}");
    let error = r.last_error.unwrap();
    assert_eq!(error, "SMTP server refused the message (reply 550, permanent)");
    // The server's own words (which may name mailboxes or hosts) stay in the log.
    assert!(!error.contains("no such user"), "{error}");
    assert_eq!((smtp.transfers(), smtp.accepted().len()), (1, 0));
}

#[tokio::test]
async fn an_unreachable_server_is_retried() {
    // Nothing listens on a port we just bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("smtp://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(Setup { smtp_url: Some(&url), mail_dir: dir.path(), sync_url: None }).await;
    let id = h.enqueue(email_task().max_retries(1)).await;
    let r = h.finished(id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Dead, 2), "retried once, then out of retries: {r:?}");
    let error = r.last_error.unwrap();
    assert_eq!(error, "could not hand the message to the SMTP server (temporary)");
    assert!(!error.contains("127.0.0.1") && !error.contains(&port.to_string()), "{error}");
}

#[tokio::test]
async fn without_smtp_a_message_is_one_eml_file_per_task_even_when_retried() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(Setup { smtp_url: None, mail_dir: &dir.path().join("mail"), sync_url: None }).await;
    let id = h.enqueue(email_task()).await;
    let r = h.finished(id).await;
    assert_eq!(r.state, TaskState::Completed, "{r:?}");
    let path = dir.path().join("mail").join(format!("{id}.eml"));
    // The file's name, not where the server keeps it.
    let result = r.result.unwrap();
    assert_eq!(result, format!(r#"{{"delivery":"file","file":"{id}.eml"}}"#));

    // A redelivery of the same task (at-least-once) rewrites the same file.
    let mailer = Mailer::new(None, "sender@example.com", &dir.path().join("mail")).unwrap();
    let payload: EmailPayload = serde_json::from_value(email_task().payload).unwrap();
    mailer.run(id, payload).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("mail")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files, std::slice::from_ref(&path));
    let eml = std::fs::read_to_string(&path).unwrap();
    for needle in [
        "To: user@example.com",
        "Cc: boss@example.com, audit@example.org",
        "Subject: Welcome to our service",
        &format!("X-Correlation-ID: {id}"),
        &format!("Message-ID: <{id}@example.com>"),
        "Thank you for signing up!",
    ] {
        assert!(eml.contains(needle), "{needle:?} missing from\n{eml}");
    }
}

#[test]
fn a_bad_sender_or_smtp_url_is_a_startup_error() {
    let dir = std::path::Path::new("unused");
    let e = Mailer::new(None, "not an address", dir).err().unwrap();
    assert!(format!("{e:#}").contains("MAIL_FROM"), "{e:#}");
    let e = Mailer::new(Some("ftp://user:secret@host"), "a@example.com", dir).err().unwrap();
    let message = format!("{e:#}");
    assert!(message.contains("SMTP_URL") && !message.contains("secret"), "{message}");
}

#[tokio::test]
async fn an_unwritable_mail_dir_is_retried_without_showing_its_path() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be: creating the directory fails.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"").unwrap();
    let h = Harness::start(Setup { smtp_url: None, mail_dir: &blocked, sync_url: None }).await;
    let id = h.enqueue(email_task().max_retries(0)).await;
    let r = h.finished(id).await;
    assert_eq!(r.state, TaskState::Dead, "{r:?}");
    let error = r.last_error.unwrap();
    assert_eq!(error, "could not write the message file (temporary)");
    assert!(!error.contains(&*dir.path().to_string_lossy()), "{error}");
}
