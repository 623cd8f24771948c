//! Contract verification: responses of a running deployment checked against
//! `spec/openapi.yaml` (or any spec) as read at run time, by a scenario that
//! drives every operation to every documented status (`cargo xtask contract`,
//! `tests/it/contract.rs`): this project's (`scenario.rs`), or for any other
//! spec the generic one (`generic.rs`).
//!
//! A crate of its own, apart from `xtask`: it uses the generated client, and
//! `cargo xtask codegen` must build even when a spec change has just broken
//! what was generated from the previous one.

pub mod checker;
pub mod coverage;
pub mod generic;
pub mod negative;
pub mod recorder;
pub mod report;
pub mod scenario;
pub mod validate;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use checker::{Class, Contract, FieldFormat};
pub use coverage::{Coverage, Thresholds};
pub use generic::Scenario;
pub use report::Report;
pub use scenario::{Harness, Options};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().and_then(Path::parent).map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `cargo xtask contract`: the scenario against any running deployment, with
/// no control over its dependencies (the 5xx statuses are marked unreachable).
/// `scenario` picks this project's scenario or the generic one (`Auto`: the
/// project's only for a spec with every operation it drives).
/// Below a keyword-coverage threshold of `min_coverage` the run fails.
#[allow(clippy::too_many_arguments)]
pub fn command(
    opts: &Options,
    scenario: Scenario,
    spec: Option<PathBuf>,
    junit: Option<PathBuf>,
    min_coverage: &Thresholds,
    coverage_details: bool,
    strict_conventions: bool,
) -> Result<()> {
    let contract = match spec {
        Some(path) => Contract::load(&path)?,
        None => Contract::workspace()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    let mut report = match scenario.resolve(&contract) {
        Scenario::Generic => {
            println!("scenario: generic (the spec is not this project's contract, or --scenario generic)");
            runtime.block_on(generic::run(&contract, opts))?
        }
        _ => runtime.block_on(scenario::run(&contract, opts, None))?,
    };
    report.coverage.thresholds = min_coverage.clone();
    report.strict_conventions = strict_conventions;
    print(&report, coverage_details);
    if let Some(path) = junit {
        std::fs::write(&path, report.junit()).with_context(|| format!("writing {}", path.display()))?;
        println!("JUnit XML: {}", path.display());
    }
    if !report.passed() {
        bail!("the deployment does not conform to the contract: {}", report.summary());
    }
    Ok(())
}

/// The coverage table, then every failure and gap, then the keyword
/// coverage (with `details`, every item not exercised).
pub fn print(report: &Report, details: bool) {
    println!("{}", report.table());
    for c in report.failed_checks() {
        if let report::Outcome::Fail(reasons) = &c.outcome {
            println!("FAIL {}", c.name);
            for r in reasons {
                println!("     {r}");
            }
        }
    }
    // Apart from the failures: a deployment following other conventions
    // conforms to the spec all the same.
    for c in report.convention_findings() {
        println!("CONVENTION {}", c.name);
        for r in &c.conventions {
            println!("     {r}");
        }
    }
    for gap in report.gaps() {
        println!("NOT EXERCISED {gap}");
    }
    if details {
        print!("{}", report.coverage.details());
    }
    println!("{}", report.coverage.table());
    println!("{}", report.summary());
}
