//! Recursion: schemas that contain themselves (a tree's children, a volume's
//! optional parent). A `Vec` or a map already holds its items on the heap;
//! a struct field that leads back to its own type is boxed, so every type
//! has a finite size. Recursive types get their shapes as statics (a
//! constant cannot refer to itself, a static can).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use indexmap::IndexMap;

use super::types::{RustType, TypeDef, TypeKind};

/// The named types `t` holds: `(name, held directly)`; through a `Vec` or a
/// map it is not direct.
fn targets(t: &RustType, direct: bool, out: &mut Vec<(String, bool)>) {
    match t {
        RustType::Named(n) => out.push((n.clone(), direct)),
        RustType::Vec(i) | RustType::Map(i) => targets(i, false, out),
        _ => {}
    }
}

fn edges(t: &TypeDef) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    match &t.kind {
        TypeKind::Struct(fields) => fields.iter().for_each(|f| targets(&f.ty, true, &mut out)),
        TypeKind::Union(vs) => vs.iter().for_each(|v| targets(&v.ty, true, &mut out)),
        TypeKind::Newtype(f) => targets(&f.ty, true, &mut out),
        TypeKind::StrEnum(_) => {}
    }
    out
}

/// Every type reachable from `from` through one edge or more.
fn reachable(graph: &BTreeMap<&str, Vec<(String, bool)>>, from: &str, direct_only: bool) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(n) = stack.pop() {
        for (m, direct) in graph.get(n.as_str()).into_iter().flatten() {
            if (*direct || !direct_only) && seen.insert(m.clone()) {
                stack.push(m.clone());
            }
        }
    }
    seen
}

/// Boxes the struct fields that close a cycle and returns the recursive
/// types. A cycle through unions alone (`A: oneOf [B]`, `B: oneOf [A]`)
/// has no finite value at all: refused with its pointer.
pub fn resolve(types: &mut IndexMap<String, TypeDef>) -> Result<BTreeSet<String>> {
    let graph: BTreeMap<&str, Vec<(String, bool)>> = types.iter().map(|(n, t)| (n.as_str(), edges(t))).collect();
    let reach: BTreeMap<String, BTreeSet<String>> =
        types.keys().map(|n| (n.clone(), reachable(&graph, n, false))).collect();
    let recursive: BTreeSet<String> = reach.iter().filter(|(n, r)| r.contains(*n)).map(|(n, _)| n.clone()).collect();
    for name in &recursive {
        let t = &types[name];
        if let TypeKind::Struct(_) = t.kind {
            continue;
        }
        // A union whose direct members lead back to it without passing a
        // struct field (which gets boxed) or a container.
        let direct_structs_free: BTreeMap<&str, Vec<(String, bool)>> = graph
            .iter()
            .map(|(n, es)| {
                let keep = !matches!(types[*n].kind, TypeKind::Struct(_));
                (*n, es.iter().filter(|_| keep).cloned().collect())
            })
            .collect();
        if reachable(&direct_structs_free, name, true).contains(name) {
            bail!(
                "{}: this union contains itself with no object or array in between, so it has no finite value",
                t.node.pointer
            );
        }
    }
    for (name, t) in types.iter_mut() {
        if !recursive.contains(name) {
            continue;
        }
        if let TypeKind::Struct(fields) = &mut t.kind {
            for f in fields {
                if let RustType::Named(target) = &f.ty {
                    f.boxed = target == name || reach[target].contains(name);
                }
            }
        }
    }
    Ok(recursive)
}
