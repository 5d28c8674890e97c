//! Users from outside, against a real UCServer on PostgreSQL: the bulk import (a 10,000-line
//! file with duplicates and bad rows: every bad row named by its line, nothing applied; a
//! clean file applied in one go, imported again it plans nothing), the export read back in
//! as an import (nothing to change), the limits and roles, and the `ucadmin` commands.

use serde_json::{Value, json};
use shared::UserId;
use shared::api::{AdminRole, AuditFilter, CreateUser, UpdateUser};
use shared::directory::{ChangeKind, DirectoryPlan};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;
use switchboard_tests::process::fresh_dir;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer, binary};
use switchboard_tests::{Postgres, Redis};
use ucclient::{AdminClient, Client};

/// Users in the clean import.
const CLEAN_USERS: usize = 6;

/// A 10,000-line CSV file and the lines that must be named as bad.
fn big_file_with_bad_rows() -> (String, BTreeSet<u32>) {
    let mut text = String::from("id,display_name,groups,contacts,disabled,password\n");
    let mut bad = BTreeSet::new();
    for n in 1..=10_000u32 {
        let line = n + 1;
        let row = match n % 1000 {
            // A duplicate of the user on the line before.
            1 if n > 1 => format!("u{:05},Again,,,,\n", n - 1),
            2 => format!("Bad Name {n},,,,,\n"),
            3 => format!("u{n:05},,,,maybe,\n"),
            4 => format!("u{n:05},,,nobody-{n},,\n"),
            5 => format!("u{n:05},,,,,short\n"),
            6 => format!("u{n:05},too,many,fields,,,,\n"),
            // Everyone has the desk (u00010; the desk itself u00011) as a contact.
            _ => format!(
                "u{n:05},User {n},staff;team-{},u{:05}:Desk,,\n",
                n % 7,
                if n == 10 { 11 } else { 10 }
            ),
        };
        if matches!(n % 1000, 2..=6) || (n % 1000 == 1 && n > 1) {
            bad.insert(line);
        }
        text.push_str(&row);
    }
    (text, bad)
}

/// The clean import: new users with groups, contacts, some with a password; `tom`, who
/// exists, gets a new display name and a group.
fn clean_file() -> Value {
    let mut users: Vec<Value> = (0..CLEAN_USERS)
        .map(|i| {
            let mut user = json!({
                "id": format!("c{i:02}"),
                "display_name": format!("Clean {i}"),
                "groups": ["sales"],
                "contacts": [{ "user": format!("c{:02}", (i + 1) % CLEAN_USERS), "label": "Next" }],
            });
            if i % 2 == 0 {
                user["password"] = json!(format!("c{i:02}-password"));
            }
            user
        })
        .collect();
    users.push(json!({ "id": "tom", "display_name": "Tom T.", "groups": ["sales", "night"] }));
    json!({ "users": users, "groups": [{ "id": "sales", "display_name": "Sales team" }] })
}

async fn import(admin: &AdminClient, file: &Value, dry_run: bool) -> DirectoryPlan {
    admin
        .import(serde_json::to_vec(file).unwrap(), false, dry_run)
        .await
        .unwrap()
}

