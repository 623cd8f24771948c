//! The HTTP layer: [`App`] implements the traits generated from the
//! contract (`api_server::{HealthApi, UsersApi, TasksApi, Auth}`). Handlers
//! are thin: parse → call a store or queue function → map to the typed
//! response. Store and queue errors become problems here, in one place, and
//! [`App`]'s `ErrorPolicy` writes every problem as the contract's envelope.

mod admin;
pub mod dashboard;
mod health;
mod page_token;
mod tasks;
mod users;

use std::{sync::Arc, time::Duration};

use crate::redis_pool::RedisPool;
use api_server::{ErrorCode, ErrorResponse, HealthCheck503Response, HealthDegraded, rt, rt::Problem};
pub use page_token::PageTokenKey;

use crate::{
    auth::{AuthError, Principal, TokenVerifier},
    db::{Pool, Resource, StoreError, replicas::Db},
    error_chain,
    queue::Queue,
};

/// Everything a request may need; cheap to share behind an `Arc`.
pub struct App {
    /// The primary and the read replicas: `db.primary()` for writes and reads that must be
    /// current, `db.reading(token, …)` for reads that may be slightly stale.
    pub db: Db,
    pub redis: RedisPool,
    /// `/health`'s own connections, apart from the request pools.
    pub health_pg: Pool,
    pub health_redis: RedisPool,
    pub tokens: TokenVerifier,
    pub queue: Queue,
    pub health_timeout: Duration,
    pub throughput: Arc<crate::queue::eta::Throughput>,
    /// Signs and checks `listUsers` page tokens (`PAGE_TOKEN_KEY`).
    pub page_tokens: PageTokenKey,
}

impl api_server::Auth for App {
    type Principal = Principal;

    /// Authentication first: a token that does not verify is a 401 whatever it could do. Only a
    /// valid one short of a scope the operation's requirement lists is a 403 (every secured
    /// operation documents it), naming the scopes that would do.
    async fn authenticate_token_auth(&self, token: &str, ctx: &rt::AuthContext) -> Result<Principal, Problem> {
        let principal = self.tokens.verify(token).await.map_err(|e| {
            match e {
                AuthError::Invalid => ErrorCode::InvalidToken,
                AuthError::Expired => ErrorCode::ExpiredToken,
                AuthError::Revoked => ErrorCode::RevokedToken,
                // Fail closed: neither store could answer.
                AuthError::Unavailable => ErrorCode::AuthUnavailable,
            }
            .problem()
        })?;
        if !principal.grant.covers(ctx.scopes) {
            return Err(ErrorCode::InsufficientScope
                .problem()
                .with_data(serde_json::json!({ "required": ctx.scopes })));
        }
        Ok(principal)
    }
}

/// Every problem in the contract's envelope: the registry's code, the
/// occurrence's message (else the registry's), the structured detail.
pub(crate) fn envelope(p: &Problem) -> ErrorResponse {
    let data = match &p.data {
        Some(serde_json::Value::Object(m)) => Some(Some(m.clone())),
        _ => None,
    };
    let code = p.code.unwrap_or_else(|| ErrorCode::Internal.code());
    ErrorResponse { code, msg: p.message().to_owned(), data, timestamp: chrono::Utc::now() }
}

impl api_server::ErrorPolicy for App {
    fn error_response(problem: &Problem) -> ErrorResponse {
        envelope(problem)
    }

    /// `/health` documents its own 503 body; any problem it answers is the
    /// service being unavailable.
    fn health_check503_response(problem: &Problem) -> HealthCheck503Response {
        HealthCheck503Response {
            status: Some(HealthDegraded::Unavailable),
            postgres: None,
            redis: None,
            replicas: None,
            error: Some(problem.message().to_owned()),
        }
    }
}

/// The problem for a store failure. Not-found and conflicts are the
/// client's; anything else is logged with its chain and answered as a 500
/// that says nothing about the database.
fn store_error(op: &str, e: StoreError) -> Problem {
    match e {
        StoreError::NotFound { resource: Resource::User } => ErrorCode::UserNotFound.problem(),
        StoreError::Stale { .. } => ErrorCode::PreconditionFailed.problem(),
        StoreError::Conflict { field, message } => {
            ErrorCode::Conflict.problem().with_detail(message).with_data(serde_json::json!({ "field": field }))
        }
        other => {
            tracing::error!(operation = op, error = %error_chain(&other), "store failure");
            ErrorCode::Internal.problem()
        }
    }
}

/// A 500 for an unexpected failure outside the stores (queue, hashing).
fn internal(op: &str, e: &(dyn std::error::Error + 'static)) -> Problem {
    tracing::error!(operation = op, error = %error_chain(e), "internal failure");
    ErrorCode::Internal.problem()
}

/// A success envelope of one of the generated `…200Response` types (they
/// share the `SuccessResponse` fields through the contract's `allOf`).
macro_rules! success {
    ($ty:ident, $data:expr) => {
        api_server::$ty { code: 0, msg: "success".to_owned(), data: Some($data), timestamp: chrono::Utc::now() }
    };
}
use success;
