//! `listUsers` page tokens: where the next cursor page starts, which filter and sort it belongs
//! to and the iteration's count, signed with HMAC-SHA256 under `PAGE_TOKEN_KEY` so that a client
//! can neither forge a position nor carry a token over to another filter or deployment.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::db::users::UserStatus;

/// Bumped when the layout changes, so that an old token is refused rather than misread.
const VERSION: u8 = 1;
/// The only sort today (`created_at DESC, id DESC`); in the signed bytes so that a sort added
/// later cannot be fed a token made for this one.
const SORT_NEWEST_FIRST: u8 = 1;
/// version, sort, status, page, total, created_at (µs), id.
const BODY_LEN: usize = 1 + 1 + 1 + 8 + 8 + 8 + 8;
/// A truncated tag: 128 bits are far beyond guessing over HTTP, and keep the token short.
const TAG_LEN: usize = 16;

/// The decoded content of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The status filter the token was issued for.
    pub status: Option<UserStatus>,
    /// The number of the page the token leads to.
    pub page: i64,
    /// The total counted by the offset page the iteration started from.
    pub total: i64,
    /// The sort key of the last user of the previous page: the next page starts after it.
    pub after_created_at: DateTime<Utc>,
    pub after_id: i64,
}

/// Why a token was refused; all of them are answered alike (code 1016), so a client learns
/// nothing about which check failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not base64url of the right length")]
    Malformed,
    #[error("signature does not match")]
    BadSignature,
    #[error("unknown version or sort")]
    Unknown,
    #[error("issued for another status filter")]
    OtherFilter,
}

/// The signing key; cloned into every `App`.
#[derive(Clone)]
pub struct PageTokenKey(Vec<u8>);

impl std::fmt::Debug for PageTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokenKey(…)")
    }
}

fn status_byte(s: Option<UserStatus>) -> u8 {
    match s {
        None => 0,
        Some(UserStatus::Active) => 1,
        Some(UserStatus::Inactive) => 2,
        Some(UserStatus::Suspended) => 3,
    }
}

fn byte_status(b: u8) -> Option<Option<UserStatus>> {
    Some(match b {
        0 => None,
        1 => Some(UserStatus::Active),
        2 => Some(UserStatus::Inactive),
        3 => Some(UserStatus::Suspended),
        _ => return None,
    })
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl PageTokenKey {
    /// The configured key, or (`None`) a random one for this process: its tokens then stop
    /// working at a restart and on other instances, which `serve` warns about.
    pub fn new(configured: Option<&str>) -> PageTokenKey {
        match configured {
            Some(k) => PageTokenKey(k.as_bytes().to_vec()),
            None => PageTokenKey(rand::random::<[u8; 32]>().to_vec()),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length; this cannot fail.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }

    pub fn encode(&self, c: &Cursor) -> String {
        let mut body = Vec::with_capacity(BODY_LEN + TAG_LEN);
        body.extend_from_slice(&[VERSION, SORT_NEWEST_FIRST, status_byte(c.status)]);
        body.extend_from_slice(&c.page.to_be_bytes());
        body.extend_from_slice(&c.total.to_be_bytes());
        body.extend_from_slice(&c.after_created_at.timestamp_micros().to_be_bytes());
        body.extend_from_slice(&c.after_id.to_be_bytes());
        let mut mac = self.mac();
        mac.update(&body);
        let tag = mac.finalize().into_bytes();
        body.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// The cursor of a token this key signed for the `status` filter of the request.
    pub fn decode(&self, token: &str, status: Option<UserStatus>) -> Result<Cursor, TokenError> {
        // The spec caps the parameter at 200 characters, so decoding is bounded.
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| TokenError::Malformed)?;
        if raw.len() != BODY_LEN + TAG_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, tag) = raw.split_at(BODY_LEN);
        let mut mac = self.mac();
        mac.update(body);
        // Constant-time comparison: no timing oracle for forging a tag byte by byte.
        mac.verify_truncated_left(tag).map_err(|_| TokenError::BadSignature)?;
        if body[0] != VERSION || body[1] != SORT_NEWEST_FIRST {
            return Err(TokenError::Unknown);
        }
        let token_status = byte_status(body[2]).ok_or(TokenError::Unknown)?;
        if token_status != status {
            return Err(TokenError::OtherFilter);
        }
        let after_created_at = DateTime::<Utc>::from_timestamp_micros(i64_at(body, 19)).ok_or(TokenError::Unknown)?;
        Ok(Cursor {
            status: token_status,
            page: i64_at(body, 3),
            total: i64_at(body, 11),
            after_created_at,
            after_id: i64_at(body, 27),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor {
            status: Some(UserStatus::Active),
            page: 3,
            total: 1_000_000,
            after_created_at: DateTime::<Utc>::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            after_id: 42,
        }
    }

    #[test]
    fn round_trip_and_length() {
        let key = PageTokenKey::new(Some("k"));
        let t = key.encode(&cursor());
        assert!(t.len() <= 200, "the spec caps page_token at 200 characters: {}", t.len());
        assert_eq!(key.decode(&t, Some(UserStatus::Active)), Ok(cursor()));
    }

    #[test]
    fn refuses_tampering_other_keys_and_other_filters() {
        let key = PageTokenKey::new(Some("k"));
        let t = key.encode(&cursor());
        assert_eq!(key.decode(&t, None), Err(TokenError::OtherFilter));
        assert_eq!(key.decode(&t, Some(UserStatus::Inactive)), Err(TokenError::OtherFilter));
        assert_eq!(
            PageTokenKey::new(Some("other")).decode(&t, Some(UserStatus::Active)),
            Err(TokenError::BadSignature)
        );
        // Every single-byte change of the signed body is caught.
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let r = key.decode(&URL_SAFE_NO_PAD.encode(&bad), Some(UserStatus::Active));
            assert_eq!(r, Err(TokenError::BadSignature), "byte {i}");
        }
        assert_eq!(key.decode("not a token!", None), Err(TokenError::Malformed));
        assert_eq!(key.decode(&t[..t.len() - 4], Some(UserStatus::Active)), Err(TokenError::Malformed));
    }
}
