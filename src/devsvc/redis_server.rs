//! A private redis-server on a free loopback port, in memory or with an append-only file.

use super::*;

/// A private `redis-server` owned by this process.
pub struct PrivateRedis {
    port: u16,
    program: PathBuf,
    persistent: bool,
    /// Cluster mode: the cluster bus port (`cluster-port`), kept across restarts.
    cluster_bus: Option<u16>,
    /// Killed when dropped, before the watchdog and the dir (fields drop in order).
    child: Option<Launched>,
    watchdog: Option<Watchdog>,
    /// Last field: removed only after the server and the watchdog are gone.
    dir: TempDir,
}

pub(super) fn redis_answers_ping(port: u16) -> bool {
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

    pub(super) fn start_with(program: &OsStr, persistent: bool) -> anyhow::Result<Self> {
        Self::start_node(program, persistent, false)
    }

    /// A cluster-enabled node (`cluster-enabled yes`, its `nodes.conf` in the temp dir), not
    /// yet part of any cluster: [`PrivateRedisCluster`] joins them.
    pub fn cluster_node(persistent: bool) -> anyhow::Result<Self> {
        Self::start_node(OsStr::new("redis-server"), persistent, true)
    }

    fn start_node(program: &OsStr, persistent: bool, cluster: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("spec-redis-").tempdir().context("creating the Redis temp dir")?;
        let cluster_bus = if cluster { Some(free_port()?) } else { None };
        let mut redis = Self {
            port: 0,
            program: PathBuf::from(program),
            persistent,
            cluster_bus,
            child: None,
            watchdog: None,
            dir,
        };
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
        self.child.as_ref().map(Launched::pid)
    }

    /// SIGTERM (Redis flushes its append-only file, if any, and exits), then reaps it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let stopped = child.stop(Signal::SIGTERM, STOP_TIMEOUT);
        let _ = std::fs::remove_file(self.pid_file());
        stopped.map(drop)
    }

    /// Stops (if running) and starts again on the same port and data dir.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                // The old socket can linger for a moment; anything else will not go away.
                Err(e) if e.port_taken() && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("restarting redis-server on port {}", self.port)));
                }
            }
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("server.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), LaunchError> {
        let mut launch = Launch::new(&self.program)
            .named("redis-server")
            .hint(INSTALL_HINT)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--logfile", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", ""])
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .current_dir(self.dir.path())
            .log_to(self.log_file())
            .own_process_group();
        if let Some(bus) = self.cluster_bus {
            // A small node timeout so a killed master is replaced within about a second.
            launch = launch
                .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                // A replica's first sync would otherwise wait 5 s for more replicas to join it.
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--cluster-node-timeout", "1000", "--cluster-port"])
                .arg(bus.to_string());
        }
        let port = self.port;
        self.child = Some(track_until_ready(launch, &self.pid_file(), || redis_answers_ping(port))?);
        Ok(())
    }
}
