//! Users CRUD over `db::users`; soft-deleted users are invisible everywhere.

use api_server::{
    CreateUserRequest, CreateUserResponse, DeleteUserParams, DeleteUserResponse, ErrorCode, GetUserByIdParams,
    GetUserByIdResponse, ListUsersApiResponse, ListUsersParams, ListUsersResponse, Status, SuccessResponse,
    UpdateUserParams, UpdateUserRequest, UpdateUserResponse, UserResponse, UsersApi, rt::FromErrorCode,
};

use super::{App, internal, store_error, success};
use crate::{
    auth::Principal,
    db::{
        StoreError,
        users::{self, NewUser, User},
    },
};

/// The API view of a stored user; the status column is constrained to the
/// contract's enum, so a mismatch is a bug reported as a 500.
fn user_response(u: User) -> Result<UserResponse, StoreError> {
    let status: Status =
        u.status.parse().map_err(|e: String| StoreError::Internal(format!("users.status: {e}").into()))?;
    Ok(UserResponse {
        id: u.id,
        username: u.username,
        email: u.email,
        status,
        created_at: u.created_at,
        updated_at: u.updated_at,
        last_login_at: Some(u.last_login_at),
    })
}

impl UsersApi for App {
    async fn list_users(&self, _who: Principal, params: ListUsersParams) -> ListUsersApiResponse {
        let status = params.status.map(Status::as_str);
        let (rows, total) = match users::users_list(&self.pg, params.page, params.page_size, status).await {
            Ok(r) => r,
            Err(e) => return store_error("listUsers", e),
        };
        let users = match rows.into_iter().map(user_response).collect::<Result<Vec<_>, _>>() {
            Ok(u) => u,
            Err(e) => return store_error("listUsers", e),
        };
        ListUsersApiResponse::Ok(success!(
            ListUsers200Response,
            ListUsersResponse {
                users,
                page: params.page,
                page_size: params.page_size,
                total,
                total_pages: (total + params.page_size - 1) / params.page_size,
            }
        ))
    }

    async fn create_user(&self, _who: Principal, body: CreateUserRequest) -> CreateUserResponse {
        // argon2id runs on a blocking thread inside hash_password.
        let password_hash = match users::hash_password(body.password.expose().to_owned()).await {
            Ok(h) => h,
            Err(e) => return internal("createUser", &e),
        };
        let new = NewUser { username: body.username, email: body.email, password_hash };
        match users::user_create(&self.pg, new).await.and_then(user_response) {
            Ok(u) => CreateUserResponse::Ok(success!(CreateUser200Response, u)),
            Err(e) => store_error("createUser", e),
        }
    }

    async fn get_user_by_id(&self, _who: Principal, params: GetUserByIdParams) -> GetUserByIdResponse {
        match users::user_get(&self.pg, params.id).await.and_then(user_response) {
            Ok(u) => GetUserByIdResponse::Ok(success!(GetUserById200Response, u)),
            Err(e) => store_error("getUserById", e),
        }
    }

    async fn update_user(
        &self,
        _who: Principal,
        params: UpdateUserParams,
        body: UpdateUserRequest,
    ) -> UpdateUserResponse {
        let status = body.status.map(|s| s.as_str().to_owned());
        match users::user_update(&self.pg, params.id, body.email, status).await.and_then(user_response) {
            Ok(u) => UpdateUserResponse::Ok(success!(UpdateUser200Response, u)),
            Err(e) => store_error("updateUser", e),
        }
    }

    async fn delete_user(&self, _who: Principal, params: DeleteUserParams) -> DeleteUserResponse {
        match users::user_delete(&self.pg, params.id).await {
            // No `data` at all: the contract's `data` is a non-nullable object.
            Ok(()) => DeleteUserResponse::Ok(SuccessResponse {
                code: 0,
                msg: "success".to_owned(),
                data: None,
                timestamp: chrono::Utc::now(),
            }),
            Err(StoreError::NotFound) => DeleteUserResponse::from_error(ErrorCode::UserNotFound, None, None),
            Err(e) => store_error("deleteUser", e),
        }
    }
}
