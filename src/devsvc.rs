//! Private PostgreSQL and Redis servers started from local binaries, for dev and tests,
//! plus the test fixtures `test_database()` and `test_redis()` built on them (and, for unit
//! tests, `LogCapture`, to check what a future logs).
//! Every server gets a free loopback port, its own temp dir and a watchdog that stops it when we die.

use std::{
    ffi::OsStr,
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::{Pid, User, geteuid},
};
use tempfile::TempDir;

/// The one sentence every "binary missing" error carries.
const INSTALL_HINT: &str = "install with `apt-get install postgresql redis-server`";

/// Servers are polled this often while starting; each poll is a real connection attempt.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Generous, because two shared cores under load can make `postgres` slow to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Shared process plumbing
// ---------------------------------------------------------------------------------------------

/// A `sh` process that stops a server when this process dies, however it dies.
///
/// Its stdin is a pipe whose only writer is us: when we exit, even by SIGKILL, the kernel closes
/// it, `read` returns, and the script signals the pid recorded in the pid file (if any) and
/// removes the temp dir. Statics are never dropped, so without this a server in a `static`
/// would outlive every test run. It sits in its own process group so that a Ctrl-C aimed at
/// the test process does not kill the watchdog before it has cleaned up.
struct Watchdog {
    child: Child,
    // Never written to; held so that the pipe closes exactly when we go away.
    _pipe: ChildStdin,
}

/// `$1` pid file, `$2` dir to remove, `$3` signal for a graceful-but-quick stop. The children of
/// the recorded pid are resumed and killed too, because PostgreSQL backends each sit in their own
/// process group and a paused (SIGSTOPped) server would otherwise ignore everything but SIGKILL.
const WATCHDOG_SCRIPT: &str = r#"
# A zombie counts as dead: our pid 1 may be slow to reap what it inherits from us.
alive() { s=$(ps -o stat= -p "$1") && [ "${s#Z}" = "$s" ]; }
read _ignored
if [ -f "$1" ]; then
  P=$(cat "$1")
  if [ -n "$P" ]; then
    kill -s CONT "$P"; pkill -CONT -P "$P"
    kill -s "$3" "$P"
    i=0
    while alive "$P" && [ "$i" -lt 50 ]; do sleep 0.05; i=$((i+1)); done
    pkill -KILL -P "$P"; kill -s KILL "$P"
  fi
fi 2>/dev/null
rm -rf "$2"
"#;

impl Watchdog {
    fn spawn(pid_file: &Path, dir: &Path, signal: &str) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("watchdog")
            .arg(pid_file)
            .arg(dir)
            .arg(signal)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("spawning the watchdog shell")?;
        let pipe = child.stdin.take().context("watchdog spawned without a stdin pipe")?;
        Ok(Self { child, _pipe: pipe })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Killed rather than released through the pipe: we clean up ourselves, and the script
        // must not signal a pid that may since have been reused.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr().context("reading the bound port")?.port())
}

/// Starts a server on a port found free, trying another (three times) when some other process
/// takes the port between the pick and the bind.
fn start_on_free_port(what: &str, mut start: impl FnMut(u16) -> Result<(), StartFailure>) -> anyhow::Result<()> {
    let mut attempts = 0;
    loop {
        match start(free_port()?) {
            Ok(()) => return Ok(()),
            Err(StartFailure::Exited(why)) if attempts < 3 && why.contains("Address already in use") => attempts += 1,
            Err(StartFailure::Exited(why)) => bail!("{what} exited while starting: {why}"),
            Err(StartFailure::Other(e)) => return Err(e.context(format!("starting {what}"))),
        }
    }
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

fn signal(pid: Pid, sig: Signal) {
    // ESRCH just means it already exited, which is what every caller wants anyway.
    let _ = kill(pid, sig);
}

/// Direct children of `parent`, from `/proc/<pid>/stat` (field 4 is the parent pid).
fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                // The command name (field 2) may contain spaces; it ends at the last ')'.
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent.as_raw())
        })
        .map(Pid::from_raw)
        .collect()
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

