//! Tests of the generator itself: drift detection, determinism, and clear
//! errors (with JSON pointers) for what it does not support.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use xtask::codegen::{self, Outcome, Target};

/// `cargo test` catches a stale `generated/` just like `cargo xtask codegen --check`.
#[test]
fn generated_code_is_up_to_date() {
    if let Err(e) = codegen::codegen(true) {
        panic!("{e:#}");
    }
}

fn copy_target(tmp: &Path, spec: &str) -> Target {
    std::fs::create_dir_all(tmp.join("spec")).unwrap();
    std::fs::write(tmp.join("spec/openapi.yaml"), spec).unwrap();
    Target {
        kind: codegen::Kind::Server,
        spec: "spec/openapi.yaml".into(),
        out: "generated/server".into(),
        crate_name: "t".into(),
        deps: codegen::Deps::Workspace,
        strict: true,
        raw: Vec::new(),
    }
}

fn spec_text() -> String {
    std::fs::read_to_string(codegen::workspace_root().join("spec/openapi.yaml")).unwrap()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-codegen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn check_fails_after_a_schema_edit_and_names_the_file() {
    let dir = tempdir("drift");
    let t = copy_target(&dir, &spec_text());
    codegen::run_target(&dir, &t, false, &mut Outcome::default()).unwrap();
    let mut clean = Outcome::default();
    codegen::run_target(&dir, &t, true, &mut clean).unwrap();
    assert!(clean.stale.is_empty(), "a fresh generation is not stale");

    // Tighten one constraint in one schema.
    let edited = spec_text().replacen("maxLength: 50", "maxLength: 40", 1);
    assert_ne!(edited, spec_text());
    let t = copy_target(&dir, &edited);
    let mut out = Outcome::default();
    codegen::run_target(&dir, &t, true, &mut out).unwrap();
    let stale: Vec<String> = out.stale.iter().map(|(p, _)| p.display().to_string()).collect();
    assert!(stale.iter().any(|p| p.ends_with("models.rs")), "{stale:?}");
    let diff = &out.stale.iter().find(|(p, _)| p.ends_with("models.rs")).unwrap().1;
    // The file on disk has the old bound, the generator the new one.
    let removed = diff.lines().any(|l| l.starts_with('-') && l.contains("max = 50"));
    let added = diff.lines().any(|l| l.starts_with('+') && l.contains("max = 40"));
    assert!(removed && added, "the diff shows max = 50 replaced by max = 40:\n{diff}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn output_is_deterministic() {
    let doc = codegen::parse_spec(&spec_text()).unwrap();
    let a = codegen::render_server(&doc, Path::new("spec/openapi.yaml"), "x").unwrap();
    let b = codegen::render_server(&doc, Path::new("spec/openapi.yaml"), "x").unwrap();
    assert_eq!(a, b);
    for (path, text) in &a {
        assert!(
            text.starts_with("// @generated") || text.starts_with("# @generated"),
            "{} lacks the header",
            path.display()
        );
        assert!(text.contains("cargo xtask codegen"), "{} header names the command", path.display());
    }
}

/// Generation errors name the JSON pointer of the offending construct.
fn gen_error(spec: &str) -> String {
    let doc = codegen::parse_spec(spec).unwrap();
    match codegen::render_server(&doc, Path::new("s.yaml"), "x") {
        Ok(_) => panic!("generation should fail"),
        Err(e) => format!("{e:#}"),
    }
}

const REGISTRY: &str = r#"
x-error-codes:
  - {name: ValidationFailed, code: 1001, status: 400, message: bad}
  - {name: MissingToken, code: 1002, status: 401, message: no token}
  - {name: MalformedBody, code: 1008, status: 400, message: bad json}
  - {name: UnsupportedMediaType, code: 1009, status: 400, message: bad type}
  - {name: PayloadTooLarge, code: 1010, status: 400, message: too big}
  - {name: RouteNotFound, code: 1011, status: 404, message: no route}
  - {name: MethodNotAllowed, code: 1012, status: 405, message: no method}
  - {name: Internal, code: 5000, status: 500, message: oops}
"#;

fn tiny(paths: &str, schemas: &str) -> String {
    format!(
        "openapi: 3.0.3\ninfo: {{title: t, version: '1'}}\npaths:\n{paths}\ncomponents:\n  schemas:\n{schemas}\n{REGISTRY}"
    )
}

#[test]
fn unsupported_constructs_fail_with_their_pointer() {
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok}",
        "    X:\n      not: {type: string}",
    ));
    assert!(e.contains("#/components/schemas/X") && e.contains("`not`"), "{e}");
    // Beside a type too (openapiv3 reads that as an untyped schema).
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok}",
        "    X: {type: string, not: {enum: [admin]}}",
    ));
    assert!(e.contains("#/components/schemas/X/not") && e.contains("`not`"), "{e}");

    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok, headers: {X-Obj: {schema: {type: object, properties: {a: {type: string}}}}}}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(e.contains("#/paths/~1a/get/responses/200/headers/X-Obj/schema") && e.contains("scalars"), "{e}");

    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string, pattern: '^(?=x)'}}}",
    ));
    assert!(e.contains("#/components/schemas/X/properties/a/pattern"), "{e}");

    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok, content: {application/json: {schema: {$ref: '#/components/schemas/Nope'}}}}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(e.contains("#/components/schemas/Nope"), "{e}");

    // oneOf members a value's types, required properties and enum values
    // cannot tell apart (they differ only by length).
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok}",
        "    X: {oneOf: [{type: string, maxLength: 3}, {type: string, minLength: 4}]}",
    ));
    assert!(e.contains("#/components/schemas/X/oneOf") && e.contains("member 0 also fits member 1"), "{e}");
    // One member's values all fit the other (it requires more).
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok}",
        "    X: {oneOf: [{type: object, required: [a], properties: {a: {type: string}}}, {type: object, properties: {a: {type: string}}}]}",
    ));
    assert!(e.contains("#/components/schemas/X/oneOf") && e.contains("member 0 also fits member 1"), "{e}");
    // Unions that contain each other with no object in between.
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok}",
        "    A: {anyOf: [{$ref: '#/components/schemas/B'}, {type: string}]}\n    B: {anyOf: [{$ref: '#/components/schemas/A'}, {type: integer}]}",
    ));
    assert!(e.contains("#/components/schemas/A") && e.contains("no finite value"), "{e}");
    // A parameter's `content` holds one media type, and one not JSON is
    // read as raw text, so its schema must be a string.
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      parameters: [{name: q, in: query, content: {application/json: {schema: {type: object}}, text/plain: {schema: {type: string}}}}]\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(e.contains("#/paths/~1a/get/parameters/0/content") && e.contains("exactly one media type"), "{e}");
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      parameters: [{name: q, in: header, content: {text/plain: {schema: {type: integer}}}}]\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(e.contains("#/paths/~1a/get/parameters/0/content/text~1plain/schema") && e.contains("raw text"), "{e}");
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok, headers: {X-Obj: {content: {text/plain: {schema: {type: object}}}}}}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(
        e.contains("#/paths/~1a/get/responses/200/headers/X-Obj/content/text~1plain/schema") && e.contains("raw text"),
        "{e}"
    );

    // A label or matrix path value is a scalar or an array of scalars:
    // objects (`.a=1.b=2`) are not read, and a one-or-many union could not
    // tell `.3` the scalar from `.3` the one-item array.
    let e = gen_error(&tiny(
        "  /a/{p}:\n    get:\n      operationId: a\n      parameters: [{name: p, in: path, required: true, style: label, schema: {type: object, properties: {x: {type: string}}}}]\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(e.contains("#/paths/~1a~1{p}/get/parameters/0") && e.contains("scalars or arrays of scalars"), "{e}");
    let e = gen_error(&tiny(
        "  /a/{p}:\n    get:\n      operationId: a\n      parameters: [{name: p, in: path, required: true, style: matrix, schema: {oneOf: [{type: integer}, {type: array, items: {type: integer}}]}}]\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(e.contains("#/paths/~1a~1{p}/get/parameters/0/style") && e.contains("`oneOf`"), "{e}");

    // An operation the generator cannot type names the way out: a raw handler.
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      parameters: [{name: q, in: query, schema: {type: object, properties: {x: {type: string}}}}]\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(e.contains("#/paths/~1a/get/parameters/0") && e.contains("--raw a"), "{e}");

    // Negotiated bodies are labelled by media type: a range labels none,
    // and two spellings of one type cannot be told apart.
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok, content: {application/json: {schema: {type: string}}, 'text/*': {schema: {type: string}}}}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(e.contains("#/paths/~1a/get/responses/200/content/text~1*") && e.contains("media range"), "{e}");
    let e = gen_error(&tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok, content: {application/json: {schema: {type: string}}, 'application/json; charset=utf-8': {schema: {type: string}}}}",
        "    X: {type: object, properties: {a: {type: string}}}",
    ));
    assert!(e.contains("ApplicationJson") && e.contains("cannot be told apart"), "{e}");

    // A constraint on map values garde cannot reach is refused, not dropped
    // (the values' own constraints and their items' are a newtype's; deeper
    // ones are not).
    let e = gen_error(&tiny(
        "  /a:\n    post:\n      operationId: a\n      requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/X'}}}}\n      responses:\n        '200': {description: ok}\n        '400': {description: bad}",
        "    X: {type: object, properties: {m: {type: object, additionalProperties: {type: array, items: {type: array, items: {type: string, maxLength: 3}}}}}}",
    ));
    assert!(
        e.contains("#/components/schemas/X/properties/m/additionalProperties") && e.contains("values of a map"),
        "{e}"
    );

    // The registry is optional, but an entry must name a real fault.
    let bad_fault = tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string}}}",
    )
    .replace("{name: MissingToken, code", "{name: MissingToken, fault: NoSuchFault, code");
    let e = gen_error(&bad_fault);
    assert!(e.contains("#/x-error-codes/1/fault") && e.contains("NoSuchFault"), "{e}");
    let no_registry = tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string}}}",
    );
    let no_registry = &no_registry[..no_registry.find("x-error-codes").unwrap()];
    let doc = codegen::parse_spec(no_registry).unwrap();
    let files = codegen::render_server(&doc, Path::new("s.yaml"), "x").unwrap();
    assert!(!files.iter().any(|(p, _)| p.ends_with("error_codes.rs")), "no registry, no ErrorCode");
}

