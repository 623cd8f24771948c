//! Users CRUD over `db::users`; soft-deleted users are invisible everywhere.

use api_server::{
    CreateUserRequest, CreateUserResponse, DeleteUserParams, DeleteUserResponse, GetUserByIdParams,
    GetUserByIdResponse, ListUsersParams, ListUsersResponse, ListUsersResponseBody, Status, SuccessResponse,
    UpdateUserParams, UpdateUserRequest, UpdateUserResponse, UserResponse, UsersApi, rt::Problem,
};

use super::{App, internal, store_error, success};
use crate::{
    auth::Principal,
    db::users::{self, NewUser, User, UserStatus},
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

impl UsersApi for App {
    async fn list_users(&self, _who: Principal, params: ListUsersParams) -> Result<ListUsersResponse, Problem> {
        let status = params.status.map(store_status);
        let (rows, total) = users::users_list(&self.pg, params.page, params.page_size, status)
            .await
            .map_err(|e| store_error("listUsers", e))?;
        let users = rows.into_iter().map(user_response).collect();
        Ok(ListUsersResponse::Ok(success!(
            ListUsers200Response,
            ListUsersResponseBody {
                users,
                page: params.page,
                page_size: params.page_size,
                total,
                total_pages: (total + params.page_size - 1) / params.page_size,
            }
        )))
    }

    async fn create_user(&self, _who: Principal, body: CreateUserRequest) -> Result<CreateUserResponse, Problem> {
        // argon2id runs on a blocking thread inside hash_password.
        let password_hash =
            users::hash_password(body.password.expose().to_owned()).await.map_err(|e| internal("createUser", &e))?;
        let new = NewUser { username: body.username, email: body.email, password_hash };
        let u = users::user_create(&self.pg, new).await.map_err(|e| store_error("createUser", e))?;
        Ok(CreateUserResponse::Ok(success!(CreateUser200Response, user_response(u))))
    }

    async fn get_user_by_id(&self, _who: Principal, params: GetUserByIdParams) -> Result<GetUserByIdResponse, Problem> {
        let u = users::user_get(&self.pg, params.id).await.map_err(|e| store_error("getUserById", e))?;
        Ok(GetUserByIdResponse::Ok(success!(GetUserById200Response, user_response(u))))
    }

    async fn update_user(
        &self,
        _who: Principal,
        params: UpdateUserParams,
        body: UpdateUserRequest,
    ) -> Result<UpdateUserResponse, Problem> {
        let status = body.status.map(store_status);
        let u = users::user_update(&self.pg, params.id, body.email, status)
            .await
            .map_err(|e| store_error("updateUser", e))?;
        Ok(UpdateUserResponse::Ok(success!(UpdateUser200Response, user_response(u))))
    }

    async fn delete_user(&self, _who: Principal, params: DeleteUserParams) -> Result<DeleteUserResponse, Problem> {
        users::user_delete(&self.pg, params.id).await.map_err(|e| store_error("deleteUser", e))?;
        // No `data` at all: the contract's `data` is a non-nullable object.
        Ok(DeleteUserResponse::Ok(SuccessResponse {
            code: 0,
            msg: "success".to_owned(),
            data: None,
            timestamp: chrono::Utc::now(),
        }))
    }
}
