//! MediaServer processes for call tests: the real `mediaserver` binary on loopback ports,
//! beating into the test's Redis, killable with SIGKILL.

use crate::process::{
    STARTUP_LIMIT, Watchdog, await_ready, free_port, fresh_dir, log_tail, sh_quote,
};
use crate::ucserver::{binary, http_status};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The control API secret every test MediaServer and UCServer shares.
pub const MEDIA_SECRET: &str = "media-secret-0123456789";

/// One running `mediaserver` process.
pub struct MediaServer {
    pub id: String,
    pub control_port: u16,
    pub udp_port: u16,
    redis_url: String,
    dir: PathBuf,
    child: Option<Child>,
    watchdog: Watchdog,
}

impl MediaServer {
    /// Starts MediaServer `id` reporting to `redis_url`; waits until `/healthz` answers.
    pub fn start(id: &str, redis_url: &str) -> MediaServer {
        let dir = fresh_dir(&format!("mediaserver-{id}"));
        let script = format!(
            "case $last in ''|*[!0-9]*) ;; *) kill -9 $last 2>/dev/null;; esac; rm -rf {}",
            sh_quote(&dir.to_string_lossy())
        );
        let mut server = MediaServer {
            id: id.to_string(),
            control_port: 0,
            udp_port: 0,
            redis_url: redis_url.to_string(),
            dir,
            child: None,
            watchdog: Watchdog::start(&script),
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            server.control_port = free_port();
            server.udp_port = free_udp_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("mediaserver {id} did not start: {last_error}");
    }

    /// The control API base URL, as `ucadmin media add` takes it.
    pub fn control_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.control_port)
    }

    /// The whole log file (it goes with the server's directory when dropped).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("mediaserver.log")
    }

    pub fn log(&self) -> String {
        log_tail(&self.dir.join("mediaserver.log"))
    }

    /// SIGKILL: every call it carries loses its media at once.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.watchdog.note("none");
    }

    /// Starts it again on the same ports (a new incarnation).
    pub fn restart(&mut self) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(error) if Instant::now() >= deadline => {
                    panic!("mediaserver {} did not restart: {error}", self.id)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log_path = self.dir.join("mediaserver.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(binary("mediaserver"))
            .env("UC_MEDIA_ID", &self.id)
            .env(
                "UC_MEDIA_LISTEN",
                format!("127.0.0.1:{}", self.control_port),
            )
            .env("UC_MEDIA_UDP", format!("127.0.0.1:{}", self.udp_port))
            .env("UC_MEDIA_PUBLIC_IP", "127.0.0.1")
            .env("UC_MEDIA_SECRET", MEDIA_SECRET)
            .env("UC_MEDIA_CONNECT_TIMEOUT_MS", "10000")
            .env("UC_REDIS_URL", &self.redis_url)
            .env("UC_LOG", "info")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run mediaserver: {e}"))?;
        let port = self.control_port;
        let child = await_ready(
            child,
            "mediaserver",
            &log_path,
            &mut self.watchdog,
            STARTUP_LIMIT,
            || http_status(port, "/healthz") == Some(200),
        )?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A UDP port nobody uses right now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}
