//! `cargo xtask mock [--spec PATH] [--port N] [--seed S] [--token T]`: the
//! server and mock crates of a spec generated into a cache directory keyed
//! by the spec's contents, built quietly into one shared target directory,
//! and run (see `rt::mock` for what the mock answers).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::codegen::{OutOptions, codegen_out, workspace_root};

/// The `mock` command's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The spec to mock (default: spec/openapi.yaml).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// The port to listen on (0: any free port; the URL is printed).
    #[arg(long, default_value_t = 4010)]
    pub port: u16,
    /// The seed every synthesized value is drawn from: the same seed and
    /// the same requests give the same bodies.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The credential every security scheme accepts (bearer token, API
    /// key, or basic password); by default one derived from the seed,
    /// printed at start.
    #[arg(long)]
    pub token: Option<String>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Generate this operation (by operationId; repeatable) as a raw
    /// handler, as `codegen --raw` does (a WebSocket upgrade): the mock
    /// answers it with its first documented success, unchecked.
    #[arg(long = "raw", value_name = "OPERATION_ID")]
    pub raw: Vec<String>,
}

/// Where mocks are generated and built: `$CARGO_TARGET_DIR/mock`, else
/// `target/mock` of this workspace.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("mock"),
        None => workspace_root().join("target/mock"),
    }
}

/// A generated mock: its crate directory and, once built, its binary.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The directory holding `server/`, `mock/` and their workspace.
    pub dir: PathBuf,
    pub crate_name: String,
    pub binary: PathBuf,
}

/// FNV-1a: the cache key only has to tell specs apart, not resist anyone.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Generates the crates of `spec` under [`cache_dir`] (only files whose
/// content changed are written, so cargo rebuilds only what changed).
pub fn generate(spec: &Path, raw: &[String]) -> Result<Generated> {
    let mut text = std::fs::read(spec).with_context(|| format!("reading {}", spec.display()))?;
    // The raw operations change the generated code, so they are keyed too.
    for r in raw {
        text.push(0);
        text.extend_from_slice(r.as_bytes());
    }
    let stem: String = spec
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("spec")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let stem = stem.trim_matches('-');
    let stem = if stem.starts_with(|c: char| c.is_ascii_alphabetic()) { stem.to_owned() } else { format!("s{stem}") };
    let name = format!("{stem}-{:08x}", fnv(&text) >> 32);
    let cache = cache_dir();
    let dir = cache.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let opts = OutOptions {
        spec: std::path::absolute(spec)?,
        out: dir.clone(),
        name: Some(name.clone()),
        server: false,
        client: false,
        check: false,
        strict: false,
        raw: raw.to_vec(),
        mock: true,
    };
    codegen_out(&opts).with_context(|| format!("generating the mock of {}", spec.display()))?;
    // A workspace of its own, so cargo never takes it for a stray member
    // of an enclosing one, and the service's lock file, so it builds with
    // the versions the service is tested with.
    let manifest = dir.join("Cargo.toml");
    let root = "# Written by `cargo xtask mock`.\n[workspace]\nmembers = [\"server\", \"mock\"]\nresolver = \"3\"\n";
    if std::fs::read_to_string(&manifest).ok().as_deref() != Some(root) {
        std::fs::write(&manifest, root)?;
    }
    let lock = dir.join("Cargo.lock");
    if !lock.exists() {
        std::fs::copy(workspace_root().join("Cargo.lock"), &lock).context("copying Cargo.lock")?;
    }
    let crate_name = format!("{name}-mock");
    let binary = cache.join("target/debug").join(&crate_name);
    Ok(Generated { dir, crate_name, binary })
}

/// Builds every generated mock with one cargo invocation each into the one
/// shared target directory (their dependencies are compiled once).
pub fn build(mocks: &[Generated]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for m in mocks {
        let start = Instant::now();
        let status = Command::new(&cargo)
            .args(["build", "--quiet", "--manifest-path"])
            .arg(m.dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(cache_dir().join("target"))
            .args(["-p", &m.crate_name])
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("building the mock in {} failed ({status})", m.dir.display());
        }
        eprintln!("mock: {} built in {:.1} s", m.crate_name, start.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `cargo xtask mock`: generate, build, and run in the foreground.
pub fn run(args: &Args) -> Result<()> {
    let spec = args.spec.clone().unwrap_or_else(|| workspace_root().join("spec/openapi.yaml"));
    let m = generate(&spec, &args.raw)?;
    build(std::slice::from_ref(&m))?;
    let mut cmd = Command::new(&m.binary);
    cmd.args(["--port", &args.port.to_string(), "--seed", &args.seed.to_string(), "--host", &args.host]);
    if let Some(t) = &args.token {
        cmd.args(["--token", t]);
    }
    let status = cmd.status().with_context(|| format!("running {}", m.binary.display()))?;
    if !status.success() {
        bail!("the mock exited with {status}");
    }
    Ok(())
}