#[tokio::test]
async fn import_refuses_a_bad_file_whole_applies_a_clean_one_once_and_round_trips() {
    let database = Postgres::shared().create_database("directory_import");
    let s1 = UcServer::start("s1", &database, None, &[]);
    let admin = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .unwrap();
    for id in ["tom", "helen"] {
        admin
            .create_user(CreateUser {
                id: UserId::from(id),
                password: format!("{id}-password-1"),
                display_name: None,
                home_server: None,
                admin: id == "helen",
            })
            .await
            .unwrap();
    }
    let helen = admin.user(&UserId::from("helen")).await.unwrap();
    admin
        .update_user_at(
            &helen.id,
            UpdateUser {
                role: Some(AdminRole::ReadOnly),
                ..UpdateUser::default()
            },
            Some(helen.version),
        )
        .await
        .unwrap();
    let users_before = admin.users().await.unwrap();

    // ---- 10,000 lines with duplicates and bad rows: every bad row named, nothing applied
    let (text, bad_lines) = big_file_with_bad_rows();
    let started = Instant::now();
    let plan = admin
        .import(text.clone().into_bytes(), true, true)
        .await
        .unwrap();
    println!(
        "dry run of {} bytes, 10,000 lines: {} ms",
        text.len(),
        started.elapsed().as_millis()
    );
    let named: BTreeSet<u32> = plan.errors.iter().map(|e| e.line).collect();
    assert_eq!(
        named.symmetric_difference(&bad_lines).collect::<Vec<_>>(),
        Vec::<&u32>::new(),
        "{:?}",
        plan.errors
            .iter()
            .filter(|e| !bad_lines.contains(&e.line))
            .collect::<Vec<_>>()
    );
    assert_eq!(plan.errors.len(), bad_lines.len(), "one error per bad line");
    assert_eq!(plan.counts.create as usize, 10_000 - bad_lines.len());
    let duplicate = plan.errors.iter().find(|e| e.line == 1002).unwrap();
    assert_eq!(duplicate.user.as_deref(), Some("u01000"));
    assert!(
        duplicate.reason.contains("already on line 1001"),
        "{duplicate:?}"
    );
    assert!(
        plan.errors
            .iter()
            .find(|e| e.line == 1005)
            .unwrap()
            .reason
            .contains("neither a user nor in this file")
    );
    assert!(!plan.applied);
    let started = Instant::now();
    let applied = admin.import(text.into_bytes(), true, false).await.unwrap();
    println!(
        "refused apply of the same file: {} ms",
        started.elapsed().as_millis()
    );
    assert!(!applied.applied);
    assert_eq!(applied.errors, plan.errors);
    assert_eq!(
        admin.users().await.unwrap(),
        users_before,
        "nothing applied"
    );
    assert!(admin.groups().await.unwrap().is_empty(), "no group made");
    let users_at_start = users_before.len();

    // ---- 10,000 clean lines: applied in one transaction, passwords made up
    let mut text = String::from("id,display_name,groups\n");
    for n in 1..=10_000u32 {
        text.push_str(&format!(
            "m{n:05},Member {n},{}\n",
            if n % 100 == 0 { "hundredth" } else { "" }
        ));
    }
    let started = Instant::now();
    let bulk = admin
        .import(text.clone().into_bytes(), true, false)
        .await
        .unwrap();
    println!(
        "apply of 10,000 new users (100 of them in a new group): {} ms",
        started.elapsed().as_millis()
    );
    assert!(bulk.applied && bulk.errors.is_empty(), "{:?}", &bulk.errors);
    assert_eq!((bulk.counts.create, bulk.passwords.len()), (10_000, 10_000));
    let started = Instant::now();
    let again = admin.import(text.into_bytes(), true, true).await.unwrap();
    println!(
        "dry run of the same 10,000 lines again: {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!((again.changes.len(), again.counts.unchanged), (0, 10_000));
    let bulk_user = &bulk.passwords[9_999];
    Client::login(&s1.url(), &bulk_user.user, &bulk_user.password, None)
        .await
        .unwrap();

    // ---- a clean file: applied in one go, passwords made up for those without one
    let file = clean_file();
    let preview = import(&admin, &file, true).await;
    assert_eq!(
        (
            preview.counts.create,
            preview.counts.update,
            preview.counts.errors
        ),
        (CLEAN_USERS as u32, 1, 0),
        "{preview:?}"
    );
    assert_eq!(preview.new_groups.len(), 2);
    assert!(preview.passwords.is_empty(), "a dry run makes no password");
    let tom_change = preview
        .changes
        .iter()
        .find(|c| c.user.as_str() == "tom")
        .unwrap();
    assert_eq!(tom_change.kind, ChangeKind::Update);
    assert!(
        tom_change
            .fields
            .iter()
            .any(|f| f.field == "display_name" && f.from == "tom" && f.to == "Tom T.")
    );
    let started = Instant::now();
    let applied = import(&admin, &file, false).await;
    println!(
        "apply of {CLEAN_USERS} new users (half with passwords made up): {} ms",
        started.elapsed().as_millis()
    );
    assert!(applied.applied);
    assert_eq!(applied.counts, preview.counts);
    assert_eq!(applied.passwords.len(), CLEAN_USERS / 2);
    // Both kinds of password sign in.
    Client::login(&s1.url(), &UserId::from("c00"), "c00-password", None)
        .await
        .unwrap();
    let made_up = &applied.passwords[0];
    Client::login(&s1.url(), &made_up.user, &made_up.password, None)
        .await
        .unwrap();
    let groups = admin.groups().await.unwrap();
    let sales = groups.iter().find(|g| g.id.as_str() == "sales").unwrap();
    assert_eq!(sales.display_name, "Sales team");
    assert_eq!(sales.members.len(), CLEAN_USERS + 1);
    let hundredth = groups
        .iter()
        .find(|g| g.id.as_str() == "hundredth")
        .unwrap();
    assert_eq!(hundredth.members.len(), 100);
    let tom = admin.user(&UserId::from("tom")).await.unwrap();
    assert_eq!((tom.display_name.as_str(), tom.version), ("Tom T.", 2));
    let audit = admin.audit(20).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "directory.import" && e.detail.contains("created=6")),
        "{audit:?}"
    );

    // ---- the same file again plans nothing
    let again = import(&admin, &file, false).await;
    assert!(
        again.changes.is_empty() && again.errors.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.counts.unchanged as usize, CLEAN_USERS + 1);

    // ---- export -> import: nothing to change, as JSON and as CSV; no password leaves
    let exported = admin.export().await.unwrap();
    assert_eq!(exported.users.len(), users_at_start + 10_000 + CLEAN_USERS);
    let c00 = exported
        .users
        .iter()
        .find(|u| u.id.as_str() == "c00")
        .unwrap();
    assert_eq!(c00.contacts.as_ref().unwrap()[0].label, "Next");
    let back = import(&admin, &serde_json::to_value(&exported).unwrap(), true).await;
    assert!(
        back.changes.is_empty() && back.errors.is_empty(),
        "{back:?}"
    );
    assert_eq!(back.counts.unchanged as usize, exported.users.len());
    let csv = admin.export_csv().await.unwrap();
    assert!(
        !csv.contains("password") && !csv.contains("argon2"),
        "{csv}"
    );
    let back = admin.import(csv.into_bytes(), true, true).await.unwrap();
    assert!(
        back.changes.is_empty() && back.errors.is_empty(),
        "{back:?}"
    );

    // ---- roles and limits
    let helen = AdminClient::login(&s1.url(), &UserId::from("helen"), "helen-password-1")
        .await
        .unwrap();
    let refused = helen
        .import(serde_json::to_vec(&file).unwrap(), false, true)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "forbidden");
    assert_eq!(
        helen.export().await.unwrap().users.len(),
        exported.users.len()
    );
    let too_big = vec![b'a'; shared::limits::MAX_IMPORT_BYTES + 1];
    let refused = admin.import(too_big, true, true).await.unwrap_err();
    assert_eq!(refused.code(), "payload_too_large", "{refused}");
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/api/v1/admin/import", s1.url()))
        .bearer_auth(admin.token())
        .header("content-type", "text/plain")
        .body("id\nx\n")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
}

