//! A tour of the generated client (`generated/client`) against a running
//! server: create, list with paging and a filter, read, update, delete,
//! submit an email task, and handle a 409 and a 404 by their error codes.
//!
//! ```text
//! cargo xtask dev                      # prints the URL and a token
//! SPEC_SERVER_URL=http://127.0.0.1:8080/api/v1 SPEC_SERVER_TOKEN=sk_… \
//!     cargo run --example client_tour
//! ```

use anyhow::{Context, Result, bail};
use spec_api_client::{Client, Credentials, Error, types};

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("SPEC_SERVER_URL").unwrap_or_else(|_| "http://127.0.0.1:8080/api/v1".into());
    let token = std::env::var("SPEC_SERVER_TOKEN").context("set SPEC_SERVER_TOKEN (printed by `cargo xtask dev`)")?;
    let client = Client::new(&url, Credentials::default()).with_token(token);
    let suffix = std::process::id();

    // Create. Request types validate their constraints when built.
    let username = format!("tour_{suffix}");
    let new = types::CreateUserRequest {
        username: username.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
        email: format!("{username}@example.com").parse().map_err(|e| anyhow::anyhow!("{e}"))?,
        password: "correct horse battery".parse().map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let created = client.create_user().body(new.clone()).send().await?.into_inner();
    let user = created.data.context("createUser returned no data")?;
    println!("created user #{} {}", user.id, user.username);

    // A second create with the same username: 409, told apart by its code.
    match client.create_user().body(new).send().await {
        Err(Error::ErrorResponse(e)) if e.code == 1004 => println!("duplicate rejected: {} ({})", e.msg, e.status()),
        other => bail!("expected a 409 with code 1004, got {other:?}"),
    }

    // List with paging and a status filter.
    let page = client
        .list_users()
        .page(1u64)
        .page_size(5u64)
        .status(types::ListUsersStatus::Active)
        .send()
        .await?
        .into_inner()
        .data
        .context("listUsers returned no data")?;
    println!(
        "page {}/{} of {} active users: {:?}",
        page.page,
        page.total_pages,
        page.total,
        page.users.iter().map(|u| &u.username).collect::<Vec<_>>()
    );

    // Read, update, delete.
    let id = u64::try_from(user.id)?;
    let got = client.get_user_by_id().id(id).send().await?.into_inner();
    println!("read back {:?}", got.data.map(|u| u.email));
    let patch = types::UpdateUserRequest { email: None, status: Some(types::UpdateUserRequestStatus::Inactive) };
    let updated = client.update_user().id(id).body(patch).send().await?.into_inner();
    println!("status now {:?}", updated.data.map(|u| u.status));
    client.delete_user().id(id).send().await?;

    // After delete, the user is gone: 404 with code 1003.
    match client.get_user_by_id().id(id).send().await {
        Err(Error::ErrorResponse(e)) if e.code == 1003 => println!("deleted user not found: {}", e.msg),
        other => bail!("expected a 404 with code 1003, got {other:?}"),
    }

    // Submit an email task with a priority, then look it up.
    let task = types::EmailTaskRequest {
        to: "someone@example.com".into(),
        cc: vec!["manager@example.com".into()],
        subject: "Welcome".parse().map_err(|e| anyhow::anyhow!("{e}"))?,
        body: "Thank you for signing up!".parse()?,
        priority: types::EmailTaskRequestPriority::Critical,
    };
    let submitted = client.submit_email_task().body(task).send().await?.into_inner().data.context("no task data")?;
    println!("task {} queued on {:?}, {:?}", submitted.task_id, submitted.queue, submitted.estimated_time);
    let status = client.get_task().task_id(submitted.task_id).send().await?.into_inner();
    println!("task state: {:?}", status.data.map(|t| t.state));
    Ok(())
}
