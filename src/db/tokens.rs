//! The `api_tokens` store: operator tokens, kept only as SHA-256 hashes, and the token format
//! (`sk_` + random base62 + a CRC32 checksum; the pre-checksum format is still recognised).
//! Verification with caches in front lives in `crate::auth`; this is the PostgreSQL side of it.
//! A token carries its [`Grant`]: full access, or the [`Scope`]s it was issued with.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Pool, StoreError, conn, execute, query, query_opt};

/// Every token starts with this, so a leaked one is easy to recognise (and to grep for).
pub const TOKEN_PREFIX: &str = "sk_";

/// Random base62 characters per token: 43 × log2(62) ≈ 256 bits, far beyond guessing.
const RANDOM_CHARS: usize = 43;

/// The checksum's base62 digits: 62^6 > 2^32, so any CRC32 fits.
const CHECKSUM_CHARS: usize = 6;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Tokens issued before the checksum: `sk_` + 32 random bytes in URL-safe base64 (43 chars).
/// Still accepted; told apart from current tokens by their length alone (43 characters after
/// the prefix instead of 49). Having no checksum, they are always looked up.
const LEGACY_CHARS: usize = 43;

/// What a token may do, named as the contract's `TokenAuth` requirements name them (and as the
/// `api_tokens_scopes_check` constraint of `sql/0005_token_scopes.sql` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "users:read")]
    UsersRead,
    #[serde(rename = "users:write")]
    UsersWrite,
    #[serde(rename = "tasks:read")]
    TasksRead,
    #[serde(rename = "tasks:write")]
    TasksWrite,
    /// Every other scope, including any a later contract adds.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] =
        [Scope::UsersRead, Scope::UsersWrite, Scope::TasksRead, Scope::TasksWrite, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::TasksRead => "tasks:read",
            Scope::TasksWrite => "tasks:write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is none of [`Scope::ALL`]; its message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?} (valid: users:read, users:write, tasks:read, tasks:write, admin)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// What a token was issued with. `Full` is a NULL `scopes` column: every token issued before
/// scopes existed, and `token issue` without `--scope`, so that old tokens keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    Full,
    Scopes(Vec<Scope>),
}

impl Grant {
    /// Whether this grant covers every scope in `required` (the names a requirement of the
    /// contract lists). `admin` covers all; a name that is no [`Scope`] is covered only by
    /// `Full` and `admin`, so a scope the contract gains later is denied to narrow tokens.
    pub fn covers(&self, required: &[&str]) -> bool {
        match self {
            Grant::Full => true,
            Grant::Scopes(granted) => {
                granted.contains(&Scope::Admin)
                    || required.iter().all(|r| r.parse::<Scope>().is_ok_and(|s| granted.contains(&s)))
            }
        }
    }

    /// The column's value: NULL for `Full`.
    fn column(&self) -> Option<Vec<&'static str>> {
        match self {
            Grant::Full => None,
            Grant::Scopes(scopes) => Some(scopes.iter().map(|s| s.as_str()).collect()),
        }
    }

    /// From the column. The table's CHECK admits only known names; should another ever be
    /// read (a newer binary's scope, say) it is dropped, which grants less, never more.
    fn from_column(column: Option<Vec<String>>) -> Grant {
        match column {
            None => Grant::Full,
            Some(names) => Grant::Scopes(names.iter().filter_map(|n| n.parse().ok()).collect()),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Full => f.write_str("full access"),
            Grant::Scopes(scopes) => {
                let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                f.write_str(&names.join(" "))
            }
        }
    }
}

/// A token's metadata; neither the token nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub grant: Grant,
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
    pub grant: Grant,
    pub token_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The stored form of a token: SHA-256 of its full text, lowercase hex. A fast hash is right
/// here, unlike for passwords: the input is 256 random bits, not something a person chose.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    // Into a buffer at once: `hex::encode` collects one char at a time, on every request.
    let mut buf = [0u8; 64];
    match hex::encode_to_slice(digest, &mut buf) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => hex::encode(digest),
    }
}

