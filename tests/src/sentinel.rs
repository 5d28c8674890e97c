//! A Redis primary with a replica watched by three Redis Sentinels, all real processes from
//! the `redis-server` and `redis-sentinel` Debian packages, for failover tests.
//!
//! The Sentinels call the primary down after [`DOWN_AFTER_MS`] of silence and promote the
//! replica; the quorum is two of three, as in a real deployment. Every process listens on a
//! free port of 127.0.0.1 in one fresh temporary directory. One watchdog holds the pids of
//! all five and kills them, then removes the directory, when the cluster is dropped or the
//! test process ends in any way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{
    STARTUP_LIMIT, Watchdog, free_port, fresh_dir, log_tail, run_bounded, sh_quote,
};

/// The name the Sentinels monitor the primary under.
pub const SERVICE: &str = "mymaster";
/// Silence after which a Sentinel calls a node down (`down-after-milliseconds`).
pub const DOWN_AFTER_MS: u64 = 1_000;
/// Sentinel's `failover-timeout`: how long one failover attempt may take before another.
pub const FAILOVER_TIMEOUT_MS: u64 = 5_000;

/// One process of the cluster.
struct Node {
    port: u16,
    /// The running process; `None` after it was killed.
    child: Option<Child>,
    log: PathBuf,
}

/// Two data nodes (index 0 starts as primary, index 1 as its replica) and three Sentinels.
pub struct SentinelCluster {
    dir: PathBuf,
    data: Vec<Node>,
    sentinels: Vec<Node>,
    /// Kills every pid in the last line written (`note_pids`) and removes `dir`.
    watchdog: Watchdog,
}

impl SentinelCluster {
    /// Starts the primary, its replica and three Sentinels, and waits until the replica is in
    /// sync and every Sentinel answers (and so names the primary). Panics with the reason
    /// when it cannot. Before a failover, call [`SentinelCluster::await_failover_ready`].
    pub fn start() -> SentinelCluster {
        let dir = fresh_dir("sentinel");
        let script = format!(
            "for pid in $last; do case $pid in ''|*[!0-9]*) ;; *) kill -9 $pid 2>/dev/null;; esac; done; rm -rf {}",
            sh_quote(&dir.to_string_lossy())
        );
        let mut cluster = SentinelCluster {
            dir,
            data: Vec::new(),
            sentinels: Vec::new(),
            watchdog: Watchdog::start(&script),
        };
        let primary = cluster.spawn_data(None);
        cluster.data.push(primary);
        let primary_port = cluster.data[0].port;
        let replica = cluster.spawn_data(Some(primary_port));
        cluster.data.push(replica);
        cluster.wait_until("the replica is in sync", |cluster| {
            info_field(cluster.data[1].port, "replication", "master_link_status").as_deref()
                == Some("up")
        });
        for index in 0..3 {
            let sentinel = cluster.spawn_sentinel(index, primary_port);
            cluster.sentinels.push(sentinel);
        }
        cluster
    }

    /// Waits until every Sentinel knows the replica and the two other Sentinels (they learn
    /// of each other through the primary within a few seconds); before that, a failover could
    /// not be agreed on.
    pub fn await_failover_ready(&self) {
        self.wait_until(
            "every Sentinel knows the replica and the other Sentinels",
            |cluster| {
                cluster.sentinels.iter().all(|sentinel| {
                    let fields = sentinel_master(sentinel.port);
                    fields.get("num-slaves").map(String::as_str) == Some("1")
                        && fields.get("num-other-sentinels").map(String::as_str) == Some("2")
                })
            },
        );
    }

    /// `redis-sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect();
        format!("redis-sentinel://{}/{SERVICE}", hosts.join(","))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The port of the data node the Sentinels name as primary now (asked of the first
    /// Sentinel that answers).
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|sentinel| {
            let output = redis_cli(
                sentinel.port,
                &["SENTINEL", "get-master-addr-by-name", SERVICE],
            )?;
            output.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// The ports of the two data nodes (the first started as primary).
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|node| node.port).collect()
    }

