//! `spec-contract` (run it as `cargo xtask contract`): the contract scenario
//! and the spec-generated negative cases against any running deployment.

use clap::Parser;

/// Check a running deployment against spec/openapi.yaml: every operation
/// driven to every documented status it can reach from outside, every
/// response checked, plus negative cases generated from the spec. Creates
/// and deletes only its own users; the API cannot delete tasks, so the email
/// task (to an @example.com address) and the sync task (one day in 2099) it
/// submits stay. On any other spec (--spec, without this project's
/// operations) the generic scenario runs instead: see --scenario. Exit code
/// 0 only when everything conforms to the spec (and, with
/// --strict-conventions, to the conventions it declares).
#[derive(Parser)]
#[command(name = "cargo xtask contract")]
struct Cli {
    /// The API's base URL, e.g. http://127.0.0.1:8080/api/v1.
    #[arg(long)]
    base_url: String,
    /// A valid token (`spec-server token issue --name contract`). The
    /// generic scenario sends it as each operation's security requirement
    /// says: an API key's header, query parameter or cookie, HTTP bearer,
    /// OAuth2/OpenID Connect as bearer, HTTP basic as `user:password` (a
    /// token without a colon: the password of user `contract`).
    #[arg(long, env = "CONTRACT_TOKEN")]
    token: Option<String>,
    /// An expired token of the deployment, for the expired-token 401s.
    #[arg(long, env = "CONTRACT_EXPIRED_TOKEN")]
    expired_token: Option<String>,
    /// The contract to check against (default: spec/openapi.yaml).
    #[arg(long)]
    spec: Option<std::path::PathBuf>,
    /// `project`: this repository's scenario (users and tasks); `generic`:
    /// the scenario any spec gets (CRUD by path pattern, one synthesized
    /// request per operation, negative and missing-credential cases);
    /// `auto`: `project` only for a spec with every operationId it drives.
    #[arg(long, default_value = "auto", value_parser = spec_contract::Scenario::parse)]
    scenario: spec_contract::Scenario,
    /// Also write JUnit XML here (one testcase per check and per documented
    /// status, a `contract-conventions` testsuite of the convention findings
    /// and a `keyword-coverage` testsuite).
    #[arg(long)]
    junit: Option<std::path::PathBuf>,
    /// Fail when keyword coverage is below PCT percent: `PCT` for every
    /// category, or `CATEGORY=PCT` for one (statuses, headers, constraints,
    /// enums, responses). Repeatable.
    #[arg(long, value_name = "PCT", value_parser = threshold)]
    min_coverage: Vec<String>,
    /// List every keyword-coverage item not exercised, by JSON pointer.
    #[arg(long)]
    coverage_details: bool,
    /// Convention findings (registry codes, the naming of failing fields)
    /// fail the run too; without it they are reported apart and only spec
    /// failures fail it.
    #[arg(long)]
    strict_conventions: bool,
    /// How validation errors name failing fields (`json-name`: `cc[0]`;
    /// `json-pointer`: `/cc/0`), for a spec without `x-error-field-format`.
    /// With neither, field naming is not checked.
    #[arg(long, value_name = "FORMAT", value_parser = spec_contract::FieldFormat::parse)]
    error_field_format: Option<spec_contract::FieldFormat>,
}

/// One `--min-coverage` value, checked when the arguments are parsed.
fn threshold(s: &str) -> Result<String, String> {
    spec_contract::Thresholds::default().add(s).map(|()| s.to_owned())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let opts = spec_contract::Options {
        base_url: cli.base_url,
        token: cli.token,
        expired_token: cli.expired_token,
        field_format: cli.error_field_format,
    };
    let mut min = spec_contract::Thresholds::default();
    for t in &cli.min_coverage {
        if let Err(e) = min.add(t) {
            eprintln!("error: --min-coverage {t}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    match spec_contract::command(
        &opts,
        cli.scenario,
        cli.spec,
        cli.junit,
        &min,
        cli.coverage_details,
        cli.strict_conventions,
    ) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
