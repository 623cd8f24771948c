//! `cargo xtask codegen --spec PATH --out DIR`: any spec, generated into
//! crates that build on their own, outside this workspace.
//!
//! Layout: the server crate in `DIR/server`, the client in `DIR/client`
//! (whichever are asked for), the same whether one or both are generated,
//! so a path in an application's `Cargo.toml` never depends on the flags.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Deps, Kind, Outcome, Target, run_all, workspace_root};

/// The options of the `--out` form.
#[derive(Debug, Clone)]
pub struct OutOptions {
    /// The spec, as given (relative to the current directory or absolute);
    /// the do-not-edit headers name it so.
    pub spec: PathBuf,
    pub out: PathBuf,
    /// The server crate's name (the client's is `{name}-client`); by
    /// default the name of `out`.
    pub name: Option<String>,
    pub server: bool,
    pub client: bool,
    pub check: bool,
    /// Undocumented framework statuses are errors, not warnings.
    pub strict: bool,
    /// `--raw`: operation ids generated as raw handlers.
    pub raw: Vec<String>,
    /// `--mock`: also the mock server crate in `DIR/mock` (implies the
    /// server crate, which it implements).
    pub mock: bool,
}

/// The targets of one `--out` run, in the order they are generated.
pub fn out_targets(opts: &OutOptions) -> Result<Vec<Target>> {
    let out = std::path::absolute(&opts.out).with_context(|| format!("resolving {}", opts.out.display()))?;
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => out
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.to_ascii_lowercase().replace([' ', '_', '.'], "-"))
            .filter(|n| !n.is_empty())
            .context("--out has no directory name to name the crate after; pass --name")?,
    };
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        bail!("--name {name:?}: a crate name is ASCII letters, digits, `-` and `_`, starting with a letter");
    }
    // Neither flag means both: the common case is "everything for this spec".
    let (server, client) = if opts.server || opts.client {
        (opts.server || opts.mock, opts.client)
    } else if opts.mock {
        (true, false)
    } else {
        (true, true)
    };
    let mut targets = Vec::new();
    let mut push = |kind, dir: &str, crate_name: String| -> Result<()> {
        let dir = out.join(dir);
        let runtime = relative(&dir, &workspace_root().join("xtask/runtime"))?;
        targets.push(Target {
            kind,
            spec: opts.spec.clone(),
            out: dir,
            crate_name,
            deps: Deps::Standalone { runtime },
            strict: opts.strict,
            raw: opts.raw.clone(),
        });
        Ok(())
    };
    if server {
        push(Kind::Server, "server", name.clone())?;
    }
    if client {
        push(Kind::Client, "client", format!("{name}-client"))?;
    }
    if opts.mock {
        push(Kind::Mock, "mock", format!("{name}-mock"))?;
    }
    Ok(targets)
}

/// Generates (or with `check`, compares) the crates of one `--out` run.
pub fn codegen_out(opts: &OutOptions) -> Result<Outcome> {
    let targets = out_targets(opts)?;
    // Targets carry absolute output paths and the spec as given, so they
    // are resolved against the current directory, not the workspace.
    run_all(Path::new(""), &targets, opts.check)
}

/// `to` as a path relative to the directory `from` (both absolute), so the
/// generated crate and the runtime can move together (a checkout elsewhere).
fn relative(from: &Path, to: &Path) -> Result<String> {
    let norm = |p: &Path| -> Result<Vec<String>> {
        let abs = std::path::absolute(p)?;
        let mut parts: Vec<String> = Vec::new();
        for c in abs.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_str().context("a non-UTF-8 path")?.to_owned()),
                Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        Ok(parts)
    };
    let (from, to) = (norm(from)?, norm(to)?);
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel: Vec<&str> = vec![".."; from.len() - common];
    rel.extend(to[common..].iter().map(String::as_str));
    Ok(rel.join("/"))
}
