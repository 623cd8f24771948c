//! The CI gate: the spec may only break clients when `spec/CHANGELOG.md`
//! says so. Compares the base revision's `spec/openapi.yaml` with the
//! working tree's; with ERR findings, the lines the changelog gained since
//! the base must contain `**breaking**`.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use super::{Level, report};

const SPEC: &str = "spec/openapi.yaml";
const CHANGELOG: &str = "spec/CHANGELOG.md";
const MARK: &str = "**breaking**";

/// Whether changelog lines mark a breaking change: `**breaking**`, or the
/// changelog's existing spelling with the kind in parentheses,
/// `**breaking (request constraint narrowed)**`.
pub fn marks_breaking(lines: &str) -> bool {
    lines.contains(MARK) || lines.contains("**breaking (")
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(root).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The revision to compare against, and how it was chosen; `Err` says why there is none.
pub fn base_rev(root: &Path) -> std::result::Result<(String, String), String> {
    if git(root, &["rev-parse", "--git-dir"]).is_none() {
        return Err("not a git checkout (or git is not installed)".into());
    }
    if let Ok(rev) = std::env::var("SPEC_DIFF_BASE")
        && !rev.is_empty()
    {
        return match git(root, &["rev-parse", "--verify", &format!("{rev}^{{commit}}")]) {
            Some(_) => Ok((rev, "SPEC_DIFF_BASE".into())),
            None => Err(format!("SPEC_DIFF_BASE={rev} is not a revision here")),
        };
    }
    if let Some(mb) = git(root, &["merge-base", "HEAD", "origin/main"]) {
        return Ok((mb, "merge-base HEAD origin/main".into()));
    }
    if git(root, &["rev-parse", "--verify", "HEAD~1^{commit}"]).is_some() {
        return Ok(("HEAD~1".into(), "HEAD~1 (no origin/main)".into()));
    }
    Err("no SPEC_DIFF_BASE, no origin/main and no parent commit to compare with".into())
}

/// The `+` lines `spec/CHANGELOG.md` gained since `base` (working tree included).
fn changelog_added(root: &Path, base: &str) -> String {
    git(root, &["diff", base, "--", CHANGELOG])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn spec_gate(root: &Path) -> Result<()> {
    println!("\n==> spec-diff gate (breaking changes to {SPEC} need a {MARK} CHANGELOG entry)");
    let (base, how) = match base_rev(root) {
        Ok(b) => b,
        Err(why) => {
            println!("spec-diff gate skipped: {why}");
            return Ok(());
        }
    };
    let base_spec = format!("{base}:{SPEC}");
    if git(root, &["cat-file", "-e", &base_spec]).is_none() {
        println!("spec-diff gate skipped: {SPEC} does not exist at {base} ({how})");
        return Ok(());
    }
    let text = git(root, &["show", &base_spec]).unwrap_or_default();
    let base_doc = super::parse(&text).map_err(|e| e.context(format!("parsing {base_spec}")))?;
    let head_path = root.join(SPEC);
    let head_doc = super::load(&head_path.to_string_lossy())?;
    let findings = super::diff(&base_doc, &head_doc.value);
    let meta = report::Meta { base: &base_spec, head: SPEC, head_file: SPEC, head_text: None, fail_on: Level::Err };
    print!("{}", report::render(report::Format::Text, &findings, &meta));
    println!("(base {base}: {how})");
    let errs: Vec<_> = findings.iter().filter(|f| f.level == Level::Err).collect();
    if errs.is_empty() {
        return Ok(());
    }
    if marks_breaking(&changelog_added(root, &base)) {
        println!("{} breaking change(s), marked {MARK} in {CHANGELOG}: accepted", errs.len());
        return Ok(());
    }
    let list: Vec<_> = errs.iter().map(|f| format!("  {} {}: {}", f.level, f.rule, f.message)).collect();
    bail!(
        "{SPEC} has {} breaking change(s) since {base} ({how}):\n{}\n\
         Either make the change backward compatible, or describe it in {CHANGELOG} with a line \
         containing {MARK} (see README, \"Breaking-change check\").",
        errs.len(),
        list.join("\n")
    )
}
