//! `cargo xtask spec-diff`: the fixture corpus (one base/head pair per rule,
//! compared exactly), the invariances (identical, reordered, renamed refs),
//! recursion, the output formats, exit statuses, git revisions and the CI gate.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use xtask::spec_diff::{self, Finding, Level, report, rules};

fn root() -> PathBuf {
    xtask::codegen::workspace_root()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec_diff")
}

fn parse(text: &str) -> Value {
    spec_diff::parse(text).expect("fixture parses")
}

fn lines(findings: &[Finding]) -> Vec<String> {
    let mut l: Vec<_> = findings.iter().map(Finding::key_line).collect();
    l.sort();
    l
}

fn diff_text(base: &str, head: &str) -> Vec<Finding> {
    spec_diff::diff(&parse(base), &parse(head))
}

#[test]
fn every_fixture_pair_gives_exactly_its_expected_findings() {
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(fixtures()).expect("fixture dir") {
        let dir = entry.expect("entry").path();
        let rule = dir.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{rule}/{f}: {e}"));
        let got = lines(&diff_text(&read("base.yaml"), &read("head.yaml")));
        let mut want: Vec<String> =
            read("expected.txt").lines().filter(|l| !l.trim().is_empty()).map(String::from).collect();
        want.sort();
        if got != want {
            failures.push(format!("{rule}:\n  want {want:#?}\n  got  {got:#?}"));
        }
        if !got.iter().any(|l| l.split(' ').nth(1) == Some(rule.as_str())) {
            failures.push(format!("{rule}: the pair does not produce its own rule"));
        }
        seen.push(rule);
    }
    for r in rules::RULES {
        if !seen.iter().any(|s| s == r.id) {
            failures.push(format!("rule {} has no fixture pair in tests/fixtures/spec_diff/{}", r.id, r.id));
        }
    }
    for s in &seen {
        if !rules::RULES.iter().any(|r| r.id == s) {
            failures.push(format!("fixture {s} names no rule"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rule_table_is_unique_kebab_case_and_explained() {
    let mut ids: Vec<_> = rules::RULES.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), rules::RULES.len(), "duplicate rule id");
    for r in rules::RULES {
        assert!(r.id.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{}", r.id);
        assert!(r.why.ends_with('.') && r.why.len() > 20, "{}: why {:?}", r.id, r.why);
    }
    let table = rules::table();
    assert_eq!(table.lines().count(), rules::RULES.len());
    assert!(table.contains("ERR  path-removed"));
}

#[test]
fn the_repository_spec_against_itself_has_no_findings() {
    let doc = spec_diff::load(&root().join("spec/openapi.yaml").to_string_lossy()).expect("spec loads");
    let findings = spec_diff::diff(&doc.value, &doc.value);
    assert!(findings.is_empty(), "{findings:#?}");
}

const ORDERED: &str = r#"
openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /users/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      operationId: getUser
      parameters:
        - {name: a, in: query, schema: {type: string, enum: [x, y, z]}}
        - {name: X-B, in: header, schema: {type: integer, minimum: 1}}
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/User'}
        '404': {description: missing}
components:
  schemas:
    User:
      type: object
      required: [id, name]
      properties:
        id: {type: string}
        name: {type: string, maxLength: 10}
"#;

const REORDERED: &str = r#"
components:
  schemas:
    User:
      properties:
        name: {maxLength: 10, type: string}
        id: {type: string}
      required: [name, id]
      type: object
paths:
  /users/{userId}:
    get:
      responses:
        '404': {description: missing}
        '200':
          content:
            application/json:
              schema: {$ref: '#/components/schemas/User'}
          description: ok
      parameters:
        - {in: header, name: x-b, schema: {minimum: 1, type: integer}}
        - {schema: {enum: [z, y, x], type: string}, in: query, name: a}
      operationId: getUser
    parameters:
      - {schema: {type: string}, required: true, in: path, name: userId}
info: {version: '1', title: t}
openapi: 3.0.3
"#;

#[test]
fn identical_and_reordered_documents_have_no_findings() {
    assert!(diff_text(ORDERED, ORDERED).is_empty());
    // Keys, parameters, required and enum lists in another order; a path
    // parameter renamed with its template; a header name in another case.
    let f = diff_text(ORDERED, REORDERED);
    assert!(f.is_empty(), "{f:#?}");
    let f = diff_text(REORDERED, ORDERED);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn a_renamed_component_with_the_same_schema_has_no_findings() {
    let renamed = ORDERED.replace("schemas/User", "schemas/Person").replace("    User:", "    Person:");
    assert_ne!(renamed, ORDERED);
    let f = diff_text(ORDERED, &renamed);
    assert!(f.is_empty(), "{f:#?}");
    // Inline on one side, a reference on the other: the same.
    let inline = ORDERED.replace(
        "schema: {$ref: '#/components/schemas/User'}",
        "schema: {type: object, required: [id, name], properties: {id: {type: string}, name: {type: string, maxLength: 10}}}",
    );
    let f = diff_text(ORDERED, &inline);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn a_change_inside_a_referenced_component_points_at_the_component() {
    let head = ORDERED.replace("maxLength: 10", "maxLength: 20");
    assert_eq!(
        lines(&diff_text(ORDERED, &head)),
        [
            "WARN response-constraint-widened #/components/schemas/User/properties/name/maxLength #/components/schemas/User/properties/name/maxLength"
        ]
    );
}

const TREE: &str = r#"
openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /tree:
    post:
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Node'}
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Node'}
components:
  schemas:
    Node:
      type: object
      properties:
        label: {type: string}
        parent: {$ref: '#/components/schemas/Node'}
        children: {type: array, items: {$ref: '#/components/schemas/Edge'}}
    Edge:
      allOf:
        - {$ref: '#/components/schemas/Node'}
        - {type: object, properties: {weight: {type: number}}}
"#;

#[test]
fn recursive_schemas_terminate_and_report_once_per_direction() {
    assert!(diff_text(TREE, TREE).is_empty());
    let head = TREE.replace("label: {type: string}", "label: {type: string, enum: [a]}");
    assert_eq!(
        lines(&diff_text(TREE, &head)),
        [
            "ERR request-enum-added #/components/schemas/Node/properties/label #/components/schemas/Node/properties/label/enum",
            "INFO response-enum-added #/components/schemas/Node/properties/label #/components/schemas/Node/properties/label/enum",
        ]
    );
    // Renamed on one side only, so the pairs of refs never repeat exactly.
    let renamed = TREE.replace("schemas/Node", "schemas/Tree").replace("    Node:", "    Tree:");
    assert!(diff_text(TREE, &renamed).is_empty());
}

#[test]
fn all_of_members_are_merged_before_comparing() {
    let base = r#"
openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /x:
    get:
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema:
                allOf:
                  - {type: object, required: [a], properties: {a: {type: string}}}
                  - {type: object, properties: {b: {type: string}}}
"#;
    let merged = base.replace(
        "allOf:\n                  - {type: object, required: [a], properties: {a: {type: string}}}\n                  - {type: object, properties: {b: {type: string}}}",
        "{type: object, required: [a], properties: {a: {type: string}, b: {type: string}}}",
    );
    assert_ne!(merged, base);
    assert!(diff_text(base, &merged).is_empty());
    let dropped = base.replace("required: [a], ", "");
    assert_eq!(
        lines(&diff_text(base, &dropped)),
        [
            "ERR response-property-became-optional #/paths/~1x/get/responses/200/content/application~1json/schema/allOf/0/properties/a #/paths/~1x/get/responses/200/content/application~1json/schema/allOf/0/properties/a"
        ]
    );
}

#[test]
fn json_pointers_escape_slash_and_tilde() {
    let base = r#"
openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /a~b/{id}:
    get:
      responses: {'200': {description: ok}}
"#;
    let head = base.replace("/a~b/{id}", "/c");
    let l = lines(&diff_text(base, &head));
    assert!(l.contains(&"ERR path-removed #/paths/~1a~0b~1{id} #/paths".to_string()), "{l:#?}");
}

fn sample() -> Vec<Finding> {
    let dir = fixtures();
    let read = |r: &str, f: &str| std::fs::read_to_string(dir.join(r).join(f)).expect("fixture");
    let mut all =
        diff_text(&read("response-enum-value-added", "base.yaml"), &read("response-enum-value-added", "head.yaml"));
    all.extend(diff_text(&read("path-removed", "base.yaml"), &read("path-removed", "head.yaml")));
    all.extend(diff_text(&read("path-added", "base.yaml"), &read("path-added", "head.yaml")));
    // Most severe first, as `diff` orders one document pair's findings.
    all.sort_by_key(|f| std::cmp::Reverse(f.level));
    all
}

fn meta(fail_on: Level) -> report::Meta<'static> {
    report::Meta {
        base: "base.yaml",
        head: "head <&> \"x\".yaml",
        head_file: "spec/openapi.yaml",
        head_text: None,
        fail_on,
    }
}

#[test]
fn json_report_parses_and_carries_every_finding() {
    let f = sample();
    let out = report::render(report::Format::Json, &f, &meta(Level::Err));
    let v: Value = serde_json::from_str(&out).expect("json report parses");
    let items = v["findings"].as_array().expect("findings array");
    assert_eq!(items.len(), 3);
    assert_eq!(v["failed"], Value::Bool(true));
    for (item, f) in items.iter().zip(&f) {
        assert_eq!(item["rule"], f.rule);
        assert_eq!(item["level"], f.level.as_str());
        assert_eq!(item["base_pointer"], f.base.as_str());
        assert_eq!(item["head_pointer"], f.head.as_str());
        assert!(item["why"].as_str().is_some_and(|w| !w.is_empty()));
    }
}

/// Just enough XML to check well-formedness: balanced, properly nested
/// tags, quoted attributes, no bare `<` or `&` in text.
fn check_xml(s: &str) -> Result<Vec<String>, String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = s.strip_prefix("<?xml").and_then(|r| r.split_once("?>")).map(|(_, r)| r).ok_or("no declaration")?;
    while let Some(i) = rest.find('<') {
        let text = &rest[..i];
        if text.contains('>') {
            return Err(format!("bare > in {text:?}"));
        }
        for (j, _) in text.match_indices('&') {
            let ent = &text[j..];
            if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| ent.starts_with(e)) {
                return Err(format!("bad entity in {text:?}"));
            }
        }
        let end = rest[i..].find('>').ok_or("unterminated tag")? + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            if stack.pop().as_deref() != Some(name) {
                return Err(format!("mismatched </{name}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().ok_or("empty tag")?.to_string();
        if tag[name.len()..].matches('"').count() % 2 != 0 || tag.contains('<') {
            return Err(format!("bad attributes in <{tag}>"));
        }
        names.push(name.clone());
        if !self_closing {
            stack.push(name);
        }
    }
    if !stack.is_empty() {
        return Err(format!("unclosed {stack:?}"));
    }
    Ok(names)
}

#[test]
fn junit_report_is_well_formed_with_a_testcase_per_finding() {
    let f = sample();
    let out = report::render(report::Format::Junit, &f, &meta(Level::Err));
    let names = check_xml(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(names.iter().filter(|n| *n == "testcase").count(), 3);
    assert_eq!(names.iter().filter(|n| *n == "failure").count(), 1, "only the ERR fails at --fail-on ERR");
    let out = report::render(report::Format::Junit, &f, &meta(Level::Warn));
    let names = check_xml(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(names.iter().filter(|n| *n == "failure").count(), 2, "ERR and WARN fail at --fail-on WARN");
    assert!(check_xml("<?xml ?><a><b></a></b>").is_err());
}

#[test]
fn github_text_and_markdown_reports() {
    let f = sample();
    let gh = report::render(report::Format::Github, &f, &meta(Level::Err));
    let gh_lines: Vec<_> = gh.lines().collect();
    assert_eq!(gh_lines.len(), 3);
    assert!(gh_lines[0].starts_with("::error file=spec/openapi.yaml,title=spec-diff path-removed::"), "{gh}");
    assert!(gh_lines[1].starts_with("::warning file=spec/openapi.yaml,title=spec-diff response-enum-value-added::"));
    assert!(gh_lines[2].starts_with("::notice "));
    let text = report::render(report::Format::Text, &f, &meta(Level::Err));
    assert!(text.starts_with("ERR  path-removed: path /b removed\n     #/paths/~1b -> #/paths\n"), "{text}");
    assert!(text.ends_with("1 ERR, 1 WARN, 1 INFO\n"));
    let md = report::render(report::Format::Markdown, &f, &meta(Level::Err));
    assert!(md.contains("| Level | Rule | Change | Base | Head |"));
    assert_eq!(
        md.lines().filter(|l| l.starts_with("| ERR") || l.starts_with("| WARN") || l.starts_with("| INFO")).count(),
        3
    );
}

#[test]
fn exit_code_follows_fail_on() {
    let f = sample();
    assert_eq!(spec_diff::exit_code(&f, Level::Err), 1);
    let no_err: Vec<_> = f.iter().filter(|f| f.level != Level::Err).cloned().collect();
    assert_eq!(spec_diff::exit_code(&no_err, Level::Err), 0);
    assert_eq!(spec_diff::exit_code(&no_err, Level::Warn), 1);
    let info: Vec<_> = f.iter().filter(|f| f.level == Level::Info).cloned().collect();
    assert_eq!(spec_diff::exit_code(&info, Level::Warn), 0);
    assert_eq!(spec_diff::exit_code(&[], Level::Warn), 0);
}

fn xtask(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("spec-diff")
        .args(args)
        .current_dir(root())
        .output()
        .expect("xtask runs");
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

#[test]
fn the_binary_exits_0_1_or_2() {
    let fx = |r: &str, f: &str| fixtures().join(r).join(f).to_string_lossy().into_owned();
    let (code, out, _) = xtask(&[&fx("path-removed", "base.yaml"), &fx("path-removed", "head.yaml")]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) =
        xtask(&[&fx("response-enum-value-added", "base.yaml"), &fx("response-enum-value-added", "head.yaml")]);
    assert_eq!(code, 0, "a WARN passes by default: {out}");
    let (code, _, _) = xtask(&[
        "--fail-on",
        "WARN",
        &fx("response-enum-value-added", "base.yaml"),
        &fx("response-enum-value-added", "head.yaml"),
    ]);
    assert_eq!(code, 1, "a WARN fails at --fail-on WARN");
    let (code, out, _) = xtask(&["--format", "json", &fx("path-added", "base.yaml"), &fx("path-added", "head.yaml")]);
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<Value>(&out).is_ok());
    let (code, _, err) = xtask(&["no/such/file.yaml", &fx("path-added", "head.yaml")]);
    assert_eq!(code, 2);
    assert!(err.contains("loading BASE"), "{err}");
    let not_yaml = std::env::temp_dir().join(format!("spec-diff-bad-{}.yaml", std::process::id()));
    std::fs::write(&not_yaml, "paths: [unclosed").expect("write");
    let (code, _, err) = xtask(&[&fx("path-added", "base.yaml"), &not_yaml.to_string_lossy()]);
    let _ = std::fs::remove_file(&not_yaml);
    assert_eq!(code, 2);
    assert!(err.contains("loading HEAD") && err.contains("parsing"), "{err}");
    let (code, _, _) = xtask(&["only-one"]);
    assert_eq!(code, 2, "clap usage error");
    let (code, out, _) = xtask(&["--rules"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), rules::RULES.len());
}

#[test]
fn git_revision_form_reads_the_committed_spec() {
    if Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root())
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!("skipped: not a git checkout");
        return;
    }
    let (code, out, err) = xtask(&["HEAD:spec/openapi.yaml", "HEAD:spec/openapi.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 ERR, 0 WARN, 0 INFO"), "{out}");
    let (code, _, err) = xtask(&["HEAD:spec/no-such.yaml", "spec/openapi.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("git show"), "{err}");
}

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(st.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&st.stderr));
}

#[test]
fn the_gate_needs_a_breaking_mark_for_breaking_changes() {
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!("skipped: no git");
        return;
    }
    if std::env::var_os("SPEC_DIFF_BASE").is_some() {
        eprintln!("skipped: SPEC_DIFF_BASE is set and would override the scratch repository's base");
        return;
    }
    let dir = std::env::temp_dir().join(format!("spec-diff-gate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("spec")).expect("mkdir");
    // No parent commit yet: skipped, not failed.
    git(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("spec/openapi.yaml"), ORDERED).expect("write");
    std::fs::write(dir.join("spec/CHANGELOG.md"), "# Contract changelog\n").expect("write");
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-qm", "one"]);
    spec_diff::gate::spec_gate(&dir).expect("skipped without a parent");
    git(&dir, &["commit", "-qm", "two", "--allow-empty"]);
    spec_diff::gate::spec_gate(&dir).expect("no change");
    // A compatible change passes, a breaking one fails until the changelog says so.
    std::fs::write(dir.join("spec/openapi.yaml"), ORDERED.replace("maxLength: 10", "maxLength: 5")).expect("write");
    spec_diff::gate::spec_gate(&dir).expect("narrowed response is INFO");
    std::fs::write(dir.join("spec/openapi.yaml"), ORDERED.replace("        '404': {description: missing}\n", ""))
        .expect("write");
    let err = format!("{:#}", spec_diff::gate::spec_gate(&dir).expect_err("404 removed is breaking"));
    assert!(err.contains("response-status-removed") && err.contains("**breaking**"), "{err}");
    std::fs::write(
        dir.join("spec/CHANGELOG.md"),
        "# Contract changelog\n\n- **breaking**: getUser no longer documents 404.\n",
    )
    .expect("write");
    spec_diff::gate::spec_gate(&dir).expect("marked breaking");
    std::fs::write(dir.join("spec/CHANGELOG.md"), "# Contract changelog\n\n- **breaking (status removed)**: no 404.\n")
        .expect("write");
    spec_diff::gate::spec_gate(&dir).expect("marked breaking with its kind");
    // Only lines added since the base count: a mark committed with the base does not.
    git(&dir, &["commit", "-qam", "three"]);
    git(&dir, &["commit", "-qm", "four", "--allow-empty"]);
    spec_diff::gate::spec_gate(&dir).expect("no change since HEAD~1");
    std::fs::write(dir.join("spec/openapi.yaml"), ORDERED.replace("      operationId: getUser\n", "")).expect("write");
    spec_diff::gate::spec_gate(&dir).expect("a removed operationId is not an ERR");
    std::fs::write(dir.join("spec/openapi.yaml"), ORDERED.replace("maxLength: 10", "maxLength: 10, nullable: true"))
        .expect("write");
    assert!(spec_diff::gate::spec_gate(&dir).is_err(), "the old mark does not cover a new breaking change");
    // A fresh clone has origin/main: the merge base is HEAD itself, and the
    // clone's own breaking edit is measured from there.
    let clone = dir.with_extension("clone");
    let _ = std::fs::remove_dir_all(&clone);
    git(&dir, &["checkout", "-q", "--", "spec/openapi.yaml"]);
    git(&dir, &["clone", "-q", &dir.to_string_lossy(), &clone.to_string_lossy()]);
    let (base, how) = spec_diff::gate::base_rev(&clone).expect("a base");
    assert!(how.contains("merge-base"), "{how}");
    assert_eq!(base.len(), 40, "{base}");
    spec_diff::gate::spec_gate(&clone).expect("HEAD is origin/main");
    std::fs::write(
        clone.join("spec/openapi.yaml"),
        ORDERED.replace("      operationId: getUser\n", "").replace("/users/{id}", "/people/{id}"),
    )
    .expect("write");
    assert!(spec_diff::gate::spec_gate(&clone).is_err(), "path removed");
    let _ = std::fs::remove_dir_all(&clone);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn breaking_marks() {
    assert!(spec_diff::gate::marks_breaking("+- **breaking**: x"));
    assert!(spec_diff::gate::marks_breaking("+- **breaking (request constraint narrowed)**: x"));
    assert!(!spec_diff::gate::marks_breaking("+- breaking: x"));
    assert!(!spec_diff::gate::marks_breaking("+- Changes are compatible"));
}

#[test]
fn the_gate_passes_on_this_repository() {
    spec_diff::gate::spec_gate(&root()).expect("the repository's own spec history passes the gate");
}

const UNION: &str = r#"
openapi: 3.0.3
info: {title: t, version: '1'}
paths:
  /pets:
    post:
      requestBody:
        $ref: '#/components/requestBodies/Pet'
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema:
                oneOf:
                  - {$ref: '#/components/schemas/Cat'}
                  - {$ref: '#/components/schemas/Dog'}
components:
  requestBodies:
    Pet:
      required: true
      content:
        application/json:
          schema: {$ref: '#/components/schemas/Cat'}
  schemas:
    Cat:
      properties:
        name: {type: string}
        friends: {type: array, items: {oneOf: [{$ref: '#/components/schemas/Cat'}, {$ref: '#/components/schemas/Dog'}]}}
    Dog:
      type: object
      properties:
        bark: {type: boolean}
        friends: {type: array, items: {oneOf: [{$ref: '#/components/schemas/Cat'}, {$ref: '#/components/schemas/Dog'}]}}
"#;

#[test]
fn union_members_match_by_ref_then_by_schema() {
    // Members reordered, one renamed, and `type: object` written beside
    // properties that already implied it.
    let head = UNION
        .replace("schemas/Cat", "schemas/Kitten")
        .replace("    Cat:\n      properties:", "    Kitten:\n      type: object\n      properties:")
        .replace(
            "                  - {$ref: '#/components/schemas/Kitten'}\n                  - {$ref: '#/components/schemas/Dog'}",
            "                  - {$ref: '#/components/schemas/Dog'}\n                  - {$ref: '#/components/schemas/Kitten'}",
        );
    assert_ne!(head, UNION);
    let f = diff_text(UNION, &head);
    assert!(f.is_empty(), "{f:#?}");
    // A change inside the shared request body points into components/requestBodies.
    let head = UNION.replace("name: {type: string}", "name: {type: string, minLength: 1}");
    let l = lines(&diff_text(UNION, &head));
    assert!(l.contains(&"ERR request-min-length-increased #/components/schemas/Cat/properties/name #/components/schemas/Cat/properties/name/minLength".to_string()), "{l:#?}");
    let head = UNION.replace("      required: true\n", "");
    assert!(diff_text(UNION, &head).is_empty(), "a body that became optional is compatible");
}

#[test]
fn wide_recursive_unions_compare_quickly() {
    // Ten members that each refer to all ten: expanding them naively is 10^depth.
    let mut schemas = String::new();
    let members: Vec<String> = (0..10).map(|i| format!("{{$ref: '#/components/schemas/S{i}'}}")).collect();
    for i in 0..10 {
        schemas.push_str(&format!(
            "    S{i}:\n      type: object\n      properties:\n        v{i}: {{type: string}}\n        next: {{oneOf: [{}]}}\n",
            members.join(", ")
        ));
    }
    let base = format!(
        "openapi: 3.0.3\ninfo: {{title: t, version: '1'}}\npaths:\n  /x:\n    get:\n      responses:\n        '200':\n          description: ok\n          content:\n            application/json:\n              schema: {{oneOf: [{}]}}\ncomponents:\n  schemas:\n{schemas}",
        members.join(", ")
    );
    let head = base.replace("schemas/S", "schemas/T").replace("    S", "    T");
    let start = std::time::Instant::now();
    let f = diff_text(&base, &head);
    assert!(f.is_empty(), "{f:#?}");
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "took {:?}", start.elapsed());
}

#[test]
fn every_rule_id_the_checker_names_is_in_the_table() {
    // `rules::rule` panics on an unknown id; a typo would only show on the
    // input that reaches it, so the sources are searched for rule-like literals.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/spec_diff");
    let prefixes = ["path-", "operation-", "request-", "response-", "security-", "default-", "deprecated-", "schema-"];
    let (mut unknown, mut found) = (Vec::new(), 0);
    for file in ["mod.rs", "schema.rs"] {
        let src = std::fs::read_to_string(dir.join(file)).expect("source");
        for lit in src.split('"').skip(1).step_by(2) {
            let rule_like =
                prefixes.iter().any(|p| lit.starts_with(p)) && lit.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            found += usize::from(rule_like);
            if rule_like && !rules::RULES.iter().any(|r| r.id == lit) {
                unknown.push(format!("{file}: {lit}"));
            }
        }
    }
    assert!(unknown.is_empty(), "{unknown:#?}");
    assert!(found >= rules::RULES.len(), "the search found only {found} ids");
}

#[test]
fn a_schema_that_becomes_a_union_gains_members() {
    let union = "              schema:\n                oneOf:\n                  - {$ref: '#/components/schemas/Cat'}\n                  - {$ref: '#/components/schemas/Dog'}\n";
    assert!(UNION.contains(union));
    let plain = UNION.replace(union, "              schema: {$ref: '#/components/schemas/Dog'}\n");
    let at = "#/paths/~1pets/post/responses/200/content/application~1json/schema";
    assert_eq!(
        lines(&diff_text(&plain, UNION)),
        [format!("WARN response-union-member-added {at} {at}/oneOf/0")],
        "Dog matched by its ref, Cat added"
    );
    assert_eq!(lines(&diff_text(UNION, &plain)), [format!("INFO response-union-member-removed {at}/oneOf/0 {at}")]);
    // In a request the same change is the other way round.
    let body = "          schema: {$ref: '#/components/schemas/Cat'}\n";
    let req_union =
        UNION.replace(body, "          schema: {anyOf: [{$ref: '#/components/schemas/Cat'}, {type: string}]}\n");
    let at = "#/components/requestBodies/Pet/content/application~1json/schema";
    assert_eq!(lines(&diff_text(&req_union, UNION)), [format!("ERR request-union-member-removed {at}/anyOf/1 {at}")]);
    assert_eq!(lines(&diff_text(UNION, &req_union)), [format!("INFO request-union-member-added {at} {at}/anyOf/1")]);
}

#[test]
fn github_annotations_carry_the_line_of_the_change() {
    let yaml = "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters:\n      - name: q\n        in: query\n        schema:\n          type: string\n          maxLength: 5\n      responses:\n        '404':\n          description: x\n";
    assert_eq!(report::locate(yaml, "#/paths/~1a/get/parameters/query:q/schema/maxLength"), Some(10));
    assert_eq!(report::locate(yaml, "#/paths/~1a/get/responses/404"), Some(12));
    assert_eq!(report::locate(yaml, "#/paths/~1a/get/parameters/query:q/schema/enum/1"), Some(8), "up to what exists");
    assert_eq!(report::locate(yaml, "#/paths/~1b"), Some(2));
    let json = serde_json::to_string_pretty(&parse(yaml)).expect("json");
    let line = report::locate(&json, "#/paths/~1a/get/responses/404").expect("found");
    assert_eq!(json.lines().nth(line - 1).map(str::trim), Some("\"404\": {"));
    let f = vec![Finding {
        level: Level::Err,
        rule: "request-max-length-decreased",
        base: "#/x".into(),
        head: "#/paths/~1a/get/parameters/query:q/schema/maxLength".into(),
        message: "m".into(),
    }];
    let meta = report::Meta { head_text: Some(yaml), ..meta(Level::Err) };
    let gh = report::render(report::Format::Github, &f, &meta);
    assert!(gh.starts_with("::error file=spec/openapi.yaml,line=10,title="), "{gh}");
}

#[test]
fn openapi_31_spellings_and_json_input() {
    let yaml = r#"
openapi: 3.1.0
info: {title: t, version: '1'}
paths:
  /x:
    post:
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                n: {type: [integer, 'null'], exclusiveMinimum: 0}
      responses:
        200: {description: ok}
"#;
    let json = serde_json::to_string_pretty(&parse(yaml)).expect("json");
    assert!(json.contains("\"200\""), "a numeric YAML key becomes a string");
    assert!(spec_diff::diff(&parse(yaml), &parse(&json)).is_empty());
    let head = yaml.replace("{type: [integer, 'null'], exclusiveMinimum: 0}", "{type: integer, exclusiveMinimum: 1}");
    let at = "#/paths/~1x/post/requestBody/content/application~1json/schema/properties/n";
    assert_eq!(
        lines(&diff_text(&json, &head)),
        [
            format!("ERR request-minimum-increased {at}/exclusiveMinimum {at}/exclusiveMinimum"),
            format!("ERR request-nullable-removed {at}/type {at}/type"),
        ]
    );
    let head = yaml.replace("{type: [integer, 'null'], exclusiveMinimum: 0}", "{type: [number, 'null'], minimum: 0}");
    assert_eq!(
        lines(&diff_text(yaml, &head)),
        [
            format!("INFO request-minimum-decreased {at}/exclusiveMinimum {at}/minimum"),
            format!("INFO request-type-widened {at}/type {at}/type"),
        ]
    );
}

#[test]
fn edits_of_the_repository_spec_are_found_through_its_envelopes() {
    // The spec's responses are `allOf: [SuccessResponse, {properties: {data: $ref X}}]`,
    // where SuccessResponse declares `data: {type: object}` too: both apply.
    let text = std::fs::read_to_string(root().join("spec/openapi.yaml")).expect("spec");
    let at = text.find("    UserResponse:\n").expect("UserResponse");
    let (before, after) = text.split_at(at);
    let edited = format!("{before}{}", after.replacen("        - updated_at\n", "", 1));
    assert_ne!(edited, text);
    let l = lines(&diff_text(&text, &edited));
    let want = "ERR response-property-became-optional #/components/schemas/UserResponse/properties/updated_at #/components/schemas/UserResponse/properties/updated_at";
    assert_eq!(l, [want]);
    let f = diff_text(&text, &edited);
    assert!(f[0].message.contains("updated_at became optional"), "{}", f[0].message);
}

#[test]
fn an_operation_id_removed_or_added_renames_generated_methods() {
    let without = ORDERED.replace("      operationId: getUser\n", "");
    let at = "#/paths/~1users~1{id}/get";
    assert_eq!(lines(&diff_text(ORDERED, &without)), [format!("WARN operation-id-changed {at}/operationId {at}")]);
    assert_eq!(lines(&diff_text(&without, ORDERED)), [format!("WARN operation-id-changed {at} {at}/operationId")]);
}

#[test]
fn every_spec_in_the_repository_against_itself_has_no_findings() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let specs = [
        "openapi31/openapi.yaml",
        "rich/openapi.yaml",
        "security/openapi.yaml",
        "public/buildomat.json",
        "public/keeper.json",
        "public/museum.yaml",
        "public/param-collision.json",
        "public/propolis-server.json",
    ];
    for s in specs {
        let doc = spec_diff::load(&fx.join(s).to_string_lossy()).unwrap_or_else(|e| panic!("{s}: {e:#}"));
        let f = spec_diff::diff(&doc.value, &doc.value);
        assert!(f.is_empty(), "{s}: {f:#?}");
    }
}
