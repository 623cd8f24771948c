//! The engine of the mock servers `cargo xtask mock` generates: a seeded
//! synthesizer of schema-valid JSON read from the spec itself, and a bounded
//! in-memory store that makes the CRUD resources it recognises by path
//! pattern (`POST /things`, `GET|PUT|PATCH|DELETE /things/{id}`, `GET
//! /things`) behave statefully. The generated mock implements every trait
//! of its server crate over [`Mock`]; the answers go through the same typed
//! response enums and checks as a real application's, and a synthesized
//! answer that fails them is synthesized again, never sent.
//!
//! Like the rest of the runtime it knows no contract: the spec arrives as a
//! JSON document at start-up.
//!
//! Code map:
//! - this file: [`Mock`], what a generated handler passes in ([`Call`]) and
//!   gets back ([`Reply`]), error bodies, and the registry's problems;
//! - `roles`: which operations are CRUD on which resource, by path pattern
//!   and by response links;
//! - `answer`: answering one request, statefully where its role allows,
//!   else by synthesis;
//! - `store`: the bounded store of resources, and list paging;
//! - `synth`: the seeded generator and the schema-driven synthesizer;
//! - `schema`: reading the spec's schemas (`$ref`, `allOf`, property paths).

mod answer;
mod roles;
mod schema;
mod store;
mod synth;
#[cfg(test)]
mod tests;

use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::Problem;
use answer::{Ctx, Stateful};
use roles::{Op, Role, operations, parent};
use schema::{get_at_mut, locate, overlay_problem, scalar_text};
use store::{State, Store};
use synth::Synth;

pub use store::{MAX_LIST_ITEMS, MAX_RESOURCES};
pub use synth::Rng;

/// Answers synthesized per request before giving up on the stateful one:
/// even attempts use the spec's examples and defaults, odd ones do not, and
/// each draws other values.
pub const ATTEMPTS: u32 = 8;

/// What the generated handler passes in: the operation (by method and path
/// template, as the spec writes them), its parameters and body as JSON (as
/// serde writes the generated models, so by their names in the spec), and
/// the media type the glue negotiated.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub method: &'a str,
    pub template: &'a str,
    pub params: Value,
    pub body: Option<Value>,
    pub media: Option<&'a str>,
}

/// A synthesized answer: a documented status (or one within a documented
/// range or `default`), its body (`Null` for none; a string for text and
/// binary bodies) and its headers by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub media: Option<String>,
    pub body: Value,
    pub headers: Map<String, Value>,
}

impl Reply {
    /// The header `name` as the generated variant's field type wants it.
    pub fn header<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, String> {
        let v = self.headers.get(name).cloned().unwrap_or(Value::Null);
        serde_json::from_value(v).map_err(|e| format!("header {name}: {e}"))
    }

    /// The body as the generated variant's body type wants it.
    pub fn body<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.body.clone()).map_err(|e| format!("body: {e}"))
    }

    /// A binary body's bytes (synthesized as text).
    pub fn bytes(&self) -> Vec<u8> {
        match &self.body {
            Value::String(s) => s.clone().into_bytes(),
            Value::Null => Vec::new(),
            other => other.to_string().into_bytes(),
        }
    }
}

/// One mock server's engine: the spec, its operations' roles, the store and
/// the seeded generator, behind one lock (every request holds it only while
/// synthesizing a body bounded by the spec and the body limits).
pub struct Mock {
    doc: Value,
    ops: Vec<Op>,
    state: Mutex<State>,
}

/// A failure of the mock itself (an answer it could not synthesize), as the
/// 500 the generated glue answers with.
fn internal(detail: String) -> Problem {
    Problem::from_fault(crate::Fault::Internal).with_detail(detail)
}

impl Mock {
    /// The engine for `doc` (the normalized OpenAPI 3.0 document as JSON),
    /// drawing every value from `seed`.
    pub fn new(doc: Value, seed: u64) -> Result<Mock, String> {
        let ops = operations(&doc)?;
        Ok(Mock { doc, ops, state: Mutex::new(State { rng: Rng::new(seed), store: Store::default(), serial: 0 }) })
    }

