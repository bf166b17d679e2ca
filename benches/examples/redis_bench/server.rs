//! A private `redis-server` for the benchmark: a free loopback port, a
//! temporary directory, no persistence; killed (and its directory
//! removed) when dropped, so also when the benchmark panics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::BoxError;

/// A running redis-server, killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// Whether `dir` was made here (and is removed on drop).
    own_dir: bool,
}

impl RedisServer {
    /// Starts `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no`
    /// in `dir` (or a new temporary directory), writing its pid to
    /// `<dir>/redis.pid` so a wrapper script can kill it if this process
    /// is killed by a signal, and waits until it answers `PING`.
    pub fn start(dir: Option<&Path>) -> Result<Self, BoxError> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let (dir, own_dir) = match dir {
            Some(d) => (d.to_path_buf(), false),
            None => (
                std::env::temp_dir()
                    .join(format!("fusebox-redis-bench-{}-{port}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir)?;
        // redis-server changes into `--dir` before it writes the pid file.
        let dir = std::path::absolute(dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--pidfile")
            .arg(dir.join("redis.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start redis-server ({e}): install the Debian package `redis-server`"
                )
            })?;
        let mut server = Self {
            child,
            port,
            dir,
            own_dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&mut self) -> Result<(), BoxError> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("redis-server exited at start: {status}").into());
            }
            if self.answers_ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(format!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        )
        .into())
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut reply = [0u8; 1];
        stream.write_all(b"PING\r\n").is_ok() && stream.read(&mut reply).is_ok_and(|n| n == 1)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.join("redis.pid"));
        if self.own_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
