//! The `users` store: the only place with users SQL. Soft-deleted users are invisible to every
//! function here, and uniqueness is left to the partial unique indexes (never check-then-insert).

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use tokio_postgres::{
    Row,
    types::{FromSql, IsNull, ToSql, Type, to_sql_checked},
};

use super::{Pool, Resource, StoreError, conn, execute, query, query_opt, reader};

/// A user as the API sees it; the password hash never leaves the database layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// Bumped by every change; the HTTP layer's ETag is made of it.
    pub version: i64,
}

/// A user's status, stored as text; the `users.status` CHECK constraint
/// allows exactly these, so a row that decodes to anything else is a
/// broken database, reported (once, here) as a decoding error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Inactive,
    Suspended,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Inactive => "inactive",
            UserStatus::Suspended => "suspended",
        }
    }
}

impl<'a> FromSql<'a> for UserStatus {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match <&str as FromSql>::from_sql(ty, raw)? {
            "active" => Ok(UserStatus::Active),
            "inactive" => Ok(UserStatus::Inactive),
            "suspended" => Ok(UserStatus::Suspended),
            other => Err(format!("users.status {other:?} is outside its CHECK constraint").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

impl ToSql for UserStatus {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// The fields a new user needs; `password_hash` comes from [`hash_password`].
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password_hash: String,
}

/// The columns [`User::from_row`] reads, in its order.
macro_rules! user_columns {
    () => {
        "id, username, email, status, created_at, updated_at, last_login_at, version"
    };
}

impl User {
    fn from_row(row: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.try_get(0)?,
            username: row.try_get(1)?,
            email: row.try_get(2)?,
            status: row.try_get(3)?,
            created_at: row.try_get(4)?,
            updated_at: row.try_get(5)?,
            last_login_at: row.try_get(6)?,
            version: row.try_get(7)?,
        })
    }
}

/// Inserts a user. A taken username or email (case-insensitively, among non-deleted users) is
/// `Conflict`, straight from the unique index, so concurrent creates cannot both win.
pub async fn user_create(pool: &Pool, new: NewUser) -> Result<User, StoreError> {
    let client = conn(pool).await?;
    let row = query_opt(
        &client,
        "users.create",
        concat!("INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3) RETURNING ", user_columns!()),
        &[&new.username, &new.email, &new.password_hash],
    )
    .await?
    .ok_or_else(|| StoreError::internal("INSERT … RETURNING returned no row"))?;
    User::from_row(&row)
}

/// A user that exists and is not deleted.
pub async fn user_get(pool: &Pool, id: i64) -> Result<User, StoreError> {
    let client = reader(pool).await?;
    let row = query_opt(
        &client,
        "users.get",
        concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1 AND deleted_at IS NULL"),
        &[&id],
    )
    .await?
    .ok_or(StoreError::NotFound { resource: Resource::User })?;
    User::from_row(&row)
}

/// The non-deleted users among `ids`, in no particular order (the caller matches them to its
/// request); one index lookup per distinct id in one statement. The HTTP layer caps `ids` at 100.
pub async fn users_get_many(pool: &Pool, ids: &[i64]) -> Result<Vec<User>, StoreError> {
    let client = conn(pool).await?;
    let rows = query(
        &client,
        "users.get_many",
        concat!("SELECT ", user_columns!(), " FROM users WHERE id = ANY($1) AND deleted_at IS NULL"),
        &[&ids],
    )
    .await?;
    rows.iter().map(User::from_row).collect()
}

/// One page of non-deleted users, newest first (ties: higher id first), and the total number of
/// matching users. `page` counts from 1; a page past the end is empty but the total is right.
/// Page and total come from one statement, hence one snapshot: they always agree.
pub async fn users_list(
    pool: &Pool,
    page: i64,
    page_size: i64,
    status: Option<UserStatus>,
) -> Result<(Vec<User>, i64), StoreError> {
    if page < 1 || page_size < 1 {
        // The HTTP layer validates these; reaching here is a bug, not a client error.
        return Err(StoreError::internal(format!("users_list called with page {page}, page_size {page_size}")));
    }
    let offset = (page - 1).saturating_mul(page_size);
    let client = conn(pool).await?;
    // The total sits on the left of a LEFT JOIN so that it comes back even when the page is
    // empty (then the single row has NULL user columns). Two statements rather than a
    // `$3 IS NULL OR status = $3` test, so that each gets a plan using its own index.
    let rows = match status {
        None => {
            query(
                &client,
                "users.list",
                concat!(
                    "SELECT t.total, ",
                    user_columns!(),
                    " FROM (SELECT count(*) AS total FROM users WHERE deleted_at IS NULL) t
                      LEFT JOIN LATERAL (
                          SELECT * FROM users WHERE deleted_at IS NULL
                          ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2
                      ) u ON true
                      ORDER BY u.created_at DESC, u.id DESC"
                ),
                &[&page_size, &offset],
            )
            .await?
        }
        Some(status) => {
            query(
                &client,
                "users.list_by_status",
                concat!(
                    "SELECT t.total, ",
                    user_columns!(),
                    " FROM (SELECT count(*) AS total FROM users
                            WHERE deleted_at IS NULL AND status = $3) t
                      LEFT JOIN LATERAL (
                          SELECT * FROM users WHERE deleted_at IS NULL AND status = $3
                          ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2
                      ) u ON true
                      ORDER BY u.created_at DESC, u.id DESC"
                ),
                &[&page_size, &offset, &status],
            )
            .await?
        }
    };
    let total = match rows.first() {
        Some(row) => row.try_get(0)?,
        None => return Err(StoreError::internal("users list returned no total")),
    };
    let mut users = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: Option<i64> = row.try_get(1)?;
        if id.is_some() {
            users.push(User {
                id: row.try_get(1)?,
                username: row.try_get(2)?,
                email: row.try_get(3)?,
                status: row.try_get(4)?,
                created_at: row.try_get(5)?,
                updated_at: row.try_get(6)?,
                last_login_at: row.try_get(7)?,
                version: row.try_get(8)?,
            });
        }
    }
    Ok((users, total))
}