/// The last few lines of a server log, for start-up errors.
fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(2000)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_string()
}

enum StartFailure {
    /// The server exited during start-up; the log tail says why (e.g. the port was taken).
    Exited(String),
    Other(anyhow::Error),
}

fn wait_until_ready(child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) -> Result<(), StartFailure> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(StartFailure::Exited(format!("{status}; log:\n{}", log_tail(log))));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartFailure::Other(anyhow!("not ready after {START_TIMEOUT:?}; log:\n{}", log_tail(log))));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn open_log(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let file =
        File::options().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
    let copy = file.try_clone().context("duplicating the log handle")?;
    Ok((Stdio::from(file), Stdio::from(copy)))
}

fn write_pid_file(path: &Path, child: &Child) -> anyhow::Result<()> {
    std::fs::write(path, child.id().to_string()).with_context(|| format!("writing {}", path.display()))
}

fn missing_binary(what: &str, err: std::io::Error) -> anyhow::Error {
    anyhow!("{what} could not be run ({err}): {INSTALL_HINT}")
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A throw-away PostgreSQL cluster owned by this process.
///
/// Tuned for tests (`fsync=off`): data survives `stop`/`kill_hard` and `start_again`, since only
/// a machine crash loses unsynced pages, but it is not a place for real data.
pub struct PrivatePostgres {
    port: u16,
    bindir: PathBuf,
    /// `initdb`/`postgres` refuse to run as root, so as root we run them as `postgres`.
    run_as_postgres: bool,
    child: Option<Child>,
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
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
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
fn pg_accepts_logins(port: u16) -> bool {
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
        // Before initdb, so that even a death during initdb leaves no temp dir behind.
        pg.watchdog = Some(Watchdog::spawn(&pg.pid_file(), pg.dir.path(), "QUIT")?);
        pg.initdb()?;
        start_on_free_port("postgres", |port| {
            pg.port = port;
            pg.spawn_and_wait()
        })?;
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
        self.child.as_ref().map(Child::id)
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
            signal(postmaster, Signal::SIGKILL);
            let _ = child.wait();
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
                Err(StartFailure::Exited(why)) if Instant::now() < deadline => {
                    tracing::debug!(%why, "postgres restart failed; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(StartFailure::Exited(why)) => {
                    bail!("postgres exited while starting again on port {}: {why}", self.port)
                }
                Err(StartFailure::Other(e)) => return Err(e.context("starting postgres again")),
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

    fn command(&self, program: &str) -> Command {
        let bin = self.bindir.join(program);
        let mut cmd = if self.run_as_postgres {
            // setpriv execs in place (runuser forks and waits), so the child's pid is the
            // postmaster's own and signals reach it directly.
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(bin);
            cmd
        } else {
            Command::new(bin)
        };
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .stdin(Stdio::null());
        cmd
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "-U", "postgres", "--locale=C", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|e| missing_binary("initdb (via setpriv when root)", e))?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        use std::os::unix::process::CommandExt;
        let (out, err) = open_log(&self.log_file()).map_err(StartFailure::Other)?;
        let mut child = self
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
            .stdout(out)
            .stderr(err)
            // Out of the terminal's process group: a Ctrl-C kills the tests, and the watchdog
            // then stops this server in an orderly way.
            .process_group(0)
            .spawn()
            .map_err(|e| StartFailure::Other(missing_binary("postgres (via setpriv when root)", e)))?;
        write_pid_file(&self.pid_file(), &child).map_err(StartFailure::Other)?;
        let port = self.port;
        match wait_until_ready(&mut child, &self.log_file(), || pg_accepts_logins(port)) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(self.pid_file());
                Err(e)
            }
        }
    }

    fn shutdown(&mut self, how: Signal) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.resume(); // a paused server would never act on the signal
        signal(pid_of(&child), how);
        if !wait_with_timeout(&mut child, STOP_TIMEOUT) {
            self.child = Some(child);
            self.kill_hard();
            bail!("postgres did not stop within {STOP_TIMEOUT:?}; killed it");
        }
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

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// A private `redis-server` owned by this process.
pub struct PrivateRedis {
    port: u16,
    program: PathBuf,
    persistent: bool,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    /// Last field: removed only after the server and the watchdog are gone.
    dir: TempDir,
}

fn redis_answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    // While it loads its append-only file Redis answers `-LOADING`, not `+PONG`.
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG"
}

