//! Users from outside, against a real UCServer on PostgreSQL: the bulk import (a 10,000-line
//! file with duplicates and bad rows: every bad row named by its line, nothing applied; a
//! clean file applied in one go, imported again it plans nothing), the export read back in
//! as an import (nothing to change), the limits and roles, and the `ucadmin` commands.

use serde_json::{Value, json};
use shared::UserId;
use shared::api::{AdminRole, CreateUser, UpdateUser};
use shared::directory::{ChangeKind, DirectoryPlan};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Instant;
use switchboard_tests::Postgres;
use switchboard_tests::process::fresh_dir;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer, binary};
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
