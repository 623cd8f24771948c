//! The bounded in-memory store of resources, and how lists of them are
//! paged.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use super::schema::{flatten, get_at_mut, schema_at};
use super::synth::Rng;

/// Most resources the store holds, over all collections; creating one more
/// evicts the oldest, so a long session costs bounded memory.
pub const MAX_RESOURCES: usize = 10_000;
/// Most stored resources one list answer carries (a schema's `maxItems`
/// may lower it).
pub const MAX_LIST_ITEMS: usize = 1_000;

#[derive(Debug, Default)]
pub(super) struct Store {
    /// (collection path as requested, id) → the resource.
    pub(super) items: BTreeMap<(String, String), Value>,
    /// Creation order, for listing and eviction.
    pub(super) order: VecDeque<(String, String)>,
    /// Ids handed out per collection path.
    pub(super) next_id: BTreeMap<String, u64>,
    /// Each resource's version: 1 when created, one more per change; its
    /// `ETag` is `"v<version>"`.
    pub(super) versions: BTreeMap<(String, String), u64>,
}

impl Store {
    pub(super) fn insert(&mut self, key: (String, String), v: Value) {
        *self.versions.entry(key.clone()).or_insert(0) += 1;
        if self.items.insert(key.clone(), v).is_none() {
            self.order.push_back(key);
        }
        while self.items.len() > MAX_RESOURCES {
            let Some(old) = self.order.pop_front() else { break };
            self.items.remove(&old);
            self.versions.remove(&old);
        }
    }

    pub(super) fn remove(&mut self, key: &(String, String)) -> Option<Value> {
        let v = self.items.remove(key)?;
        self.versions.remove(key);
        self.order.retain(|k| k != key);
        Some(v)
    }

    pub(super) fn etag(&self, key: &(String, String)) -> String {
        format!("\"v{}\"", self.versions.get(key).copied().unwrap_or(1))
    }

    pub(super) fn list(&self, collection: &str) -> Vec<&Value> {
        self.order.iter().filter(|(c, _)| c == collection).filter_map(|k| self.items.get(k)).collect()
    }
}

pub(super) struct State {
    pub(super) rng: Rng,
    pub(super) store: Store,
    /// Counts values needing distinctness (emails, names).
    pub(super) serial: u64,
}

/// The members beside a list's array: counts (`total`, `total_count`,
/// `totalCount`) become what exists, paging members (`page`, `page_size`,
/// `limit`, `offset` …) echo the request's, and cursors (a member named
/// like `next…` or `…cursor`) are `next` — a `mock-offset-N` the list reads
/// back — when more follow, else dropped (optional ones).
pub(super) fn page_members(
    doc: &Value,
    schema: &Value,
    parent_at: &[String],
    body: &mut Value,
    total: usize,
    params: &Value,
    next: Option<&str>,
) {
    let Some(parent_schema) = schema_at(doc, schema, parent_at) else { return };
    let flat = flatten(doc, parent_schema);
    let required: Vec<&str> =
        flat.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(Value::Object(m)) = get_at_mut(body, parent_at) else { return };
    for name in ["total", "total_count", "totalCount"] {
        if m.get(name).is_some_and(Value::is_u64) {
            m.insert(name.to_owned(), Value::from(total));
        }
    }
    for name in ["page", "page_size", "pageSize", "per_page", "perPage", "limit", "offset"] {
        if let Some(sent) = params.get(name).filter(|v| v.is_u64())
            && m.get(name).is_some_and(Value::is_u64)
        {
            m.insert(name.to_owned(), sent.clone());
        }
    }
    let cursors: Vec<String> = m
        .keys()
        .filter(|k| {
            let lower = k.to_ascii_lowercase();
            (lower.starts_with("next") || lower.ends_with("cursor")) && !required.contains(&k.as_str())
        })
        .cloned()
        .collect();
    for k in cursors {
        match next {
            Some(n) if m.get(&k).is_some_and(Value::is_string) => {
                m.insert(k, Value::String(n.to_owned()));
            }
            _ => {
                m.remove(&k);
            }
        }
    }
}

/// What a cursor this mock issues looks like: the offset it continues at.
pub(super) const CURSOR_PREFIX: &str = "mock-offset-";
/// Request parameters read as a cursor.
pub(super) const CURSOR_PARAMS: &[&str] =
    &["page_token", "pageToken", "cursor", "next", "next_token", "nextToken", "continuation"];
