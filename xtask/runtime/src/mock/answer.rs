//! Answering one request: statefully where the operation's role and
//! shapes allow (the store decides the resource, the synthesizer the rest
//! of the answer), else as [`Stateful`] says.

use serde_json::{Map, Value};

use super::roles::{Op, Role, fill, parent};
use super::schema::{
    get_at_mut, is_json, locate, locate_array, merge, property_schema, resolve, scalar_text, schema_at, set_at,
    status_order,
};
use super::store::{CURSOR_PARAMS, CURSOR_PREFIX, MAX_LIST_ITEMS, State, page_members};
use super::synth::{Synth, new_id};
use super::{ATTEMPTS, Call, Reply, internal, registry_problem};
use crate::Problem;

pub(super) enum Stateful<R> {
    Done(R),
    /// The request's `If-Match` names another version.
    Precondition,
    /// A list's cursor is not one this mock issued.
    BadCursor,
    /// The item the path names does not exist.
    Missing,
    /// The operation's shapes are not those of a resource (no id found):
    /// answered as any other.
    NotApplicable,
    /// Every stateful answer failed the response's checks (the last
    /// reason): answered as any other, and said on stderr, since the
    /// resource is then not what the client sent.
    Refused(String),
}

pub(super) struct Ctx<'a> {
    pub(super) doc: &'a Value,
    pub(super) op: &'a Op,
    pub(super) call: &'a Call<'a>,
}

