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

/// A parsed `If-Match` header (RFC 9110 §13.1.1): `*`, or one or more
/// entity-tags. The generator gives an operation's `If-Match` parameter
/// this type when the operation documents 412, so a handler asks
/// [`IfMatch::matches`] or [`IfMatch::tags`] and never parses the header.
/// A malformed value is refused before the handler runs (the parameter's
/// shape, [`crate::StrFormat::EntityTags`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfMatch {
    raw: String,
}

/// What a list member is: `"x"` or `W/"x"`, `x` of etagc characters
/// (`!`, `#`-`~`, and obs-text), nothing else.
fn entity_tag(t: &str) -> Option<&str> {
    let body = t.strip_prefix("W/").unwrap_or(t);
    let inner = body.strip_prefix('"')?.strip_suffix('"')?;
    inner.bytes().all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80).then_some(t)
}

/// Whether `h` is a well-formed `If-Match` / `If-None-Match` value: `*` or
/// a comma list of entity-tags (empty members allowed, at least one tag).
/// Linear in its length.
pub fn is_entity_tag_list(h: &str) -> bool {
    let h = h.trim_matches([' ', '\t']);
    if h == "*" {
        return true;
    }
    let mut any = false;
    for t in h.split(',') {
        let t = t.trim_matches([' ', '\t']);
        if t.is_empty() {
            continue;
        }
        if entity_tag(t).is_none() {
            return false;
        }
        any = true;
    }
    any
}

impl IfMatch {
    /// Parses a header value; `None` when it is not `*` or a list of
    /// entity-tags.
    pub fn parse(value: &str) -> Option<Self> {
        is_entity_tag_list(value).then(|| Self { raw: value.to_owned() })
    }

    /// The header as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `If-Match: *`: any current representation meets it.
    pub fn is_any(&self) -> bool {
        self.raw.trim_matches([' ', '\t']) == "*"
    }

    /// The strong tags listed (`"v1"` with its quotes), `None` for `*`.
    /// Weak tags never match strongly (§8.8.3.2), so they are left out: a
    /// list of weak tags only is met by no representation.
    pub fn tags(&self) -> Option<impl Iterator<Item = &str>> {
        if self.is_any() {
            return None;
        }
        Some(self.raw.split(',').map(|t| t.trim_matches([' ', '\t'])).filter(|t| !t.is_empty() && !t.starts_with("W/")))
    }

    /// Whether the current representation, whose strong ETag is `etag`
    /// (with its quotes), meets the condition. The caller knows the
    /// representation exists (a missing one fails every `If-Match`).
    pub fn matches(&self, etag: &str) -> bool {
        match self.tags() {
            None => true,
            Some(mut tags) => !etag.starts_with("W/") && tags.any(|t| t == etag),
        }
    }
}

impl std::fmt::Display for IfMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

impl serde::Serialize for IfMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for IfMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).ok_or_else(|| serde::de::Error::custom("not `*` or a list of entity-tags"))
    }
}

/// So the parameter's `pattern` and `maxLength` apply to the header as sent.
impl garde::rules::AsStr for IfMatch {
    fn as_str(&self) -> &str {
        &self.raw
    }
}

impl garde::rules::length::chars::HasChars for IfMatch {
    fn num_chars(&self) -> usize {
        self.raw.chars().count()
    }
}

impl garde::rules::length::simple::HasSimpleLength for IfMatch {
    fn length(&self) -> usize {
        self.raw.len()
    }
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
    }

    #[test]
    fn if_match_is_parsed_strictly_and_compared_strongly() {
        for bad in ["", " ", ",", "v1", "\"v1", "\"a\"b\"", "W/v1", "*, \"v1\"", "\"a b\"", "w/\"v1\""] {
            assert!(IfMatch::parse(bad).is_none(), "{bad:?} must be refused");
        }
        let m = IfMatch::parse(" \"v1\" , W/\"v2\",,\"v3\"").unwrap();
        assert!(m.matches("\"v1\"") && m.matches("\"v3\""));
        assert!(!m.matches("\"v2\""), "weak tags never match strongly");
        assert!(!m.matches("W/\"v1\""));
        assert_eq!(m.tags().unwrap().collect::<Vec<_>>(), ["\"v1\"", "\"v3\""]);
        let any = IfMatch::parse("*").unwrap();
        assert!(any.is_any() && any.tags().is_none() && any.matches("\"v9\""));
        let json: IfMatch = serde_json::from_value(serde_json::json!("\"x\"")).unwrap();
        assert_eq!(serde_json::to_value(&json).unwrap(), serde_json::json!("\"x\""));
        assert!(serde_json::from_value::<IfMatch>(serde_json::json!("x")).is_err());
    }
}
