//! Which operations are CRUD on which resource: by path pattern
//! (`POST /things`, `GET|PUT|PATCH|DELETE /things/{id}`, `GET /things`),
//! and by the response links that name what an operation created.

use serde_json::Value;

use super::schema::{resolve, scalar_text};

/// The role a path pattern gives an operation.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Role {
    /// `POST` on a collection whose items have their own path.
    Create {
        item: String,
    },
    /// `GET` on such a collection.
    List,
    Read,
    Replace,
    Update,
    Delete,
    Other,
}

#[derive(Debug, Clone)]
pub(super) struct Op {
    pub(super) method: String,
    pub(super) template: String,
    pub(super) role: Role,
    /// `/paths/…/{method}` in the document.
    pub(super) pointer: String,
    /// Links of its success answers to a read of one item: what it
    /// creates there (`POST /tasks/email` → `GET /tasks/{task_id}`).
    pub(super) creates: Vec<LinkCreate>,
}

/// A response link `{operationId: <a GET of /things/{id}>, parameters:
/// {id: "$response.body#/ptr"}}`: the answer's value at `ptr` names an item
/// the answer created.
#[derive(Debug, Clone)]
pub(super) struct LinkCreate {
    /// Index of the target operation in `Mock::ops`.
    pub(super) target: usize,
    /// The JSON pointer into the answer's body.
    pub(super) pointer: String,
}

/// Every operation of `doc`, with the role its path pattern gives it (see
/// [`Role`]); then the response links, which make more `GET`s reads.
pub(super) fn operations(doc: &Value) -> Result<Vec<Op>, String> {
    let paths = doc.get("paths").and_then(Value::as_object).ok_or("the document has no paths")?;
    let templates: Vec<&String> = paths.keys().collect();
    let mut ops = Vec::new();
    for (template, item) in paths {
        let Some(item) = item.as_object() else { continue };
        for method in ["get", "put", "post", "delete", "patch"] {
            if !item.contains_key(method) {
                continue;
            }
            let item_of = |collection: &str| {
                templates.iter().find(|t| {
                    t.strip_prefix(collection)
                        .and_then(|rest| rest.strip_prefix('/'))
                        .is_some_and(|seg| seg.starts_with('{') && seg.ends_with('}') && !seg.contains('/'))
                })
            };
            let is_item = parent(template).is_some_and(|p| paths.contains_key(p));
            let role = match (method, is_item, item_of(template)) {
                ("post", _, Some(item)) => Role::Create { item: (*item).clone() },
                ("get", _, Some(_)) => Role::List,
                ("get", true, _) => Role::Read,
                ("put", true, _) => Role::Replace,
                ("patch", true, _) => Role::Update,
                ("delete", true, _) => Role::Delete,
                _ => Role::Other,
            };
            ops.push(Op {
                method: method.to_owned(),
                template: template.clone(),
                role,
                pointer: format!("/paths/{}/{method}", template.replace('~', "~0").replace('/', "~1")),
                creates: Vec::new(),
            });
        }
    }
    link_creates(doc, &mut ops);
    Ok(ops)
}

/// Reads the success responses' links: a link to a `GET` of one item
/// (`/things/{id}`, no other parameter) whose parameter is
/// `$response.body#/ptr` makes that `GET` a read of what the linking
/// operation created.
fn link_creates(doc: &Value, ops: &mut [Op]) {
    let ids: Vec<Option<String>> =
        ops.iter().map(|o| doc.pointer(&o.pointer)?.get("operationId")?.as_str().map(str::to_owned)).collect();
    for i in 0..ops.len() {
        let Some(responses) = doc.pointer(&ops[i].pointer).and_then(|o| o.get("responses")).and_then(Value::as_object)
        else {
            continue;
        };
        let mut creates = Vec::new();
        for (status, r) in responses {
            if !status.starts_with('2') {
                continue;
            }
            let r = resolve(doc, r);
            for link in r.get("links").and_then(Value::as_object).into_iter().flat_map(|l| l.values()) {
                let link = resolve(doc, link);
                let Some(target_id) = link.get("operationId").and_then(Value::as_str) else { continue };
                let Some(target) = ids.iter().position(|id| id.as_deref() == Some(target_id)) else { continue };
                let t = &ops[target];
                let single = t.template.matches('{').count() == 1;
                let Some(param) = parent(&t.template).map(|p| t.template[p.len() + 1..].trim_matches(['{', '}']))
                else {
                    continue;
                };
                let expr = link.get("parameters").and_then(|p| p.get(param)).and_then(Value::as_str);
                if let (true, "get", Some(ptr)) =
                    (single, t.method.as_str(), expr.and_then(|e| e.strip_prefix("$response.body#")))
                {
                    creates.push(LinkCreate { target, pointer: ptr.to_owned() });
                }
            }
        }
        for c in &creates {
            // The target reads what the store holds.
            if ops[c.target].role == Role::Other {
                ops[c.target].role = Role::Read;
            }
        }
        ops[i].creates = creates;
    }
}

/// The path template with its parameters filled from `params`.
pub(super) fn fill(template: &str, params: &Value) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        out.push_str(&scalar_text(params.get(&rest[start + 1..end])?)?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

pub(super) fn parent(template: &str) -> Option<&str> {
    let (p, last) = template.rsplit_once('/')?;
    (last.starts_with('{') && last.ends_with('}') && !p.is_empty()).then_some(p)
}