/// `x-field-mask` is checked against every JSON success body: a pointer
/// that leads nowhere, a name the masked object lacks, a value that is not
/// an enum of names, a second mask or one outside the query all stop
/// generation with the parameter's pointer.
#[test]
fn field_masks_are_refused_where_they_cannot_hold() {
    let spec = |param: &str, body: &str| {
        tiny(
            &format!(
                "  /a:\n    get:\n      operationId: a\n      parameters: [{param}]\n      responses:\n        '200': {{description: ok, content: {{application/json: {{schema: {body}}}}}}}\n        '400': {{description: bad}}"
            ),
            "    U: {type: object, required: [id], properties: {id: {type: string}, name: {type: string}}}\n    L: {type: object, properties: {items: {type: array, items: {$ref: '#/components/schemas/U'}}}}",
        )
    };
    let names = "{type: array, items: {type: string, enum: [id, name]}}";
    let at = "#/paths/~1a/get/parameters/0";
    // Accepted: a list's items, and the body itself.
    for (mask, body) in [("/items/*", "{$ref: '#/components/schemas/L'}"), ("", "{$ref: '#/components/schemas/U'}")] {
        let doc = codegen::parse_spec(&spec(
            &format!("{{name: f, in: query, style: form, explode: false, x-field-mask: '{mask}', schema: {names}}}"),
            body,
        ))
        .unwrap();
        codegen::render_server(&doc, Path::new("s.yaml"), "x").unwrap();
    }
    let cases = [
        // The pointer names a property the body lacks.
        ("{name: f, in: query, x-field-mask: /nope, schema: NAMES}", "L", "no property \"nope\""),
        // `*` on something that is not an array.
        ("{name: f, in: query, x-field-mask: '/*', schema: NAMES}", "U", "not an array"),
        // It ends on a string, not an object.
        ("{name: f, in: query, x-field-mask: /id, schema: NAMES}", "U", "an object with properties"),
        // A name the masked object does not have.
        (
            "{name: f, in: query, x-field-mask: '', schema: {type: array, items: {type: string, enum: [id, email]}}}",
            "U",
            "\"email\" is not a property",
        ),
        // Free text could name anything.
        ("{name: f, in: query, x-field-mask: '', schema: {type: string}}", "U", "string enum of property names"),
        // Not a pointer.
        ("{name: f, in: query, x-field-mask: data, schema: NAMES}", "U", "starts with `/`"),
        ("{name: f, in: query, x-field-mask: 3, schema: NAMES}", "U", "JSON pointer string"),
        // Only a query parameter masks.
        ("{name: f, in: header, x-field-mask: '', schema: NAMES}", "U", "must be a query parameter"),
    ];
    for (param, body, needle) in cases {
        let e = gen_error(&spec(&param.replace("NAMES", names), &format!("{{$ref: '#/components/schemas/{body}'}}")));
        assert!(e.contains(at) && e.contains(needle), "{param}: {e}");
    }
    let two = spec(
        &format!(
            "{{name: f, in: query, x-field-mask: '', schema: {names}}}, {{name: g, in: query, x-field-mask: '', schema: {names}}}"
        ),
        "{$ref: '#/components/schemas/U'}",
    );
    let e = gen_error(&two);
    assert!(e.contains("#/paths/~1a/get/parameters/1/x-field-mask") && e.contains("a second field mask"), "{e}");
}