    /// Answers `call`: `build` turns a reply into the operation's typed
    /// response and runs its checks; a reply it refuses is synthesized
    /// again, and only an accepted one changes the store.
    pub fn answer<R>(&self, call: Call<'_>, build: impl Fn(&Reply) -> Result<R, String>) -> Result<R, Problem> {
        let op = self
            .ops
            .iter()
            .find(|o| o.method.eq_ignore_ascii_case(call.method) && o.template == call.template)
            .ok_or_else(|| internal(format!("no operation {} {} in the document", call.method, call.template)))?;
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let st = &mut *state;
        let ctx = Ctx { doc: &self.doc, op, call: &call };
        let stateful = match &op.role {
            Role::Other => None,
            role => Some(role.clone()),
        };
        if let Some(role) = stateful {
            match ctx.stateful(&role, st, &build) {
                Stateful::Done(r) => return Ok(r),
                // Where the spec documents no failure to say it with,
                // the answer is a synthesized success instead: the mock
                // never answers a status the operation does not document.
                Stateful::Missing => {
                    if let Some(p) = ctx.not_found() {
                        return Err(p);
                    }
                }
                Stateful::Precondition => return Err(ctx.precondition_failed()),
                Stateful::BadCursor => {
                    let p = registry_problem(&self.doc, 400).unwrap_or_else(|| Problem::new(400));
                    return Err(p.with_detail("the page token is not one this mock issued"));
                }
                Stateful::NotApplicable => {}
                Stateful::Refused(why) => {
                    eprintln!(
                        "mock: {} {}: no stateful answer passed the checks, synthesized instead: {why}",
                        op.method, op.template
                    );
                }
            }
        }
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            let reply = ctx.synthesized(st, attempt, None)?;
            match build(&reply) {
                Ok(r) => {
                    self.follow_links(op, &reply, st);
                    return Ok(r);
                }
                Err(e) => last = e,
            }
        }
        Err(internal(format!("no synthesized answer of {} {} passed its checks: {last}", op.method, op.template)))
    }

    /// Stores what `op`'s answer created through its links: a resource of
    /// the target's answer, with the linked id.
    fn follow_links(&self, op: &Op, reply: &Reply, st: &mut State) {
        for link in &op.creates {
            let Some(id) = reply.body.pointer(&link.pointer).and_then(scalar_text) else { continue };
            let target = &self.ops[link.target];
            let Some(collection) = parent(&target.template) else { continue };
            let call = Call {
                method: &target.method,
                template: &target.template,
                params: Value::Null,
                body: None,
                media: None,
            };
            let ctx = Ctx { doc: &self.doc, op: target, call: &call };
            let Some(schema) = ctx.success_schema().cloned() else { continue };
            let Some((at, id_prop)) = locate(&self.doc, &schema, &ctx.id_names()) else { continue };
            let Ok(mut answer) = ctx.synthesized(st, 0, None) else { continue };
            let Some(Value::Object(resource)) = get_at_mut(&mut answer.body, &at) else { continue };
            let id_value = reply.body.pointer(&link.pointer).cloned().unwrap_or(Value::Null);
            resource.insert(id_prop, id_value);
            let resource = Value::Object(resource.clone());
            st.store.insert((collection.to_owned(), id), resource);
        }
    }

    /// The problem for an application failure with `status`: the spec's
    /// registry entry for it when it has one (a credential that is not the
    /// mock's token: `401`), else HTTP's.
    pub fn problem(&self, status: u16) -> Problem {
        registry_problem(&self.doc, status).unwrap_or_else(|| Problem::new(status))
    }

    /// A value of the schema at `pointer` (`#/components/schemas/X`) for an
    /// error body, with `problem`'s message and status where the schema has
    /// plain properties for them, else as [`Mock::plain_error_body`];
    /// `accept` runs the type's checks.
    pub fn error_body<T: serde::de::DeserializeOwned>(
        &self,
        pointer: &str,
        problem: &Problem,
        accept: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let schema = self.doc.pointer(pointer.trim_start_matches('#'))?;
        let mut rng = Rng::new(u64::from(problem.status));
        for attempt in 0..ATTEMPTS / 2 {
            let mut serial = 0;
            let mut v = Synth { doc: &self.doc, rng: &mut rng, attempt, serial: &mut serial }.value(schema, 0);
            overlay_problem(&self.doc, schema, &mut v, problem);
            if let Ok(t) = serde_json::from_value::<T>(v)
                && accept(&t)
            {
                return Some(t);
            }
        }
        self.plain_error_body(pointer, problem.status, accept)
    }

    /// An error body for `status` that owes nothing to the problem: its
    /// own generator, seeded by the status, so the same status always gets
    /// the same body whatever came before, and a start-up check of every
    /// status proves the error policy always has one. `None` when no
    /// attempt passes `accept`.
    pub fn plain_error_body<T: serde::de::DeserializeOwned>(
        &self,
        pointer: &str,
        status: u16,
        accept: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let schema = self.doc.pointer(pointer.trim_start_matches('#'))?;
        let mut rng = Rng::new(u64::from(status) ^ 0x5eed);
        for attempt in ATTEMPTS / 2..ATTEMPTS + ATTEMPTS / 2 {
            let mut serial = 0;
            let v = Synth { doc: &self.doc, rng: &mut rng, attempt, serial: &mut serial }.value(schema, 0);
            if let Ok(t) = serde_json::from_value::<T>(v)
                && accept(&t)
            {
                return Some(t);
            }
        }
        None
    }
}

/// Names of registry entries that stand for framework faults (the
/// registry's convention, see the generator's `ir/registry.rs`): never the
/// application's own failures.
const FAULT_NAMES: &[&str] = &[
    "ValidationFailed",
    "MalformedBody",
    "UnsupportedMediaType",
    "PayloadTooLarge",
    "MissingCredential",
    "RouteNotFound",
    "MethodNotAllowed",
    "NotAcceptable",
    "Internal",
];

/// The problem the spec's `x-error-codes` registry (if any) gives an
/// application failure with `status`: its first entry of that status that
/// is not a framework fault, with its code and message.
fn registry_problem(doc: &Value, status: u16) -> Option<Problem> {
    let entry = doc.get("x-error-codes")?.as_array()?.iter().find(|e| {
        e.get("status").and_then(Value::as_u64) == Some(u64::from(status))
            && e.get("fault").is_none()
            && e.get("name").and_then(Value::as_str).is_some_and(|n| !FAULT_NAMES.contains(&n))
    })?;
    let mut p = Problem::new(status).with_code(entry.get("code")?.as_i64()?);
    if let Some(m) = entry.get("message").and_then(Value::as_str) {
        p = p.with_title(m);
    }
    Some(p)
}