/// Up to `limit` non-deleted users that sort after (`created_at`, `id`) in the listing order
/// (newest first, ties by higher id first): a keyset page. The row comparison walks the listing
/// index from that point, so the cost is `limit` index entries at any table size and depth.
pub async fn users_list_after(
    pool: &Pool,
    after: (DateTime<Utc>, i64),
    limit: i64,
    status: Option<UserStatus>,
) -> Result<Vec<User>, StoreError> {
    let client = conn(pool).await?;
    let (created_at, id) = after;
    // Two statements, as in `users_list`, so that each is planned on its own partial index.
    let rows = match status {
        None => {
            query(
                &client,
                "users.list_after",
                concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE deleted_at IS NULL AND (created_at, id) < ($1, $2)
                      ORDER BY created_at DESC, id DESC LIMIT $3"
                ),
                &[&created_at, &id, &limit],
            )
            .await?
        }
        Some(status) => {
            query(
                &client,
                "users.list_after_by_status",
                concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE deleted_at IS NULL AND status = $4 AND (created_at, id) < ($1, $2)
                      ORDER BY created_at DESC, id DESC LIMIT $3"
                ),
                &[&created_at, &id, &limit, &status],
            )
            .await?
        }
    };
    rows.iter().map(User::from_row).collect()
}

/// Which versions of a row a change may apply to: the `If-Match` of the request, in store
/// terms. `Any` is an unconditional change (no `If-Match`, or `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfVersion<'a> {
    Any,
    /// One of these; an empty list (only weak or foreign tags) is met by no version.
    OneOf(&'a [i64]),
}

impl IfVersion<'_> {
    fn param(self) -> Option<Vec<i64>> {
        match self {
            IfVersion::Any => None,
            IfVersion::OneOf(v) => Some(v.to_vec()),
        }
    }
}

