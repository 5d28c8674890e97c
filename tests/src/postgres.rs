//! A real PostgreSQL server for tests, from the `postgresql` Debian package.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::process::{
    STARTUP_LIMIT, Watchdog, current_uid, free_port, fresh_dir, log_tail, run_bounded, sh_quote,
    system_user,
};

/// A PostgreSQL server of its own: a cluster made with `initdb` in a fresh temporary
/// directory, listening on a free port of 127.0.0.1 (and a Unix socket in that directory),
/// with trust authentication for user `postgres` and durability switched off for speed.
///
/// Dropping it stops the server (`pg_ctl stop -m immediate`) and removes the directory; if it
/// is never dropped (a `static`, see [`Postgres::shared`]), its watchdog does the same when
/// the test process exits.
///
/// `initdb` refuses to run as root. When the tests run as root (here and in CI), every
/// PostgreSQL program runs as the `postgres` system user (`runuser -u postgres --`), which
/// owns the temporary directory.
pub struct Postgres {
    port: u16,
    /// The temporary directory: `data/` (the cluster), the socket, `postgres.log`.
    dir: PathBuf,
    /// The server's options (`pg_ctl -o`), for a restart.
    options: String,
    /// Stops the server and removes `dir` when dropped or when this process exits.
    _watchdog: Watchdog,
}

impl Postgres {
    /// Starts a new server. Panics with the reason when it cannot (missing package, a
    /// server that does not come up within 30 s).
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = fresh_dir("pg");
        let data = dir.join("data");
        let log = dir.join("postgres.log");
        let as_postgres = runs_as_postgres_user();
        if as_postgres {
            let (uid, gid) = system_user("postgres").expect("checked by runs_as_postgres_user");
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("cannot hand {} to user postgres: {e}", dir.display()));
        }

        // From here on the watchdog owns the directory: a panic below still cleans up.
        let pg_ctl = bin.join("pg_ctl");
        let stop_script = format!(
            "{} {} -D {} stop -m immediate -w -t 10 >/dev/null 2>&1; rm -rf {}",
            if as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            sh_quote(&pg_ctl.to_string_lossy()),
            sh_quote(&data.to_string_lossy()),
            sh_quote(&dir.to_string_lossy()),
        );
        let watchdog = Watchdog::start(&stop_script);

        run_bounded(
            pg_command(&bin.join("initdb"), as_postgres)
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data),
            STARTUP_LIMIT,
        )
        .unwrap_or_else(|e| panic!("initdb failed: {e}"));

        // The port can be taken between `free_port` and the server's bind: try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            // fsync off (the machine does not crash under a test) but commits written before
            // they are acknowledged, so a server stopped with `-m immediate` keeps them.
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c full_page_writes=off -c max_connections=300",
                dir.display()
            );
            let started = run_bounded(
                pg_command(&pg_ctl, as_postgres)
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(&log)
                    .args([
                        "-w",
                        "-t",
                        &STARTUP_LIMIT.as_secs().to_string(),
                        "-o",
                        &options,
                        "start",
                    ]),
                STARTUP_LIMIT + std::time::Duration::from_secs(5),
            );
            match started {
                Ok(_) => {
                    return Postgres {
                        port,
                        dir,
                        options,
                        _watchdog: watchdog,
                    };
                }
                Err(e) => {
                    last_error = format!("{e}\n--- {} ---\n{}", log.display(), log_tail(&log));
                }
            }
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`): connections drop, the
    /// port closes. [`Postgres::restart`] brings it back with its data.
    pub fn stop(&self) {
        let data = self.dir.join("data");
        run_bounded(
            pg_command(&bin_dir().join("pg_ctl"), runs_as_postgres_user())
                .arg("-D")
                .arg(&data)
                .args(["stop", "-m", "immediate", "-w", "-t", "30"]),
            STARTUP_LIMIT,
        )
        .unwrap_or_else(|e| panic!("PostgreSQL did not stop: {e}"));
    }

    /// Starts the stopped server again on the same port, with its data.
    pub fn restart(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        run_bounded(
            pg_command(&bin_dir().join("pg_ctl"), runs_as_postgres_user())
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", &STARTUP_LIMIT.as_secs().to_string()])
                .args(["-o", &self.options, "start"]),
            STARTUP_LIMIT + std::time::Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("PostgreSQL did not restart: {e}\n{}", log_tail(&log)));
    }

    /// One server for the whole test process, started on first use and stopped when the
    /// process exits (by its watchdog: statics are never dropped). Give each test its own
    /// database with [`Postgres::create_database`].
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory (cluster in `data/`, log in `postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// URL of the `postgres` database, as the `postgres` superuser.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// URL of a database of this server.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a database (names: `[a-z0-9_]`, at most 63 characters) and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database name '{name}' must be 1-63 characters of a-z, 0-9, _"
        );
        run_bounded(
            Command::new(bin_dir().join("psql"))
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ])
                .args(["-p", &self.port.to_string()])
                .args(["-c", &format!("CREATE DATABASE \"{name}\"")]),
            STARTUP_LIMIT,
        )
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        self.database_url(name)
    }

    /// Runs SQL in one test database (as the superuser), e.g. to make a table vanish under
    /// a running server.
    pub fn execute(&self, database: &str, sql: &str) {
        run_bounded(
            Command::new(bin_dir().join("psql"))
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
                .args(["-U", "postgres", "-d", database])
                .args(["-p", &self.port.to_string()])
                .args(["-c", sql]),
            STARTUP_LIMIT,
        )
        .unwrap_or_else(|e| panic!("cannot run {sql:?} in {database}: {e}"));
    }
}

