//! What of a task's payload an operator may see (`getAdminTask`): secrets are replaced by
//! [`REDACTED`] and named by JSON pointer. The rules live beside the handlers because only
//! they know what a payload of each kind carries.

use serde_json::Value;

use super::EMAIL;

/// What a redacted member reads.
pub const REDACTED: &str = "[redacted]";

/// Member names (lowercase substrings) that are secret in any payload, at any depth.
const SECRET_NAMES: [&str; 6] = ["password", "secret", "token", "authorization", "api_key", "apikey"];

/// Members of a kind's top-level object that are secret there: an email's body may carry a
/// reset link or a one-time code. A sync payload (type, dates, batch size) carries none.
fn kind_secrets(kind: &str) -> &'static [&'static str] {
    match kind {
        EMAIL => &["body"],
        _ => &[],
    }
}

/// The payload with its secrets replaced, and the JSON pointers of what was replaced. Linear
/// in the payload's size; recursion is bounded by the depth serde_json accepts (128).
pub fn redact(kind: &str, mut payload: Value) -> (Value, Vec<String>) {
    let mut redacted = Vec::new();
    if let Value::Object(map) = &mut payload {
        for name in kind_secrets(kind) {
            if let Some(v) = map.get_mut(*name) {
                *v = Value::String(REDACTED.to_owned());
                redacted.push(format!("/{}", escape(name)));
            }
        }
    }
    walk(&mut payload, &mut String::new(), &mut redacted);
    (payload, redacted)
}

fn walk(v: &mut Value, path: &mut String, out: &mut Vec<String>) {
    let len = path.len();
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                path.push('/');
                path.push_str(&escape(k));
                let lower = k.to_ascii_lowercase();
                if SECRET_NAMES.iter().any(|s| lower.contains(s)) {
                    if child.as_str() != Some(REDACTED) {
                        *child = Value::String(REDACTED.to_owned());
                        out.push(path.clone());
                    }
                } else {
                    walk(child, path, out);
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                path.push('/');
                path.push_str(&i.to_string());
                walk(child, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// RFC 6901: `~` and `/` in a member name.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_email_body_is_redacted_and_its_addresses_kept() {
        let p = json!({"to": "a@example.com", "cc": [], "subject": "Hi", "body": "code 123456"});
        let (v, r) = redact(EMAIL, p);
        assert_eq!(v["body"], REDACTED);
        assert_eq!(v["to"], "a@example.com");
        assert_eq!(r, vec!["/body"]);
    }

    #[test]
    fn secret_names_are_redacted_at_any_depth() {
        let p = json!({"a": [{"API_Key": "k", "x/y": {"password_hash": "h"}}], "sync_type": "sim_status"});
        let (v, mut r) = redact("sync", p);
        r.sort();
        assert_eq!(r, vec!["/a/0/API_Key", "/a/0/x~1y/password_hash"]);
        assert_eq!(v["a"][0]["API_Key"], REDACTED);
        assert_eq!(v["sync_type"], "sim_status");
    }

    #[test]
    fn a_sync_payload_has_no_secret() {
        let p =
            json!({"sync_type": "flow_usage", "start_date": "2025-01-01", "end_date": "2025-01-02", "batch_size": 10});
        let (v, r) = redact("sync", p.clone());
        assert!(r.is_empty());
        assert_eq!(v, p);
    }
}
