//! `cargo xtask codegen`: spec → model → Rust source → formatted files,
//! written to disk or, with `--check`, compared with what is there.
//!
//! Stages: [`openapi31`] (a 3.1 document rewritten as the 3.0.3 document
//! that says the same, before `openapiv3` reads it), [`ir`] (openapiv3 →
//! the intermediate representation, one module per concept), [`emit`] (IR → the server crate's tokens), then
//! prettyplease and rustfmt; [`client`] runs progenitor for the client and
//! [`client_auth`] generates its credentials from the spec's security.

pub mod client;
mod client_auth;
pub mod emit;
pub mod ir;
pub mod openapi31;
mod standalone;

pub use standalone::{OutOptions, codegen_out};

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};

pub use emit::{Deps, WORKSPACE_DEPS};

/// What a target generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    /// The mock server binary over the server crate beside it (`--mock`).
    Mock,
}

/// One crate to generate.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    /// The contract, relative to the workspace root.
    pub spec: PathBuf,
    /// The crate directory, relative to the workspace root.
    pub out: PathBuf,
    pub crate_name: String,
    /// Workspace member, or a crate that builds on its own (`--out`).
    pub deps: Deps,
    /// A status the framework may send that the spec leaves undocumented
    /// stops generation (`--strict`) instead of a warning.
    pub strict: bool,
    /// Operation ids generated as raw handlers (`--raw`), as if they had
    /// `x-raw-handler: true`.
    pub raw: Vec<String>,
}

