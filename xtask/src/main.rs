//! `cargo xtask <command>`: see `cargo xtask --help`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Project automation for the spec-first API server")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Regenerate `generated/` (and the generator's fixture crates) from the specs;
    /// with `--spec PATH --out DIR`, generate crates for any spec that build on their own.
    Codegen {
        /// Do not write: exit non-zero with a diff when a generated file is stale.
        #[arg(long)]
        check: bool,
        /// The spec to generate from (requires `--out`).
        #[arg(long, requires = "out")]
        spec: Option<PathBuf>,
        /// Where to generate: the server crate in `DIR/server`, the client in `DIR/client`.
        #[arg(long, value_name = "DIR", requires = "spec")]
        out: Option<PathBuf>,
        /// The server crate's name (the client's gets `-client`); default: DIR's name.
        #[arg(long, value_name = "CRATE", requires = "out")]
        name: Option<String>,
        /// Generate the server crate (with neither flag: both).
        #[arg(long, requires = "out")]
        server: bool,
        /// Generate the client crate (with neither flag: both).
        #[arg(long, requires = "out")]
        client: bool,
        /// Refuse a spec that leaves a status the framework must send
        /// undocumented (otherwise a warning, answered as problem+json).
        #[arg(long, requires = "out")]
        strict: bool,
        /// Generate this operation (by operationId; repeatable) as a raw
        /// handler: the application gets the request and builds the
        /// response, for a construct the generator cannot type (a
        /// WebSocket upgrade). Same as `x-raw-handler: true` on it.
        #[arg(long = "raw", value_name = "OPERATION_ID", requires = "out")]
        raw: Vec<String>,
        /// Also generate the mock server crate in `DIR/mock` (and the server
        /// crate it implements): see `cargo xtask mock`.
        #[arg(long, requires = "out")]
        mock: bool,
    },
    /// A mock server from the spec alone, no database: the generated glue
    /// validates requests as the real server does, answers are schema-valid
    /// and deterministic for a seed, and CRUD resources recognised by path
    /// pattern are stateful (POST, GET, PUT/PATCH, DELETE, lists). Generated
    /// and built under target/mock, then run in the foreground.
    Mock(xtask::mock::Args),
    /// Everything CI runs, in order: fmt --check, clippy -D warnings,
    /// codegen --check, the spec-diff gate (breaking spec changes need a
    /// `**breaking**` CHANGELOG line), and the whole test suite (starting private
    /// PostgreSQL/Redis instances when no URLs are configured).
    Ci,
    /// Run the service for development: private PostgreSQL/Redis when
    /// DATABASE_URL/REDIS_URL are unset, migrations, a fresh token printed
    /// once, the server and an in-process worker. Extra args go to `spec-server dev`.
    Dev {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a benchmark in release mode and print one JSON object per
    /// measurement (`name`, `value`, `unit`, `baseline`, `ratio`).
    Bench {
        /// Which: `http` (getUserById and submitEmailTask vs pgbench and raw EVALSHA, with
        /// instructions per request and server RSS), `queue` (vs raw Redis), `abuse` (attack
        /// costs vs quiet baselines), `list_users` (1M users: cursor vs offset pages, vs pgbench)
        /// or `scale` (1, 2 and 3 worker processes; getUserById on the primary vs a replica).
        which: String,
        /// Passed to the benchmark; `http` takes `--baseline-bin PATH` (an older `spec-server`
        /// measured beside this one on the same databases), `--soak` (the 60 s RSS run) and
        /// `--no-callgrind`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The task queue's failure drill: `spec-server worker` processes SIGKILLed, Redis writes
    /// paused past the response timeout and Redis restarted while email tasks are submitted;
    /// prints accepted / completed / lost / duplicate deliveries / dead-without-running.
    Chaos {
        /// Seconds of submission under chaos (default 40; settling takes up to 90 more).
        #[arg(long)]
        secs: Option<u64>,
    },
    /// Check a running deployment against spec/openapi.yaml (see
    /// `cargo xtask contract --help`): every operation driven to every
    /// documented status it can reach, every response checked, negative
    /// cases generated from the spec; exit 0 only when everything conforms.
    #[command(disable_help_flag = true)]
    Contract {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Breaking-change check between two OpenAPI documents (files or git
    /// `REV:PATH`): every change rated ERR, WARN or INFO by a rule (`--rules`
    /// lists them); exit 1 when one is at or above `--fail-on`, 2 when a
    /// document cannot be read.
    SpecDiff(xtask::spec_diff::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Codegen { check, spec, out, name, server, client, strict, raw, mock } => match (spec, out) {
            (Some(spec), Some(out)) => {
                let opts = xtask::codegen::OutOptions { spec, out, name, server, client, check, strict, raw, mock };
                xtask::codegen::codegen_out(&opts).map(|_| ())
            }
            _ => xtask::codegen::codegen(check).map(|_| ()),
        },
        Cmd::Mock(args) => xtask::mock::run(&args),
        Cmd::Ci => xtask::ci::run(),
        Cmd::Dev { args } => xtask::ci::dev(&args),
        Cmd::Bench { which, args } => xtask::ci::bench(&which, &args),
        Cmd::Contract { args } => xtask::ci::contract(&args),
        Cmd::Chaos { secs } => xtask::chaos::run(secs),
        // Its own exit statuses: 1 for findings, 2 for unreadable input.
        Cmd::SpecDiff(args) => return std::process::ExitCode::from(xtask::spec_diff::cli(&args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
