//! The client crate: progenitor (as a library) over a pre-processed copy of
//! the contract, plus the `auth` module generated from its security
//! schemes by [`super::client_auth`] (progenitor ignores security).
//!
//! Pre-processing works around two silent type bugs of progenitor 0.15 on
//! this contract (response bodies named alike share one type; two bodies
//! of one operation collide): every inline response schema is hoisted
//! into `components/schemas` under a unique `{OperationId}{Status}Body`
//! name, so `listUsers` no longer collides with the `ListUsersResponse`
//! component and `healthCheck`'s 200 and 503 bodies get distinct types.
//! A third: progenitor counts a `default` response as a success *and* an
//! error, so an operation with a 2xx body and a differently shaped
//! `default` panics (`assert!(response_types.len() <= 1)`, progenitor
//! issues #344 and #950); such a `default` becomes the `4XX` and `5XX`
//! ranges it stands for on the client (the ranges the operation declares
//! itself are kept). The contract file itself is never changed.

use anyhow::{Context, Result, bail};
use heck::ToUpperCamelCase;
use openapiv3 as oa;
use quote::quote;

use super::ir::names::fallback_operation_id;

/// Hoists inline response schemas to components with unique names.
pub fn preprocess(doc: &oa::OpenAPI) -> Result<oa::OpenAPI> {
    let mut doc = doc.clone();
    let shared_responses = doc.components.as_ref().map(|c| c.responses.clone()).unwrap_or_default();
    let shared_params = doc.components.as_ref().map(|c| c.parameters.clone()).unwrap_or_default();
    let mut hoisted: Vec<(String, oa::Schema)> = Vec::new();
    let existing: Vec<String> =
        doc.components.as_ref().map(|c| c.schemas.keys().cloned().collect()).unwrap_or_default();
    for (path, item) in doc.paths.paths.iter_mut() {
        let oa::ReferenceOr::Item(item) = item else { bail!("#/paths/{path}: path item references are not supported") };
        // Path-level parameters belong to every operation of the path (an
        // operation's own of the same name and location wins); progenitor
        // reads only the operation's.
        let shared = std::mem::take(&mut item.parameters);
        let ops = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("options", &mut item.options),
            ("head", &mut item.head),
            ("patch", &mut item.patch),
            ("trace", &mut item.trace),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let key = |p: &oa::ReferenceOr<oa::Parameter>| match p {
                oa::ReferenceOr::Item(p) => {
                    let d = p.parameter_data_ref();
                    Some((std::mem::discriminant(p), d.name.clone()))
                }
                oa::ReferenceOr::Reference { .. } => None,
            };
            for p in shared.iter().rev() {
                if key(p).is_none() || !op.parameters.iter().any(|q| key(q) == key(p)) {
                    op.parameters.insert(0, p.clone());
                }
            }
            // A field mask makes required members absent, which the typed
            // response would fail to decode: the typed client always asks
            // for whole objects (`x-field-mask`, ir/field_mask.rs).
            op.parameters.retain(|p| !is_field_mask(p, &shared_params));
            // The server names such an operation the same way.
            let op_id = op.operation_id.get_or_insert_with(|| fallback_operation_id(method, path)).clone();
            split_default(&mut op.responses);
            client_can_send(
                op,
                &shared_params,
                &format!("#/paths/{}/{method}", super::ir::names::pointer_segment(path)),
            )?;
            for (status, resp) in op.responses.responses.iter_mut() {
                // A shared response whose schema is inline would be hoisted
                // once per use; copy it into the operation first.
                if let oa::ReferenceOr::Reference { reference } = resp {
                    let name = reference.trim_start_matches("#/components/responses/");
                    if let Some(oa::ReferenceOr::Item(r)) = shared_responses.get(name)
                        && r.content.values().any(|m| matches!(m.schema, Some(oa::ReferenceOr::Item(_))))
                    {
                        *resp = oa::ReferenceOr::Item(r.clone());
                        let _ = &resp;
                    }
                }
                let oa::ReferenceOr::Item(r) = resp else { continue };
                one_response_media(r);
                for media in r.content.values_mut() {
                    if let Some(oa::ReferenceOr::Item(schema)) = &media.schema {
                        let mut name = format!("{}{}Body", op_id.to_upper_camel_case(), status);
                        while existing.contains(&name) || hoisted.iter().any(|(n, _)| *n == name) {
                            name.push('_');
                        }
                        hoisted.push((name.clone(), schema.clone()));
                        media.schema = Some(oa::ReferenceOr::ref_(&format!("#/components/schemas/{name}")));
                    }
                }
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in hoisted {
        components.schemas.insert(name, oa::ReferenceOr::Item(schema));
    }
    // progenitor would otherwise reject the extension-carrying document? No:
    // extensions are ignored; they are kept so the client sees the registry.
    Ok(doc)
}

fn is_field_mask(
    p: &oa::ReferenceOr<oa::Parameter>,
    shared: &indexmap::IndexMap<String, oa::ReferenceOr<oa::Parameter>>,
) -> bool {
    let p = match p {
        oa::ReferenceOr::Item(p) => Some(p),
        oa::ReferenceOr::Reference { reference } => {
            match reference.strip_prefix("#/components/parameters/").and_then(|n| shared.get(n)) {
                Some(oa::ReferenceOr::Item(p)) => Some(p),
                _ => None,
            }
        }
    };
    p.is_some_and(|p| p.parameter_data_ref().extensions.contains_key(super::ir::field_mask::EXTENSION))
}

/// Replaces a `default` response by `4XX` and `5XX` when the operation
/// has a success response of another shape (see the module docs).
fn split_default(responses: &mut oa::Responses) {
    let Some(default) = &responses.default else { return };
    let success = responses.responses.iter().find(|(s, _)| match s {
        oa::StatusCode::Code(c) => (200..300).contains(c),
        oa::StatusCode::Range(r) => *r == 2,
    });
    if success.is_none_or(|(_, r)| r == default) {
        return;
    }
    let Some(default) = responses.default.take() else { return };
    // Declared codes still win: progenitor matches codes before ranges.
    for range in [4, 5] {
        responses.responses.entry(oa::StatusCode::Range(range)).or_insert_with(|| default.clone());
    }
}

/// A response in several media types: the client asks for JSON (progenitor
/// sends `Accept: application/json` for a typed response) and reads any
/// other as raw bytes, so it is given the JSON one if there is one, else the
/// first (the server's preferred, which it answers without an `Accept`).
/// Hoisting every one would name two types alike.
fn one_response_media(r: &mut oa::Response) {
    if r.content.len() < 2 {
        return;
    }
    let keep = r.content.keys().position(|t| super::ir::media::is_json(t)).unwrap_or(0);
    let mut i = 0;
    r.content.retain(|_, _| {
        i += 1;
        i - 1 == keep
    });
}

/// The declared media type of `op`'s JSON body when it is a `+json` type
/// other than `application/json` (`application/merge-patch+json`):
/// progenitor refuses those, so the pre-pass hands it `application/json`
/// and the client's hook names the declared type on the request.
pub fn json_body_type(op: &oa::Operation) -> Option<String> {
    let Some(oa::ReferenceOr::Item(body)) = &op.request_body else { return None };
    let [(t, _)] = body.content.iter().collect::<Vec<_>>()[..] else { return None };
    let essence = t.split(';').next().unwrap_or_default().trim();
    (super::ir::media::is_json(t) && !essence.eq_ignore_ascii_case("application/json")).then(|| essence.to_owned())
}

/// What progenitor 0.15 cannot send is refused here with its pointer
/// (progenitor itself would fail without one, or panic); a body offered in
/// JSON and other types is sent as JSON, which the server takes too.
fn client_can_send(
    op: &mut oa::Operation,
    shared: &indexmap::IndexMap<String, oa::ReferenceOr<oa::Parameter>>,
    pointer: &str,
) -> Result<()> {
    let hint = "generate the server alone (`--server`), or serve this operation as a raw handler";
    for (i, p) in op.parameters.iter().enumerate() {
        if let oa::ReferenceOr::Item(oa::Parameter::Query { style, .. }) = p
            && !matches!(style, oa::QueryStyle::Form)
        {
            bail!(
                "{pointer}/parameters/{i}/style: the generated client (progenitor) cannot send query style {style:?}; {hint}"
            );
        }
        if let oa::ReferenceOr::Item(q) = p
            && op.parameters[..i].iter().any(
                |o| matches!(o, oa::ReferenceOr::Item(o) if o.parameter_data_ref().name == q.parameter_data_ref().name),
            )
        {
            bail!(
                "{pointer}/parameters/{i}: the generated client (progenitor) cannot send two parameters named {:?}; {hint}",
                q.parameter_data_ref().name
            );
        }
        // progenitor types a parameter by its `schema` only; it would fail
        // on `content` or send the value in some other encoding.
        let resolved = match p {
            oa::ReferenceOr::Item(q) => Some(q),
            oa::ReferenceOr::Reference { reference } => {
                reference.strip_prefix("#/components/parameters/").and_then(|n| shared.get(n)).and_then(|q| q.as_item())
            }
        };
        if let Some(q) = resolved
            && let oa::ParameterSchemaOrContent::Content(_) = q.parameter_data_ref().format
        {
            bail!(
                "{pointer}/parameters/{i}/content: the generated client (progenitor) cannot send parameters with `content`; {hint}"
            );
        }
        // progenitor sends path values in `simple` style only (`5`, not
        // `.5` or `;id=5`), which a label or matrix route would refuse.
        if let Some(oa::Parameter::Path { style, .. }) = resolved
            && !matches!(style, oa::PathStyle::Simple)
        {
            bail!(
                "{pointer}/parameters/{i}/style: the generated client (progenitor) cannot send path style {style:?}; {hint}"
            );
        }
        if let oa::ReferenceOr::Item(oa::Parameter::Cookie { .. }) = p {
            bail!("{pointer}/parameters/{i}: the generated client (progenitor) cannot send cookie parameters; {hint}");
        }
    }
    if let Some(oa::ReferenceOr::Item(body)) = &mut op.request_body
        && body.content.len() > 1
        && body.content.keys().any(|t| super::ir::media::is_json(t))
    {
        body.content.retain(|t, _| super::ir::media::is_json(t));
        body.content.truncate(1);
    }
    let plus_json = json_body_type(op).is_some();
    if let Some(oa::ReferenceOr::Item(body)) = &mut op.request_body {
        if plus_json {
            let media = body.content.swap_remove_index(0).map(|(_, m)| m).unwrap_or_default();
            body.content.insert("application/json".to_owned(), media);
        }
        // A binary body's `maxLength` is the server's byte limit, which the
        // server enforces while streaming, and a text body's lengths,
        // pattern and enum the server checks before its handler runs; progenitor
        // refuses those keywords on a raw body, and the client sends the
        // text or bytes either way (a violation is the server's 400).
        for (t, media) in body.content.iter_mut() {
            if let Some(oa::ReferenceOr::Item(s)) = &mut media.schema
                && let oa::SchemaKind::Type(oa::Type::String(st)) = &mut s.schema_kind
            {
                if st.format == oa::VariantOrUnknownOrEmpty::Item(oa::StringFormat::Binary) {
                    st.max_length = None;
                } else if super::ir::media::is_text(t) {
                    (st.min_length, st.max_length, st.pattern) = (None, None, None);
                    st.enumeration.clear();
                }
            }
        }
        if let Some(t) = body.content.keys().find(|t| super::ir::media::is_multipart(t)) {
            bail!(
                "{pointer}/requestBody/content/{}: the generated client (progenitor) cannot send multipart bodies; {hint}",
                super::ir::names::pointer_segment(t)
            );
        }
    }
    Ok(())
}

/// The client crate's files (relative paths, unformatted Rust as strings).
pub fn render(
    doc: &oa::OpenAPI,
    crate_name: &str,
    spec_rel: &str,
    deps: &super::Deps,
) -> Result<Vec<(String, String, bool)>> {
    let pre = preprocess(doc)?;
    let mut settings = progenitor::GenerationSettings::default();
    settings
        .with_interface(progenitor::InterfaceStyle::Builder)
        .with_tag(progenitor::TagStyle::Merged)
        .with_inner_type(quote!(crate::auth::Credentials))
        .with_pre_hook_async(quote!(crate::auth::apply))
        .with_derive("PartialEq");
    let mut generator = progenitor::Generator::new(&settings);
    let tokens = generator.generate_tokens(&pre).map_err(|e| {
        anyhow::anyhow!(
            "the generated client (progenitor) cannot express this spec: {e}; generate the server alone (`--server`)"
        )
    })?;
    let space = generator.get_type_space();
    let uses_chrono = space.uses_chrono();
    let uses_uuid = space.uses_uuid();
    let uses_regress = space.uses_regress();

    let auth = super::client_auth::render(doc)?;
    let lib = quote! {
        //! Typed client for the contract, generated with progenitor.
        //!
        //! Interface: **builder** (`client.list_users().page(2).status(..).send()`),
        //! chosen over positional because most operations take optional
        //! parameters: a builder names each one and omits the rest, where a
        //! positional call would be a row of `None`s that breaks when a
        //! parameter is added.
        //!
        //! Authentication: `Credentials` has one setter per security scheme of
        //! the spec (`Client::new(url, Credentials::default().scheme(..))`, or
        //! the client's `with_scheme(..)` helpers); each operation gets exactly
        //! the credentials its security declares (see [`auth`]). Error statuses
        //! decode into `Error::ErrorResponse` carrying the spec's error body.
        #![allow(clippy::all, unused_imports, dead_code, rustdoc::all)]

        pub mod auth;
        pub use auth::{CredentialError, Credentials};

        #tokens
    };
    let file: syn::File = syn::parse2(lib).context("progenitor output is not valid Rust")?;
    let lib = prettyplease::unparse(&file);

    let mut lines = vec![
        "futures-core = \"0.3\"".to_owned(),
        "progenitor-client = \"0.15\"".to_owned(),
        "reqwest = { version = \"0.13\", default-features = false, features = [\"json\", \"query\", \"stream\"] }"
            .to_owned(),
        deps.line("serde"),
        deps.line("serde_json"),
    ];
    if uses_chrono {
        lines.push(deps.line("chrono"));
    }
    if uses_uuid {
        lines.push(deps.line("uuid"));
    }
    // progenitor's WebSocket upgrades (`x-dropshot-websocket`) make their
    // `Sec-WebSocket-Key` with these.
    for (path, dep) in [("::base64::", "base64"), ("::rand::", "rand")] {
        if lib.contains(path) {
            lines.push(deps.line(dep));
        }
    }
    if uses_regress {
        lines.push("regress = \"0.10\"".into());
    }
    if auth.uses_base64 {
        lines.push("base64 = \"0.23\"".into());
    }
    lines.sort();
    let cargo = format!(
        "# @generated by `cargo xtask codegen` from {spec_rel}.\n# Do not edit by hand: edit the spec and run `cargo xtask codegen`.\n\
[package]\nname = \"{crate_name}\"\nversion = \"0.1.0\"\n{}\npublish = false\n\
description = \"Typed Rust client for {spec_rel}, generated with progenitor.\"\n\n\
# progenitor's doc comments are not valid doctests.\n[lib]\ndoctest = false\n\n[dependencies]\n{}\n",
        deps.package_fields(),
        lines.join("\n")
    );
    let auth: syn::File = syn::parse2(auth.tokens).context("generated auth.rs is not valid Rust (generator bug)")?;
    Ok(vec![
        ("Cargo.toml".into(), cargo, false),
        ("src/lib.rs".into(), lib, true),
        ("src/auth.rs".into(), prettyplease::unparse(&auth), true),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(types: &[&str]) -> oa::Response {
        let mut r = oa::Response::default();
        for t in types {
            r.content.insert((*t).to_owned(), oa::MediaType::default());
        }
        r
    }

    #[test]
    fn a_negotiated_response_reaches_progenitor_in_one_media_type() {
        let mut r = response(&["text/csv", "application/json", "application/octet-stream"]);
        one_response_media(&mut r);
        assert_eq!(r.content.keys().collect::<Vec<_>>(), ["application/json"]);
        let mut r = response(&["text/csv", "application/octet-stream"]);
        one_response_media(&mut r);
        assert_eq!(r.content.keys().collect::<Vec<_>>(), ["text/csv"], "no JSON: the server's first");
    }
}