    /// Kills the current primary with SIGKILL (no goodbye, like a power cut) and returns its
    /// port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("a Sentinel names the primary");
        let node = self
            .data
            .iter_mut()
            .find(|node| node.port == port)
            .expect("the primary is one of ours");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.note_pids();
        port
    }

    /// Waits until the Sentinels name another primary than `old_port` and that node says it
    /// is a primary (`role:master`); returns its port.
    pub fn await_promotion(&self, old_port: u16) -> u16 {
        let mut promoted = 0;
        self.wait_until("Sentinel promoted the replica", |cluster| {
            match cluster.primary_port() {
                Some(port)
                    if port != old_port
                        && info_field(port, "replication", "role").as_deref() == Some("master") =>
                {
                    promoted = port;
                    true
                }
                _ => false,
            }
        });
        promoted
    }

    /// The log tails of every process, for a panic message.
    pub fn logs(&self) -> String {
        self.data
            .iter()
            .chain(&self.sentinels)
            .map(|node| format!("--- {}:\n{}", node.log.display(), log_tail(&node.log)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pids of every running process.
    fn running_pids(&self) -> Vec<String> {
        self.data
            .iter()
            .chain(&self.sentinels)
            .filter_map(|node| node.child.as_ref())
            .map(|child| child.id().to_string())
            .collect()
    }

    /// Tells the watchdog the pids of every running process.
    fn note_pids(&mut self) {
        let pids = self.running_pids();
        let line = if pids.is_empty() {
            "none".to_string()
        } else {
            pids.join(" ")
        };
        self.watchdog.note(&line);
    }

    fn spawn_data(&mut self, replica_of: Option<u16>) -> Node {
        self.spawn_retrying(|cluster, port| {
            let node_dir = cluster.dir.join(format!("redis-{port}"));
            std::fs::create_dir_all(&node_dir).map_err(|e| e.to_string())?;
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                // The replica's first sync starts at once, not after the default 5 s wait.
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(&node_dir);
            if let Some(primary) = replica_of {
                command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
            }
            Ok((
                command,
                cluster.dir.join(format!("redis-{port}.log")),
                "redis-server",
            ))
        })
    }

    fn spawn_sentinel(&mut self, index: usize, primary_port: u16) -> Node {
        self.spawn_retrying(|cluster, port| {
            // Sentinel rewrites its configuration file as it learns: one file each.
            let config = cluster.dir.join(format!("sentinel-{index}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir = cluster.dir.display()
            );
            std::fs::write(&config, text).map_err(|e| e.to_string())?;
            let mut command = Command::new("redis-sentinel");
            command.arg(&config);
            Ok((
                command,
                cluster.dir.join(format!("sentinel-{index}.log")),
                "redis-sentinel",
            ))
        })
    }

    /// Starts a process on a free port, retrying on another port when it does not come up
    /// (another process may have taken the port in between).
    fn spawn_retrying(
        &mut self,
        prepare: impl Fn(&Self, u16) -> Result<(Command, PathBuf, &'static str), String>,
    ) -> Node {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let (mut command, log, what) = prepare(self, port).unwrap_or_else(|e| panic!("{e}"));
            match self.spawn_one(&mut command, port, &log, what) {
                Ok(child) => {
                    return Node {
                        port,
                        child: Some(child),
                        log,
                    };
                }
                Err(error) => last_error = error,
            }
        }
        panic!("{last_error}");
    }

    fn spawn_one(
        &mut self,
        command: &mut Command,
        port: u16,
        log_path: &Path,
        what: &str,
    ) -> Result<Child, String> {
        let log = std::fs::File::create(log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {what} ({e}). Install the Debian packages `redis-server` and \
                     `redis-sentinel` (apt-get install redis-server redis-sentinel)."
                )
            });
        let mut pids = self.running_pids();
        pids.push(child.id().to_string());
        self.watchdog.note(&pids.join(" "));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.note_pids();
                return Err(format!("{what} exited ({status}):\n{}", log_tail(log_path)));
            }
            if redis_cli(port, &["PING"]).is_some_and(|answer| answer.trim() == "PONG") {
                return Ok(child);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.note_pids();
                return Err(format!(
                    "{what} did not answer PING within 10 s:\n{}",
                    log_tail(log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SentinelCluster {
    fn drop(&mut self) {
        for node in self.data.iter_mut().chain(self.sentinels.iter_mut()) {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.watchdog.note("none");
        // Dropping the watchdog (a field, right after this) removes the directory.
    }
}

/// `redis-cli` against a loopback port; its answer, or `None` when it cannot connect.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let output = run_bounded(
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args),
        Duration::from_secs(5),
    )
    .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    (!text.starts_with("Could not connect") && !text.is_empty()).then_some(text)
}

/// One field of `INFO <section>` of a data node.
fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    let info = redis_cli(port, &["INFO", section])?;
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// What a Sentinel knows of the primary (`SENTINEL master mymaster`), field by field.
fn sentinel_master(port: u16) -> std::collections::HashMap<String, String> {
    let output = redis_cli(port, &["SENTINEL", "master", SERVICE]).unwrap_or_default();
    let lines: Vec<&str> = output.lines().collect();
    lines
        .chunks(2)
        .filter(|pair| pair.len() == 2)
        .map(|pair| (pair[0].trim().to_string(), pair[1].trim().to_string()))
        .collect()
}
