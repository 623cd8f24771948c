//! Users CRUD over `db::users`; soft-deleted users are invisible everywhere.
//!
//! Where each query goes (the README's "Read replicas" table): `listUsers`, `batchGetUsers`
//! and an unconditional `getUserById` read through `db.reading` (a fresh replica unless the
//! token wrote within the window); a `getUserById` with `If-None-Match` reads the primary,
//! since a 304 from a stale replica would tell the client its outdated copy is current; every
//! write runs on the primary and marks its token as having written.

use std::collections::HashMap;

use api_server::{
    BatchCreateUserResult, BatchCreateUsersRequest, BatchCreateUsersResponse, BatchCreateUsersResponseBody,
    BatchGetUserResult, BatchGetUsersRequest, BatchGetUsersResponse, BatchGetUsersResponseBody, BatchItemError,
    CreateUserRequest, CreateUserResponse, DeleteUserParams, DeleteUserResponse, ErrorCode, GetUserByIdParams,
    GetUserByIdResponse, ListUsersParams, ListUsersResponse, ListUsersResponseBody, PatchUserParams, PatchUserResponse,
    Status, SuccessResponse, UpdateUserParams, UpdateUserRequest, UpdateUserResponse, UserMergePatch, UserResponse,
    UsersApi,
    rt::{Problem, etag::IfMatch},
};

use super::{App, envelope, internal, page_token::Cursor, store_error, success};
use crate::{
    auth::Principal,
    db::{
        StoreError,
        users::{self, IfVersion, NewUser, User, UserStatus},
    },
};

fn api_status(s: UserStatus) -> Status {
    match s {
        UserStatus::Active => Status::Active,
        UserStatus::Inactive => Status::Inactive,
        UserStatus::Suspended => Status::Suspended,
    }
}

fn store_status(s: Status) -> UserStatus {
    match s {
        Status::Active => UserStatus::Active,
        Status::Inactive => UserStatus::Inactive,
        Status::Suspended => UserStatus::Suspended,
    }
}

/// The API view of a stored user.
fn user_response(u: User) -> UserResponse {
    UserResponse {
        id: u.id,
        username: u.username,
        email: u.email,
        status: api_status(u.status),
        created_at: u.created_at,
        updated_at: u.updated_at,
        last_login_at: Some(u.last_login_at),
    }
}

/// The strong ETag of a user's current version, as the contract spells it (`"v<version>"`).
/// The generated glue compares it with `If-None-Match`; `If-Match` goes to the store as the
/// versions it names ([`versions_named`]), so the comparison happens inside the UPDATE.
fn etag(u: &User) -> String {
    format!("\"v{}\"", u.version)
}

/// The versions an `If-Match` names: `None` when there is no condition (no header, or `*`,
/// which any existing user meets). A tag not spelled `"v<digits>"` names no version of ours
/// and is left out, so a list of only such tags is met by no version (412).
fn versions_named(if_match: Option<&IfMatch>) -> Option<Vec<i64>> {
    let tags = if_match?.tags()?;
    let version = |t: &str| {
        let digits = t.strip_prefix("\"v")?.strip_suffix('"')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i64>().ok()
    };
    Some(tags.filter_map(version).collect())
}

fn if_version(versions: Option<&[i64]>) -> IfVersion<'_> {
    versions.map_or(IfVersion::Any, IfVersion::OneOf)
}

/// One batch item's failure in the envelope's terms (code, message, detail).
fn item_error(p: &Problem) -> BatchItemError {
    let e = envelope(p);
    BatchItemError { code: e.code, msg: e.msg, data: e.data.flatten() }
}

