//! Private redis-server processes for tests: free ports on 127.0.0.1, killed
//! and reaped on drop (also when a test panics).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bb8_redis::RedisConnectionManager;

/// A port that was free a moment ago (and, for cluster nodes, whose cluster
/// bus port +10000 too). Start-up retries with another port if it was taken.
fn free_port(with_bus: bool) -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = l.local_addr().expect("local addr").port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Sends one inline command and returns the raw reply (test-only RESP).
pub fn raw_command(port: u16, cmd: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    extra: Vec<String>,
    /// Holds the AOF / cluster config; removed on drop.
    dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// No persistence: the fastest start.
    pub fn start() -> Self {
        Self::launch(vec!["--save", "", "--appendonly", "no"], false, false)
    }

    /// AOF fsynced on every write, so a SIGKILL loses nothing acknowledged.
    pub fn start_persistent() -> Self {
        Self::launch(vec!["--save", "", "--appendonly", "yes", "--appendfsync", "always"], true, false)
    }

    pub fn start_cluster_node() -> Self {
        Self::launch(
            vec!["--save", "", "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
            true,
            true,
        )
    }

    fn launch(extra: Vec<&str>, with_dir: bool, cluster: bool) -> Self {
        let extra: Vec<String> = extra.into_iter().map(str::to_owned).collect();
        for _ in 0..10 {
            let mut server = RedisServer {
                child: None,
                port: free_port(cluster),
                extra: extra.clone(),
                dir: with_dir.then(|| tempfile::tempdir().expect("tempdir")),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("could not start redis-server");
    }

    fn dir_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().to_path_buf())
    }

    /// Starts the process on `self.port`; false if it did not come up.
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--daemonize")
            .arg("no")
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(d) = self.dir_path() {
            cmd.arg("--dir").arg(d);
        }
        let mut child = cmd.spawn().expect("redis-server on PATH");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if raw_command(self.port, "PING").is_some_and(|r| r.starts_with("+PONG")) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGKILLs the server and starts it again on the same port and data
    /// directory (a crash and restart).
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server did not restart");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub async fn pool(&self) -> bb8::Pool<RedisConnectionManager> {
        let manager = RedisConnectionManager::new(self.url()).expect("redis url");
        bb8::Pool::builder().max_size(16).connection_timeout(Duration::from_secs(5)).build(manager).await.expect("pool")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
