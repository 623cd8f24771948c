//! Private redis-server processes for the queue tests, started through the
//! one launcher (`devsvc::Launch`): free ports on 127.0.0.1, a log in a temp
//! dir quoted when start-up fails, killed and reaped on drop (also when a
//! test panics).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::redis_pool::{RedisManager, RedisPool};

use crate::devsvc::{Launch, LaunchError, Launched, Ready};

/// Longest wait for a redis-server to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A port that was free a moment ago. Start-up retries with another port if it was taken.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
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
    child: Option<Launched>,
    pub port: u16,
    extra: Vec<String>,
    /// Its log and, with persistence, the AOF; removed on drop, after the server (fields drop in order).
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// No persistence: the fastest start.
    pub fn start() -> Self {
        Self::launch(vec!["--save", "", "--appendonly", "no"])
    }

    /// AOF fsynced on every write, so a SIGKILL loses nothing acknowledged.
    pub fn start_persistent() -> Self {
        Self::launch(vec!["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
    }

    fn launch(extra: Vec<&str>) -> Self {
        let extra: Vec<String> = extra.into_iter().map(str::to_owned).collect();
        let mut last = None;
        for _ in 0..10 {
            let mut server = RedisServer {
                child: None,
                port: free_port(),
                extra: extra.clone(),
                dir: tempfile::tempdir().expect("a temp dir for redis-server"),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = Some(e),
            }
        }
        panic!("could not start redis-server (10 ports tried): {}", last.map(|e| e.to_string()).unwrap_or_default());
    }

    /// Starts the process on `self.port`, waiting until it answers PING.
    fn spawn(&mut self) -> Result<(), LaunchError> {
        let mut child = Launch::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--logfile", ""])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .log_to(self.dir.path().join("redis.log"))
            .spawn()?;
        let port = self.port;
        let mut pong = || raw_command(port, "PING").is_some_and(|r| r.starts_with("+PONG"));
        child.wait_ready(Ready::Probe(&mut pong), START_TIMEOUT)?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILLs the server and starts it again on the same port and data
    /// directory (a crash and restart).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("redis-server did not restart on port {}: {e}", self.port);
        }
    }

    /// SIGKILL, and reaped.
    pub fn stop(&mut self) {
        drop(self.child.take());
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub async fn pool(&self) -> RedisPool {
        let manager = RedisManager::new(self.url()).expect("redis url");
        bb8::Pool::builder().max_size(16).connection_timeout(Duration::from_secs(5)).build(manager).await.expect("pool")
    }
}
