//! UCServer processes for cross-server tests: the real `ucserver` binary, started with its
//! configuration in the environment, killable with SIGKILL like a crashed machine.
//!
//! The binary is the one `cargo build` put next to the test executable
//! (`target/<profile>/ucserver`); the README's test command builds it first.

use crate::process::{
    STARTUP_LIMIT, Watchdog, await_ready, free_port, fresh_dir, log_tail, sh_quote,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Password of the initial `admin` user of every test server.
pub const ADMIN_PASSWORD: &str = "admin-secret-1";

/// Where a workspace binary lives next to the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs from target/<profile>/deps/, a harness binary from target/<profile>/.
    let here = exe.parent().expect("executable directory");
    let dir = if here.ends_with("deps") {
        here.parent().expect("target directory")
    } else {
        here
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`, as the README's test command does)",
        path.display()
    );
    path
}

/// One running `ucserver` process.
pub struct UcServer {
    pub id: String,
    pub port: u16,
    env: Vec<(String, String)>,
    dir: PathBuf,
    child: Option<Child>,
    watchdog: Watchdog,
}

impl UcServer {
    /// Starts server `id` with `database_url` and, for a cluster, `redis_url`, plus extra
    /// `UC_*` settings. Waits until `/readyz` answers 200.
    pub fn start(
        id: &str,
        database_url: &str,
        redis_url: Option<&str>,
        extra: &[(&str, &str)],
    ) -> UcServer {
        let dir = fresh_dir(&format!("ucserver-{id}"));
        let script = format!(
            "case $last in ''|*[!0-9]*) ;; *) kill -9 $last 2>/dev/null;; esac; rm -rf {}",
            sh_quote(&dir.to_string_lossy())
        );
        let watchdog = Watchdog::start(&script);
        let mut env = vec![
            ("UC_SERVER_ID".to_string(), id.to_string()),
            ("UC_DATABASE_URL".to_string(), database_url.to_string()),
            ("UC_ADMIN_PASSWORD".to_string(), ADMIN_PASSWORD.to_string()),
            (
                "UC_DATA_DIR".to_string(),
                dir.join("data").to_string_lossy().into_owned(),
            ),
            ("UC_LOG".to_string(), "info,ucserver=debug".to_string()),
        ];
        if let Some(redis) = redis_url {
            env.push(("UC_REDIS_URL".to_string(), redis.to_string()));
        }
        for (key, value) in extra {
            env.push((key.to_string(), value.to_string()));
        }
        let mut server = UcServer {
            id: id.to_string(),
            port: 0,
            env,
            dir,
            child: None,
            watchdog,
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn("/readyz") {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("ucserver {id} did not start: {last_error}");
    }

    /// `http://localhost:PORT`, the URL the server announces.
    pub fn url(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// The whole log file (it goes with the server's directory when dropped).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("ucserver.log")
    }

    pub fn log(&self) -> String {
        log_tail(&self.dir.join("ucserver.log"))
    }

    /// Kills the process with SIGKILL: no goodbye, no cleanup, like a power cut.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.watchdog.note("none");
    }

    /// Freezes the process (SIGSTOP): its sockets stay open, it answers nothing.
    pub fn pause(&self) {
        crate::process::signal(self.child.as_ref(), "-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        crate::process::signal(self.child.as_ref(), "-CONT");
    }

    /// Stops it with SIGTERM (graceful shutdown) and waits up to 30 s.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + STARTUP_LIMIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.watchdog.note("none");
    }

    /// Starts the same server again on the same port (after `kill9` or `terminate`).
    pub fn restart(&mut self) {
        self.restart_until("/readyz");
    }

    /// [`UcServer::restart`] while its database is away: waits for `/healthz` (it answers)
    /// instead of `/readyz` (which needs the database).
    pub fn restart_without_database(&mut self) {
        self.restart_until("/healthz");
    }

    fn restart_until(&mut self, ready_path: &'static str) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            match self.spawn(ready_path) {
                Ok(()) => return,
                Err(error) if Instant::now() >= deadline => {
                    panic!("ucserver {} did not restart: {error}", self.id)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn spawn(&mut self, ready_path: &'static str) -> Result<(), String> {
        let log_path = self.dir.join("ucserver.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(binary("ucserver"));
        command.env("UC_LISTEN", format!("127.0.0.1:{}", self.port));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run ucserver: {e}"))?;
        let port = self.port;
        let child = await_ready(
            child,
            "ucserver",
            &log_path,
            &mut self.watchdog,
            STARTUP_LIMIT,
            || http_status(port, ready_path) == Some(200),
        )?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for UcServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Status code of a plain HTTP GET on loopback, or `None` when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