/// Every crate `cargo xtask codegen` owns: the service's server crate and
/// the generator's fixture crates (compiled by the workspace build).
pub fn targets() -> Vec<Target> {
    let mut targets = vec![
        Target {
            kind: Kind::Server,
            spec: "spec/openapi.yaml".into(),
            out: "generated/server".into(),
            crate_name: "spec-api-server".into(),
            deps: Deps::Workspace,
            // This project's contract documents every status it answers.
            strict: true,
            raw: Vec::new(),
        },
        Target {
            kind: Kind::Client,
            spec: "spec/openapi.yaml".into(),
            out: "generated/client".into(),
            crate_name: "spec-api-client".into(),
            deps: Deps::Workspace,
            strict: true,
            raw: Vec::new(),
        },
        Target {
            kind: Kind::Server,
            spec: "xtask/tests/fixtures/rich/openapi.yaml".into(),
            out: "xtask/tests/fixtures/rich/server".into(),
            crate_name: "fixture-rich-server".into(),
            deps: Deps::Workspace,
            strict: true,
            raw: Vec::new(),
        },
        Target {
            kind: Kind::Server,
            spec: "xtask/tests/fixtures/security/openapi.yaml".into(),
            out: "xtask/tests/fixtures/security/server".into(),
            crate_name: "fixture-security-server".into(),
            deps: Deps::Workspace,
            // It leaves statuses undocumented on purpose: the problem+json
            // fallback is under test.
            strict: false,
            raw: Vec::new(),
        },
        Target {
            kind: Kind::Client,
            spec: "xtask/tests/fixtures/security/openapi.yaml".into(),
            out: "xtask/tests/fixtures/security/client".into(),
            crate_name: "fixture-security-client".into(),
            deps: Deps::Workspace,
            strict: false,
            raw: Vec::new(),
        },
    ];
    // Public specs (xtask/tests/fixtures/public/README.md), generated as
    // any user would and compiled by the workspace build. They document
    // few failure statuses, so they generate with warnings.
    // propolis serves its serial console as a WebSocket: that operation is
    // a raw handler, as a user would generate it (`--raw instance_serial`).
    for (file, name, raw) in [
        ("keeper.json", "keeper", &[][..]),
        ("param-collision.json", "param-collision", &[]),
        ("museum.yaml", "museum", &[]),
        ("propolis-server.json", "propolis", &["instance_serial"]),
        ("buildomat.json", "buildomat", &[]),
    ] {
        for (kind, suffix) in [(Kind::Server, "server"), (Kind::Client, "client")] {
            targets.push(Target {
                kind,
                spec: format!("xtask/tests/fixtures/public/{file}").into(),
                out: format!("xtask/tests/fixtures/public/{name}/{suffix}").into(),
                crate_name: format!("fixture-{name}-{suffix}"),
                deps: Deps::Workspace,
                strict: false,
                raw: raw.iter().map(|r| r.to_string()).collect(),
            });
        }
    }
    targets
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub written: Vec<PathBuf>,
    pub unchanged: Vec<PathBuf>,
    /// `--check` only: (path, unified diff) of every stale file.
    pub stale: Vec<(PathBuf, String)>,
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn header(spec: &Path) -> String {
    format!(
        "// @generated by `cargo xtask codegen` from {}.\n// Do not edit by hand: edit the spec and run `cargo xtask codegen`.\n\n",
        spec.display()
    )
}

/// Parses a spec file (YAML or JSON, OpenAPI 3.0 or 3.1); what a 3.1
/// document loses on the way to 3.0 is printed as warnings.
pub fn load_spec(path: &Path) -> Result<openapiv3::OpenAPI> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_spec(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Marks the operations `ids` as raw handlers (`x-raw-handler: true`), the
/// `--raw` flag: for a spec the user would rather not edit.
pub fn mark_raw(doc: &mut openapiv3::OpenAPI, ids: &[String]) -> Result<()> {
    for id in ids {
        let mut found = false;
        for item in doc.paths.paths.values_mut() {
            if let openapiv3::ReferenceOr::Item(item) = item {
                let ops = [
                    &mut item.get,
                    &mut item.put,
                    &mut item.post,
                    &mut item.delete,
                    &mut item.options,
                    &mut item.head,
                    &mut item.patch,
                    &mut item.trace,
                ];
                for op in ops.into_iter().flatten() {
                    if op.operation_id.as_deref() == Some(id.as_str()) {
                        op.extensions.insert(ir::operations::RAW_EXTENSION.into(), serde_json::Value::Bool(true));
                        found = true;
                    }
                }
            }
        }
        if !found {
            bail!("--raw {id}: no operation has this operationId");
        }
    }
    Ok(())
}

/// [`load_spec`] from text. Every document takes the same path: a YAML
/// tree (it keeps key order, see [`openapi31`]), normalized to 3.0.3 when it
/// says 3.1, then read by `openapiv3`; server and client get the result.
pub fn parse_spec(text: &str) -> Result<openapiv3::OpenAPI> {
    let (doc, warnings) = parse_spec_with_warnings(text)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(doc)
}

/// [`parse_spec`], returning the normalization's warnings instead of
/// printing them.
pub fn parse_spec_with_warnings(text: &str) -> Result<(openapiv3::OpenAPI, Vec<String>)> {
    let mut tree: serde_yaml::Value = serde_yaml::from_str(text)?;
    // Asked before normalizing, which makes every document say 3.0.3.
    let says_30 = tree.get("openapi").and_then(serde_yaml::Value::as_str).is_some_and(|v| v.starts_with("3.0"));
    let mut warnings = openapi31::normalize(&mut tree)?;
    match serde_yaml::from_value(tree) {
        Ok(doc) => {
            if says_30 {
                warnings.extend(ir::security::role_scope_warnings(&doc));
            }
            Ok((doc, warnings))
        }
        // A tree has lost the line numbers; reading the text again gives
        // the same error with its location (for a 3.1 document it may
        // instead be the version the text says, so the tree's is kept).
        Err(e) => match serde_yaml::from_str::<openapiv3::OpenAPI>(text) {
            Err(located) => Err(located.into()),
            Ok(_) => Err(e.into()),
        },
    }
}

/// Generates every file of one server crate (a workspace member) from a
/// parsed spec, formatted.
pub fn render_server(doc: &openapiv3::OpenAPI, spec_rel: &Path, crate_name: &str) -> Result<Vec<(PathBuf, String)>> {
    render_server_with(doc, spec_rel, crate_name, &Deps::Workspace)
}

/// [`render_server`] with the dependency style of the crate.
pub fn render_server_with(
    doc: &openapiv3::OpenAPI,
    spec_rel: &Path,
    crate_name: &str,
    deps: &Deps,
) -> Result<Vec<(PathBuf, String)>> {
    let api = ir::build(doc)?;
    let head = header(spec_rel);
    let mut files = Vec::new();
    for emit::EmittedFile { path, tokens } in emit::emit(&api)? {
        let file: syn::File = syn::parse2(tokens.clone()).with_context(|| {
            if let Ok(dump) = std::env::var("XTASK_DUMP_INVALID") {
                let _ = std::fs::write(&dump, tokens.to_string());
            }
            format!("generated {path} is not valid Rust (generator bug; XTASK_DUMP_INVALID=FILE writes its tokens)")
        })?;
        let pretty = prettyplease::unparse(&file);
        files.push((PathBuf::from(path), format!("{head}{}", rustfmt(&pretty)?)));
    }
    files.push((PathBuf::from("Cargo.toml"), emit::cargo_toml(crate_name, spec_rel, deps)));
    files.sort();
    Ok(files)
}

/// Generates every file of the client crate, formatted.
pub fn render_client(
    doc: &openapiv3::OpenAPI,
    spec_rel: &Path,
    crate_name: &str,
    deps: &Deps,
) -> Result<Vec<(PathBuf, String)>> {
    let head = header(spec_rel);
    let mut files = Vec::new();
    for (path, text, is_rust) in client::render(doc, crate_name, &spec_rel.display().to_string(), deps)? {
        let text = if is_rust { format!("{head}{}", rustfmt(&text)?) } else { text };
        files.push((PathBuf::from(path), text));
    }
    files.sort();
    Ok(files)
}

/// Generates the mock crate (`--mock`): `src/main.rs`, the spec it
/// synthesizes from as `spec.json` (the normalized 3.0 document), and its
/// `Cargo.toml`. Its crate is named `{server}-mock` after the server crate
/// it implements, which is generated beside it (`../server`).
pub fn render_mock(
    doc: &openapiv3::OpenAPI,
    spec_rel: &Path,
    crate_name: &str,
    deps: &Deps,
) -> Result<Vec<(PathBuf, String)>> {
    let server = crate_name
        .strip_suffix("-mock")
        .with_context(|| format!("mock crate {crate_name:?}: its name is the server crate's with `-mock`"))?;
    let Deps::Standalone { runtime } = deps else {
        bail!("mock crate {crate_name}: mocks are generated outside the workspace only (`--out DIR --mock`)");
    };
    let api = ir::build(doc)?;
    let tokens = emit::mock::mock_main(&api, &server.replace('-', "_"))?;
    let file: syn::File = syn::parse2(tokens).context("the generated mock is not valid Rust (generator bug)")?;
    let main = format!("{}{}", header(spec_rel), rustfmt(&prettyplease::unparse(&file))?);
    let mut spec = serde_json::to_string_pretty(doc).context("the spec as JSON")?;
    spec.push('\n');
    let mut files = vec![
        (PathBuf::from("src/main.rs"), main),
        (PathBuf::from("spec.json"), spec),
        (PathBuf::from("Cargo.toml"), emit::mock::mock_cargo_toml(crate_name, server, spec_rel, runtime)),
    ];
    files.sort();
    Ok(files)
}

/// Formats with the toolchain's rustfmt, so generated code passes
/// `cargo fmt --check` like everything else.
fn rustfmt(src: &str) -> Result<String> {
    let mut child = Command::new(std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".into()))
        .args(["--edition", "2024", "--emit", "stdout", "--quiet"])
        .arg("--config-path")
        .arg(workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running rustfmt (install it with `rustup component add rustfmt`)")?;
    child.stdin.take().context("rustfmt stdin")?.write_all(src.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("rustfmt failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The statuses the framework may send that the spec leaves undocumented,
/// one line each (answered as `application/problem+json`).
pub fn undocumented_statuses(doc: &openapiv3::OpenAPI) -> Result<Vec<String>> {
    let api = ir::build(doc)?;
    Ok(ir::errors::undocumented(&api).iter().map(ToString::to_string).collect())
}

/// Generates (or checks) one target under `root`.
pub fn run_target(root: &Path, t: &Target, check: bool, outcome: &mut Outcome) -> Result<()> {
    let mut doc = load_spec(&root.join(&t.spec))?;
    mark_raw(&mut doc, &t.raw)?;
    if t.kind == Kind::Server {
        let undocumented = undocumented_statuses(&doc)?;
        if !undocumented.is_empty() {
            let list = undocumented.join("\n  ");
            if t.strict {
                bail!(
                    "{}: statuses the framework sends are undocumented (strict):\n  {list}\n\
                     document them (e.g. a `default` error response), or generate without --strict \
                     to answer them as application/problem+json",
                    t.spec.display()
                );
            }
            eprintln!(
                "warning: {}: these are answered as application/problem+json, the spec documents no response for them:\n  {list}",
                t.spec.display()
            );
        }
    }
    let files = match t.kind {
        Kind::Server => render_server_with(&doc, &t.spec, &t.crate_name, &t.deps)?,
        Kind::Client => render_client(&doc, &t.spec, &t.crate_name, &t.deps)?,
        Kind::Mock => render_mock(&doc, &t.spec, &t.crate_name, &t.deps)?,
    };
    let out_dir = root.join(&t.out);
    // Files the generator no longer produces are stale too.
    let mut existing = Vec::new();
    collect_files(&out_dir, &out_dir, &mut existing);
    for rel in existing {
        if !files.iter().any(|(p, _)| *p == rel) && is_generated(&out_dir.join(&rel)) {
            let path = out_dir.join(&rel);
            if check {
                outcome.stale.push((path, "file is no longer generated; delete it".into()));
            } else {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    for (rel, content) in files {
        let path = out_dir.join(&rel);
        let old = std::fs::read_to_string(&path).ok();
        if old.as_deref() == Some(content.as_str()) {
            outcome.unchanged.push(path);
            continue;
        }
        if check {
            let diff = similar::TextDiff::from_lines(old.as_deref().unwrap_or(""), &content)
                .unified_diff()
                .context_radius(2)
                .header(&format!("{} (on disk)", path.display()), &format!("{} (from the spec)", path.display()))
                .to_string();
            outcome.stale.push((path, diff));
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
            outcome.written.push(path);
        }
    }
    Ok(())
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(base, &p, out);
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_path_buf());
        }
    }
}

fn is_generated(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.starts_with("// @generated") || s.starts_with("# @generated"))
}

/// Runs every target; prints what it did. In check mode, fails with the
/// diffs when anything is stale.
pub fn codegen(check: bool) -> Result<Outcome> {
    run_all(&workspace_root(), &targets(), check)
}

/// Runs `targets` under `root` and reports like [`codegen`].
pub fn run_all(root: &Path, targets: &[Target], check: bool) -> Result<Outcome> {
    let start = Instant::now();
    let mut outcome = Outcome::default();
    for t in targets {
        run_target(root, t, check, &mut outcome)?;
    }
    let elapsed = start.elapsed();
    if check {
        if !outcome.stale.is_empty() {
            let mut msg = String::new();
            for (p, diff) in &outcome.stale {
                msg.push_str(&format!("stale: {}\n{diff}\n", p.display()));
            }
            bail!(
                "{msg}{} generated file(s) differ from the spec. Run `cargo xtask codegen` locally and commit the result.",
                outcome.stale.len()
            );
        }
        println!(
            "codegen --check: {} files up to date ({:.0} ms)",
            outcome.unchanged.len(),
            elapsed.as_secs_f64() * 1000.0
        );
    } else {
        for p in &outcome.written {
            println!("wrote {}", p.strip_prefix(root).unwrap_or(p).display());
        }
        println!(
            "codegen: {} written, {} unchanged in {:.0} ms",
            outcome.written.len(),
            outcome.unchanged.len(),
            elapsed.as_secs_f64() * 1000.0
        );
    }
    Ok(outcome)
}