impl PrivateRedis {
    /// An in-memory instance (`--save '' --appendonly no`): `restart` starts it empty.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(OsStr::new("redis-server"), false)
    }

    /// An instance with an append-only file in its temp dir, so data survives `restart`.
    pub fn with_persistence() -> anyhow::Result<Self> {
        Self::start_with(OsStr::new("redis-server"), true)
    }

    fn start_with(program: &OsStr, persistent: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("spec-redis-").tempdir().context("creating the Redis temp dir")?;
        let mut redis = Self { port: 0, program: PathBuf::from(program), persistent, child: None, watchdog: None, dir };
        redis.watchdog = Some(Watchdog::spawn(&redis.pid_file(), redis.dir.path(), "KILL")?);
        start_on_free_port("redis-server", |port| {
            redis.port = port;
            redis.spawn_and_wait()
        })?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir: `redis.log` and, with persistence, the append-only files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's pid, `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM (Redis flushes its append-only file, if any, and exits), then reaps it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        signal(pid_of(&child), Signal::SIGTERM);
        let stopped = wait_with_timeout(&mut child, STOP_TIMEOUT);
        if !stopped {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.pid_file());
        if !stopped {
            bail!("redis-server did not stop within {STOP_TIMEOUT:?}; killed it");
        }
        Ok(())
    }

    /// Stops (if running) and starts again on the same port and data dir.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                // The old socket can linger for a moment; anything else will not go away.
                Err(StartFailure::Exited(why))
                    if why.contains("Address already in use") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(StartFailure::Exited(why)) => {
                    bail!("redis-server exited while restarting on port {}: {why}", self.port)
                }
                Err(StartFailure::Other(e)) => return Err(e.context("restarting redis-server")),
            }
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("server.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        use std::os::unix::process::CommandExt;
        let (out, err) = open_log(&self.log_file()).map_err(StartFailure::Other)?;
        let mut cmd = Command::new(&self.program);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--logfile", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", ""]);
        if self.persistent {
            cmd.args(["--appendonly", "yes"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let mut child = cmd
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| StartFailure::Other(missing_binary("redis-server", e)))?;
        write_pid_file(&self.pid_file(), &child).map_err(StartFailure::Other)?;
        let port = self.port;
        match wait_until_ready(&mut child, &self.log_file(), || redis_answers_ping(port)) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(self.pid_file());
                Err(e)
            }
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test fixtures
// ---------------------------------------------------------------------------------------------

/// Cloned for every `test_database()`; migrated once per test process.
pub const TEMPLATE_DATABASE: &str = "app_template";

/// Distinguishes databases and key prefixes created by this process.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    format!("{}_{}_{:08x}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed), rand::random::<u32>())
}

/// Replaces the database name (the URL path) of a `postgres://` URL, keeping any query string.
pub fn url_with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let scheme_end =
        url.find("://").with_context(|| "expected a postgres://… URL (key=value strings are not supported)")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let after_authority = &rest[authority_end..];
    let query = after_authority.find('?').map_or("", |q| &after_authority[q..]);
    Ok(format!("{}/{database}{query}", &url[..scheme_end + authority_end]))
}

/// Only plain data and processes live here: each `#[tokio::test]` has its own runtime, so
/// clients and pools are made per test, in the test's runtime.
struct SharedPostgres {
    admin_url: String,
    _server: Option<PrivatePostgres>,
}

