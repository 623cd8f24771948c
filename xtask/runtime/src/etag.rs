//! Entity tags (RFC 9110 §8.8.3, §13.1): the comparisons conditional
//! requests need, so generated code and handlers never parse them by hand.

/// The opaque tag of an entity-tag (`W/"x"` and `"x"` → `"x"`).
fn opaque(tag: &str) -> &str {
    let t = tag.trim();
    t.strip_prefix("W/").unwrap_or(t)
}

/// Whether an `If-None-Match` header value names `etag` by the weak
/// comparison (`*` names any current representation): the condition
/// fails, and a GET answers 304. Linear in the header's length.
pub fn none_match_fails(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(h) = if_none_match else { return false };
    let h = h.trim();
    if h == "*" {
        return true;
    }
    let want = opaque(etag);
    h.split(',').any(|t| opaque(t) == want)
}

/// The tags an `If-Match` header value lists, for a strong comparison
/// against the current version (`None` for `*`, which any current
/// representation meets). Weak tags never match strongly, so they are left
/// out.
pub fn if_match_tags(if_match: &str) -> Option<Vec<&str>> {
    let h = if_match.trim();
    if h == "*" {
        return None;
    }
    Some(h.split(',').map(str::trim).filter(|t| !t.starts_with("W/") && !t.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_comparison_for_if_none_match() {
        assert!(none_match_fails(Some("\"a\", W/\"v1\""), "\"v1\""));
        assert!(none_match_fails(Some("*"), "\"v1\""));
        assert!(!none_match_fails(Some("\"v2\""), "\"v1\""));
        assert!(!none_match_fails(None, "\"v1\""));
        assert_eq!(if_match_tags("\"v1\", W/\"v2\""), Some(vec!["\"v1\""]));
        assert_eq!(if_match_tags(" * "), None);
    }
}