impl UsersApi for App {
    async fn list_users(&self, who: Principal, params: ListUsersParams) -> Result<ListUsersResponse, Problem> {
        let status = params.status.map(store_status);
        let page_size = params.page_size;
        let (users, page, total, more) = match params.page_token.as_deref() {
            // A cursor page: no count and no offset, only `page_size` + 1 index entries (the
            // extra one says whether another page follows).
            Some(token) => {
                let cursor = self.page_tokens.decode(token, status).map_err(|e| {
                    tracing::debug!(reason = %e, "page_token refused");
                    ErrorCode::InvalidPageToken.problem().with_data(serde_json::json!({ "field": "page_token" }))
                })?;
                let after = (cursor.after_created_at, cursor.after_id);
                let mut rows = self
                    .db
                    .reading(who.token_id, |pg| async move {
                        users::users_list_after(&pg, after, page_size.saturating_add(1), status).await
                    })
                    .await
                    .map_err(|e| store_error("listUsers", e))?;
                let more = rows.len() as i64 > page_size;
                rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
                (rows, cursor.page, cursor.total, more)
            }
            None => {
                let page = params.page;
                let (rows, total) = self
                    .db
                    .reading(who.token_id, |pg| async move { users::users_list(&pg, page, page_size, status).await })
                    .await
                    .map_err(|e| store_error("listUsers", e))?;
                // Page and total come from one snapshot, so this is exact.
                let seen = (params.page - 1).saturating_mul(page_size).saturating_add(rows.len() as i64);
                (rows, params.page, total, seen < total)
            }
        };
        let next_page_token = match users.last() {
            Some(last) if more => Some(self.page_tokens.encode(&Cursor {
                status,
                page: page.saturating_add(1),
                total,
                after_created_at: last.created_at,
                after_id: last.id,
            })),
            _ => None,
        };
        let users = users.into_iter().map(user_response).collect();
        Ok(ListUsersResponse::Ok(success!(
            ListUsers200Response,
            ListUsersResponseBody {
                users,
                page,
                page_size,
                total,
                total_pages: (total + page_size - 1) / page_size,
                next_page_token,
            }
        )))
    }

    async fn create_user(&self, who: Principal, body: CreateUserRequest) -> Result<CreateUserResponse, Problem> {
        // argon2id runs on a blocking thread inside hash_password.
        let password_hash =
            users::hash_password(body.password.expose().to_owned()).await.map_err(|e| internal("createUser", &e))?;
        let new = NewUser { username: body.username, email: body.email, password_hash };
        let created = users::user_create(self.db.primary(), new).await;
        self.db.wrote(who.token_id).await;
        let u = created.map_err(|e| store_error("createUser", e))?;
        Ok(CreateUserResponse::Ok(success!(CreateUser200Response, user_response(u))))
    }

    async fn batch_get_users(
        &self,
        who: Principal,
        body: BatchGetUsersRequest,
    ) -> Result<BatchGetUsersResponse, Problem> {
        // The contract caps `ids` at 100, so this is one bounded statement.
        let ids = &body.ids;
        let found = self
            .db
            .reading(who.token_id, |pg| async move { users::users_get_many(&pg, ids).await })
            .await
            .map_err(|e| store_error("batchGetUsers", e))?;
        let by_id: HashMap<i64, User> = found.into_iter().map(|u| (u.id, u)).collect();
        let results = body
            .ids
            .iter()
            .map(|&id| {
                // A repeated id is answered each time, so clone rather than take.
                match by_id.get(&id).cloned() {
                    Some(u) => BatchGetUserResult { id, user: Some(user_response(u)), error: None },
                    None => BatchGetUserResult {
                        id,
                        user: None,
                        error: Some(item_error(&ErrorCode::UserNotFound.problem())),
                    },
                }
            })
            .collect();
        Ok(BatchGetUsersResponse::Ok(success!(BatchGetUsers200Response, BatchGetUsersResponseBody { results })))
    }

