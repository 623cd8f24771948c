//! The `api_tokens` store: operator tokens, kept only as SHA-256 hashes. Verification with a
//! cache in front lives in `crate::auth`; this module is the PostgreSQL side of it.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Pool, StoreError, conn, execute, query, query_opt};

/// Every token starts with this, so a leaked one is easy to recognise (and to grep for).
pub const TOKEN_PREFIX: &str = "sk_";

/// Random bytes per token: 256 bits, far beyond guessing.
const TOKEN_BYTES: usize = 32;

/// A token's metadata; neither the token nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What verification needs to know about a token, found by its hash.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub token_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The stored form of a token: SHA-256 of its full text, lowercase hex. A fast hash is right
/// here, unlike for passwords: the input is 256 random bits, not something a person chose.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `sk_` + 32 random bytes from the OS-seeded CSPRNG, URL-safe base64 without padding.
fn token_generate() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::fill(&mut bytes);
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `token` has the shape of one we issue, so junk is rejected without a lookup.
pub(crate) fn token_well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 43 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Issues a token named `name`, valid for `ttl` (or until revoked). Returns its id and the
/// plaintext, which is shown once and never stored. A taken name is `Conflict { field: "name" }`;
/// names are 1–100 characters and not all digits (see `sql/0002_api_tokens.sql`).
pub async fn token_issue(pool: &Pool, name: &str, ttl: Option<Duration>) -> Result<(i64, String), StoreError> {
    let expires_at = match ttl {
        None => None,
        Some(ttl) => Some(
            chrono::Duration::from_std(ttl)
                .ok()
                .and_then(|ttl| Utc::now().checked_add_signed(ttl))
                .ok_or_else(|| StoreError::internal(format!("token ttl {ttl:?} is out of range")))?,
        ),
    };
    let token = token_generate();
    let client = conn(pool).await?;
    let row = query_opt(
        &client,
        "tokens.issue",
        "INSERT INTO api_tokens (name, token_hash, expires_at) VALUES ($1, $2, $3) RETURNING id",
        &[&name, &token_hash(&token), &expires_at],
    )
    .await?
    .ok_or_else(|| StoreError::internal("INSERT … RETURNING returned no row"))?;
    Ok((row.try_get(0)?, token))
}

/// Every token, revoked and expired ones included, oldest first.
pub async fn tokens_list(pool: &Pool) -> Result<Vec<ApiToken>, StoreError> {
    let client = conn(pool).await?;
    let rows = query(
        &client,
        "tokens.list",
        "SELECT id, name, created_at, expires_at, revoked_at, last_used_at
         FROM api_tokens ORDER BY id",
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ApiToken {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                created_at: row.try_get(2)?,
                expires_at: row.try_get(3)?,
                revoked_at: row.try_get(4)?,
                last_used_at: row.try_get(5)?,
            })
        })
        .collect()
}

/// Revokes a token by id (all digits) or name. `true` when this call revoked it, `false` when
/// there is no such token or it was already revoked.
///
/// This does not touch the verification cache: a token verified in the last minute may keep
/// working until its cache entry expires. Use `auth::TokenVerifier::revoke` for immediate effect.
pub async fn token_revoke(pool: &Pool, id_or_name: &str) -> Result<bool, StoreError> {
    Ok(token_revoke_returning_hash(pool, id_or_name).await?.is_some_and(|(_, newly)| newly))
}

