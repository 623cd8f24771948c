//! A private PostgreSQL cluster (initdb + postgres) on a free loopback port.

use super::*;

/// A throw-away PostgreSQL cluster owned by this process.
///
/// Tuned for tests (`fsync=off`): data survives `stop`/`kill_hard` and `start_again`, since only
/// a machine crash loses unsynced pages, but it is not a place for real data.
pub struct PrivatePostgres {
    port: u16,
    bindir: PathBuf,
    /// `initdb`/`postgres` refuse to run as root, so as root we run them as `postgres`.
    run_as_postgres: bool,
    child: Option<Launched>,
    watchdog: Option<Watchdog>,
    /// Last field: removed only after the server and the watchdog are gone.
    dir: TempDir,
}

/// Finds `initdb` and `postgres`: `$PG_BINDIR`, then `pg_config --bindir`, then the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian's `pg_config` may be missing or point elsewhere).
pub fn pg_bindir() -> anyhow::Result<PathBuf> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("PG_BINDIR").map(PathBuf::from) {
        if usable(&dir) {
            return Ok(dir);
        }
        bail!("PG_BINDIR={} holds no initdb/postgres: {INSTALL_HINT}", dir.display());
    }
    if let Ok(out) = Launch::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(out);
        if usable(&dir) {
            return Ok(dir);
        }
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, dir)| usable(dir))
        .max_by_key(|(major, _)| *major);
    match newest {
        Some((_, dir)) => Ok(dir),
        None => bail!(
            "PostgreSQL server binaries (initdb, postgres) not found; their directory is taken \
             from `pg_config --bindir`: {INSTALL_HINT}"
        ),
    }
}

/// Asks the server for a trust login with a raw startup packet: `AuthenticationOk` means it has
/// finished recovery and accepts connections, which a bare TCP connect would not prove.
pub(super) fn pg_accepts_logins(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let params: &[u8] = b"user\0postgres\0database\0postgres\0\0";
    let mut packet = Vec::with_capacity(8 + params.len());
    packet.extend_from_slice(&(8 + params.len() as i32).to_be_bytes());
    packet.extend_from_slice(&196_608_i32.to_be_bytes()); // protocol 3.0
    packet.extend_from_slice(params);
    if stream.write_all(&packet).is_err() {
        return false;
    }
    let mut reply = [0u8; 9];
    if stream.read_exact(&mut reply).is_err() {
        return false;
    }
    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]); // Terminate
    reply[0] == b'R' && reply[5..9] == [0, 0, 0, 0]
}

