//! `cargo xtask chaos`: the failure drill of the task queue (`tests/it/chaos.rs`, an ignored
//! test of the `spec-server` package), run through cargo like the `bench` launcher. The drill
//! lives beside the server because it drives the real `spec-server worker` binary and the
//! queue library, and xtask never depends on the server (that would make it depend on
//! generated code). It starts its own PostgreSQL, Redis (append-only file) and SMTP sink on
//! loopback, prints accepted / completed / lost / duplicate deliveries / dead-without-running,
//! and fails if anything was lost, stranded or died without running.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// `secs`: how long tasks are submitted under chaos (the drill's default is 40).
pub fn run(secs: Option<u64>) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = ["test", "-p", "spec-server", "--test", "it", "chaos::", "--", "--ignored", "--nocapture"];
    println!("\n==> cargo {}", args.join(" "));
    let mut cmd = Command::new(&cargo);
    cmd.args(args).current_dir(crate::codegen::workspace_root());
    if let Some(s) = secs {
        cmd.env("CHAOS_SECS", s.to_string());
    }
    let status = cmd.status().context("running the chaos drill through cargo")?;
    if !status.success() {
        bail!("the chaos drill failed ({status})");
    }
    Ok(())
}