/// Changes the given fields (`None` leaves a field as it is), bumps `updated_at` and
/// `version`. The version test is part of the UPDATE, so of two concurrent changes naming the
/// same version exactly one applies. `NotFound` when the user is missing or deleted (whatever
/// `expected` says: RFC 9110 §13.2.1 ignores preconditions on a request that would fail
/// without them); `Stale` when the user exists at another version; `Conflict { field:
/// "email" }` when another user has the email.
pub async fn user_update(
    pool: &Pool,
    id: i64,
    email: Option<String>,
    status: Option<UserStatus>,
    expected: IfVersion<'_>,
) -> Result<User, StoreError> {
    let client = conn(pool).await?;
    let row = query_opt(
        &client,
        "users.update",
        concat!(
            "UPDATE users SET email = COALESCE($2, email), status = COALESCE($3, status),
                              updated_at = now(), version = version + 1
             WHERE id = $1 AND deleted_at IS NULL AND ($4::bigint[] IS NULL OR version = ANY($4))
             RETURNING ",
            user_columns!()
        ),
        &[&id, &email, &status, &expected.param()],
    )
    .await?;
    match row {
        Some(row) => User::from_row(&row),
        None => Err(missing_or_stale(&client, id, expected).await),
    }
}

/// Why a conditional change matched no row: the user is gone, or it is at another version.
/// Asked after the fact, so a user deleted in between is `NotFound`, which is what the request
/// would see if it came again.
async fn missing_or_stale(client: &deadpool_postgres::Object, id: i64, expected: IfVersion<'_>) -> StoreError {
    let not_found = StoreError::NotFound { resource: Resource::User };
    if expected == IfVersion::Any {
        return not_found;
    }
    let exists =
        query_opt(client, "users.exists", "SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL", &[&id]).await;
    match exists {
        Ok(Some(_)) => StoreError::Stale { resource: Resource::User },
        Ok(None) => not_found,
        Err(e) => e,
    }
}

/// Soft-deletes a user: the row stays, but every other function here stops seeing it and its
/// username and email become free. `NotFound` when missing or already deleted; `Stale` when
/// `expected` names other versions (as [`user_update`]).
pub async fn user_delete(pool: &Pool, id: i64, expected: IfVersion<'_>) -> Result<(), StoreError> {
    let client = conn(pool).await?;
    let changed = execute(
        &client,
        "users.delete",
        "UPDATE users SET deleted_at = now(), updated_at = now(), version = version + 1
         WHERE id = $1 AND deleted_at IS NULL AND ($2::bigint[] IS NULL OR version = ANY($2))",
        &[&id, &expected.param()],
    )
    .await?;
    if changed == 0 {
        return Err(missing_or_stale(&client, id, expected).await);
    }
    Ok(())
}

/// Argon2id with the crate's default parameters, as a PHC string (`$argon2id$v=19$…`).
/// Runs on the blocking pool: a hash takes tens of milliseconds of CPU by design.
pub async fn hash_password(password: String) -> Result<String, StoreError> {
    use argon2::{Argon2, password_hash::PasswordHasher};
    // argon2id takes 19 MiB and tens of milliseconds of one core per hash: unbounded, a burst of
    // sign-ups would hold gigabytes and starve every other request of CPU. One hash per core at
    // a time; the rest wait their turn (their latency grows, nothing else's does).
    static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
    });
    run_limited(&HASHING, move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| StoreError::internal(format!("hashing a password: {e}")))
    })
    .await?
}

