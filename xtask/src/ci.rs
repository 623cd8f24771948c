//! `cargo xtask ci`: the one command CI (and a contributor) runs. Each step
//! streams its output; the first failure stops the run with its name.

use std::process::Command;

use anyhow::{Context, Result, bail};

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("\n==> cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
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
    cargo(&["test", "--workspace", "--locked"])?;
    Ok(())
}