/// A status the framework must send but the spec does not document is a
/// warning, answered as problem+json; `--strict` makes it an error naming
/// the operation and the status.
#[test]
fn undocumented_framework_statuses_warn_or_fail_when_strict() {
    let spec = tiny(
        "  /a:\n    get:\n      operationId: a\n      parameters:\n        - {name: q, in: query, schema: {type: integer}}\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string}}}",
    );
    let doc = codegen::parse_spec(&spec).unwrap();
    let found = codegen::undocumented_statuses(&doc).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("#/paths/~1a/get/responses") && found[0].contains("400"), "{found:?}");
    codegen::render_server(&doc, Path::new("s.yaml"), "x").expect("without --strict it generates");

    let dir = tempdir("strict");
    let mut t = copy_target(&dir, &spec);
    let e = codegen::run_target(&dir, &t, false, &mut Outcome::default()).unwrap_err();
    assert!(format!("{e:#}").contains("a may answer 400 (ValidationFailed)"), "{e:#}");
    t.strict = false;
    codegen::run_target(&dir, &t, false, &mut Outcome::default()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    // `default` documents every status: nothing is left undocumented.
    let spec =
        spec.replace("'200': {description: ok}", "'200': {description: ok}\n        default: {description: failure}");
    assert!(codegen::undocumented_statuses(&codegen::parse_spec(&spec).unwrap()).unwrap().is_empty());
}