/// Runs `job` on the blocking pool once `limit` grants a permit, and keeps that permit until
/// `job` returns. The permit moves into the job, not the caller's future: a blocking job cannot
/// be cancelled, so if the caller went away (a client disconnecting mid-sign-up) and released
/// the permit, the job would go on hashing outside the limit.
async fn run_limited<T: Send + 'static>(
    limit: &'static tokio::sync::Semaphore,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    let permit = limit.acquire().await.map_err(|e| StoreError::Internal(Box::new(e)))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job()
    })
    .await
    .map_err(|e| StoreError::Internal(Box::new(e)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::devsvc::test_database;

    fn new_user(username: &str, email: &str) -> NewUser {
        NewUser {
            username: username.into(),
            email: email.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        }
    }

    #[tokio::test]
    async fn create_get_update_delete() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let created = user_create(pool, new_user("alice", "alice@example.com")).await.unwrap();
        assert_eq!(created.username, "alice");
        assert_eq!(created.email, "alice@example.com");
        assert_eq!(created.status, UserStatus::Active);
        assert_eq!(created.last_login_at, None);
        assert_eq!(user_get(pool, created.id).await.unwrap(), created);

        let updated = user_update(pool, created.id, None, Some(UserStatus::Suspended), IfVersion::Any).await.unwrap();
        assert_eq!(updated.status, UserStatus::Suspended);
        assert_eq!(updated.email, "alice@example.com", "email not given, so unchanged");
        assert!(updated.updated_at >= created.updated_at);
        assert_eq!(updated.created_at, created.created_at);

        let updated = user_update(pool, created.id, Some("a@example.org".into()), None, IfVersion::Any).await.unwrap();
        assert_eq!(updated.email, "a@example.org");
        assert_eq!(updated.status, UserStatus::Suspended, "status not given, so unchanged");

        user_delete(pool, created.id, IfVersion::Any).await.unwrap();
        assert!(matches!(user_get(pool, created.id).await, Err(StoreError::NotFound { resource: Resource::User })));
        assert!(matches!(
            user_delete(pool, created.id, IfVersion::Any).await,
            Err(StoreError::NotFound { resource: Resource::User })
        ));
        assert!(matches!(
            user_update(pool, created.id, None, Some(UserStatus::Active), IfVersion::Any).await,
            Err(StoreError::NotFound { resource: Resource::User })
        ));
        assert!(matches!(user_get(pool, 999_999).await, Err(StoreError::NotFound { resource: Resource::User })));
        assert!(matches!(
            user_delete(pool, 999_999, IfVersion::Any).await,
            Err(StoreError::NotFound { resource: Resource::User })
        ));
        assert!(matches!(
            user_update(pool, 999_999, Some("x@example.com".into()), None, IfVersion::Any).await,
            Err(StoreError::NotFound { resource: Resource::User })
        ));
    }

    #[tokio::test]
    async fn versions_fence_updates_and_deletes() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let u = user_create(pool, new_user("vera", "vera@example.com")).await.unwrap();
        assert_eq!(u.version, 1);
        let v2 = user_update(pool, u.id, None, Some(UserStatus::Inactive), IfVersion::OneOf(&[1])).await.unwrap();
        assert_eq!(v2.version, 2);
        // The version the client read is gone: nothing changes.
        let stale = user_update(pool, u.id, None, Some(UserStatus::Active), IfVersion::OneOf(&[1])).await;
        assert!(matches!(stale, Err(StoreError::Stale { resource: Resource::User })), "{stale:?}");
        assert!(matches!(
            user_update(pool, u.id, None, None, IfVersion::OneOf(&[])).await,
            Err(StoreError::Stale { .. })
        ));
        assert_eq!(user_get(pool, u.id).await.unwrap(), v2);
        assert!(matches!(user_delete(pool, u.id, IfVersion::OneOf(&[1, 3])).await, Err(StoreError::Stale { .. })));
        user_delete(pool, u.id, IfVersion::OneOf(&[1, 2])).await.unwrap();
        // Gone: 404 whatever the condition says.
        assert!(matches!(
            user_update(pool, u.id, None, None, IfVersion::OneOf(&[3])).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(user_delete(pool, u.id, IfVersion::OneOf(&[3])).await, Err(StoreError::NotFound { .. })));
    }

    #[tokio::test]
    async fn duplicates_conflict_on_the_right_field() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let bob = user_create(pool, new_user("bob", "Bob@Example.com")).await.unwrap();

        let err = user_create(pool, new_user("bob", "other@example.com")).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { field: "username", .. }), "{err:?}");

        // Emails differing only in case are the same email.
        let err = user_create(pool, new_user("robert", "bob@example.COM")).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { field: "email", .. }), "{err:?}");

        // Usernames are case-sensitive.
        user_create(pool, new_user("Bob", "bob2@example.com")).await.unwrap();

        let carol = user_create(pool, new_user("carol", "carol@example.com")).await.unwrap();
        let err = user_update(pool, carol.id, Some("BOB@example.com".into()), None, IfVersion::Any).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { field: "email", .. }), "{err:?}");
        // Setting one's own email again is not a conflict.
        user_update(pool, bob.id, Some("bob@example.com".into()), None, IfVersion::Any).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_of_one_username_yield_one_winner() {
        let db = test_database().await.unwrap();
        for round in 0..5 {
            let name = format!("racer{round}");
            let tasks: Vec<_> = (0..2)
                .map(|i| {
                    let pool = db.pool().clone();
                    let user = new_user(&name, &format!("{name}-{i}@example.com"));
                    tokio::spawn(async move { user_create(&pool, user).await })
                })
                .collect();
            let mut ok = 0;
            let mut conflicts = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Ok(_) => ok += 1,
                    Err(StoreError::Conflict { field: "username", .. }) => conflicts += 1,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            assert_eq!((ok, conflicts), (1, 1), "round {round}");
        }
    }

    #[tokio::test]
    async fn deleted_users_vanish_and_free_their_names() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let old = user_create(pool, new_user("dave", "dave@example.com")).await.unwrap();
        let keep = user_create(pool, new_user("erin", "erin@example.com")).await.unwrap();
        user_delete(pool, old.id, IfVersion::Any).await.unwrap();

        let (users, total) = users_list(pool, 1, 10, None).await.unwrap();
        assert_eq!(total, 1);
        assert_eq!(users, vec![keep.clone()]);
        let (users, total) = users_list(pool, 1, 10, Some(UserStatus::Active)).await.unwrap();
        assert_eq!((users.len(), total), (1, 1));

        let again = user_create(pool, new_user("dave", "DAVE@example.com")).await.unwrap();
        assert_ne!(again.id, old.id);
        assert!(matches!(user_get(pool, old.id).await, Err(StoreError::NotFound { resource: Resource::User })));
        assert_eq!(user_get(pool, again.id).await.unwrap().username, "dave");
    }

    #[tokio::test]
    async fn pagination() {
        let db = test_database().await.unwrap();
        let pool = db.pool();

        let (users, total) = users_list(pool, 1, 10, None).await.unwrap();
        assert_eq!((users.len(), total), (0, 0), "no rows");
        let (users, total) = users_list(pool, 3, 10, None).await.unwrap();
        assert_eq!((users.len(), total), (0, 0), "no rows, past the end");

        let mut created = Vec::new();
        for i in 0..7 {
            created.push(user_create(pool, new_user(&format!("u{i}"), &format!("u{i}@example.com"))).await.unwrap());
        }
        // Newest first; rows made in one transaction-free burst may share a created_at, and
        // then the higher id comes first. Give three users the same timestamp to be sure.
        let client = db.connect().await.unwrap();
        client
            .execute("UPDATE users SET created_at = '2020-01-01T00:00:00Z' WHERE username IN ('u1', 'u2', 'u3')", &[])
            .await
            .unwrap();
        client.execute("UPDATE users SET status = 'inactive' WHERE username IN ('u0', 'u2', 'u5')", &[]).await.unwrap();
        let expected_order = ["u6", "u5", "u4", "u0", "u3", "u2", "u1"];

        let names = |users: &[User]| users.iter().map(|u| u.username.clone()).collect::<Vec<_>>();

        let (users, total) = users_list(pool, 1, 1, None).await.unwrap();
        assert_eq!((names(&users), total), (vec!["u6".to_string()], 7), "one row per page");

        let (users, total) = users_list(pool, 1, 7, None).await.unwrap();
        assert_eq!(names(&users), expected_order, "exactly one page");
        assert_eq!(total, 7);
        let (users, total) = users_list(pool, 2, 7, None).await.unwrap();
        assert_eq!((users.len(), total), (0, 7), "just past the end");

        let mut paged = Vec::new();
        for page in 1..=3 {
            let (users, total) = users_list(pool, page, 3, None).await.unwrap();
            assert_eq!(total, 7);
            assert_eq!(users.len(), if page < 3 { 3 } else { 1 }, "page {page}");
            paged.extend(names(&users));
        }
        assert_eq!(paged, expected_order, "many pages, no gaps or repeats");
        let (users, total) = users_list(pool, 100, 3, None).await.unwrap();
        assert_eq!((users.len(), total), (0, 7), "far past the end");
        let (users, total) = users_list(pool, i64::MAX, 100, None).await.unwrap();
        assert_eq!((users.len(), total), (0, 7), "offset overflow saturates");

        let (users, total) = users_list(pool, 1, 2, Some(UserStatus::Inactive)).await.unwrap();
        assert_eq!((names(&users), total), (vec!["u5".to_string(), "u0".to_string()], 3));
        let (users, total) = users_list(pool, 2, 2, Some(UserStatus::Inactive)).await.unwrap();
        assert_eq!((names(&users), total), (vec!["u2".to_string()], 3));
        let (users, total) = users_list(pool, 3, 2, Some(UserStatus::Inactive)).await.unwrap();
        assert_eq!((users.len(), total), (0, 3));
        let (users, total) = users_list(pool, 1, 10, Some(UserStatus::Suspended)).await.unwrap();
        assert_eq!((users.len(), total), (0, 0));

        assert!(matches!(users_list(pool, 0, 10, None).await, Err(StoreError::Internal(_))));
    }

    #[tokio::test]
    async fn get_many_skips_missing_and_deleted() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let a = user_create(pool, new_user("gm_a", "gm_a@example.com")).await.unwrap();
        let b = user_create(pool, new_user("gm_b", "gm_b@example.com")).await.unwrap();
        user_delete(pool, b.id, IfVersion::Any).await.unwrap();
        let found = users_get_many(pool, &[a.id, b.id, 999_999, a.id]).await.unwrap();
        assert_eq!(found, vec![a]);
        assert!(users_get_many(pool, &[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn keyset_pages_follow_the_listing_order() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        for i in 0..7 {
            user_create(pool, new_user(&format!("k{i}"), &format!("k{i}@example.com"))).await.unwrap();
        }
        let client = db.connect().await.unwrap();
        // Ties on created_at are broken by id, exactly as in the offset listing.
        client
            .execute("UPDATE users SET created_at = '2020-01-01T00:00:00Z' WHERE username IN ('k1', 'k2', 'k3')", &[])
            .await
            .unwrap();
        client.execute("UPDATE users SET status = 'inactive' WHERE username IN ('k0', 'k2', 'k5')", &[]).await.unwrap();
        for status in [None, Some(UserStatus::Inactive)] {
            let (all, _) = users_list(pool, 1, 100, status).await.unwrap();
            let mut paged = Vec::new();
            let (mut page, _) = users_list(pool, 1, 2, status).await.unwrap();
            while let Some(last) = page.last() {
                let after = (last.created_at, last.id);
                paged.append(&mut page);
                page = users_list_after(pool, after, 2, status).await.unwrap();
            }
            assert_eq!(paged, all, "status {status:?}: no gaps or repeats");
        }
    }

    #[tokio::test]
    async fn invalid_status_is_rejected_by_the_database() {
        let db = test_database().await.unwrap();
        let user = user_create(db.pool(), new_user("frank", "frank@example.com")).await.unwrap();
        // The type allows no other status; the database holds the line for other writers.
        let client = db.pool().get().await.unwrap();
        let err = client.execute("UPDATE users SET status = 'banned' WHERE id = $1", &[&user.id]).await.unwrap_err();
        assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION), "{err:?}");
    }

    #[tokio::test]
    async fn hash_password_makes_a_verifiable_argon2id_hash() {
        use argon2::{Argon2, PasswordVerifier, password_hash::phc::PasswordHash};
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
        assert_ne!(hash, hash_password("correct horse".into()).await.unwrap(), "salted");
    }

    #[tokio::test]
    async fn a_cancelled_hash_keeps_its_permit_until_the_job_ends() {
        static LIMIT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let caller = tokio::spawn(run_limited(&LIMIT, move || {
            let _ = started_tx.send(());
            // Stands in for a hash that is still running: ends when the test says so.
            let _ = finish_rx.recv();
        }));
        started_rx.await.unwrap();
        assert_eq!(LIMIT.available_permits(), 0);

        // The client went away: its request future is dropped mid-hash.
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(LIMIT.available_permits(), 0, "the running job still holds the permit");

        finish_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while LIMIT.available_permits() == 0 {
            assert!(std::time::Instant::now() < deadline, "the permit never came back");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
