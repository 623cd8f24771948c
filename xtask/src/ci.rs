//! `cargo xtask ci`: the one command CI (and a contributor) runs. Each step
//! streams its output; the first failure stops the run with its name. Also
//! the thin `dev` and `bench` launchers, so every entry point is `cargo xtask`.

use std::process::Command;

use anyhow::{Context, Result, bail};

fn cargo(args: &[&str]) -> Result<()> {
    cargo_env(args, &[])
}

fn cargo_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("\n==> cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(crate::codegen::workspace_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn run() -> Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    println!("\n==> cargo xtask codegen --check");
    crate::codegen::codegen(true)?;
    spec_gate()?;
    // The contract suite writes its keyword-coverage table here; cargo
    // hides a passing test's output, so it is shown after the tests, pass or fail.
    let coverage = std::env::temp_dir().join(format!("contract-coverage-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&coverage);
    let tested = cargo_env(&["test", "--workspace", "--locked"], &[("CONTRACT_COVERAGE", &coverage)]);
    if let Ok(table) = std::fs::read_to_string(&coverage) {
        println!("\n==> contract keyword coverage (tests/it/contract.rs)\n{table}");
        let _ = std::fs::remove_file(&coverage);
    }
    tested
}

/// Breaking changes to the spec since the base revision need a `**breaking**`
/// CHANGELOG entry (see `spec_diff::gate`); skipped, saying why, without git.
fn spec_gate() -> Result<()> {
    crate::spec_diff::gate::spec_gate(&crate::codegen::workspace_root())
}

/// `cargo xtask dev [ARGS]`: `spec-server dev` through cargo.
pub fn dev(args: &[String]) -> Result<()> {
    let mut all = vec!["run", "--quiet", "-p", "spec-server", "--", "dev"];
    all.extend(args.iter().map(String::as_str));
    cargo(&all)
}

/// `cargo xtask bench NAME [ARGS]`: the `benches/NAME.rs` target, optimized, with ARGS.
pub fn bench(which: &str, args: &[String]) -> Result<()> {
    match which {
        "http" | "queue" | "abuse" | "list_users" | "scale" => {
            let mut all = vec!["bench", "-p", "spec-server", "--bench", which, "--"];
            all.extend(args.iter().map(String::as_str));
            cargo(&all)
        }
        other => bail!("unknown benchmark {other:?}: expected `http`, `queue`, `abuse`, `list_users` or `scale`"),
    }
}

/// `cargo xtask contract ARGS`: the `spec-contract` binary, which lives in
/// its own crate so that this one never depends on generated code.
pub fn contract(args: &[String]) -> Result<()> {
    let mut all = vec!["run", "--quiet", "-p", "spec-contract", "--"];
    all.extend(args.iter().map(String::as_str));
    cargo(&all)
}