impl Ctx<'_> {
    fn operation(&self) -> &Value {
        self.doc.pointer(&self.op.pointer).unwrap_or(&Value::Null)
    }

    fn responses(&self) -> Vec<(String, &Value)> {
        let mut out: Vec<(String, &Value)> = self
            .operation()
            .get("responses")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), resolve(self.doc, v))).collect())
            .unwrap_or_default();
        out.sort_by_key(|(k, _)| status_order(k));
        out
    }

    /// The documented success: the lowest 2xx code, else `2XX`, else
    /// `default`, else the first documented response.
    fn success(&self) -> Option<(u16, &Value)> {
        let rs = self.responses();
        let pick = rs
            .iter()
            .find_map(|(k, v)| k.parse::<u16>().ok().filter(|c| (200..300).contains(c)).map(|c| (c, *v)))
            .or_else(|| rs.iter().find(|(k, _)| k.eq_ignore_ascii_case("2XX")).map(|(_, v)| (200, *v)))
            .or_else(|| rs.iter().find(|(k, _)| k == "default").map(|(_, v)| (200, *v)));
        pick.or_else(|| {
            rs.first().map(|(k, v)| (k.parse::<u16>().unwrap_or(if k.len() == 3 { status_order(k) } else { 500 }), *v))
        })
    }

    /// The problem for a missing item: 404 when documented (exactly, by
    /// `4XX` or by `default`), else the first documented 4xx code, else
    /// none; the glue answers it as the documented response through the
    /// error policy.
    pub(super) fn not_found(&self) -> Option<Problem> {
        let rs = self.responses();
        let covered = rs.iter().any(|(k, _)| k == "404" || k.eq_ignore_ascii_case("4XX") || k == "default");
        let status = if covered {
            404
        } else {
            rs.iter().find_map(|(k, _)| k.parse::<u16>().ok().filter(|c| (400..500).contains(c)))?
        };
        Some(
            registry_problem(self.doc, status).unwrap_or_else(|| {
                Problem::new(status).with_detail(format!("no such resource at {}", self.call.template))
            }),
        )
    }

    /// 412 for a stale `If-Match` ([`Ctx::if_match`] reads one only where
    /// the operation documents it).
    pub(super) fn precondition_failed(&self) -> Problem {
        registry_problem(self.doc, 412)
            .unwrap_or_else(|| Problem::new(412).with_detail("If-Match names another version"))
    }

    /// Whether the operation documents `status` (exactly, by range or by
    /// `default`).
    fn documents(&self, status: u16) -> bool {
        let range = format!("{}XX", status / 100);
        self.responses()
            .iter()
            .any(|(k, _)| k.parse::<u16>() == Ok(status) || k.eq_ignore_ascii_case(&range) || k == "default")
    }

    /// The request's `If-Match`, when the operation takes one and
    /// documents the 412 a stale one gets.
    fn if_match(&self) -> Option<crate::etag::IfMatch> {
        if !self.documents(412) {
            return None;
        }
        let params = self.call.params.as_object()?;
        let (_, v) = params.iter().find(|(k, _)| k.eq_ignore_ascii_case("If-Match"))?;
        crate::etag::IfMatch::parse(v.as_str()?)
    }

    /// A body schema of `response` and its media type: the negotiated one,
    /// else the first JSON one, else the first.
    fn content<'r>(&self, response: &'r Value) -> Option<(String, &'r Value)> {
        let content = response.get("content")?.as_object()?;
        let (mt, media) = self
            .call
            .media
            .and_then(|m| content.get_key_value(m))
            .or_else(|| content.iter().find(|(k, _)| is_json(k)))
            .or_else(|| content.iter().next())?;
        Some((mt.clone(), media.get("schema").unwrap_or(&Value::Null)))
    }

    /// The whole success answer synthesized, with `resource` (if any)
    /// placed where the body carries the resource.
    pub(super) fn synthesized(
        &self,
        st: &mut State,
        attempt: u32,
        place: Option<(&[String], Value)>,
    ) -> Result<Reply, Problem> {
        let (status, response) =
            self.success().ok_or_else(|| internal(format!("{}: no documented response", self.op.pointer)))?;
        let mut synth = Synth { doc: self.doc, rng: &mut st.rng, attempt, serial: &mut st.serial };
        let (media, mut body) = match self.content(response) {
            Some((mt, schema)) => {
                let v = synth.value(schema, 0);
                let v = if is_json(&mt) || v.is_string() { v } else { Value::String(v.to_string()) };
                (Some(mt), v)
            }
            None => (None, Value::Null),
        };
        let mut headers = Map::new();
        if let Some(hs) = response.get("headers").and_then(Value::as_object) {
            for (name, h) in hs {
                let h = resolve(self.doc, h);
                let schema = h
                    .get("schema")
                    .or_else(|| {
                        h.get("content").and_then(Value::as_object).and_then(|c| c.values().next()?.get("schema"))
                    })
                    .unwrap_or(&Value::Null);
                headers.insert(name.clone(), synth.value(schema, 0));
            }
        }
        if let Some((at, resource)) = place {
            set_at(&mut body, at, resource);
        }
        Ok(Reply { status, media, body, headers })
    }

    pub(super) fn success_schema(&self) -> Option<&Value> {
        let (_, response) = self.success()?;
        self.content(response).map(|(_, s)| s)
    }

    /// The collection path this request addresses, and the item's id.
    fn collection_and_id(&self) -> Option<(String, Option<String>)> {
        let (collection_template, id_param) = match &self.op.role {
            Role::Create { .. } | Role::List => (self.op.template.as_str(), None),
            _ => {
                let p = parent(&self.op.template)?;
                let last = self.op.template[p.len()..].trim_start_matches('/');
                (p, Some(last.trim_start_matches('{').trim_end_matches('}')))
            }
        };
        let collection = fill(collection_template, &self.call.params)?;
        let id = match id_param {
            Some(name) => Some(scalar_text(self.call.params.get(name)?)?),
            None => None,
        };
        Some((collection, id))
    }

    /// The names an id property may have: the item path's parameter,
    /// `id`, and the parameter without its resource prefix.
    pub(super) fn id_names(&self) -> Vec<String> {
        let item = match &self.op.role {
            Role::Create { item } => item.clone(),
            Role::List => return vec!["id".into()],
            _ => self.op.template.clone(),
        };
        let last = item.rsplit('/').next().unwrap_or_default().trim_start_matches('{').trim_end_matches('}');
        let mut names = vec![last.to_owned(), "id".to_owned()];
        for suffix in ["Id", "_id", "ID"] {
            if let Some(stem) = last.strip_suffix(suffix)
                && !stem.is_empty()
            {
                names.push(format!("{stem}_id"));
                names.push(format!("{stem}Id"));
            }
        }
        names
    }

    pub(super) fn stateful<R>(
        &self,
        role: &Role,
        st: &mut State,
        build: &impl Fn(&Reply) -> Result<R, String>,
    ) -> Stateful<R> {
        let Some((collection, id)) = self.collection_and_id() else { return Stateful::NotApplicable };
        let Some(schema) = self.success_schema() else {
            // No body to carry the resource: the change still happens.
            return self.bodiless(role, st, build, &collection, id);
        };
        let schema = schema.clone();
        let names = self.id_names();
        if *role == Role::List {
            return self.list(st, build, &schema, &collection);
        }
        let Some((at, id_prop)) = locate(self.doc, &schema, &names) else {
            // A `DELETE` answering a body without the resource (a status
            // envelope) still deletes.
            if *role == Role::Delete {
                return self.bodiless(role, st, build, &collection, id);
            }
            return Stateful::NotApplicable;
        };
        let key = |id: String| (collection.clone(), id);
        match role {
            Role::Create { .. } => {
                let n = st.store.next_id.get(&collection).copied().unwrap_or(0) + 1;
                let mut last = String::from("every id drawn was taken");
                for attempt in 0..ATTEMPTS {
                    let Ok(mut reply) = self.synthesized(st, attempt, None) else { return Stateful::NotApplicable };
                    let Some(resource) = get_at_mut(&mut reply.body, &at) else { return Stateful::NotApplicable };
                    if attempt < ATTEMPTS / 2
                        && let Some(Value::Object(sent)) = &self.call.body
                    {
                        merge(self.doc, &schema, &at, resource, sent, false);
                    }
                    let id_schema = property_schema(self.doc, &schema, &at, &id_prop);
                    let id = new_id(id_schema, n, &mut st.rng);
                    let id_text = scalar_text(&id).unwrap_or_default();
                    if st.store.items.contains_key(&key(id_text.clone())) {
                        continue;
                    }
                    if let Value::Object(m) = resource {
                        m.insert(id_prop.clone(), id);
                    }
                    let stored = resource.clone();
                    if attempt < ATTEMPTS / 2 {
                        set_etag(&mut reply, "\"v1\"");
                    }
                    match build(&reply) {
                        Ok(r) => {
                            st.store.next_id.insert(collection.clone(), n);
                            st.store.insert(key(id_text), stored);
                            return Stateful::Done(r);
                        }
                        Err(e) => last = e,
                    }
                }
                Stateful::Refused(last)
            }
            Role::Read | Role::Replace | Role::Update | Role::Delete => {
                let Some(id) = id else { return Stateful::NotApplicable };
                let Some(stored) = st.store.items.get(&key(id.clone())).cloned() else { return Stateful::Missing };
                let etag = st.store.etag(&key(id.clone()));
                if *role != Role::Read
                    && let Some(condition) = self.if_match()
                    && !condition.matches(&etag)
                {
                    return Stateful::Precondition;
                }
                // What the resource's ETag is once this request changed it.
                let next_etag = match role {
                    Role::Replace | Role::Update => {
                        format!("\"v{}\"", st.store.versions.get(&key(id.clone())).copied().unwrap_or(1) + 1)
                    }
                    _ => etag.clone(),
                };
                let mut changed = stored.clone();
                let mut last = String::new();
                if matches!(role, Role::Replace | Role::Update)
                    && let (Some(Value::Object(sent)), Value::Object(_)) = (&self.call.body, &changed)
                {
                    merge(self.doc, &schema, &at, &mut changed, sent, *role == Role::Update);
                }
                for attempt in 0..ATTEMPTS {
                    // Later attempts fall back to the stored resource unchanged.
                    let resource = if attempt < ATTEMPTS / 2 { changed.clone() } else { stored.clone() };
                    let Ok(mut reply) = self.synthesized(st, attempt, Some((&at, resource.clone()))) else {
                        return Stateful::NotApplicable;
                    };
                    if attempt < ATTEMPTS / 2 {
                        set_etag(&mut reply, &next_etag);
                    }
                    match build(&reply) {
                        Ok(r) => {
                            match role {
                                Role::Delete => {
                                    st.store.remove(&key(id));
                                }
                                Role::Replace | Role::Update => st.store.insert(key(id), resource),
                                _ => {}
                            }
                            return Stateful::Done(r);
                        }
                        Err(e) => last = e,
                    }
                }
                Stateful::Refused(last)
            }
            Role::List | Role::Other => Stateful::NotApplicable,
        }
    }

    /// A stateful operation whose success has no body (a 204 `DELETE`), or
    /// a `DELETE` whose body does not carry the resource.
    fn bodiless<R>(
        &self,
        role: &Role,
        st: &mut State,
        build: &impl Fn(&Reply) -> Result<R, String>,
        collection: &str,
        id: Option<String>,
    ) -> Stateful<R> {
        let key = match (role, id) {
            (Role::Read | Role::Replace | Role::Update | Role::Delete, Some(id)) => (collection.to_owned(), id),
            _ => return Stateful::NotApplicable,
        };
        if !st.store.items.contains_key(&key) {
            return Stateful::Missing;
        }
        if *role != Role::Read
            && let Some(condition) = self.if_match()
            && !condition.matches(&st.store.etag(&key))
        {
            return Stateful::Precondition;
        }
        for attempt in 0..ATTEMPTS {
            let Ok(reply) = self.synthesized(st, attempt, None) else { return Stateful::NotApplicable };
            if let Ok(r) = build(&reply) {
                if *role == Role::Delete {
                    st.store.remove(&key);
                }
                return Stateful::Done(r);
            }
        }
        Stateful::NotApplicable
    }

    /// `GET` on a collection: what exists under it, paged by the limit and
    /// offset parameters it recognises, in the body's first array of objects.
    fn list<R>(
        &self,
        st: &mut State,
        build: &impl Fn(&Reply) -> Result<R, String>,
        schema: &Value,
        collection: &str,
    ) -> Stateful<R> {
        let Some(at) = locate_array(self.doc, schema, 0) else { return Stateful::NotApplicable };
        let array_schema = schema_at(self.doc, schema, &at).unwrap_or(&Value::Null);
        let max_items = array_schema.get("maxItems").and_then(Value::as_u64).map_or(MAX_LIST_ITEMS, |m| m as usize);
        let int = |names: &[&str]| names.iter().find_map(|n| self.call.params.get(*n).and_then(Value::as_u64));
        let limit = int(&["limit", "page_size", "pageSize", "per_page", "perPage", "size", "max", "count"]);
        let mut offset = int(&["offset", "skip", "start"]).or_else(|| {
            let page = int(&["page"])?;
            Some(page.saturating_sub(1).saturating_mul(limit.unwrap_or(MAX_LIST_ITEMS as u64)))
        });
        // A cursor is one this mock issued (`mock-offset-N`), else refused
        // with the documented 400 (else ignored).
        if let Some(token) = CURSOR_PARAMS.iter().find_map(|n| self.call.params.get(*n).and_then(Value::as_str)) {
            match token.strip_prefix(CURSOR_PREFIX).and_then(|n| n.parse::<u64>().ok()) {
                Some(n) => offset = Some(n),
                None if self.documents(400) => return Stateful::BadCursor,
                None => {}
            }
        }
        let all = st.store.list(collection);
        let take = limit.map_or(usize::MAX, |l| l as usize).min(max_items).min(MAX_LIST_ITEMS);
        let start = offset.unwrap_or(0) as usize;
        let items: Vec<Value> = all.iter().skip(start).take(take).map(|v| (*v).clone()).collect();
        let total = all.len();
        let next = (start + items.len() < total).then(|| format!("{CURSOR_PREFIX}{}", start + items.len()));
        let mut last = String::new();
        for attempt in 0..ATTEMPTS / 2 {
            let Ok(mut reply) = self.synthesized(st, attempt, Some((&at, Value::Array(items.clone())))) else {
                return Stateful::NotApplicable;
            };
            if attempt < ATTEMPTS / 4
                && let Some((_, parent_at)) = at.split_last()
            {
                page_members(self.doc, schema, parent_at, &mut reply.body, total, &self.call.params, next.as_deref());
            }
            match build(&reply) {
                Ok(r) => return Stateful::Done(r),
                Err(e) => last = e,
            }
        }
        Stateful::Refused(last)
    }
}

/// The reply's `ETag` header (if it documents one) as the resource's.
fn set_etag(reply: &mut Reply, etag: &str) {
    for (k, v) in reply.headers.iter_mut() {
        if k.eq_ignore_ascii_case("etag") {
            *v = Value::String(etag.to_owned());
        }
    }
}
