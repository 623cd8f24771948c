//! Supervision of the private servers: a watchdog that outlives nothing, free ports, and
//! signals to a server's children. Starting, waiting and log tails are the launcher's.

use super::*;

/// A `sh` process that stops a server when this process dies, however it dies.
///
/// Its stdin is a pipe whose only writer is us: when we exit, even by SIGKILL, the kernel closes
/// it, `read` returns, and the script signals the pid recorded in the pid file (if any) and
/// removes the temp dir. Statics are never dropped, so without this a server in a `static`
/// would outlive every test run. It sits in its own process group so that a Ctrl-C aimed at
/// the test process does not kill the watchdog before it has cleaned up. It is the one child
/// not started through the [`Launch`]er: its stdin pipe is its lifeline, where every launched
/// process gets `/dev/null`.
pub(super) struct Watchdog {
    child: Child,
    // Never written to; held so that the pipe closes exactly when we go away.
    _pipe: ChildStdin,
}

/// `$1` pid file, `$2` dir to remove, `$3` signal for a graceful-but-quick stop. The children of
/// the recorded pid are resumed and killed too, because PostgreSQL backends each sit in their own
/// process group and a paused (SIGSTOPped) server would otherwise ignore everything but SIGKILL.
pub(super) const WATCHDOG_SCRIPT: &str = r#"
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
    pub(super) fn spawn(pid_file: &Path, dir: &Path, signal: &str) -> anyhow::Result<Self> {
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

pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr().context("reading the bound port")?.port())
}

/// Starts a server on a port found free, trying another (three times) when some other process
/// takes the port between the pick and the bind.
pub(super) fn start_on_free_port(
    what: &str,
    mut start: impl FnMut(u16) -> Result<(), LaunchError>,
) -> anyhow::Result<()> {
    let mut attempts = 0;
    loop {
        match start(free_port()?) {
            Ok(()) => return Ok(()),
            Err(e) if attempts < 3 && e.port_taken() => attempts += 1,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("starting {what}"))),
        }
    }
}

pub(super) fn pid_of(child: &Launched) -> Pid {
    Pid::from_raw(i32::try_from(child.pid()).unwrap_or(i32::MAX))
}

pub(super) fn signal(pid: Pid, sig: Signal) {
    // ESRCH just means it already exited, which is what every caller wants anyway.
    let _ = kill(pid, sig);
}

/// Direct children of `parent`, from `/proc/<pid>/stat` (field 4 is the parent pid).
pub(super) fn children_of(parent: Pid) -> Vec<Pid> {
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

/// Starts `launch`, records its pid for the watchdog and waits until `ready` (within
/// [`START_TIMEOUT`]); a server that never gets there is killed and leaves no pid file behind.
pub(super) fn track_until_ready(
    launch: Launch,
    pid_file: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<Launched, LaunchError> {
    let mut server = launch.spawn()?;
    std::fs::write(pid_file, server.pid().to_string())
        .map_err(|source| LaunchError::Io { what: format!("writing {}", pid_file.display()), source })?;
    match server.wait_ready(Ready::Probe(&mut ready), START_TIMEOUT) {
        Ok(()) => Ok(server),
        Err(e) => {
            let _ = std::fs::remove_file(pid_file);
            Err(e)
        }
    }
}