fn ucadmin(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary("ucadmin"))
        .args([
            "--url",
            url,
            "--user",
            "admin",
            "--password",
            ADMIN_PASSWORD,
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn import_and_export_from_the_command_line() {
    let dir = fresh_dir("directory-cli");
    let server = UcServer::start(
        "s1",
        &format!("sqlite:{}", dir.join("db.sqlite").display()),
        None,
        &[],
    );
    let url = server.url();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "id,display_name\nann,Ann\nann,Twice\nBAD,x\n").unwrap();
    let output = ucadmin(&url, &["import", bad.to_str().unwrap(), "--json"]);
    assert!(!output.status.success(), "a file with bad rows fails");
    let plan: DirectoryPlan = serde_json::from_slice(&output.stdout).unwrap();
    let lines: Vec<u32> = plan.errors.iter().map(|e| e.line).collect();
    assert_eq!((plan.applied, lines), (false, vec![3, 4]));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing was applied"));

    let good = dir.join("good.csv");
    std::fs::write(
        &good,
        "id,display_name,groups\nann,Ann,ops\nbob,\"Bob, B.\",ops\n",
    )
    .unwrap();
    let output = ucadmin(&url, &["import", good.to_str().unwrap(), "--dry-run"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("plan (nothing applied): 2 to create"),
        "{text}"
    );
    let output = ucadmin(&url, &["import", good.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("applied: 2 to create"),
        "{text}"
    );
    assert!(
        text.contains("passwords of the new users (shown once)"),
        "{text}"
    );

    let output = ucadmin(&url, &["export", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{csv}");
    assert!(csv.contains("bob,\"Bob, B.\",s1,ops,,false"), "{csv}");
    let exported = dir.join("export.json");
    let output = ucadmin(&url, &["export", "--output", exported.to_str().unwrap()]);
    assert!(output.status.success());
    let output = ucadmin(
        &url,
        &["import", exported.to_str().unwrap(), "--dry-run", "--json"],
    );
    let plan: DirectoryPlan = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        plan.changes.is_empty() && plan.errors.is_empty(),
        "{plan:?}"
    );
    assert_eq!(plan.counts.unchanged, 3);
}

// ------------------------------------------------------------------------------ LDAP sync

const BASE: &str = "dc=example,dc=com";
const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
const ROOT_PW: &str = "ldap-secret";

/// A Debian `slapd` on a free port, its database in a temporary folder; stopped on drop.
/// Schema: inetOrgPerson (Debian's msuser.schema has AD's `user` class but it needs AD's
/// system attributes), with the mapping `uid` (as sAMAccountName), `displayName`,
/// `employeeType` `true` (as the disabled bit) and `businessCategory` holding group DNs (as
/// memberOf); the AD defaults (`userAccountControl` bit 2, `memberOf`) are unit-tested in
/// `ucserver::ldap`.
struct Slapd {
    child: std::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Slapd {
    fn start() -> Slapd {
        assert!(
            std::path::Path::new("/usr/sbin/slapd").exists(),
            "slapd is missing: apt-get install -y slapd ldap-utils"
        );
        let dir = fresh_dir("slapd");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let port = switchboard_tests::process::free_port();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\nmodulepath /usr/lib/ldap\n\
             moduleload back_mdb\npidfile {dir}/slapd.pid\ndatabase mdb\nsuffix \"{BASE}\"\n\
             rootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\ndirectory {dir}/db\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("slapd.conf"), conf).unwrap();
        let url = format!("ldap://127.0.0.1:{port}");
        let child = Command::new("/usr/sbin/slapd")
            .args(["-d", "0", "-f"])
            .arg(dir.join("slapd.conf"))
            .args(["-h", &format!("{url}/")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let slapd = Slapd { child, url, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                slapd.ldif(
                    "ldapadd",
                    &format!(
                        "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
                         dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n"
                    ),
                );
                return slapd;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("slapd did not start");
    }

    /// Runs `ldapadd` / `ldapmodify` / `ldapdelete` with `input` on stdin.
    fn ldif(&self, tool: &str, input: &str) {
        use std::io::Write;
        let mut child = Command::new(tool)
            .args(["-x", "-H", &self.url, "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "{tool} failed: {input}");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn person(uid: &str, name: &str, disabled: bool, groups: &[&str]) -> String {
    let mut entry = format!(
        "dn: uid={uid},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\nsn: {name}\n\
         displayName: {name}\nemployeeType: {disabled}\n"
    );
    for group in groups {
        entry.push_str(&format!("businessCategory: CN={group},OU=Groups,{BASE}\n"));
    }
    entry.push('\n');
    entry
}

/// The `UC_LDAP_*` settings of a server reading `slapd` (the mapping of [`Slapd`]).
fn ldap_env<'a>(slapd: &'a Slapd, base_dn: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("UC_LDAP_URL", slapd.url.as_str()),
        ("UC_LDAP_BIND_DN", ROOT_DN),
        ("UC_LDAP_BIND_PASSWORD", ROOT_PW),
        ("UC_LDAP_BASE_DN", base_dn),
        ("UC_LDAP_FILTER", "(objectClass=inetOrgPerson)"),
        ("UC_LDAP_ID_ATTRIBUTE", "uid"),
        ("UC_LDAP_DISABLED_ATTRIBUTE", "employeeType"),
        ("UC_LDAP_GROUPS_ATTRIBUTE", "businessCategory"),
    ]
}

#[tokio::test]
async fn ldap_sync_from_slapd_creates_updates_deactivates_and_survives_the_directory_down() {
    let mut slapd = Slapd::start();
    slapd.ldif(
        "ldapadd",
        &[
            person("ann", "Ann Directory", false, &["Night Shift"]),
            person("bob", "Bob Directory", false, &["Night Shift", "Day"]),
            person("carl", "Carl Off", true, &[]),
            person("dave", "Dave Leaving", false, &[]),
        ]
        .concat(),
    );
    let dir = fresh_dir("directory-ldap");
    let base_dn = format!("ou=people,{BASE}");
    let server = UcServer::start(
        "s1",
        &format!("sqlite:{}", dir.join("db.sqlite").display()),
        None,
        &ldap_env(&slapd, &base_dn),
    );
    let admin = AdminClient::login(&server.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .unwrap();
    admin
        .create_user(CreateUser {
            id: UserId::from("dora"),
            password: "dora-password-1".to_string(),
            display_name: None,
            home_server: None,
            admin: false,
        })
        .await
        .unwrap();

    // ---- first sync: a preview, then applied; the disabled entry makes nobody
    let preview = admin.directory_sync(true).await.unwrap();
    let created: BTreeSet<&str> = preview.changes.iter().map(|c| c.user.as_str()).collect();
    assert_eq!(
        created,
        BTreeSet::from(["ann", "bob", "dave"]),
        "{preview:?}"
    );
    assert!(!preview.applied && preview.errors.is_empty());
    assert!(
        admin.user(&UserId::from("ann")).await.is_err(),
        "a dry run makes nobody"
    );
    let applied = admin.directory_sync(false).await.unwrap();
    assert!(applied.applied);
    assert_eq!((applied.counts.create, applied.counts.unchanged), (3, 1));
    let groups = admin.groups().await.unwrap();
    let night = groups
        .iter()
        .find(|g| g.id.as_str() == "night-shift")
        .unwrap();
    assert_eq!(night.members.len(), 2);
    let status = admin.directory_status().await.unwrap();
    assert_eq!((status.reachable, status.users), (Some(true), 3));
    // Unchanged directory: nothing to do.
    let again = admin.directory_sync(false).await.unwrap();
    assert!(again.changes.is_empty(), "{again:?}");

    // ---- changes in the directory: renamed, disabled there, gone, new
    slapd.ldif(
        "ldapmodify",
        &format!(
            "dn: uid=ann,ou=people,{BASE}\nchangetype: modify\nreplace: displayName\ndisplayName: Ann Renamed\n\n\
             dn: uid=bob,ou=people,{BASE}\nchangetype: modify\nreplace: employeeType\nemployeeType: true\n-\n\
             delete: businessCategory\nbusinessCategory: CN=Day,OU=Groups,{BASE}\n"
        ),
    );
    slapd.ldif("ldapdelete", &format!("uid=dave,ou=people,{BASE}\n"));
    slapd.ldif("ldapadd", &person("erin", "Erin New", false, &["Day"]));
    let plan = admin.directory_sync(false).await.unwrap();
    let kinds: Vec<(String, ChangeKind)> = plan
        .changes
        .iter()
        .map(|c| (c.user.to_string(), c.kind))
        .collect();
    assert_eq!(
        kinds
            .iter()
            .cloned()
            .collect::<std::collections::BTreeMap<_, _>>(),
        [
            ("ann".to_string(), ChangeKind::Update),
            ("bob".to_string(), ChangeKind::Update),
            ("dave".to_string(), ChangeKind::Deactivate),
            ("erin".to_string(), ChangeKind::Create),
        ]
        .into_iter()
        .collect(),
        "{plan:?}"
    );
    assert_eq!(
        admin.user(&UserId::from("ann")).await.unwrap().display_name,
        "Ann Renamed"
    );
    let dave = admin.user(&UserId::from("dave")).await.unwrap();
    assert!(
        dave.disabled,
        "gone from the directory: disabled, not deleted"
    );
    assert!(admin.user(&UserId::from("bob")).await.unwrap().disabled);
    let dora = admin.user(&UserId::from("dora")).await.unwrap();
    assert_eq!(
        (dora.version, dora.disabled),
        (1, false),
        "a user made here is never touched"
    );

    // ---- a directory user signs in with the directory password (a bind as them)
    slapd.ldif(
        "ldapmodify",
        &format!(
            "dn: uid=erin,ou=people,{BASE}\nchangetype: modify\nadd: userPassword\nuserPassword: erin-dir-pass\n"
        ),
    );
    Client::login(&server.url(), &UserId::from("erin"), "erin-dir-pass", None)
        .await
        .unwrap();
    for wrong in ["wrong-pass", ""] {
        let refused = Client::login(&server.url(), &UserId::from("erin"), wrong, None)
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            "invalid_credentials",
            "{wrong:?}: {refused}"
        );
    }

    // ---- the directory down: the sync says so, nothing changes, users keep working
    let password = admin
        .reset_password(&UserId::from("ann"), None)
        .await
        .unwrap()
        .password
        .unwrap();
    slapd.stop();
    let refused = admin.directory_sync(false).await.unwrap_err();
    assert_eq!(refused.code(), "server_unavailable", "{refused}");
    let status = admin.directory_status().await.unwrap();
    assert_eq!(status.reachable, Some(false));
    assert!(status.error.is_some());
    Client::login(&server.url(), &UserId::from("ann"), &password, None)
        .await
        .unwrap();
    Client::login(
        &server.url(),
        &UserId::from("dora"),
        "dora-password-1",
        None,
    )
    .await
    .unwrap();
    let refused = Client::login(&server.url(), &UserId::from("erin"), "erin-dir-pass", None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "server_unavailable", "{refused}");
    let output = ucadmin(&server.url(), &["directory", "status"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("state: DOWN"),
        "{text}"
    );
    let output = ucadmin(&server.url(), &["directory", "sync", "--dry-run"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("server_unavailable"));
}

/// Waits (polling, at most `limit`) until `user` exists, as `admin` sees it.
async fn until_user_exists(admin: &AdminClient, user: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while admin.user(&UserId::from(user)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "{user} was not synced within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The servers named by the scheduled syncs in the audit log, newest first.
async fn scheduled_syncs(admin: &AdminClient) -> Vec<String> {
    let filter = AuditFilter {
        actor: Some(UserId::from("directory")),
        action: Some("directory.sync".to_string()),
        ..AuditFilter::default()
    };
    admin
        .audit_filtered(&filter, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| {
            entry
                .detail
                .rsplit_once("scheduled_on=")
                .map(|(_, server)| server.to_string())
                .unwrap_or_else(|| panic!("a scheduled sync names its server: {entry:?}"))
        })
        .collect()
}

/// Two servers with the schedule at 1 s: only the lease holder syncs, round after round (the
/// other never even reads the directory); killed, the other takes the lease once it lapses
/// and syncs a change made in the directory since.
#[tokio::test]
async fn the_scheduled_sync_runs_on_one_server_and_moves_when_it_dies() {
    let slapd = Slapd::start();
    slapd.ldif("ldapadd", &person("ann", "Ann Directory", false, &[]));
    let redis = Redis::start();
    let database = Postgres::shared().create_database("directory_schedule");
    let base_dn = format!("ou=people,{BASE}");
    let mut env = ldap_env(&slapd, &base_dn);
    env.push(("UC_LDAP_SYNC_SECS", "1"));
    let mut servers = [
        UcServer::start("s1", &database, Some(&redis.url()), &env),
        UcServer::start("s2", &database, Some(&redis.url()), &env),
    ];
    let mut admins = Vec::new();
    for server in &servers {
        admins.push(
            AdminClient::login(&server.url(), &UserId::from("admin"), ADMIN_PASSWORD)
                .await
                .unwrap(),
        );
    }
    until_user_exists(&admins[0], "ann", Duration::from_secs(20)).await;
    // Rounds with a change each: every one applied by the same server.
    for round in 1..=3 {
        let uid = format!("p{round}");
        slapd.ldif("ldapadd", &person(&uid, "Person", false, &[]));
        until_user_exists(&admins[0], &uid, Duration::from_secs(20)).await;
    }
    let syncs = scheduled_syncs(&admins[0]).await;
    assert_eq!(syncs.len(), 4, "one sync per change: {syncs:?}");
    let holder = syncs[0].clone();
    assert!(syncs.iter().all(|s| *s == holder), "{syncs:?}");
    let (held, other) = if holder == "s1" { (0, 1) } else { (1, 0) };
    for admin in &admins {
        let status = admin.directory_status().await.unwrap();
        assert_eq!(
            status.scheduled_on.as_ref().map(ToString::to_string),
            Some(holder.clone())
        );
    }
    let idle = admins[other].directory_status().await.unwrap();
    assert_eq!(
        idle.last_attempt_ms, None,
        "the other server never read the directory"
    );
    // ... but it names the cluster's last sync, from the audit log (without its counts).
    let newest = admins[other].audit(1).await.unwrap();
    assert_eq!(newest[0].action, "directory.sync");
    assert_eq!(
        (idle.last_sync_ms, idle.last_counts),
        (Some(newest[0].at_ms), None)
    );
    assert!(
        admins[held]
            .directory_status()
            .await
            .unwrap()
            .last_sync_ms
            .is_some()
    );

    // ---- the holder dies: the other takes over once the lease (3 s) lapses
    servers[held].kill9();
    slapd.ldif("ldapadd", &person("late", "Late Comer", false, &[]));
    until_user_exists(&admins[other], "late", Duration::from_secs(30)).await;
    let syncs = scheduled_syncs(&admins[other]).await;
    assert_eq!(syncs.len(), 5, "{syncs:?}");
    assert_eq!(syncs[0], servers[other].id, "{syncs:?}");
    assert_eq!(
        admins[other]
            .directory_status()
            .await
            .unwrap()
            .scheduled_on
            .map(|s| s.to_string()),
        Some(servers[other].id.clone())
    );
}
