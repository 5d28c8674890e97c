//! A real Redis server for tests, from the `redis-server` Debian package.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{STARTUP_LIMIT, Watchdog, await_ready, free_port, fresh_dir, sh_quote};

/// A Redis server of its own on a free port of 127.0.0.1, in a fresh temporary directory,
/// without persistence. It can be stopped and restarted on the same port (outage tests).
///
/// Dropping it kills the server and removes the directory; its watchdog does the same if
/// the test process exits without dropping it.
pub struct Redis {
    port: u16,
    dir: PathBuf,
    /// The running server; `None` after `stop`.
    child: Option<Child>,
    /// Kills the last server started (its pid is sent to it) and removes `dir`.
    watchdog: Watchdog,
}

impl Redis {
    /// Starts a new server. Panics with the reason when it cannot.
    pub fn start() -> Redis {
        let dir = fresh_dir("redis");
        let script = format!(
            "case $last in ''|*[!0-9]*) ;; *) kill -9 $last 2>/dev/null;; esac; rm -rf {}",
            sh_quote(&dir.to_string_lossy())
        );
        let watchdog = Watchdog::start(&script);
        let mut redis = Redis {
            port: 0,
            dir,
            child: None,
            watchdog,
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            redis.port = free_port();
            match redis.spawn(Duration::from_secs(10)) {
                Ok(()) => return redis,
                Err(e) => last_error = e,
            }
        }
        panic!("Redis did not start: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the server is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (like a crash: no goodbye to clients). Its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.watchdog.note("none");
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered, and its
    /// data is kept, like a Redis with persistence that comes back as it was.
    pub fn pause(&self) {
        crate::process::signal(self.child.as_ref(), "-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        crate::process::signal(self.child.as_ref(), "-CONT");
    }

    /// Stops the server if it runs, then starts a new, empty one on the same port. Waits up
    /// to 30 s for the port to be free again.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            match self.spawn(Duration::from_secs(5)) {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("Redis did not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Starts `redis-server` on `self.port` and waits until it answers PING.
    fn spawn(&mut self, limit: Duration) -> Result<(), String> {
        let log_path = self.dir.join("redis.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "redis-server is not installed. Install the Debian package `redis-server` \
                         (apt-get install redis-server)."
                    )
                }
                format!("cannot run redis-server: {e}")
            })?;
        let port = self.port;
        let child = await_ready(
            child,
            "redis-server",
            &log_path,
            &mut self.watchdog,
            limit,
            || ping(port),
        )?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        // Dropping the watchdog (a field, right after this) removes the directory.
    }
}

/// Whether a Redis server answers `PING` on the port.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}
