//! The one way this repository starts a child process: the private PostgreSQL and Redis of
//! `dev`, and every process a test runs (the contract harness's `spec-server serve` and
//! `worker`, the worker crash tests, the chaos drill, the queue tests' redis-servers).
//! A [`Launch`] is a program with arguments and environment whose stdout and stderr go to a
//! log file; [`Launch::spawn`] gives a [`Launched`] that can wait until the process is ready
//! (a TCP port accepts, a line appears in its log, or any probe says so), be signalled, and is
//! killed and reaped when dropped. Every error names the program and ends with its log tail.
//!
//! It lives here rather than in a test-only crate because `spec-server dev` starts its private
//! servers with it, so the release binary needs it; what only tests use (SIGSTOP/SIGCONT and
//! reading a whole log) is compiled only for tests and the `test-fixtures` feature, like
//! `fixtures.rs`, so the release binary carries no test code.

use std::{
    ffi::OsStr,
    fmt,
    fs::File,
    io::{Read, Seek, SeekFrom},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Readiness is polled this often; each poll of a port or probe is a real attempt.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How much of the end of a log an error quotes.
const TAIL_BYTES: u64 = 4000;

/// A program to start: arguments, environment, where its output goes.
pub struct Launch {
    /// What errors call it, e.g. `spec-server worker`; the program's file name by default.
    name: String,
    cmd: Command,
    log: Option<PathBuf>,
    /// Appended to "could not be run" errors, e.g. how to install the program.
    hint: Option<&'static str>,
}

impl Launch {
    /// `program` (a path, or a name looked up on `PATH`) with stdin from `/dev/null`.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let program = program.as_ref();
        let name = Path::new(program).file_name().unwrap_or(program).to_string_lossy().into_owned();
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null());
        Self { name, cmd, log: None, hint: None }
    }

    /// The name errors use instead of the program's file name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Said after "could not be run" when the program cannot be started at all.
    pub fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.cmd.args(args);
        self
    }

    /// Set for the child; a later `env` of the same key wins.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.cmd.envs(vars);
        self
    }

    /// Not inherited from this process's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Its own process group, so that a Ctrl-C aimed at the terminal's group does not reach
    /// it: the watchdog or the owner stops it in an orderly way instead.
    pub fn own_process_group(mut self) -> Self {
        use std::os::unix::process::CommandExt;
        self.cmd.process_group(0);
        self
    }

    /// Stdout and stderr appended to `path` (created if missing). Without it they are discarded.
    pub fn log_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// Starts it; it runs until killed, and is killed when the [`Launched`] is dropped.
    pub fn spawn(mut self) -> Result<Launched, LaunchError> {
        match &self.log {
            Some(path) => {
                let file = File::options().create(true).append(true).open(path).map_err(|source| LaunchError::Io {
                    what: format!("opening the log {}", path.display()),
                    source,
                })?;
                let copy = file
                    .try_clone()
                    .map_err(|source| LaunchError::Io { what: "duplicating the log handle".into(), source })?;
                self.cmd.stdout(file).stderr(copy);
            }
            None => {
                self.cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = self.cmd.spawn().map_err(|source| LaunchError::Spawn {
            name: self.name.clone(),
            hint: self.hint,
            source,
        })?;
        Ok(Launched { name: self.name, child, log: self.log, exit: None })
    }

    /// Runs it to completion and returns its stdout, trimmed. A failure names it and quotes
    /// its output.
    pub fn output(mut self) -> Result<String, LaunchError> {
        let out = self.cmd.output().map_err(|source| LaunchError::Spawn {
            name: self.name.clone(),
            hint: self.hint,
            source,
        })?;
        if !out.status.success() {
            let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stdout));
            return Err(LaunchError::Failed { name: self.name, status: out.status, output: tail_of(&text) });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// What a started process must do before it counts as ready.
pub enum Ready<'a> {
    /// `127.0.0.1:port` accepts a TCP connection.
    Port(u16),
    /// A line containing this text appears in its log (needs [`Launch::log_to`]).
    LogLine(&'a str),
    /// The probe answers `true`; it should be quick and bounded (it is called in a loop).
    Probe(&'a mut dyn FnMut() -> bool),
}

/// Why a process could not be started, or did not become ready.
#[derive(Debug)]
pub enum LaunchError {
    /// The program could not be executed at all (missing, not executable).
    Spawn { name: String, hint: Option<&'static str>, source: std::io::Error },
    /// Setting up around it (its log file) failed.
    Io { what: String, source: std::io::Error },
    /// It exited before it was ready; `log` is the end of its log.
    Exited { name: String, status: ExitStatus, log: String },
    /// It was still not ready when the time was up, and was killed.
    NotReady { name: String, after: Duration, log: String },
    /// Run to completion ([`Launch::output`]), it failed.
    Failed { name: String, status: ExitStatus, output: String },
}

impl LaunchError {
    /// It exited because its port was taken (between picking a free port and binding it),
    /// so starting again on another port may work.
    pub fn port_taken(&self) -> bool {
        matches!(self, LaunchError::Exited { log, .. } if log.contains("Address already in use"))
    }
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Spawn { name, hint: Some(hint), .. } => write!(f, "{name} could not be run ({hint})"),
            LaunchError::Spawn { name, hint: None, .. } => write!(f, "{name} could not be run"),
            LaunchError::Io { what, .. } => f.write_str(what),
            LaunchError::Exited { name, status, log } => {
                write!(f, "{name} exited while starting ({status}); its log ends:\n{log}")
            }
            LaunchError::NotReady { name, after, log } => {
                write!(f, "{name} was not ready after {after:?} and was killed; its log ends:\n{log}")
            }
            LaunchError::Failed { name, status, output } => write!(f, "{name} failed ({status}):\n{output}"),
        }
    }
}

impl std::error::Error for LaunchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LaunchError::Spawn { source, .. } | LaunchError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A running child process, SIGKILLed and reaped when dropped (panics included).
pub struct Launched {
    name: String,
    child: Child,
    log: Option<PathBuf>,
    /// Once reaped, how it ended.
    exit: Option<ExitStatus>,
}

impl Launched {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    /// Polls until `ready` holds, or fails when the process exits first or `timeout` passes
    /// (then it is killed).
    pub fn wait_ready(&mut self, mut ready: Ready<'_>, timeout: Duration) -> Result<(), LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Err(LaunchError::Exited { name: self.name.clone(), status, log: self.log_tail() });
            }
            let is_ready = match &mut ready {
                Ready::Port(port) => port_accepts(*port),
                Ready::LogLine(text) => self.log.as_deref().is_some_and(|log| log_has_line(log, text)),
                Ready::Probe(probe) => probe(),
            };
            if is_ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(LaunchError::NotReady { name: self.name.clone(), after: timeout, log: self.log_tail() });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// How it ended, if it has (reaping it); `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status);
        }
        self.exit
    }

    /// An error naming the process, how it ended and its log tail, if it is no longer running.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => anyhow::bail!("{} exited ({status}); its log ends:\n{}", self.name, self.log_tail()),
        }
    }

    /// Sends `sig`; a process that already exited is not an error.
    pub fn signal(&self, sig: Signal) {
        if self.exit.is_none() {
            // ESRCH just means it already exited, which is what every caller wants anyway.
            let _ = kill(self.nix_pid(), sig);
        }
    }

    /// SIGKILL, then reaps it; nothing if it already exited.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Waits up to `timeout` for it to exit on its own (reaping it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `sig` (SIGTERM, SIGINT…: a graceful stop), then up to `timeout` for it to exit; past
    /// that it is killed and the error says so.
    pub fn stop(&mut self, sig: Signal, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(sig);
        match self.wait_exit(timeout) {
            Some(status) => Ok(status),
            None => {
                self.kill();
                anyhow::bail!(
                    "{} did not exit within {timeout:?} of {sig}; killed it. Its log ends:\n{}",
                    self.name,
                    self.log_tail()
                )
            }
        }
    }

    /// The last few lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        match &self.log {
            Some(path) => log_tail(path),
            None => String::from("(no log kept)"),
        }
    }
}

