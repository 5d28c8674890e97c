//! Plumbing shared by the server harnesses: temporary directories, free loopback ports,
//! commands with a time limit, and the watchdog that cleans up after a test process however
//! it ends.

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any server may take to start, and any helper command to finish.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// A fresh, empty directory under the system's temporary directory, named after `kind`,
/// this process and a counter, so parallel tests and test binaries never share one. Nothing
/// removes it here: the owner's watchdog does.
pub fn fresh_dir(kind: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "sb-{kind}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let path = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    path
}

/// Sends `signal` (`-STOP`, `-CONT`, …) to a running child, if there is one.
pub fn signal(child: Option<&Child>, signal: &str) {
    if let Some(child) = child {
        let _ = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status();
    }
}

/// A loopback TCP port that was free a moment ago and that this process has not handed out
/// before. Another process can still take it before the server binds it: callers retry
/// with a new port when their server fails to start.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
        let port = listener
            .local_addr()
            .expect("bound socket has an address")
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Runs a command to its end, killing it after `limit`. Its output must be small (it is
/// read after the exit, through pipes).
pub fn run_bounded(command: &mut Command, limit: Duration) -> Result<Output, String> {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {description}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{description} did not finish within {limit:?}"));
            }
            Err(e) => return Err(format!("waiting for {description}: {e}")),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("reading output of {description}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{description} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The last lines of a log file, for panic messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Waits until a just-spawned server is `ready()`, for at most `limit`. On success the child
/// is handed back; if it exits or stays silent it is killed, the watchdog told, and the error
/// names `what` with the tail of its log.
pub fn await_ready(
    mut child: std::process::Child,
    what: &str,
    log_path: &Path,
    watchdog: &mut Watchdog,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<std::process::Child, String> {
    watchdog.note(&child.id().to_string());
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            watchdog.note("none");
            return Err(format!("{what} exited ({status}):\n{}", log_tail(log_path)));
        }
        if ready() {
            return Ok(child);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            watchdog.note("none");
            return Err(format!(
                "{what} did not become ready within {limit:?}:\n{}",
                log_tail(log_path)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Quotes a string for `sh`.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A `sh` process that waits for this process to go away, then runs a cleanup script.
///
/// It reads lines from a pipe whose only writer is this process (std opens pipes
/// close-on-exec, so no other child inherits it). The pipe reaches end-of-file when the
/// `Watchdog` is dropped *or* when this process exits in any way (end of `main`, a panic
/// in a `static`'s owner, `SIGKILL`), and then the script runs with `$last` set to the last
/// line written (`note`). It runs in a process group of its own, so a Ctrl-C aimed at the
/// test run does not kill it before it has cleaned up.
///
/// This is how servers held in `static`s (which are never dropped) are stopped at exit.
pub struct Watchdog {
    child: Child,
    /// Our end of the pipe; `None` once closed.
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    pub fn start(script: &str) -> Watchdog {
        use std::os::unix::process::CommandExt;
        let full = format!("last=; while read -r line; do last=$line; done; {script}");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(full)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("cannot start the cleanup watchdog (sh)");
        let stdin = child.stdin.take();
        Watchdog { child, stdin }
    }

    /// Gives the script's `$last` a new value (for example the pid of a restarted server).
    pub fn note(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }
}

impl Drop for Watchdog {
    /// Runs the cleanup now and waits for it (bounded).
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}

/// The uid of this process (from the owner of `/proc/self`, to need no libc binding).
pub fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// uid and gid of a system user, from `/etc/passwd`.
pub fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == name {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Postgres, Redis};
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;

    fn port_open(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn redis_stops_restarts_and_cleans_up() {
        let mut redis = Redis::start();
        let (port, dir) = (redis.port(), redis.dir().to_path_buf());
        assert!(port_open(port));
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
        redis.stop();
        assert!(!redis.is_running());
        assert!(!port_open(port), "stopped");
        redis.restart();
        assert_eq!(redis.port(), port, "same port after restart");
        assert!(port_open(port));
        redis.restart();
        assert!(port_open(port), "restart of a running server");
        drop(redis);
        assert!(!port_open(port), "dropped server is gone");
        assert!(!dir.exists(), "{} removed", dir.display());
    }

    #[test]
    fn postgres_databases_and_cleanup() {
        let postgres = Postgres::start();
        let (port, dir) = (postgres.port(), postgres.dir().to_path_buf());
        assert!(port_open(port));
        assert_eq!(
            postgres.create_database("first"),
            format!("postgres://postgres@127.0.0.1:{port}/first")
        );
        let again = std::panic::catch_unwind(|| postgres.create_database("first"));
        assert!(again.is_err(), "a database cannot be created twice");
        drop(postgres);
        assert!(!port_open(port), "dropped server is gone");
        assert!(!dir.exists(), "{} removed", dir.display());
    }

    #[test]
    fn servers_of_a_killed_process_are_cleaned_up() {
        let mut child = Command::new(crate::ucserver::binary("harness-child"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut servers = Vec::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while servers.len() < 2 {
            let line = lines.next().expect("child reports its servers").unwrap();
            if let Some(rest) = line.split_once("SERVER ").map(|(_, rest)| rest) {
                let (port, dir) = rest.split_once(' ').unwrap();
                servers.push((port.parse::<u16>().unwrap(), PathBuf::from(dir)));
            }
        }
        for (port, dir) in &servers {
            assert!(port_open(*port) && dir.exists());
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no atexit
        child.wait().unwrap();
        for (port, dir) in &servers {
            wait_until(&format!("port {port} is closed"), || !port_open(*port));
            wait_until(&format!("{} is removed", dir.display()), || !dir.exists());
        }
    }
}