static SHARED_POSTGRES: OnceLock<Result<SharedPostgres, String>> = OnceLock::new();

fn init_shared_postgres() -> Result<SharedPostgres, String> {
    let (admin_url, server) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = PrivatePostgres::start().map_err(|e| format!("{e:#}"))?;
            (server.url(), Some(server))
        }
    };
    // The template is made on a runtime of its own, on a plain thread: we may be called from a
    // test runtime's blocking pool, where starting another runtime is not allowed.
    let url = admin_url.clone();
    std::thread::spawn(move || -> anyhow::Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a runtime for the template database")?
            .block_on(prepare_template(&url))
    })
    .join()
    .map_err(|_| "preparing the template database panicked".to_string())?
    .map_err(|e| format!("{e:#}"))?;
    Ok(SharedPostgres { admin_url, _server: server })
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "test connection ended");
        }
    });
    Ok(client)
}

/// Creates and migrates `app_template` if needed. Under an advisory lock, because with
/// `TEST_DATABASE_URL` several test processes may share one server.
async fn prepare_template(admin_url: &str) -> anyhow::Result<()> {
    const TEMPLATE_LOCK: i64 = 0x5350_4543_5445_4d50; // "SPECTEMP"
    let admin = connect(admin_url).await?;
    admin.execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK]).await.context("locking the template database")?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&TEMPLATE_DATABASE])
        .await
        .context("looking for the template database")?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {TEMPLATE_DATABASE}"))
            .await
            .context("creating the template database")?;
    }
    let mut template = connect(&url_with_database(admin_url, TEMPLATE_DATABASE)?).await?;
    crate::db::migrate::migrate(&mut template).await.context("migrating the template database")?;
    // Clones fail while anyone is connected to the template.
    drop(template);
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .context("unlocking the template database")?;
    Ok(())
}

async fn shared_postgres() -> anyhow::Result<&'static SharedPostgres> {
    tokio::task::spawn_blocking(|| {
        SHARED_POSTGRES
            .get_or_init(init_shared_postgres)
            .as_ref()
            .map_err(|e| anyhow!("the test PostgreSQL could not be set up: {e}"))
    })
    .await
    .context("the test PostgreSQL set-up task failed")?
}

/// A fresh database cloned from the migrated template; dropped again when this is dropped.
pub struct TestDb {
    url: String,
    name: String,
    pool: crate::db::Pool,
    admin_url: String,
}

impl TestDb {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A small pool (8 connections, 5 s acquire, 30 s statement timeout) made in this test's runtime.
    pub fn pool(&self) -> &crate::db::Pool {
        &self.pool
    }

    /// A plain client whose connection task runs on the current runtime.
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Dropped synchronously on a plain thread (we may be inside a runtime, and the test's
        // runtime may be shutting down); FORCE ends the pool's connections.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async { Ok(connect(&admin_url).await?.batch_execute(&sql).await?) })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            tracing::warn!(database = %self.name, "could not drop a test database");
        }
    }
}

/// A fresh, migrated database on the per-process private PostgreSQL (or on the server at
/// `TEST_DATABASE_URL`). Safe to call from parallel tests, each with its own runtime.
pub async fn test_database() -> anyhow::Result<TestDb> {
    create_test_database(Some(TEMPLATE_DATABASE)).await
}

/// Like [`test_database`], but empty (cloned from `template0`), for migration tests.
pub async fn test_empty_database() -> anyhow::Result<TestDb> {
    create_test_database(None).await
}