/// Revokes a token and returns its hash (to evict it from the cache) and whether this call
/// revoked it. An already revoked token still returns its hash, so a retried revoke that
/// failed to reach the cache the first time can finish the job.
pub(crate) async fn token_revoke_returning_hash(
    pool: &Pool,
    id_or_name: &str,
) -> Result<Option<(String, bool)>, StoreError> {
    let (id, name): (Option<i64>, Option<&str>) =
        if !id_or_name.is_empty() && id_or_name.bytes().all(|b| b.is_ascii_digit()) {
            match id_or_name.parse() {
                Ok(id) => (Some(id), None),
                // All digits but beyond i64: no token can have that id.
                Err(_) => return Ok(None),
            }
        } else {
            (None, Some(id_or_name))
        };
    let client = conn(pool).await?;
    // The CTE reads the row as it was, to tell "revoked now" from "revoked before".
    let row = query_opt(
        &client,
        "tokens.revoke",
        "WITH target AS (
             SELECT id, revoked_at IS NOT NULL AS was_revoked FROM api_tokens
             WHERE id = $1 OR name = $2
             FOR UPDATE
         )
         UPDATE api_tokens t SET revoked_at = COALESCE(t.revoked_at, now())
         FROM target WHERE t.id = target.id
         RETURNING t.token_hash, NOT target.was_revoked",
        &[&id, &name],
    )
    .await?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some((row.try_get(0)?, row.try_get(1)?))),
    }
}

pub(crate) async fn token_find_by_hash(pool: &Pool, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
    let client = conn(pool).await?;
    let row = query_opt(
        &client,
        "tokens.find_by_hash",
        "SELECT id, name, token_hash, expires_at, revoked_at FROM api_tokens WHERE token_hash = $1",
        &[&hash],
    )
    .await?;
    row.map(|row| {
        Ok(TokenRecord {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            token_hash: row.try_get(2)?,
            expires_at: row.try_get(3)?,
            revoked_at: row.try_get(4)?,
        })
    })
    .transpose()
}

/// Records a use. Called only when a verification reaches PostgreSQL, so `last_used_at` is
/// accurate to within the cache TTL and the hot path stays read-only.
pub(crate) async fn token_touch(pool: &Pool, id: i64) -> Result<(), StoreError> {
    let client = conn(pool).await?;
    execute(&client, "tokens.touch", "UPDATE api_tokens SET last_used_at = now() WHERE id = $1", &[&id]).await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::devsvc::test_database;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let a = token_generate();
        let b = token_generate();
        assert!(token_well_formed(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert!(!token_well_formed("sk_short"));
        assert!(!token_well_formed(&a.replacen("sk_", "pk_", 1)));
        assert!(!token_well_formed(&format!("{a}=")));
    }

    #[tokio::test]
    async fn issue_list_revoke() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let (ci, ci_token) = token_issue(pool, "ci", None).await.unwrap();
        let (ops, _) = token_issue(pool, "ops", Some(Duration::from_secs(3600))).await.unwrap();
        assert!(token_well_formed(&ci_token));

        // Only the hash is stored.
        let client = db.connect().await.unwrap();
        let stored: String =
            client.query_one("SELECT token_hash FROM api_tokens WHERE id = $1", &[&ci]).await.unwrap().get(0);
        assert_eq!(stored, token_hash(&ci_token));

        let err = token_issue(pool, "ci", None).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { field: "name" }), "{err:?}");
        assert!(token_issue(pool, "12345", None).await.is_err(), "all-digit names are refused");

        let listed = tokens_list(pool).await.unwrap();
        assert_eq!(listed.iter().map(|t| t.id).collect::<Vec<_>>(), vec![ci, ops]);
        assert_eq!(listed[0].expires_at, None);
        assert!(listed[1].expires_at.is_some());

        assert!(token_revoke(pool, "ci").await.unwrap());
        assert!(!token_revoke(pool, "ci").await.unwrap(), "already revoked");
        assert!(token_revoke(pool, &ops.to_string()).await.unwrap(), "by id");
        assert!(!token_revoke(pool, "nobody").await.unwrap());
        assert!(!token_revoke(pool, "999999").await.unwrap());
        assert!(!token_revoke(pool, "99999999999999999999999").await.unwrap());
        let listed = tokens_list(pool).await.unwrap();
        assert!(listed.iter().all(|t| t.revoked_at.is_some()));
    }
}
