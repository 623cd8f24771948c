//! The HTTP layer: [`App`] implements the traits generated from the
//! contract (`api_server::{HealthApi, UsersApi, TasksApi, Auth}`). Handlers
//! are thin: parse → call a store or queue function → map to the typed
//! response. Store and queue errors become envelopes here, in one place.

mod health;
mod tasks;
mod users;

use std::{sync::Arc, time::Duration};

use api_server::{ErrorCode, rt};
use bb8_redis::RedisConnectionManager;

use crate::{
    auth::{AuthError, Principal, TokenVerifier},
    db::{Pool, Resource, StoreError},
    error_chain,
    queue::Queue,
};

/// Everything a request may need; cheap to share behind an `Arc`.
pub struct App {
    pub pg: Pool,
    pub redis: bb8::Pool<RedisConnectionManager>,
    /// `/health`'s own connections, apart from the request pools.
    pub health_pg: Pool,
    pub health_redis: bb8::Pool<RedisConnectionManager>,
    pub tokens: TokenVerifier,
    pub queue: Queue,
    pub health_timeout: Duration,
    pub throughput: Arc<crate::queue::eta::Throughput>,
}

impl api_server::Auth for App {
    type Principal = Principal;

    async fn authenticate_token_auth(&self, token: &str) -> Result<Principal, rt::AuthRejection> {
        self.tokens.verify(token).await.map_err(|e| {
            rt::AuthRejection::new(match e {
                AuthError::Invalid => ErrorCode::InvalidToken,
                AuthError::Expired => ErrorCode::ExpiredToken,
                AuthError::Revoked => ErrorCode::RevokedToken,
                // Fail closed: neither store could answer.
                AuthError::Unavailable => ErrorCode::AuthUnavailable,
            })
        })
    }
}

/// The response for a store failure. Not-found and conflicts are the
/// client's; anything else is logged with its chain and answered as a 500
/// that says nothing about the database.
fn store_error<R: rt::FromErrorCode>(op: &str, e: StoreError) -> R {
    match e {
        StoreError::NotFound { resource: Resource::User } => R::from_error(ErrorCode::UserNotFound, None, None),
        StoreError::Conflict { field, message } => {
            R::from_error(ErrorCode::Conflict, Some(message.to_owned()), Some(serde_json::json!({ "field": field })))
        }
        other => {
            tracing::error!(operation = op, error = %error_chain(&other), "store failure");
            R::from_error(ErrorCode::Internal, None, None)
        }
    }
}

/// A 500 for an unexpected failure outside the stores (queue, hashing).
fn internal<R: rt::FromErrorCode>(op: &str, e: &(dyn std::error::Error + 'static)) -> R {
    tracing::error!(operation = op, error = %error_chain(e), "internal failure");
    R::from_error(ErrorCode::Internal, None, None)
}

/// A success envelope of one of the generated `…200Response` types (they
/// share the `SuccessResponse` fields through the contract's `allOf`).
macro_rules! success {
    ($ty:ident, $data:expr) => {
        api_server::$ty { code: 0, msg: "success".to_owned(), data: Some($data), timestamp: chrono::Utc::now() }
    };
}
use success;
