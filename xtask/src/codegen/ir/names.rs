//! Names: Rust identifiers for the spec's names, and the escaping of JSON
//! pointer segments that every error message uses.

use heck::{ToSnakeCase, ToUpperCamelCase};

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self",
    "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become",
    "box", "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// A Rust field name for a JSON property name.
pub fn field_name(json: &str) -> String {
    let mut s = json.to_snake_case();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s = format!("f_{s}");
    }
    if RUST_KEYWORDS.contains(&s.as_str()) {
        s.push('_');
    }
    s
}

/// A Rust type or variant name.
pub fn type_name(s: &str) -> String {
    let mut n = s.to_upper_camel_case();
    if n.is_empty() || n.starts_with(|c: char| c.is_ascii_digit()) {
        n = format!("V{n}");
    }
    if RUST_KEYWORDS.contains(&n.as_str()) {
        n.push('_');
    }
    n
}

/// Escapes one JSON-pointer segment.
pub fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The operation id of an operation that declares none: the method and the
/// path's segments, a parameter segment read as `by` its name
/// (`GET /users/{id}/posts` → `getUsersByIdPosts`). Server and client use
/// this one function, so both sides agree; it depends only on the method
/// and the path, so adding an operation never renames another.
pub fn fallback_operation_id(method: &str, path: &str) -> String {
    let mut words = vec![method.to_ascii_lowercase()];
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(param) => {
                words.push("by".to_owned());
                words.push(param.to_owned());
            }
            None => words.push(seg.to_owned()),
        }
    }
    heck::ToLowerCamelCase::to_lower_camel_case(words.join(" ").as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_operation_ids_read_as_method_and_path() {
        assert_eq!(fallback_operation_id("get", "/users/{id}/posts"), "getUsersByIdPosts");
        assert_eq!(fallback_operation_id("POST", "/"), "post");
        assert_eq!(fallback_operation_id("delete", "/v1/instance-state"), "deleteV1InstanceState");
    }
}
