//! `cargo xtask <command>`: see `cargo xtask --help`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Project automation for the spec-first API server")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Regenerate `generated/` (and the generator's fixture crates) from the specs.
    Codegen {
        /// Do not write: exit non-zero with a diff when a generated file is stale.
        #[arg(long)]
        check: bool,
    },
    /// Everything CI runs, in order: fmt --check, clippy -D warnings,
    /// codegen --check, and the whole test suite (starting private
    /// PostgreSQL/Redis instances when no URLs are configured).
    Ci,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Codegen { check } => xtask::codegen::codegen(check).map(|_| ()),
        Cmd::Ci => xtask::ci::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
