//! The server emitter: the IR becomes the token streams of the server
//! crate's files, one module per kind of file or construct emitted. Shared
//! token helpers live here.

mod cargo_toml;
mod error_codes;
mod lib_rs;
pub mod mock;
mod models;
mod operations;
mod params;
mod policy;
mod responses;
mod rt_module;
mod schema_meta;
mod validation;

pub use cargo_toml::{Deps, WORKSPACE_DEPS, cargo_toml};

use anyhow::Result;
use heck::ToSnakeCase;
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::ir::Api;
use super::ir::operations::Operation;

/// One Rust file of the server crate, before formatting.
pub struct EmittedFile {
    /// Relative to the crate directory.
    pub path: String,
    pub tokens: TokenStream,
}

/// The Rust files of the server crate (`Cargo.toml` is added by the
/// caller: it is not Rust).
pub fn emit(api: &Api) -> Result<Vec<EmittedFile>> {
    // Request types get the structural pass and garde rules; response types
    // too, so responses can be checked against the spec.
    let mut checked_types = models::request_reachable(api)?;
    checked_types.extend(models::response_reachable(api));
    let file = |path: &str, tokens| EmittedFile { path: path.to_owned(), tokens };
    let mut files = vec![
        file("src/lib.rs", lib_rs::lib_rs(api)),
        file("src/rt.rs", rt_module::rt_rs()),
        file("src/models.rs", models::models_rs(api, &checked_types)?),
    ];
    if !api.error_codes.is_empty() {
        files.push(file("src/error_codes.rs", error_codes::error_codes_rs(api)));
    }
    let tags = tag_modules(api);
    for (i, tag) in tags.iter().enumerate() {
        if let Some(other) = tags[..i].iter().find(|t| tag_module(t) == tag_module(tag)) {
            anyhow::bail!("#/tags: tags {other:?} and {tag:?} would share the module `{}`", tag_module(tag));
        }
    }
    for tag in tags {
        files.push(file(&format!("src/{}.rs", tag_module(&tag)), operations::tag_rs(api, &tag, &checked_types)?));
    }
    Ok(files)
}

/// The trait (tag) an operation belongs to.
pub(super) fn op_tag(op: &Operation) -> String {
    op.tags.first().cloned().unwrap_or_else(|| "Default".to_owned())
}

/// The module of a tag's operations; a tag named like one of the crate's
/// own modules gets a suffix, so `models` as a tag does not clash.
pub(super) fn tag_module(tag: &str) -> String {
    let m = tag.to_snake_case();
    if ["rt", "models", "error_codes", "lib", "main", "security", "policy"].contains(&m.as_str()) {
        format!("{m}_ops")
    } else {
        super::ir::names::field_name(&m)
    }
}

/// One module per tag, in order of first use, so file lists are stable.
pub(super) fn tag_modules(api: &Api) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for op in &api.operations {
        let t = op_tag(op);
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    tags
}

pub(super) fn ident(s: &str) -> proc_macro2::Ident {
    format_ident!("{}", s)
}

pub(super) fn lit(s: &str) -> Literal {
    Literal::string(s)
}

pub(super) fn opt_lit(s: Option<&str>) -> TokenStream {
    match s {
        Some(s) => {
            let l = lit(s);
            quote!(::std::option::Option::Some(#l))
        }
        None => quote!(::std::option::Option::None),
    }
}

/// `#[doc]` attributes from optional paragraphs, empty ones dropped. Each
/// line gets a leading space so the formatted output reads like `///`.
pub(super) fn doc_attrs(parts: &[Option<&str>]) -> TokenStream {
    let text: Vec<&str> = parts.iter().flatten().map(|s| s.trim_end()).filter(|s| !s.is_empty()).collect();
    if text.is_empty() {
        return quote!();
    }
    let joined = text.join("\n\n");
    let lines = joined.lines().map(|l| {
        let l = lit(&format!(" {l}"));
        quote!(#[doc = #l])
    });
    quote!(#(#lines)*)
}
