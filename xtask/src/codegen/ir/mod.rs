//! The intermediate representation of an API, one module per OpenAPI
//! concept. It is shaped after OpenAPI's own semantics; what the emitters
//! cannot do yet is refused here, with the construct's JSON pointer, so the
//! emitters never produce approximate code.

pub mod conditional;
pub mod errors;
pub mod field_mask;
pub mod media;
pub mod names;
pub mod operations;
pub mod params;
pub mod patterns;
pub mod recursion;
pub mod registry;
pub mod request_bodies;
pub mod responses;
pub mod schema;
pub mod security;
pub mod types;
pub mod unions;

use anyhow::{Result, bail};
use indexmap::IndexMap;
use openapiv3 as oa;

use names::pointer_segment;
use operations::{Operation, OperationSite};
use registry::ErrorCodeDef;
use schema::Resolver;
use security::SecurityScheme;
use types::{TypeBuilder, TypeDef};

#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServerUrl {
    /// As the spec writes it, variables and all.
    pub url: String,
    /// With every variable at its default.
    pub resolved: String,
    pub variables: Vec<ServerVariable>,
    pub description: Option<String>,
}

/// A `{name}` of a server URL.
#[derive(Debug, Clone)]
pub struct ServerVariable {
    pub name: String,
    pub default: String,
    pub enumeration: Vec<String>,
    pub description: Option<String>,
}

/// `info.contact`.
#[derive(Debug, Clone)]
pub struct Contact {
    pub name: Option<String>,
    pub url: Option<String>,
    pub email: Option<String>,
}

/// The whole API as the emitters see it.
#[derive(Debug)]
pub struct Api {
    pub title: String,
    pub version: String,
    pub description: Option<String>,
    pub contact: Option<Contact>,
    /// `info.license`: name and URL.
    pub license: Option<(String, Option<String>)>,
    pub terms_of_service: Option<String>,
    pub servers: Vec<ServerUrl>,
    pub base_path: String,
    pub tags: Vec<Tag>,
    pub operations: Vec<Operation>,
    pub types: IndexMap<String, TypeDef>,
    /// Components that are a scalar, array or map, by component name.
    pub value_aliases: IndexMap<String, types::ValueAlias>,
    /// Components that are only a `$ref` to another → the final target.
    pub aliases: IndexMap<String, String>,
    pub security_schemes: Vec<SecurityScheme>,
    pub error_codes: Vec<ErrorCodeDef>,
    /// Types that contain themselves (their shapes are statics).
    pub recursive: std::collections::BTreeSet<String>,
}

/// Builds the IR of a whole document.
pub fn build(doc: &oa::OpenAPI) -> Result<Api> {
    if !doc.openapi.starts_with("3.0") {
        bail!("#/openapi: only OpenAPI 3.0.x is supported, found {}", doc.openapi);
    }
    let mut b = TypeBuilder::new(Resolver::new(doc));

    // Result types first: no schema may take their names.
    for (path, item) in &doc.paths.paths {
        if let oa::ReferenceOr::Item(item) = item {
            for (method, op) in item.iter() {
                let id = op.operation_id.clone().unwrap_or_else(|| names::fallback_operation_id(method, path));
                b.reserved.push(operations::result_type_name(&id));
            }
        }
    }
    // Then components, in document order, so their names win over inline types.
    let mut aliases = IndexMap::new();
    if let Some(c) = &doc.components {
        for name in c.schemas.keys() {
            let canon = b.resolver.canonical(name)?;
            if canon == *name {
                b.component(name)?;
            } else {
                aliases.insert(name.clone(), canon);
            }
        }
    }

    let security_schemes = security::schemes(doc)?;

    let mut operations = Vec::new();
    for (path, item) in &doc.paths.paths {
        let pp = format!("#/paths/{}", pointer_segment(path));
        let item = match item {
            oa::ReferenceOr::Item(i) => i,
            oa::ReferenceOr::Reference { .. } => bail!("{pp}: path item references are not supported"),
        };
        for (method, op) in item.iter() {
            let site = OperationSite {
                path,
                method: operations::method_name(method),
                op,
                path_params: &item.parameters,
                pointer: format!("{pp}/{method}"),
            };
            let op = operations::operation(&mut b, doc, &site, &security_schemes)?;
            if let Some(other) = operations.iter().find(|o: &&Operation| o.id == op.id) {
                bail!("{}: operation id {:?} is also the id of {}", op.pointer, op.id, other.pointer);
            }
            operations.push(op);
        }
    }
    for op in &mut operations {
        op.result_type = operations::result_type_name(&op.id);
    }

    let servers: Vec<ServerUrl> = doc
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(ServerUrl {
                url: s.url.clone(),
                resolved: substitute_variables(s, &format!("#/servers/{i}"))?,
                variables: s
                    .variables
                    .iter()
                    .flatten()
                    .map(|(name, v)| ServerVariable {
                        name: name.clone(),
                        default: v.default.clone(),
                        enumeration: v.enumeration.clone(),
                        description: v.description.clone(),
                    })
                    .collect(),
                description: s.description.clone(),
            })
        })
        .collect::<Result<_>>()?;
    let base_path = servers.first().map(|s| base_path_of(&s.resolved)).unwrap_or_default();

    let tags = doc.tags.iter().map(|t| Tag { name: t.name.clone(), description: t.description.clone() }).collect();
    let error_codes = registry::error_codes(doc)?;
    let contact =
        doc.info.contact.as_ref().map(|c| Contact { name: c.name.clone(), url: c.url.clone(), email: c.email.clone() });

    let recursive = recursion::resolve(&mut b.types)?;
    Ok(Api {
        title: doc.info.title.clone(),
        version: doc.info.version.clone(),
        description: doc.info.description.clone(),
        contact,
        license: doc.info.license.as_ref().map(|l| (l.name.clone(), l.url.clone())),
        terms_of_service: doc.info.terms_of_service.clone(),
        servers,
        base_path,
        tags,
        operations,
        types: b.types,
        value_aliases: b.value_aliases,
        aliases,
        security_schemes,
        error_codes,
        recursive,
    })
}

/// A server URL with each `{variable}` replaced by its default (OpenAPI
/// requires one), so the base path is known at generation; the application
/// may mount elsewhere at run time (`app_at`).
fn substitute_variables(s: &oa::Server, pointer: &str) -> Result<String> {
    let mut url = s.url.clone();
    let vars = s.variables.as_ref();
    while let Some(start) = url.find('{') {
        let Some(len) = url[start..].find('}') else { bail!("{pointer}/url: unclosed `{{` in {:?}", s.url) };
        let name = &url[start + 1..start + len];
        let Some(var) = vars.and_then(|v| v.get(name)) else {
            bail!("{pointer}/url: variable {name:?} is not declared in `variables`");
        };
        if !var.enumeration.is_empty() && !var.enumeration.contains(&var.default) {
            bail!("{pointer}/variables/{name}: default {:?} is not one of its enum values", var.default);
        }
        url.replace_range(start..=start + len, &var.default);
    }
    Ok(url)
}

/// The path part of a server URL (`http://h:8080/api/v1` → `/api/v1`).
pub fn base_path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    path.trim_end_matches('/').to_owned()
}
