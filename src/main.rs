//! `spec-server`: the service binary. Subcommands: `serve` (default),
//! `worker`, `dev`, `migrate`, `token issue|list|revoke`. See `--help`.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use spec_server::{
    config::Config,
    db::{
        migrate,
        tokens::{self, Grant, Scope},
    },
    server::{self, Backends, Pools},
    telemetry::{self, Role},
    worker,
};

/// The request path allocates a lot of small, short-lived objects (parsing, JSON, futures);
/// mimalloc handles that pattern with less time in the allocator than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "spec-server", version, about = "Spec-first API server over PostgreSQL and Redis")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Migrate, then serve the API (the default).
    Serve,
    /// Migrate, then process queued tasks (email, sync) until SIGTERM/SIGINT.
    /// Run as many worker processes as needed.
    Worker,
    /// For development: private PostgreSQL/Redis when no URLs are set,
    /// migrations, a fresh 24 h token printed once, then serve, with a
    /// worker processing tasks in the same process.
    Dev,
    /// Apply pending migrations from sql/ and exit.
    Migrate,
    /// Manage operator tokens (stored hashed; printed only when issued).
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issue a token and print it once.
    Issue {
        /// A unique label, e.g. the client's name.
        #[arg(long)]
        name: String,
        /// Lifetime, e.g. `24h`, `30m`, `90d`; none = no expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// What the token may do; repeat for several: users:read, users:write, tasks:read,
        /// tasks:write, admin (everything). None = full access, as every token issued before
        /// scopes existed has.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<Scope>,
    },
    /// List tokens with their scopes (never their values).
    List,
    /// Revoke a token by id or label; effective at once.
    Revoke { id_or_name: String },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let role = if matches!(cli.command, Some(Cmd::Worker)) { Role::Worker } else { Role::Server };
    // Logs go to stdout through `LogWriter`, so no request waits on the write; the telemetry
    // guard exports the queued spans and flushes the queued lines when `main` ends.
    let telemetry = match telemetry::init(&cli.config, role) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shutdown().await;
    code
}

async fn run(cli: Cli) -> Result<()> {
    let cfg = cli.config;
    let command = cli.command.unwrap_or(Cmd::Serve);
    let dev = matches!(command, Cmd::Dev);
    let backends = Backends::resolve(&cfg, dev).await?;
    let pools = Pools::new(&cfg, &backends)?;
    // Every command needs the current schema. Not through the pool: see `migrate_database`.
    let applied = migrate::migrate_database(&backends.database_url, cfg.pg_acquire_timeout()).await?;
    if !applied.is_empty() && !matches!(command, Cmd::Migrate) {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    // A private Redis is volatile by design ("its data is temporary").
    if matches!(command, Cmd::Serve | Cmd::Worker | Cmd::Dev) && backends.private_redis.is_none() {
        pools.check_redis_durability(&cfg).await?;
    }
    match command {
        Cmd::Migrate => {
            println!("applied {} migration(s): {}", applied.len(), applied.join(", "));
            Ok(())
        }
        Cmd::Token(t) => token(&pools, &cfg, t).await,
        Cmd::Serve => serve(&pools, &cfg, None, false).await,
        Cmd::Worker => {
            server::start_metrics(&cfg, &pools, vec![("primary".to_owned(), pools.pg.clone())]).await?;
            worker::run(&pools, &cfg, server::shutdown_signal()).await
        }
        Cmd::Dev => {
            let name = format!("dev-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
            let (_, token) = tokens::token_issue(&pools.pg, &name, Some(Duration::from_secs(24 * 3600)), None)
                .await
                .context("issuing the dev token")?;
            serve(&pools, &cfg, Some(token), true).await
        }
    }
}

/// Serves the API; `dev_token` is printed, and `with_worker` runs a worker beside the server.
async fn serve(pools: &Pools, cfg: &Config, dev_token: Option<String>, with_worker: bool) -> Result<()> {
    let acceptor = server::bind(cfg).await?;
    let base = format!("http://{}", cfg.listen_addr);
    println!("API:     {base}{}", api_server::BASE_PATH);
    println!("Docs:    {base}/docs");
    println!("Queues:  {base}/admin   (the dashboard; paste a token with the admin scope)");
    if let Some(token) = dev_token {
        println!("Token:   {token}   (send it as the `token` header; valid 24 h)");
        println!("Try:     curl -H 'token: {token}' {base}{}/users", api_server::BASE_PATH);
    }
    let app = Arc::new(pools.app(cfg)?);
    server::start_metrics(cfg, pools, app.db.pools()).await?;
    if !with_worker {
        return server::serve(acceptor, app, cfg, server::shutdown_signal()).await;
    }
    // One signal stops both the server and the worker.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::try_join!(
        server::serve(acceptor, app, cfg, stopped(stop_rx.clone())),
        worker::run(pools, cfg, stopped(stop_rx)),
    )?;
    Ok(())
}

async fn token(pools: &Pools, cfg: &Config, cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Issue { name, ttl, scopes } => {
            let limited = (!scopes.is_empty()).then_some(scopes.as_slice());
            let (id, token) = tokens::token_issue(&pools.pg, &name, ttl, limited).await.context("issuing a token")?;
            println!("{token}");
            let grant = limited.map_or(Grant::Full, |s| Grant::Scopes(s.to_vec()));
            eprintln!("issued token #{id} {name:?} ({grant}); it is shown only now");
        }
        TokenCmd::List => {
            for t in tokens::tokens_list(&pools.pg).await.context("listing tokens")? {
                println!("{t:?}");
            }
        }
        TokenCmd::Revoke { id_or_name } => {
            if pools.tokens(cfg).revoke(&id_or_name).await? {
                println!("revoked {id_or_name}");
            } else {
                anyhow::bail!("no active token {id_or_name:?}");
            }
        }
    }
    Ok(())
}