/// An operation without `operationId` is named from its method and path;
/// a tag named like a generated module gets a module of its own.
#[test]
fn nameless_operations_and_clashing_tags_generate() {
    let spec = tiny(
        "  /a/{id}:\n    get:\n      tags: [models]\n      parameters:\n        - {name: id, in: path, required: true, schema: {type: integer}}\n      responses:\n        '200': {description: ok}\n        '400': {description: bad}",
        "    X: {type: object, properties: {a: {type: string}}}",
    );
    let doc = codegen::parse_spec(&spec).unwrap();
    let files = codegen::render_server(&doc, Path::new("s.yaml"), "x").unwrap();
    let ops = files.iter().find(|(p, _)| p.ends_with("src/models_ops.rs")).map(|(_, t)| t).expect("models_ops.rs");
    assert!(ops.contains("fn get_a_by_id(") && ops.contains("operation_id = \"getAById\""), "{ops}");
    assert!(files.iter().any(|(p, t)| p.ends_with("src/models.rs") && t.contains("pub struct X")));
}

/// Properties whose names meet after case conversion keep distinct fields.
#[test]
fn properties_colliding_after_case_conversion_stay_apart() {
    let spec = tiny(
        "  /a:\n    get:\n      operationId: a\n      responses:\n        '200': {description: ok, content: {application/json: {schema: {$ref: '#/components/schemas/X'}}}}",
        "    X: {type: object, properties: {fooBar: {type: string}, foo_bar: {type: integer}}}",
    );
    let doc = codegen::parse_spec(&spec).unwrap();
    let files = codegen::render_server(&doc, Path::new("s.yaml"), "x").unwrap();
    let models = &files.iter().find(|(p, _)| p.ends_with("src/models.rs")).unwrap().1;
    assert!(models.contains("pub foo_bar:") && models.contains("pub foo_bar_2:"), "{models}");
    assert!(models.contains("rename = \"fooBar\""), "{models}");
}

/// The generator names faults and their default statuses without linking
/// the runtime (so `cargo xtask codegen` stays light); this keeps the two
/// lists equal.
#[test]
fn the_generators_faults_are_the_runtimes() {
    use xtask::codegen::ir::{errors::fault_status, registry::FAULTS};
    let runtime: Vec<(&str, u16)> = api_server::rt::Fault::ALL.iter().map(|f| (f.name(), f.status())).collect();
    let generator: Vec<(&str, u16)> = FAULTS.iter().map(|f| (*f, fault_status(&[], f))).collect();
    assert_eq!(generator, runtime);
}

/// `x-raw-handler: true`: the operation's parameters and responses are not
/// read (an object query parameter would be refused), its security is
/// still checked, and the served document carries it as written.
#[test]
fn raw_handlers_keep_the_rest_typed() {
    let spec = tiny(
        "  /a:\n    get:\n      operationId: a\n      x-raw-handler: true\n      parameters: [{name: q, in: query, schema: {type: object, properties: {x: {type: string}}}}]\n      responses:\n        '101': {description: upgrade}\n  /b:\n    get:\n      operationId: b\n      responses:\n        '200': {description: ok}",
        "    X: {type: object, properties: {a: {type: string}}}",
    );
    let doc = codegen::parse_spec(&spec).unwrap();
    let files = codegen::render_server(&doc, Path::new("s.yaml"), "x").unwrap();
    let ops = &files.iter().find(|(p, _)| p.ends_with("default.rs")).unwrap().1;
    assert!(ops.contains("request: &::poem::Request") && ops.contains("rt::RawAnswer<ARaw>"), "{ops}");
    assert!(ops.contains("fn b(") && ops.contains("BResponse"), "{ops}");
    let lib = &files.iter().find(|(p, _)| p.ends_with("lib.rs")).unwrap().1;
    assert!(lib.contains("\"/paths/~1a/get\","), "the raw operation's text is patched in: {lib}");
}