impl PrivatePostgres {
    /// Runs `initdb` into a fresh temp dir and starts `postgres` on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let mut pg = Self::unstarted()?;
        pg.initdb()?;
        start_on_free_port("postgres", |port| {
            pg.port = port;
            pg.spawn_and_wait()
        })?;
        Ok(pg)
    }

    /// A streaming replica of `primary` (hot standby): `pg_basebackup -R -X stream` into a
    /// fresh temp dir, started on a free loopback port with the primary's settings. The
    /// primary allows it as started by [`PrivatePostgres::start`]: `wal_level=replica`,
    /// `max_wal_senders`, and initdb's `host replication all 127.0.0.1/32 trust` line.
    pub fn start_replica(primary: &PrivatePostgres) -> anyhow::Result<Self> {
        let mut pg = Self::unstarted()?;
        pg.command("pg_basebackup")
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-h", "127.0.0.1", "-U", "postgres"])
            .arg("-p")
            .arg(primary.port.to_string())
            .output()
            .with_context(|| format!("copying the primary on port {} for a replica", primary.port))?;
        start_on_free_port("postgres (replica)", |port| {
            pg.port = port;
            pg.spawn_and_wait()
        })?;
        Ok(pg)
    }

    /// The temp dir (owned by `postgres` when we are root) and its watchdog, nothing running.
    fn unstarted() -> anyhow::Result<Self> {
        let bindir = pg_bindir()?;
        let run_as_postgres = geteuid().is_root();
        let dir = tempfile::Builder::new().prefix("spec-pg-").tempdir().context("creating the PostgreSQL temp dir")?;
        if run_as_postgres {
            let user = User::from_name("postgres")
                .context("looking up the postgres user")?
                .context("running as root, but there is no `postgres` system user to run PostgreSQL as")?;
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .context("handing the temp dir to the postgres user")?;
        }
        let mut pg = Self { port: 0, bindir, run_as_postgres, child: None, watchdog: None, dir };
        // Before initdb or a base backup, so that even a death during either leaves no temp
        // dir behind.
        pg.watchdog = Some(Watchdog::spawn(&pg.pid_file(), pg.dir.path(), "QUIT")?);
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth, no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir: `data/`, the unix socket, `postgres.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The postmaster's pid, `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Launched::pid)
    }

    /// Fast shutdown (SIGINT: sessions are ended, a checkpoint is written), then reaps it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown(Signal::SIGINT)
    }

    /// SIGKILL to the postmaster and every backend: a crash, as far as PostgreSQL can tell.
    /// `start_again` then goes through crash recovery.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let postmaster = pid_of(&child);
            // Stopped first so it cannot fork new backends while we list and kill them.
            signal(postmaster, Signal::SIGSTOP);
            for backend in children_of(postmaster) {
                signal(backend, Signal::SIGKILL);
            }
            child.kill();
            let _ = std::fs::remove_file(self.pid_file());
        }
    }

    /// Freezes the postmaster and all its backends (SIGSTOP), for "the database hangs" tests:
    /// connects and queries, pooled connections included, then block until `resume`.
    /// Stopping only the postmaster would leave established connections working.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            let postmaster = pid_of(child);
            signal(postmaster, Signal::SIGSTOP);
            for backend in children_of(postmaster) {
                signal(backend, Signal::SIGSTOP);
            }
        }
    }

    /// Undoes `pause` (SIGCONT); backends first, so the postmaster finds them running.
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            let postmaster = pid_of(child);
            for backend in children_of(postmaster) {
                signal(backend, Signal::SIGCONT);
            }
            signal(postmaster, Signal::SIGCONT);
        }
    }

    /// Starts the server again on the same data dir and port after `stop` or `kill_hard`.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("postgres is already running on port {}", self.port);
        }
        // Backends of a killed server can hold shared memory for a moment ("pre-existing shared
        // memory block is still in use"), and the port can linger: retry until the deadline.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(e @ LaunchError::Exited { .. }) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "postgres restart failed; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("starting postgres again on port {}", self.port)));
                }
            }
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("server.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn command(&self, program: &str) -> Launch {
        let bin = self.bindir.join(program);
        let launch = if self.run_as_postgres {
            // setpriv execs in place (runuser forks and waits), so the child's pid is the
            // postmaster's own and signals reach it directly.
            Launch::new("setpriv")
                .named(format!("{program} (via setpriv, as root)"))
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"])
                .arg(bin)
        } else {
            Launch::new(bin)
        };
        launch
            .hint(INSTALL_HINT)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT")
    }

    fn initdb(&self) -> anyhow::Result<()> {
        self.command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "-U", "postgres", "--locale=C", "-E", "UTF8", "--no-sync"])
            .output()
            .context("initializing the PostgreSQL data dir")?;
        Ok(())
    }

    fn spawn_and_wait(&mut self) -> Result<(), LaunchError> {
        let launch = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // No fsync, so only an OS crash can lose data; commits still reach the OS before
            // they return, so `kill_hard` loses nothing (synchronous_commit=off would).
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300"])
            // Spelled out (they are the defaults) because `start_replica` needs them: a base
            // backup and streaming need WAL senders and replica-level WAL. A standby gets the
            // same values, which it requires to be at least the primary's.
            .args(["-c", "wal_level=replica", "-c", "max_wal_senders=10"])
            .log_to(self.log_file())
            // Out of the terminal's process group: a Ctrl-C kills the tests, and the watchdog
            // then stops this server in an orderly way.
            .own_process_group();
        let port = self.port;
        self.child = Some(track_until_ready(launch, &self.pid_file(), || pg_accepts_logins(port))?);
        Ok(())
    }

    fn shutdown(&mut self, how: Signal) -> anyhow::Result<()> {
        if self.child.is_none() {
            return Ok(());
        }
        self.resume(); // a paused server would never act on the signal
        let Some(child) = self.child.as_mut() else { return Ok(()) };
        child.signal(how);
        if child.wait_exit(STOP_TIMEOUT).is_none() {
            self.kill_hard();
            bail!("postgres did not stop within {STOP_TIMEOUT:?}; killed it");
        }
        self.child = None;
        let _ = std::fs::remove_file(self.pid_file());
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Immediate shutdown: the data is about to be deleted, a checkpoint is wasted work.
            let _ = self.shutdown(Signal::SIGQUIT);
        }
    }
}
