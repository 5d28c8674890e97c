//! The command-line tools as scripts use them: `ucadmin` and `ucclient` binaries against a
//! single-node `ucserver` process (its embedded default: SQLite, in-process bus).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use switchboard_tests::process::fresh_dir;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer, binary};

fn run(tool: &str, url: &str, user: &str, password: &str, args: &[&str]) -> Output {
    Command::new(binary(tool))
        .args(["--url", url, "--user", user, "--password", password])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A `ucclient listen` whose JSON lines arrive on a channel.
struct Listener {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Listener {
    fn start(url: &str, user: &str, password: &str) -> Listener {
        Self::start_with(url, user, password, &[])
    }

    fn start_with(url: &str, user: &str, password: &str, extra: &[&str]) -> Listener {
        let mut child = Command::new(binary("ucclient"))
            .args([
                "--url",
                url,
                "--user",
                user,
                "--password",
                password,
                "listen",
                "--device",
                "cli",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("listen printed non-JSON {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Listener { child, lines }
    }

    fn wait_for(
        &self,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(value) if check(&value) => return value,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("listen did not print {what} within 15 s");
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn admin_and_client_tools_work_against_a_single_node() {
    let dir = fresh_dir("cli");
    let database = format!("sqlite:{}", dir.join("switchboard.db").display());
    let server = UcServer::start("uc1", &database, None, &[]);
    let url = server.url();
    let admin = |args: &[&str]| run("ucadmin", &url, "admin", ADMIN_PASSWORD, args);

    ok(admin(&[
        "user",
        "add",
        "alice",
        "--password",
        "alice-pass-1",
        "--display",
        "Alice A",
    ]));
    ok(admin(&["user", "add", "bob", "--password", "bob-pass-12"]));
    ok(admin(&["group", "add", "ops"]));
    ok(admin(&["group", "member", "add", "ops", "alice"]));
    ok(admin(&["group", "member", "add", "ops", "bob"]));
    ok(admin(&["license", "set", "uc-seat", "5"]));
    let users: serde_json::Value =
        serde_json::from_str(&ok(admin(&["user", "list", "--json"]))).unwrap();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
    assert_eq!(users[1]["home_server"], "uc1");
    let servers: serde_json::Value =
        serde_json::from_str(&ok(admin(&["server", "list", "--json"]))).unwrap();
    assert_eq!(servers["servers"][0]["id"], "uc1");
    assert_eq!(servers["servers"][0]["alive"], true);
    let licenses: serde_json::Value =
        serde_json::from_str(&ok(admin(&["license", "show", "--json"]))).unwrap();
    let seat = licenses
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "uc-seat")
        .unwrap();
    assert_eq!(seat["capacity"], 5);

    // A duplicate is refused with the server's typed error and a non-zero exit.
    let duplicate = admin(&["user", "add", "bob", "--password", "bob-pass-12"]);
    assert!(!duplicate.status.success());
    assert!(
        String::from_utf8_lossy(&duplicate.stderr).contains("conflict"),
        "{duplicate:?}"
    );

    let alice = |args: &[&str]| run("ucclient", &url, "alice", "alice-pass-1", args);
    let listener = Listener::start(&url, "bob", "bob-pass-12");
    listener.wait_for("hello", |v| v["type"] == "hello");

    ok(alice(&["send", "bob", "hello from the shell"]));
    let message = listener.wait_for("the message", |v| {
        v["type"] == "message" && v["message"]["body"] == "hello from the shell"
    });
    assert_eq!(message["message"]["sender"], "alice");
    ok(alice(&["send", "--group", "ops", "to the team"]));
    listener.wait_for("the group message", |v| {
        v["type"] == "message" && v["message"]["conversation"] == "g:ops"
    });

    ok(alice(&["presence", "set", "busy", "--note", "deploying"]));
    let got: serde_json::Value = serde_json::from_str(&ok(run(
        "ucclient",
        &url,
        "bob",
        "bob-pass-12",
        &["presence", "get", "alice", "--json"],
    )))
    .unwrap();
    // alice has no device connected: offline, but the rule shows bob (group mate) everything.
    assert_eq!(got["visibility"], "full");

    let history: serde_json::Value = serde_json::from_str(&ok(run(
        "ucclient",
        &url,
        "bob",
        "bob-pass-12",
        &["history", "alice", "--json"],
    )))
    .unwrap();
    assert_eq!(history[0]["body"], "hello from the shell");
    ok(run(
        "ucclient",
        &url,
        "bob",
        "bob-pass-12",
        &["read", "alice"],
    ));
    let journal: serde_json::Value =
        serde_json::from_str(&ok(alice(&["journal", "--json"]))).unwrap();
    assert!(
        journal
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["party"] == "bob" && j["kind"] == "chat"),
        "{journal}"
    );

    // Failures: a wrong password and an unknown user give the server's code and exit 1.
    let wrong = run("ucclient", &url, "alice", "not-her-password", &["journal"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("invalid_credentials"));
    let unknown = alice(&["presence", "get", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not_found"));
    drop(listener);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn softphone_calls_from_the_command_line() {
    let dir = fresh_dir("cli-calls");
    let database = format!("sqlite:{}", dir.join("switchboard.db").display());
    let server = UcServer::start("uc1", &database, None, &[]);
    let url = server.url();
    let admin = |args: &[&str]| run("ucadmin", &url, "admin", ADMIN_PASSWORD, args);
    for (name, password) in [
        ("alice", "alice-pass-1"),
        ("bob", "bob-pass-12"),
        ("carol", "carol-pass-1"),
    ] {
        ok(admin(&["user", "add", name, "--password", password]));
    }
    // The single node runs its own MediaServer, listed with the servers.
    let servers: serde_json::Value =
        serde_json::from_str(&ok(admin(&["server", "list", "--json"]))).unwrap();
    assert_eq!(servers["media"][0]["id"], "uc1-media", "{servers}");
    assert_eq!(servers["media"][0]["alive"], true);

    let bob = Listener::start_with(&url, "bob", "bob-pass-12", &["--auto-answer"]);
    bob.wait_for("hello", |v| v["type"] == "hello");
    let report: serde_json::Value = serde_json::from_str(&ok(run(
        "ucclient",
        &url,
        "alice",
        "alice-pass-1",
        &["call", "bob", "--seconds", "2", "--json"],
    )))
    .unwrap();
    assert_eq!(report["connected"], true, "{report}");
    assert_eq!(report["media"], "uc1-media");
    assert_eq!(report["result"], "answered");
    assert!(report["call"].as_str().unwrap().starts_with("uc1~"));
    assert!(report["packets_sent"].as_u64().unwrap() > 20, "{report}");
    assert!(
        report["packets_received"].as_u64().unwrap() > 20,
        "{report}"
    );
    let summary = bob.wait_for("the call summary", |v| v["type"] == "call_summary");
    assert_eq!(summary["call"], report["call"]);
    assert!(
        summary["packets_received"].as_u64().unwrap() > 20,
        "{summary}"
    );

    // Forwarding from the shell: set, show, clear.
    let bob_cli = |args: &[&str]| run("ucclient", &url, "bob", "bob-pass-12", args);
    ok(bob_cli(&["forward", "set", "noanswer", "carol"]));
    let rules: serde_json::Value =
        serde_json::from_str(&ok(bob_cli(&["forward", "show", "--json"]))).unwrap();
    assert_eq!(rules["no_answer"], "carol", "{rules}");
    ok(bob_cli(&["forward", "clear"]));
    let rules: serde_json::Value =
        serde_json::from_str(&ok(bob_cli(&["forward", "show", "--json"]))).unwrap();
    assert_eq!(rules, serde_json::json!({}));

    // A call to nobody: the server's code, exit 1.
    let nobody = run(
        "ucclient",
        &url,
        "alice",
        "alice-pass-1",
        &["call", "nobody", "--json"],
    );
    assert_eq!(nobody.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("not_found"),
        "{nobody:?}"
    );
}

fn fails(output: Output, expected: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "should fail: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    for word in expected {
        assert!(stderr.contains(word), "{word:?} not in {stderr}");
    }
    stderr
}

fn json(output: Output) -> serde_json::Value {
    let text = ok(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every action of the admin console from `ucadmin`, with `--json`: roles, versions guarding
/// edits, disabling, password resets, search, the audit log and the overview.
#[test]
fn several_admins_from_the_command_line() {
    let dir = fresh_dir("cli-admins");
    let database = format!("sqlite:{}", dir.join("switchboard.db").display());
    let server = UcServer::start("uc1", &database, None, &[]);
    let url = server.url();
    let admin = |args: &[&str]| run("ucadmin", &url, "admin", ADMIN_PASSWORD, args);
    let helen = |args: &[&str]| run("ucadmin", &url, "helen", "helen-pass-1", args);
    let uma = |args: &[&str]| run("ucadmin", &url, "uma", "uma-pass-12", args);

    let made = json(admin(&[
        "user",
        "add",
        "helen",
        "--password",
        "helen-pass-1",
        "--role",
        "read_only",
        "--json",
    ]));
    assert_eq!(
        (made["admin"].as_bool(), made["role"].as_str()),
        (Some(true), Some("read_only"))
    );
    ok(admin(&[
        "user",
        "add",
        "uma",
        "--password",
        "uma-pass-12",
        "--role",
        "users",
    ]));
    let dave = json(admin(&[
        "user",
        "add",
        "dave",
        "--password",
        "dave-pass-1",
        "--json",
    ]));
    assert_eq!(dave["version"], 1);
    assert_eq!(
        json(admin(&["user", "show", "dave", "--json"]))["version"],
        1
    );

    // A user admin changes dave from version 1; an edit from version 1 afterwards is refused
    // and names who changed him.
    let changed = json(uma(&[
        "user",
        "set",
        "dave",
        "--display",
        "Dave D",
        "--if-version",
        "1",
        "--json",
    ]));
    assert_eq!(
        (changed["version"].as_u64(), changed["changed_by"].as_str()),
        (Some(2), Some("uma"))
    );
    fails(
        admin(&[
            "user",
            "set",
            "dave",
            "--display",
            "Dave X",
            "--if-version",
            "1",
        ]),
        &["conflict", "uma", "version 2"],
    );
    assert_eq!(
        json(admin(&["user", "show", "dave", "--json"]))["display_name"],
        "Dave D"
    );

    // The helpdesk reads everything and changes nothing; the user admin leaves admins alone.
    let before = ok(admin(&["user", "list", "--json"]));
    fails(
        helen(&["user", "add", "x1", "--password", "x1-pass-12"]),
        &["forbidden", "read_only"],
    );
    fails(helen(&["user", "disable", "dave"]), &["forbidden"]);
    fails(helen(&["group", "add", "ops"]), &["forbidden"]);
    fails(helen(&["user", "reset-password", "dave"]), &["forbidden"]);
    fails(
        uma(&["user", "set", "helen", "--display", "H"]),
        &["forbidden", "administrators"],
    );
    fails(uma(&["license", "set", "uc-seat", "3"]), &["forbidden"]);
    assert_eq!(
        ok(admin(&["user", "list", "--json"])),
        before,
        "nothing changed"
    );
    assert_eq!(
        json(helen(&["user", "list", "--search", "dav", "--json"]))[0]["id"],
        "dave"
    );
    let groups = json(helen(&["group", "list", "--json"]));
    assert_eq!(groups.as_array().map(Vec::len), Some(0));

    // Disabled: no sign-in; enabled again with a new password made up by the server.
    let disabled = json(admin(&["user", "disable", "dave", "--json"]));
    assert_eq!(
        (disabled["disabled"].as_bool(), disabled["version"].as_u64()),
        (Some(true), Some(3))
    );
    let client = |password: &str| {
        run(
            "ucclient",
            &url,
            "dave",
            password,
            &["presence", "set", "available"],
        )
    };
    fails(client("dave-pass-1"), &["forbidden", "disabled"]);
    ok(admin(&["user", "enable", "dave", "--if-version", "3"]));
    let reset = json(admin(&["user", "reset-password", "dave", "--json"]));
    let password = reset["password"]
        .as_str()
        .expect("a password made up")
        .to_string();
    fails(client("dave-pass-1"), &["invalid_credentials"]);
    ok(client(&password));

    ok(admin(&["group", "add", "ops"]));
    let group = json(uma(&["group", "member", "add", "ops", "dave", "--json"]));
    assert_eq!(group["members"], serde_json::json!(["dave"]));

    let overview = json(helen(&["overview", "--json"]));
    assert_eq!(overview["servers"][0]["id"], "uc1");
    assert_eq!(overview["servers"][0]["alive"], true);
    assert_eq!(overview["role"], "read_only");
    assert_eq!(overview["users"], 4);
    assert!(
        overview["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{overview}"
    );

    // Deleting from an old version is refused; from the current one it works.
    let version = json(admin(&["user", "show", "dave", "--json"]))["version"]
        .as_u64()
        .unwrap();
    fails(
        admin(&["user", "remove", "dave", "--if-version", "1"]),
        &["conflict"],
    );
    let removed = json(admin(&[
        "user",
        "remove",
        "dave",
        "--if-version",
        &version.to_string(),
        "--json",
    ]));
    assert_eq!(removed["removed"], "dave");

    // Everything above, who did it and from where; the refused attempts left no entry.
    let audit = json(helen(&["audit", "list", "--limit", "100", "--json"]));
    let entries: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        entries.first().map(|e| e.1.as_str()),
        Some("user.delete"),
        "{entries:?}"
    );
    assert!(
        entries.contains(&("uma".to_string(), "user.update".to_string())),
        "{entries:?}"
    );
    assert!(
        entries.contains(&("uma".to_string(), "group.member.add".to_string())),
        "{entries:?}"
    );
    assert!(
        entries.iter().all(|(actor, _)| actor != "helen"),
        "{entries:?}"
    );
    assert_eq!(audit[0]["client"], "127.0.0.1");
    let text = ok(helen(&["audit", "list"]));
    assert!(text.lines().next().unwrap().contains("ACTION"), "{text}");
}

/// `ucadmin config`: list, set (cluster-wide and for one server), a refused value with its
/// reason and exit code 1, unset; on a single node (SQLite), which applies each change live.
#[test]
fn runtime_settings_from_the_command_line() {
    let dir = fresh_dir("cli-settings");
    let database = format!("sqlite:{}", dir.join("switchboard.db").display());
    let server = UcServer::start("uc1", &database, None, &[]);
    let url = server.url();
    let admin = |args: &[&str]| run("ucadmin", &url, "admin", ADMIN_PASSWORD, args);
    let running = |key: &str| {
        let view = json(admin(&["config", "list", "--json"]));
        let setting = view["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap()
            .clone();
        let on = setting["servers"][0].clone();
        (
            on["running"].clone(),
            on["source"].clone(),
            on["applied"].clone(),
        )
    };
    assert_eq!(
        running("ring_timeout_ms"),
        (30_000.into(), "default".into(), true.into())
    );

    let set = json(admin(&[
        "config",
        "set",
        "ring_timeout_ms",
        "20000",
        "--json",
    ]));
    assert_eq!(
        (set["scope"].as_str(), set["version"].as_u64()),
        (Some("global"), Some(1))
    );
    let set = json(admin(&[
        "config",
        "set",
        "ring_timeout_ms",
        "15000",
        "--server",
        "uc1",
        "--json",
    ]));
    assert_eq!(set["scope"].as_str(), Some("uc1"));
    // The server applies it within moments (announced in-process, re-read every 5 s).
    let applied = |value: u64, source: &str| {
        let started = std::time::Instant::now();
        while running("ring_timeout_ms") != (value.into(), source.into(), true.into()) {
            let now = running("ring_timeout_ms");
            assert!(started.elapsed() < Duration::from_secs(10), "{now:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    applied(15_000, "server");

    let refused = admin(&["config", "set", "ring_timeout_ms", "soon"]);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        error.contains("bad_request") && error.contains("whole number"),
        "{error}"
    );
    let stale = admin(&[
        "config",
        "set",
        "ring_timeout_ms",
        "9000",
        "--if-version",
        "7",
    ]);
    assert!(String::from_utf8_lossy(&stale.stderr).contains("conflict"));

    let human = ok(admin(&["config", "list"]));
    assert!(
        human
            .lines()
            .any(|l| l.contains("ring_timeout_ms") && l.contains("15000") && l.contains("server")),
        "{human}"
    );
    ok(admin(&[
        "config",
        "unset",
        "ring_timeout_ms",
        "--server",
        "uc1",
    ]));
    applied(20_000, "global");
}

#[test]
fn watch_history_and_media_from_the_command_line() {
    let dir = fresh_dir("cli-watch");
    let database = format!("sqlite:{}", dir.join("switchboard.db").display());
    let server = UcServer::start("uc1", &database, None, &[("UC_STATS_SAMPLE_MS", "200")]);
    let url = server.url();
    let admin = |args: &[&str]| run("ucadmin", &url, "admin", ADMIN_PASSWORD, args);

    // `watch --count 1 --json`: the hello, then the first change made elsewhere, then it ends.
    let mut watch = Command::new(binary("ucadmin"))
        .args([
            "--url",
            &url,
            "--user",
            "admin",
            "--password",
            ADMIN_PASSWORD,
        ])
        .args(["watch", "--count", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let hello: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(
        (hello["type"].as_str(), hello["server"].as_str()),
        (Some("hello"), Some("uc1"))
    );
    ok(admin(&["user", "add", "dave", "--password", "dave-pass-1"]));
    let change: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(change["type"], "change", "{change}");
    assert_eq!(change["entry"]["action"], "user.create", "{change}");
    assert_eq!(change["entry"]["actor"], "admin", "{change}");
    let mut waited = 0;
    let status = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        assert!(waited < 300, "watch --count 1 did not end");
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    };
    assert!(status.success(), "{status}");

    // `history`: the single node's samples; the table names it.
    std::thread::sleep(Duration::from_millis(700));
    let history: serde_json::Value =
        serde_json::from_str(&ok(admin(&["history", "--json"]))).unwrap();
    assert_eq!(history["sample_ms"], 200);
    let samples = history["servers"][0]["samples"].as_array().unwrap();
    assert!(samples.len() >= 2, "{history}");
    assert!(
        samples
            .iter()
            .all(|s| s["stats"]["resident_bytes"].as_u64() > Some(0))
    );
    let table = ok(admin(&["history"]));
    assert!(table.contains("SERVER") && table.contains("uc1"), "{table}");
    let overview = ok(admin(&["overview"]));
    assert!(overview.contains("multi-device messaging:"), "{overview}");

    // MediaServers added and removed, for scripts too.
    let added: serde_json::Value = serde_json::from_str(&ok(admin(&[
        "media",
        "add",
        "m7",
        "http://127.0.0.1:9",
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        (added["id"].as_str(), added["alive"].as_bool()),
        (Some("m7"), Some(false))
    );
    let removed: serde_json::Value =
        serde_json::from_str(&ok(admin(&["media", "remove", "m7", "--json"]))).unwrap();
    assert_eq!(removed["removed"], "m7");
    assert!(!ok(admin(&["media", "list"])).contains("m7"));
}
