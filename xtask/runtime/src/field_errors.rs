//! Field errors: every failure of one request, collected in one pass and
//! reported together in a single 400.

use std::{
    collections::HashSet,
    fmt,
    hash::{BuildHasher, RandomState},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most field errors one 400 lists; the rest are only counted (`omitted`),
/// so the answer to a huge bad request stays small.
pub const MAX_LISTED_ERRORS: usize = 100;

/// One failing field, by its JSON path (`cc[1]`, `page_size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every failure of one request: the first [`MAX_LISTED_ERRORS`] in the
/// order found, and the count of all. Recording a failure costs time in the
/// length of its path, whatever came before, so collecting is linear.
#[derive(Debug)]
pub struct FieldErrors {
    pub(crate) listed: Vec<FieldError>,
    pub(crate) total: usize,
    /// Hashes of the locations the structural pass replaced by placeholders:
    /// garde's findings at or below them are about the placeholder, not user
    /// input. Keyed per request, so a client cannot aim for collisions.
    replaced: HashSet<u64>,
    keys: RandomState,
    /// Probing a oneOf member only needs to know whether anything failed.
    count_only: bool,
    /// Checking a response, not a request: `readOnly` and `writeOnly`
    /// properties swap roles.
    pub(crate) responding: bool,
    /// Values the structural pass has visited, probes of union members
    /// included, and how many it may: a union whose members must be tried
    /// in turn, nested in itself, would otherwise cost exponential time.
    pub(crate) work: usize,
    pub(crate) budget: usize,
    /// The budget ran out (reported once).
    pub(crate) over_budget: bool,
}

impl Default for FieldErrors {
    fn default() -> Self {
        FieldErrors {
            listed: Vec::new(),
            total: 0,
            replaced: HashSet::new(),
            keys: RandomState::new(),
            count_only: false,
            responding: false,
            work: 0,
            budget: usize::MAX,
            over_budget: false,
        }
    }
}

impl FieldErrors {
    /// Scratch errors for trying one union member, sharing what is left of
    /// `parent`'s budget.
    pub(crate) fn probe(parent: &FieldErrors) -> Self {
        FieldErrors {
            count_only: true,
            responding: parent.responding,
            budget: parent.budget.saturating_sub(parent.work),
            keys: RandomState::new(),
            ..FieldErrors::default()
        }
    }

    /// Records a failure at a path given as text (parameters, the body).
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.total += 1;
        if !self.count_only && self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(FieldError { field: field.into(), message: message.into() });
        }
    }

    /// Records a structural failure at `loc`, whose value is then replaced.
    pub(crate) fn fail(&mut self, loc: &Loc<'_>, message: impl fmt::Display) {
        self.total += 1;
        if self.count_only {
            return;
        }
        self.replaced.insert(loc.hash);
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(FieldError { field: loc.render(), message: message.to_string() });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// How many failures were found, listed or not.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.listed
    }

    /// The `data` member of a 400 envelope: `errors` (at most
    /// [`MAX_LISTED_ERRORS`]) and, when some were left out, `omitted`.
    pub fn to_data(&self) -> Value {
        let omitted = self.total - self.listed.len();
        if omitted == 0 {
            serde_json::json!({ "errors": self.listed })
        } else {
            serde_json::json!({ "errors": self.listed, "omitted": omitted })
        }
    }

    pub(crate) fn child_hash(&self, parent: u64, seg: Seg<'_>) -> u64 {
        match seg {
            Seg::Key(k) => self.keys.hash_one((parent, 0u8, k)),
            Seg::Index(i) => self.keys.hash_one((parent, 1u8, i)),
        }
    }

    /// True when a garde finding at `path` (below `base`) is at or under a
    /// location the structural pass replaced.
    pub(crate) fn covers(&self, base: &str, path: &garde::Path, renames: &[(&str, &str)]) -> bool {
        if self.replaced.is_empty() {
            return false;
        }
        let mut h = 0;
        if !base.is_empty() {
            h = self.child_hash(h, Seg::Key(base));
        }
        if self.replaced.contains(&h) {
            return true;
        }
        for (kind, component) in path.__iter().rev() {
            let seg = match kind {
                garde::error::Kind::None => continue,
                garde::error::Kind::Key => {
                    let json =
                        renames.iter().find(|(r, _)| *r == component.as_str()).map_or(component.as_str(), |(_, j)| *j);
                    Seg::Key(json)
                }
                garde::error::Kind::Index => match component.parse::<usize>() {
                    Ok(i) => Seg::Index(i),
                    Err(_) => Seg::Key(component.as_str()),
                },
            };
            h = self.child_hash(h, seg);
            if self.replaced.contains(&h) {
                return true;
            }
        }
        false
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A location in the value being checked: a chain on the stack, rendered
/// as text only for the errors that are listed.
pub(crate) struct Loc<'a> {
    parent: Option<&'a Loc<'a>>,
    seg: Option<Seg<'a>>,
    pub(crate) hash: u64,
}

impl<'a> Loc<'a> {
    pub(crate) fn root(base: &'a str, errs: &FieldErrors) -> Loc<'a> {
        if base.is_empty() {
            Loc { parent: None, seg: None, hash: 0 }
        } else {
            Loc { parent: None, seg: Some(Seg::Key(base)), hash: errs.child_hash(0, Seg::Key(base)) }
        }
    }

    pub(crate) fn child(&'a self, seg: Seg<'a>, errs: &FieldErrors) -> Loc<'a> {
        Loc { parent: Some(self), seg: Some(seg), hash: errs.child_hash(self.hash, seg) }
    }

    /// `owner.since`, `cc[1]`.
    pub(crate) fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut at = Some(self);
        while let Some(loc) = at {
            segs.extend(loc.seg);
            at = loc.parent;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

pub(crate) fn join(parent: &str, name: &str) -> String {
    match (parent.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        // The value at `parent` itself (a newtype's wrapped value).
        (false, true) => parent.to_owned(),
        (false, false) if name.starts_with('[') => format!("{parent}{name}"),
        (false, false) => format!("{parent}.{name}"),
    }
}