#[cfg(any(test, feature = "test-fixtures"))]
impl Launched {
    /// Freezes it (SIGSTOP) until [`Launched::resume`].
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// Its whole log so far (empty without one).
    pub fn log(&self) -> String {
        self.log.as_deref().and_then(|path| std::fs::read_to_string(path).ok()).unwrap_or_default()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.kill();
    }
}

fn port_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_millis(200)).is_ok()
}

fn log_has_line(path: &Path, text: &str) -> bool {
    std::fs::read(path).is_ok_and(|bytes| String::from_utf8_lossy(&bytes).lines().any(|line| line.contains(text)))
}

/// The end of a log file (its last few thousand bytes), for error messages.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    tail_of(&String::from_utf8_lossy(&buf))
}

/// The last 30 lines of `text`, trimmed.
fn tail_of(text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn sh(script: &str, log: &Path) -> Launch {
        Launch::new("sh").arg("-c").arg(script).named("test-sh").log_to(log)
    }

    #[test]
    fn ready_on_a_log_line_and_killed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh("echo starting; sleep 0.05; echo 'it is READY now'; exec sleep 30", &dir.path().join("a.log"))
            .spawn()
            .unwrap();
        p.wait_ready(Ready::LogLine("READY"), Duration::from_secs(10)).unwrap();
        assert!(p.exited().is_none());
        let pid = p.pid();
        drop(p);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z"), "killed and reaped: {stat}");
    }

    #[test]
    fn an_early_exit_names_the_program_and_quotes_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh("echo 'bind: Address already in use' >&2; exit 3", &dir.path().join("b.log")).spawn().unwrap();
        let err = p.wait_ready(Ready::Port(1), Duration::from_secs(10)).unwrap_err();
        assert!(err.port_taken(), "{err}");
        let text = err.to_string();
        assert!(text.starts_with("test-sh exited while starting"), "{text}");
        assert!(text.contains("Address already in use"), "{text}");
    }

    #[test]
    fn not_ready_in_time_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh("echo waiting; exec sleep 30", &dir.path().join("c.log")).spawn().unwrap();
        let mut never = || false;
        let err = p.wait_ready(Ready::Probe(&mut never), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, LaunchError::NotReady { .. }), "{err}");
        assert!(err.to_string().contains("waiting"), "{err}");
        assert!(p.exited().is_some(), "killed");
    }

    #[test]
    fn ready_on_a_port_and_signals() {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh("exec sleep 30", &dir.path().join("d.log")).spawn().unwrap();
        p.wait_ready(Ready::Port(port), Duration::from_secs(10)).unwrap();
        p.pause();
        p.resume();
        let status = p.stop(Signal::SIGTERM, Duration::from_secs(10)).unwrap();
        assert!(!status.success());
    }

    #[test]
    fn missing_programs_and_failed_runs_say_which() {
        let err = Launch::new("/nonexistent/prog").hint("install it").spawn().err().unwrap();
        assert_eq!(err.to_string(), "prog could not be run (install it)");
        let err = Launch::new("sh").args(["-c", "echo oops >&2; exit 2"]).named("sh oops").output().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("sh oops failed"), "{text}");
        assert!(text.contains("oops"), "{text}");
        assert_eq!(Launch::new("sh").args(["-c", "echo ' hi '"]).output().unwrap(), "hi");
    }
}