async fn create_test_database(template: Option<&str>) -> anyhow::Result<TestDb> {
    let shared = shared_postgres().await?;
    let name = format!("t_{}", unique_suffix());
    let admin = connect(&shared.admin_url).await?;
    let sql = format!("CREATE DATABASE {name} TEMPLATE {}", template.unwrap_or("template0"));
    // 55006 (object in use) means someone is connected to the template, e.g. another process
    // sharing TEST_DATABASE_URL that is migrating it; that passes within moments.
    let mut attempts = 0;
    loop {
        match admin.batch_execute(&sql).await {
            Ok(()) => break,
            Err(e) if attempts < 50 && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("creating test database {name}")),
        }
    }
    let url = url_with_database(&shared.admin_url, &name)?;
    let pool = crate::db::pool(&url, 8, Duration::from_secs(5), Duration::from_secs(30))?;
    Ok(TestDb { url, name, pool, admin_url: shared.admin_url.clone() })
}

struct SharedRedis {
    url: String,
    _server: Option<PrivateRedis>,
}

static SHARED_REDIS: OnceLock<Result<SharedRedis, String>> = OnceLock::new();

fn init_shared_redis() -> Result<SharedRedis, String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) => Ok(SharedRedis { url, _server: None }),
        Err(_) => {
            let server = PrivateRedis::start().map_err(|e| format!("{e:#}"))?;
            Ok(SharedRedis { url: server.url(), _server: Some(server) })
        }
    }
}

/// A shared Redis plus a key prefix no other test uses: tests must put every key under it.
pub struct TestRedis {
    url: String,
    prefix: String,
}

impl TestRedis {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Ends with `:`, e.g. `t1234_7_9f3a0c1e:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix + suffix`
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// A small bb8 pool (8 connections, 2 s connection timeout) made in this test's runtime.
    pub async fn pool(&self) -> anyhow::Result<bb8::Pool<bb8_redis::RedisConnectionManager>> {
        let manager = bb8_redis::RedisConnectionManager::new(self.url.as_str())
            .with_context(|| format!("parsing {}", self.url))?;
        bb8::Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(2))
            .build(manager)
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }
}

/// The per-process private Redis (or `TEST_REDIS_URL`) and a fresh key prefix.
/// Keys are not deleted afterwards: on the private server they vanish with it.
pub async fn test_redis() -> anyhow::Result<TestRedis> {
    let url = tokio::task::spawn_blocking(|| {
        SHARED_REDIS
            .get_or_init(init_shared_redis)
            .as_ref()
            .map(|shared| shared.url.clone())
            .map_err(|e| anyhow!("the test Redis could not be set up: {e}"))
    })
    .await
    .context("the test Redis set-up task failed")??;
    Ok(TestRedis { url, prefix: format!("t{}:", unique_suffix()) })
}

/// Captures what `tracing` logs, for tests that check a log line. There is one
/// capture per test process, also installed as the global default: a
/// subscriber set only for one thread or future misses events whose callsite
/// interest another test thread cached first, so tests find their own lines
/// by what they contain (a task id), not by being alone in the capture.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Default for LogCapture {
    fn default() -> Self {
        static GLOBAL: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let capture = LogCapture(std::sync::Arc::default());
                // Fails only if another global subscriber came first; then the
                // scoped `subscriber()` is all there is.
                let _ = tracing::subscriber::set_global_default(capture.subscriber());
                capture
            })
            .clone()
    }
}