/// `sk_` + 43 random base62 characters from the OS-seeded CSPRNG + the CRC32 of everything
/// before it in 6 base62 digits (after GitHub's tokens). The checksum is no secret: it
/// lets a verifier refuse random or mistyped strings without asking any store.
pub(crate) fn token_generate() -> String {
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS);
    token.push_str(TOKEN_PREFIX);
    let mut bytes = [0u8; 64];
    while token.len() < TOKEN_PREFIX.len() + RANDOM_CHARS {
        rand::fill(&mut bytes);
        // Only bytes below 4 × 62 map evenly onto the alphabet; the others are skipped.
        for &b in bytes.iter().filter(|&&b| b < 248) {
            if token.len() == TOKEN_PREFIX.len() + RANDOM_CHARS {
                break;
            }
            token.push(char::from(BASE62[usize::from(b % 62)]));
        }
    }
    let checksum = base62_checksum(crc32(token.as_bytes()));
    token.push_str(&checksum);
    token
}

/// How a presented token is to be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenShape {
    /// The current format, its checksum correct.
    Checksummed,
    /// The pre-checksum format: nothing to check locally, only a lookup can tell.
    Legacy,
}

/// The shape of `token`, or `None` when it cannot be a token we issued (wrong prefix, length,
/// alphabet or checksum), so it is refused without a lookup.
pub(crate) fn token_shape(token: &str) -> Option<TokenShape> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    if rest.len() == RANDOM_CHARS + CHECKSUM_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        let (body, checksum) = token.split_at(TOKEN_PREFIX.len() + RANDOM_CHARS);
        // Not constant-time, nor need it be: the checksum is public, derived from the token.
        return (base62_checksum(crc32(body.as_bytes())) == checksum).then_some(TokenShape::Checksummed);
    }
    let legacy =
        rest.len() == LEGACY_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    legacy.then_some(TokenShape::Legacy)
}

/// CRC-32 (IEEE 802.3, as in zlib and GitHub's tokens), a byte at a time through a table
/// built at compile time: every request checks one.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = (crc >> 8) ^ CRC_TABLE[usize::from((crc as u8) ^ b)];
    }
    !crc
}

/// The CRC of each byte value, bit by bit.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// `n` in base62, most significant digit first, zero-padded to 6 digits.
fn base62_checksum(mut n: u32) -> String {
    let mut digits = [b'0'; CHECKSUM_CHARS];
    for d in digits.iter_mut().rev() {
        *d = BASE62[usize::try_from(n % 62).unwrap_or(0)];
        n /= 62;
    }
    digits.iter().map(|&d| char::from(d)).collect()
}

