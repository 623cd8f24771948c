//! OpenAPI 3.1 documents go through the `openapi31` pre-pass: the public
//! museum example loads as 3.0.3 and generates (it runs in
//! `fixture_public.rs`), a small 3.1 fixture generates server and client,
//! and roles on an apiKey requirement warn only in a 3.0 document.

use std::path::{Path, PathBuf};

use xtask::codegen;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

#[test]
fn museum_normalizes_and_generates() {
    let text = std::fs::read_to_string(fixture("public/museum.yaml")).unwrap();
    let (doc, warnings) = codegen::parse_spec_with_warnings(&text).unwrap();
    assert_eq!(doc.openapi, "3.0.3");
    assert!(warnings.iter().any(|w| w.starts_with("#/webhooks: dropped (publishNewEvent)")), "{warnings:?}");
    // load_spec takes the same path.
    assert_eq!(codegen::load_spec(&fixture("public/museum.yaml")).unwrap().openapi, "3.0.3");

    codegen::render_server(&doc, Path::new("museum.yaml"), "museum").unwrap();
}

#[test]
fn the_31_fixture_generates_server_and_client() {
    let spec = fixture("openapi31/openapi.yaml");
    let doc = codegen::load_spec(&spec).unwrap();
    assert_eq!(doc.openapi, "3.0.3");
    let rel = Path::new("xtask/tests/fixtures/openapi31/openapi.yaml");

    let server = codegen::render_server(&doc, rel, "fixture-openapi31-server").unwrap();
    let models = &server.iter().find(|(p, _)| p.ends_with("models.rs")).expect("models.rs").1;
    // `type: [string, "null"]` became a nullable string, `const` a
    // one-value enum, `$ref` with a description an allOf that keeps it.
    assert!(models.contains("nickname"), "{models}");
    assert!(models.contains("Who looks after the pet."), "{models}");

    let client = codegen::render_client(&doc, rel, "fixture-openapi31-client", &codegen::Deps::Workspace).unwrap();
    assert!(client.iter().any(|(p, text)| p.ends_with("lib.rs") && text.contains("create_pet")));
}

/// Scopes on an apiKey requirement are roles: allowed by 3.1, warned about
/// in a 3.0 document (whose rule is an empty list), generated either way.
#[test]
fn roles_on_an_api_key_warn_only_in_a_30_document() {
    let spec = |version: &str| {
        format!(
            "openapi: {version}\ninfo: {{title: t, version: '1'}}\n\
             paths:\n  /a:\n    get:\n      operationId: a\n      security: [{{key: [admin]}}]\n      \
             responses: {{'200': {{description: ok}}}}\n\
             components:\n  securitySchemes:\n    key: {{type: apiKey, in: header, name: X-Key}}\n"
        )
    };
    let (doc, warnings) = codegen::parse_spec_with_warnings(&spec("3.0.3")).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("OpenAPI 3.0 allows scopes only"), "{warnings:?}");
    assert!(warnings[0].ends_with("\n  #/paths/~1a/get/security/0/key"), "{warnings:?}");
    let server = codegen::render_server(&doc, Path::new("t.yaml"), "t").unwrap();
    assert!(server.iter().any(|(_, text)| text.contains(r#"scopes: &["admin"]"#)), "the role reaches AuthContext");

    let (_, warnings) = codegen::parse_spec_with_warnings(&spec("3.1.0")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
}