#[cfg(test)]
impl Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("log capture poisoned"))?.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl LogCapture {
    /// Everything logged so far.
    pub(crate) fn text(&self) -> String {
        self.0.lock().map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// A subscriber writing every event, without colours, into this capture.
    pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let logs = self.clone();
        tracing_subscriber::fmt().with_ansi(false).with_writer(move || logs.clone()).finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::io::BufRead;

    use super::*;

    /// Gone, or a zombie waiting for a reaper we do not control (our pid 1 may not reap).
    fn is_dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => {
                stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next().map(|s| s == "Z")).unwrap_or(true)
            }
        }
    }

    fn poll_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client, or an error if none within `limit`. tokio-postgres' connect_timeout covers only
    /// the TCP connect, and a paused server still completes that (the kernel accepts into the
    /// backlog), so the whole handshake is bounded here.
    async fn pg_client_within(url: &str, limit: Duration) -> anyhow::Result<tokio_postgres::Client> {
        let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
        let (client, connection) = tokio::time::timeout(limit, connect).await??;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn pg_client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
        pg_client_within(url, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn postgres_keeps_data_across_stop_and_kill_hard() {
        let mut pg = PrivatePostgres::start().unwrap();
        assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
        let client = pg_client(&pg.url()).await.unwrap();
        client.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)").await.unwrap();
        drop(client);

        let first_pid = pg.pid().unwrap();
        pg.stop().unwrap();
        assert_eq!(pg.pid(), None);
        assert!(is_dead(first_pid));
        assert!(pg_client(&pg.url()).await.is_err(), "stopped means refused");

        pg.start_again().unwrap();
        let client = pg_client(&pg.url()).await.unwrap();
        client.batch_execute("INSERT INTO t VALUES (2)").await.unwrap();
        pg.kill_hard();
        assert!(client.simple_query("SELECT 1").await.is_err(), "connection died with the server");

        pg.start_again().unwrap();
        let client = pg_client(&pg.url()).await.unwrap();
        let count: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
        assert_eq!(count, 2, "committed rows survive a hard kill");
    }

    #[tokio::test]
    async fn paused_postgres_hangs_until_resumed() {
        let pg = PrivatePostgres::start().unwrap();
        let established = pg_client(&pg.url()).await.unwrap();
        pg.pause();
        let attempt = pg_client_within(&pg.url(), Duration::from_millis(300)).await;
        assert!(attempt.is_err(), "new connections hang");
        let query = tokio::time::timeout(Duration::from_millis(300), established.simple_query("SELECT 1"));
        assert!(query.await.is_err(), "established connections hang too");
        pg.resume();
        assert!(pg_client(&pg.url()).await.is_ok());
        assert!(established.simple_query("SELECT 1").await.is_ok());
    }

    #[test]
    fn dropping_postgres_removes_process_and_dir() {
        let pg = PrivatePostgres::start().unwrap();
        let (pid, dir) = (pg.pid().unwrap(), pg.dir().to_path_buf());
        assert!(dir.join("data").join("PG_VERSION").is_file());
        pg.pause(); // even a paused server
        drop(pg);
        assert!(is_dead(pid));
        assert!(!dir.exists());
    }

    #[test]
    fn redis_restart_keeps_data_only_with_persistence() {
        use redis::Commands;
        let mut plain = PrivateRedis::start().unwrap();
        let mut durable = PrivateRedis::with_persistence().unwrap();
        for server in [&plain, &durable] {
            let mut conn = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
            let _: () = conn.set("k", "v").unwrap();
        }
        let durable_port = durable.port();
        plain.restart().unwrap();
        durable.restart().unwrap();
        assert_eq!(durable.port(), durable_port);
        let mut conn = redis::Client::open(plain.url()).unwrap().get_connection().unwrap();
        assert_eq!(conn.get::<_, Option<String>>("k").unwrap(), None);
        let mut conn = redis::Client::open(durable.url()).unwrap().get_connection().unwrap();
        assert_eq!(conn.get::<_, Option<String>>("k").unwrap().as_deref(), Some("v"));

        let (pid, dir) = (durable.pid().unwrap(), durable.dir().to_path_buf());
        durable.stop().unwrap();
        assert!(!redis_answers_ping(durable_port));
        assert!(is_dead(pid));
        drop(durable);
        assert!(!dir.exists());
    }

    #[test]
    fn missing_binaries_say_how_to_install() {
        let err = PrivateRedis::start_with(OsStr::new("/nonexistent/redis-server"), false).err().unwrap();
        assert!(format!("{err:#}").contains("install with `apt-get install postgresql redis-server`"), "{err:#}");
    }

    #[test]
    fn database_urls() {
        let cases = [
            ("postgres://u@h:5/postgres", "postgres://u@h:5/x"),
            ("postgres://u:p@h:5", "postgres://u:p@h:5/x"),
            ("postgresql://h/db?sslmode=disable", "postgresql://h/x?sslmode=disable"),
            ("postgres://h?x=1", "postgres://h/x?x=1"),
        ];
        for (url, expected) in cases {
            assert_eq!(url_with_database(url, "x").unwrap(), expected);
        }
        assert!(url_with_database("host=h dbname=d", "x").is_err());
    }

    #[tokio::test]
    async fn test_databases_are_migrated_and_isolated() {
        let (a, b) = tokio::join!(test_database(), test_database());
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a.name(), b.name());
        let a_client = a.pool().get().await.unwrap();
        a_client
            .batch_execute("INSERT INTO users (username, email, password_hash) VALUES ('x', 'x@x', 'h')")
            .await
            .unwrap();
        let count: i64 =
            b.pool().get().await.unwrap().query_one("SELECT count(*) FROM users", &[]).await.unwrap().get(0);
        assert_eq!(count, 0);

        let name = a.name().to_string();
        let admin = connect(&url_with_database(a.url(), "postgres").unwrap()).await.unwrap();
        drop(a_client);
        drop(a);
        let left = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap();
        assert!(left.is_none(), "dropped with its TestDb");
    }

    #[tokio::test]
    async fn test_redis_prefixes_are_unique() {
        let a = test_redis().await.unwrap();
        let b = test_redis().await.unwrap();
        assert_eq!(a.url(), b.url(), "one shared server");
        assert_ne!(a.prefix(), b.prefix());
        assert!(a.key("q").starts_with(a.prefix()));
        let pool = a.pool().await.unwrap();
        let mut conn = pool.get().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
        assert_eq!(pong, "PONG");
    }

    const ORPHAN_CHILD_ENV: &str = "SPEC_DEVSVC_ORPHAN_CHILD";

    /// Runs only inside `no_orphans_when_the_owner_is_killed`, as the process that gets killed.
    #[test]
    #[ignore = "helper process for no_orphans_when_the_owner_is_killed"]
    fn orphan_child() {
        if std::env::var_os(ORPHAN_CHILD_ENV).is_none() {
            return;
        }
        // In statics, like the shared test servers: never dropped.
        static PG: OnceLock<PrivatePostgres> = OnceLock::new();
        static REDIS: OnceLock<PrivateRedis> = OnceLock::new();
        let pg = PG.get_or_init(|| PrivatePostgres::start().unwrap());
        let redis = REDIS.get_or_init(|| PrivateRedis::start().unwrap());
        pg.pause(); // the hardest case: a stopped server ignores everything but SIGKILL
        println!(
            "READY {} {} {} {}",
            pg.pid().unwrap(),
            pg.dir().display(),
            redis.pid().unwrap(),
            redis.dir().display()
        );
        std::io::stdout().flush().unwrap();
        loop {
            std::thread::park();
        }
    }

    #[test]
    fn no_orphans_when_the_owner_is_killed() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "devsvc::tests::orphan_child", "--ignored", "--nocapture"])
            .env(ORPHAN_CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let ready = stdout
            .lines()
            .map(Result::unwrap)
            .find(|line| line.starts_with("READY "))
            .expect("the child printed READY");
        let fields: Vec<&str> = ready.split_whitespace().collect();
        let (pg_pid, pg_dir) = (fields[1].parse::<u32>().unwrap(), PathBuf::from(fields[2]));
        let (redis_pid, redis_dir) = (fields[3].parse::<u32>().unwrap(), PathBuf::from(fields[4]));
        assert!(!is_dead(pg_pid) && !is_dead(redis_pid));

        child.kill().unwrap(); // SIGKILL: no destructor, no atexit, nothing runs in the child
        child.wait().unwrap();

        poll_until("both servers are gone", Duration::from_secs(15), || is_dead(pg_pid) && is_dead(redis_pid));
        poll_until("both temp dirs are removed", Duration::from_secs(15), || !pg_dir.exists() && !redis_dir.exists());
    }
}