    async fn batch_create_users(
        &self,
        who: Principal,
        body: BatchCreateUsersRequest,
    ) -> Result<BatchCreateUsersResponse, Problem> {
        // Per item, in order (the contract's documented choice): a conflict fails that item
        // only, and an earlier item of the batch can be what a later one conflicts with.
        let created = async {
            let mut results = Vec::with_capacity(body.users.len());
            for (index, item) in body.users.into_iter().enumerate() {
                let index = i64::try_from(index).unwrap_or(i64::MAX);
                let password_hash = users::hash_password(item.password.expose().to_owned())
                    .await
                    .map_err(|e| internal("batchCreateUsers", &e))?;
                let new = NewUser { username: item.username, email: item.email, password_hash };
                results.push(match users::user_create(self.db.primary(), new).await {
                    Ok(u) => BatchCreateUserResult { index, user: Some(user_response(u)), error: None },
                    // Only a conflict is the item's fault; anything else fails the request (500),
                    // the items before it staying created, as the contract says.
                    Err(e @ StoreError::Conflict { .. }) => BatchCreateUserResult {
                        index,
                        user: None,
                        error: Some(item_error(&store_error("batchCreateUsers", e))),
                    },
                    Err(e) => return Err(store_error("batchCreateUsers", e)),
                });
            }
            Ok(results)
        }
        .await;
        // Once for the batch, whatever happened: a failure midway leaves earlier items created.
        self.db.wrote(who.token_id).await;
        let results = created?;
        Ok(BatchCreateUsersResponse::Ok(success!(
            BatchCreateUsers200Response,
            BatchCreateUsersResponseBody { results }
        )))
    }

    async fn get_user_by_id(&self, who: Principal, params: GetUserByIdParams) -> Result<GetUserByIdResponse, Problem> {
        let id = params.id;
        let found = if params.if_none_match.is_some() {
            // Conditional: the answer may be a 304, which must mean "yours is the latest".
            users::user_get(self.db.primary(), id).await
        } else {
            self.db.reading(who.token_id, |pg| async move { users::user_get(&pg, id).await }).await
        };
        let u = found.map_err(|e| store_error("getUserById", e))?;
        // A 200 naming the request's If-None-Match becomes the 304 in the generated glue.
        let etag = etag(&u);
        Ok(GetUserByIdResponse::Ok { body: success!(GetUserById200Response, user_response(u)), etag })
    }

    async fn update_user(
        &self,
        who: Principal,
        params: UpdateUserParams,
        body: UpdateUserRequest,
    ) -> Result<UpdateUserResponse, Problem> {
        let status = body.status.map(store_status);
        let versions = versions_named(params.if_match.as_ref());
        let updated =
            users::user_update(self.db.primary(), params.id, body.email, status, if_version(versions.as_deref())).await;
        self.db.wrote(who.token_id).await;
        let u = updated.map_err(|e| store_error("updateUser", e))?;
        let etag = etag(&u);
        Ok(UpdateUserResponse::Ok { body: success!(UpdateUser200Response, user_response(u)), etag })
    }

    /// A merge patch sets what it names and nothing else: the same store
    /// call as `updateUser` (the glue already refused `null` and unknown
    /// members, any media type but merge-patch and a malformed `If-Match`).
    async fn patch_user(
        &self,
        who: Principal,
        params: PatchUserParams,
        body: UserMergePatch,
    ) -> Result<PatchUserResponse, Problem> {
        let status = body.status.map(store_status);
        let versions = versions_named(params.if_match.as_ref());
        let updated =
            users::user_update(self.db.primary(), params.id, body.email, status, if_version(versions.as_deref())).await;
        self.db.wrote(who.token_id).await;
        let u = updated.map_err(|e| store_error("patchUser", e))?;
        let etag = etag(&u);
        Ok(PatchUserResponse::Ok { body: success!(PatchUser200Response, user_response(u)), etag })
    }

    async fn delete_user(&self, who: Principal, params: DeleteUserParams) -> Result<DeleteUserResponse, Problem> {
        let versions = versions_named(params.if_match.as_ref());
        let deleted = users::user_delete(self.db.primary(), params.id, if_version(versions.as_deref())).await;
        self.db.wrote(who.token_id).await;
        deleted.map_err(|e| store_error("deleteUser", e))?;
        // No `data` at all: the contract's `data` is a non-nullable object.
        Ok(DeleteUserResponse::Ok(SuccessResponse {
            code: 0,
            msg: "success".to_owned(),
            data: None,
            timestamp: chrono::Utc::now(),
        }))
    }
}
