//! What the tests that run the `spec-server` binary share: which binary, started through the
//! one launcher (`spec_server::devsvc::Launch`: log file, readiness, signals, kill on drop).
//! Test code only, in the test binary: the release binary never sees it.

use spec_server::devsvc::Launch;

/// Cargo's build of this checkout, unless `SPEC_SERVER_BIN` names another (a target directory
/// shared between checkouts holds whichever built last under the plain name).
pub fn spec_server_binary() -> String {
    std::env::var("SPEC_SERVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_spec-server").to_owned())
}

/// `spec-server ARGS…`, named so in every error about it.
pub fn spec_server(args: &[&str]) -> Launch {
    let mut name = String::from("spec-server");
    for arg in args {
        name.push(' ');
        name.push_str(arg);
    }
    Launch::new(spec_server_binary()).named(name).args(args)
}