/// Issues a token named `name`, valid for `ttl` (or until revoked), limited to `scopes` (`None`:
/// full access). Returns its id and the plaintext, which is shown once and never stored. A taken
/// name is `Conflict { field: "name" }`; names are 1–100 characters and not all digits (see
/// `sql/0002_api_tokens.sql`).
pub async fn token_issue(
    pool: &Pool,
    name: &str,
    ttl: Option<Duration>,
    scopes: Option<&[Scope]>,
) -> Result<(i64, String), StoreError> {
    let grant = match scopes {
        None => Grant::Full,
        Some(scopes) => {
            let mut scopes = scopes.to_vec();
            scopes.sort_unstable();
            scopes.dedup();
            Grant::Scopes(scopes)
        }
    };
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
        "INSERT INTO api_tokens (name, token_hash, expires_at, scopes) VALUES ($1, $2, $3, $4) RETURNING id",
        &[&name, &token_hash(&token), &expires_at, &grant.column()],
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
        "SELECT id, name, created_at, expires_at, revoked_at, last_used_at, scopes
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
                grant: Grant::from_column(row.try_get(6)?),
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
        "SELECT id, name, token_hash, expires_at, revoked_at, scopes FROM api_tokens WHERE token_hash = $1",
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
            grant: Grant::from_column(row.try_get(5)?),
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
pub(crate) mod tests {
    use super::*;
    use crate::devsvc::test_database;

    /// A token as issued before the checksum: `sk_` + 32 random bytes, URL-safe base64.
    pub(crate) fn legacy_token() -> String {
        use base64::Engine;
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Stores `token` as `token_issue` stores one, for tokens made outside it.
    pub(crate) async fn insert_token(pool: &Pool, name: &str, token: &str) -> i64 {
        let client = conn(pool).await.unwrap();
        query_opt(
            &client,
            "tokens.test_insert",
            "INSERT INTO api_tokens (name, token_hash) VALUES ($1, $2) RETURNING id",
            &[&name, &token_hash(token)],
        )
        .await
        .unwrap()
        .unwrap()
        .get(0)
    }

    #[test]
    fn generated_tokens_are_checksummed_and_distinct() {
        let a = token_generate();
        let b = token_generate();
        assert_eq!(token_shape(&a), Some(TokenShape::Checksummed), "{a}");
        assert_eq!(a.len(), 3 + 43 + 6);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_eq!(token_shape("sk_short"), None);
        assert_eq!(token_shape(&a.replacen("sk_", "pk_", 1)), None);
        assert_eq!(token_shape(&format!("{a}=")), None);
        // Any one character changed breaks the checksum.
        for i in 3..a.len() {
            let mut typo = a.clone().into_bytes();
            typo[i] = if typo[i] == b'x' { b'y' } else { b'x' };
            assert_eq!(token_shape(std::str::from_utf8(&typo).unwrap()), None, "{i}");
        }
    }

    #[test]
    fn crc32_is_the_standard_one() {
        // The check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(base62_checksum(0), "000000");
        assert_eq!(base62_checksum(u32::MAX), "4gfFC3");
    }

    #[test]
    fn legacy_tokens_are_told_apart_by_length() {
        for _ in 0..100 {
            assert_eq!(token_shape(&legacy_token()), Some(TokenShape::Legacy));
        }
        assert_eq!(token_shape(&format!("sk_{}", "-".repeat(49))), None, "base62 has no '-'");
        assert_eq!(token_shape(&format!("sk_{}", "a".repeat(44))), None);
    }

    #[test]
    fn scopes_parse_by_their_contract_names_and_admin_covers_all() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
            assert_eq!(serde_json::to_value(scope).unwrap(), serde_json::json!(scope.as_str()));
        }
        let err = "users:delete".parse::<Scope>().unwrap_err().to_string();
        assert!(err.contains("\"users:delete\"") && err.contains("tasks:write, admin"), "{err}");
        let reader = Grant::Scopes(vec![Scope::UsersRead]);
        assert!(reader.covers(&["users:read"]) && reader.covers(&[]));
        assert!(!reader.covers(&["users:write"]) && !reader.covers(&["users:read", "tasks:read"]));
        assert!(!reader.covers(&["reports:read"]), "a scope this binary does not know is denied");
        for wide in [Grant::Full, Grant::Scopes(vec![Scope::Admin])] {
            assert!(wide.covers(&["users:write"]) && wide.covers(&["reports:read"]));
        }
    }

    #[tokio::test]
    async fn scopes_are_stored_and_the_table_refuses_unknown_ones() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let (_, _) = token_issue(pool, "narrow", None, Some(&[Scope::TasksWrite, Scope::UsersRead, Scope::UsersRead]))
            .await
            .unwrap();
        let (old, _) = token_issue(pool, "wide", None, None).await.unwrap();
        let listed = tokens_list(pool).await.unwrap();
        assert_eq!(listed[0].grant, Grant::Scopes(vec![Scope::UsersRead, Scope::TasksWrite]), "sorted, once each");
        assert_eq!(listed[1].grant, Grant::Full);
        let client = db.connect().await.unwrap();
        let stored: Option<Vec<String>> =
            client.query_one("SELECT scopes FROM api_tokens WHERE id = $1", &[&old]).await.unwrap().get(0);
        assert_eq!(stored, None, "full access is NULL, as in every row from before scopes");
        for bad in ["ARRAY['users:delete']", "ARRAY[]::text[]", "ARRAY[NULL]::text[]"] {
            let sql = format!("UPDATE api_tokens SET scopes = {bad} WHERE id = $1");
            let err = client.execute(&sql, &[&old]).await.unwrap_err();
            assert!(format!("{err:?}").contains("api_tokens_scopes_check"), "{bad}: {err:?}");
        }
    }

    #[tokio::test]
    async fn issue_list_revoke() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let (ci, ci_token) = token_issue(pool, "ci", None, None).await.unwrap();
        let (ops, _) = token_issue(pool, "ops", Some(Duration::from_secs(3600)), None).await.unwrap();
        assert_eq!(token_shape(&ci_token), Some(TokenShape::Checksummed));

        // Only the hash is stored.
        let client = db.connect().await.unwrap();
        let stored: String =
            client.query_one("SELECT token_hash FROM api_tokens WHERE id = $1", &[&ci]).await.unwrap().get(0);
        assert_eq!(stored, token_hash(&ci_token));

        let err = token_issue(pool, "ci", None, None).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { field: "name", .. }), "{err:?}");
        assert!(token_issue(pool, "12345", None, None).await.is_err(), "all-digit names are refused");

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