/// An exclusive lock on a table, held by a `psql` of its own until its time is up (or this is
/// dropped).
pub struct TableLock {
    child: std::process::Child,
}

impl TableLock {
    /// Waits until the lock's time is up and it is released.
    pub fn wait(mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Postgres {
    /// Holds an exclusive lock on `table` of `database` for `seconds`, so that every write to
    /// it waits: a slow database, for real. The lock is taken when this returns.
    pub fn lock_table(&self, database: &str, table: &str, seconds: u32) -> TableLock {
        let psql = |sql: &str| {
            let mut command = Command::new(bin_dir().join("psql"));
            command
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
                .args(["-U", "postgres", "-d", database])
                .args(["-p", &self.port.to_string()])
                .args(["-c", sql]);
            command
        };
        let lock = TableLock {
            child: psql(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({seconds}); COMMIT;"
            ))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start psql: {e}")),
        };
        // Taken once pg_locks shows it granted.
        let check = format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = '{table}' AND l.mode = 'AccessExclusiveLock' AND l.granted) \
             THEN RAISE EXCEPTION 'not yet'; END IF; END $$;"
        );
        let deadline = std::time::Instant::now() + STARTUP_LIMIT;
        while !run_bounded(&mut psql(&check), STARTUP_LIMIT).is_ok_and(|o| o.status.success()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock on {table} was not taken"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        lock
    }
}

/// The `bin` directory of the newest PostgreSQL under `/usr/lib/postgresql`.
fn bin_dir() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let newest = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version: f64 = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match newest {
            Some((_, bin)) => bin,
            None => panic!(
                "PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb. \
                 Install the Debian package `postgresql` (apt-get install postgresql)."
            ),
        }
    })
    .clone()
}

/// Whether PostgreSQL programs must run as the `postgres` user (we are root).
fn runs_as_postgres_user() -> bool {
    if current_uid() != 0 {
        return false;
    }
    if system_user("postgres").is_none() {
        panic!(
            "running as root, but there is no `postgres` system user to run PostgreSQL as \
             (the Debian package `postgresql` creates it)"
        );
    }
    true
}

fn pg_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}
