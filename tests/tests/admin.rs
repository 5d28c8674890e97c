//! The admin REST API with several administrators at once, over plain HTTP against two
//! UCServers sharing a real Redis and PostgreSQL: a read-only administrator gets `403
//! forbidden` on every write and nothing changes; an edit made from an old version (`If-Match`)
//! gets `409 conflict` with the current version and who made it, whichever server each
//! administrator uses; a changed role counts at once for tokens already issued.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::UserId;
use shared::api::AuditEntry;
use switchboard_tests::ucserver::{ADMIN_PASSWORD, UcServer};
use switchboard_tests::{Postgres, Redis};
use ucclient::AdminClient;

/// One administrator's token at one server, over raw HTTP (status codes and headers matter).
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn login(server: &UcServer, user: &str, password: &str) -> Admin {
        let http = reqwest::Client::new();
        let base = server.url();
        let answer: Value = http
            .post(format!("{base}/api/v1/admin/login"))
            .json(&json!({ "user": user, "password": password }))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = answer["token"].as_str().unwrap().to_string();
        Admin { http, base, token }
    }

    /// Status, `ETag` and JSON body (`Null` when empty).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (StatusCode, Option<String>, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, etag, body)
    }

    /// Makes user `id` (password `<id>-password-1`), an administrator if `admin`; its `ETag`.
    async fn create_user(&self, id: &str, admin: bool) -> Option<String> {
        let (status, etag, body) = self
            .call(
                Method::POST,
                "/admin/users",
                Some(json!({ "id": id, "password": format!("{id}-password-1"), "admin": admin })),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        etag
    }

    async fn get(&self, path: &str) -> Value {
        let (status, _, body) = self.call(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }
}

#[tokio::test]
async fn roles_and_versions_keep_several_admins_apart() {
    let redis = Redis::start();
    let database = Postgres::shared().create_database("admin_roles");
    let s1 = UcServer::start("s1", &database, Some(&redis.url()), &[]);
    let s2 = UcServer::start("s2", &database, Some(&redis.url()), &[]);
    let root = AdminClient::login(&s1.url(), &UserId::from("admin"), ADMIN_PASSWORD)
        .await
        .unwrap();
    let full = Admin::login(&s1, "admin", ADMIN_PASSWORD).await;
    for (id, admin) in [("helen", true), ("ann", true), ("tom", false)] {
        assert_eq!(full.create_user(id, admin).await.as_deref(), Some("\"1\""));
    }
    let (status, _, body) = full
        .call(
            Method::PATCH,
            "/admin/users/helen",
            Some(json!({ "role": "read_only" })),
            Some("\"1\""),
        )
        .await;
    assert_eq!(
        (status, &body["role"]),
        (StatusCode::OK, &json!("read_only"))
    );

    // ---- a read-only administrator (signed in at the other server) writes nothing
    let helen = Admin::login(&s2, "helen", "helen-password-1").await;
    let users_before = full.get("/admin/users").await;
    let licenses_before = full.get("/admin/licenses").await;
    let audit_before = full.get("/admin/audit?limit=1000").await;
    let writes: [(Method, &str, Option<Value>); 9] = [
        (
            Method::POST,
            "/admin/users",
            Some(json!({ "id": "x1", "password": "x1-password-1" })),
        ),
        (
            Method::PATCH,
            "/admin/users/tom",
            Some(json!({ "display_name": "Tommy" })),
        ),
        (
            Method::PATCH,
            "/admin/users/tom",
            Some(json!({ "disabled": true })),
        ),
        (Method::DELETE, "/admin/users/tom", None),
        (Method::POST, "/admin/users/tom/password", Some(json!({}))),
        (Method::POST, "/admin/groups", Some(json!({ "id": "ops" }))),
        (
            Method::PUT,
            "/admin/licenses/uc-seat",
            Some(json!({ "capacity": 1 })),
        ),
        (
            Method::POST,
            "/admin/media",
            Some(json!({ "id": "m9", "control_url": "http://127.0.0.1:1" })),
        ),
        (Method::DELETE, "/admin/media/m9", None),
    ];
    for (method, path, body) in writes {
        let (status, _, answer) = helen.call(method.clone(), path, body, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"], "forbidden", "{method} {path}: {answer}");
    }
    assert_eq!(
        full.get("/admin/users").await,
        users_before,
        "no user changed"
    );
    assert_eq!(full.get("/admin/licenses").await, licenses_before);
    assert_eq!(full.get("/admin/groups").await, json!([]));
    assert_eq!(
        full.get("/admin/audit?limit=1000").await,
        audit_before,
        "nothing audited"
    );
    // ... and reads everything.
    let overview = helen.get("/admin/overview").await;
    assert_eq!(overview["role"], "read_only");
    let ids: Vec<&str> = overview["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s1", "s2"]);

    // ---- two full administrators on different servers edit tom from the same version
    let ann = Admin::login(&s2, "ann", "ann-password-1").await;
    let (status, etag, tom) = ann.call(Method::GET, "/admin/users/tom", None, None).await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"1\"")));
    assert_eq!(tom["version"], 1);
    let (status, etag, _) = full
        .call(
            Method::PATCH,
            "/admin/users/tom",
            Some(json!({ "display_name": "Tom by admin" })),
            Some("\"1\""),
        )
        .await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"2\"")));
    let (status, _, refused) = ann
        .call(
            Method::PATCH,
            "/admin/users/tom",
            Some(json!({ "display_name": "Tom by ann" })),
            Some("\"1\""),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "conflict");
    assert_eq!(refused["current"]["version"], 2);
    assert_eq!(refused["current"]["changed_by"], "admin");
    assert!(
        refused["message"].as_str().unwrap().contains("'admin'"),
        "{refused}"
    );
    let tom = ann.get("/admin/users/tom").await;
    assert_eq!(
        (&tom["display_name"], &tom["version"]),
        (&json!("Tom by admin"), &json!(2))
    );
    // Deleting from the old version is refused too; a weak tag of the current one works.
    let (status, _, _) = ann
        .call(Method::DELETE, "/admin/users/tom", None, Some("\"1\""))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, body) = ann
        .call(
            Method::PATCH,
            "/admin/users/tom",
            Some(json!({})),
            Some("version two"),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("bad_request"))
    );
    let (status, _, _) = ann
        .call(Method::DELETE, "/admin/users/tom", None, Some("W/\"2\""))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        root.users()
            .await
            .unwrap()
            .iter()
            .all(|u| u.id.as_str() != "tom")
    );

    // ---- a role taken away counts at once for the token ann already holds
    let (status, _, _) = full
        .call(
            Method::PATCH,
            "/admin/users/ann",
            Some(json!({ "role": "read_only" })),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = ann
        .call(
            Method::POST,
            "/admin/groups",
            Some(json!({ "id": "late" })),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = full
        .call(
            Method::PATCH,
            "/admin/users/ann",
            Some(json!({ "admin": false })),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = ann.call(Method::GET, "/admin/users", None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no administrator any more");
    // Nobody takes their own role away or locks themselves out.
    let (status, _, body) = full
        .call(
            Method::PATCH,
            "/admin/users/admin",
            Some(json!({ "disabled": true })),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

impl Admin {
    /// A GET answered as text with its headers (an export).
    async fn get_file(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let response = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    /// The actions of the audit entries `query` lists, newest first.
    async fn audit_actions(&self, query: &str) -> Vec<String> {
        let entries: Vec<AuditEntry> =
            serde_json::from_value(self.get(&format!("/admin/audit?{query}")).await).unwrap();
        entries.into_iter().map(|entry| entry.action).collect()
    }
}

/// The audit log filtered by time, administrator and action prefix, and exported as CSV and
/// JSON by a read-only administrator (who still changes nothing): an entry whose detail has a
/// comma, quotes and a line break comes back exactly from the CSV; an export cut short says so.
#[tokio::test]
async fn the_audit_log_is_filtered_and_exported_by_any_admin() {
    let redis = Redis::start();
    let database = Postgres::shared().create_database("admin_audit");
    let s1 = UcServer::start("s1", &database, Some(&redis.url()), &[]);
    let full = Admin::login(&s1, "admin", ADMIN_PASSWORD).await;
    for (id, admin) in [("helen", true), ("tom", false), ("bob", false)] {
        full.create_user(id, admin).await;
    }
    for (path, body) in [
        ("/admin/users/helen", json!({ "role": "read_only" })),
        (
            "/admin/users/tom",
            json!({ "display_name": "Tom, \"T\" Smith" }),
        ),
    ] {
        let (status, _, answer) = full.call(Method::PATCH, path, Some(body), None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, _, _) = full
        .call(
            Method::POST,
            "/admin/groups",
            Some(json!({ "id": "ops" })),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // An entry from long ago whose detail needs every kind of CSV quoting, written to the
    // same database as the server's own entries.
    let store = ucserver::store::SqlStore::connect(&database).await.unwrap();
    let old = ucserver::store::AuditRecord {
        at_ms: 1_000_000_000_000,
        actor: UserId::from("ann"),
        action: "note.test".to_string(),
        detail: "line one, \"quoted\"\nline two".to_string(),
        client: Some("10.1.2.3".to_string()),
    };
    ucserver::store::Store::audit(&store, &old).await.unwrap();

    // ---- filters
    assert_eq!(
        full.audit_actions("actor=admin&action=user.").await,
        [
            "user.update",
            "user.update",
            "user.create",
            "user.create",
            "user.create"
        ]
    );
    assert_eq!(full.audit_actions("action=group.").await, ["group.create"]);
    assert_eq!(
        full.audit_actions("since_ms=999999999999&until_ms=1000000000001")
            .await,
        ["note.test"]
    );
    assert_eq!(
        full.audit_actions("until_ms=1000000000000").await,
        Vec::<String>::new(),
        "until is exclusive"
    );
    assert_eq!(full.audit_actions("actor=ann").await, ["note.test"]);
    assert_eq!(
        full.audit_actions("actor=admin&limit=2").await,
        ["group.create", "user.update"]
    );

    // ---- a read-only administrator exports ...
    let helen = Admin::login(&s1, "helen", "helen-password-1").await;
    let (status, headers, csv) = helen.get_file("/admin/audit?format=csv&actor=ann").await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"audit.csv\""
    );
    assert!(headers.get("x-audit-truncated").is_none());
    assert_eq!(
        csv,
        "at_ms,time_utc,actor,action,detail,client\n\
         1000000000000,2001-09-09T01:46:40.000Z,ann,note.test,\"line one, \"\"quoted\"\"\nline two\",10.1.2.3\n"
    );
    let (_, _, csv) = helen
        .get_file("/admin/audit?format=csv&action=user.update")
        .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1]
            .ends_with(",admin,user.update,\"tom display_name=Tom, \"\"T\"\" Smith\",127.0.0.1"),
        "{csv}"
    );
    // ... cut short when more matched than asked, and says so.
    let (status, headers, json_text) = helen
        .get_file("/admin/audit?format=json&action=user.&limit=2")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-audit-truncated"], "true");
    let exported: Vec<AuditEntry> = serde_json::from_str(&json_text).unwrap();
    let listed: Vec<AuditEntry> =
        serde_json::from_value(helen.get("/admin/audit?action=user.&limit=2").await).unwrap();
    assert_eq!(exported, listed);
    assert_eq!(exported.len(), 2);
    let (status, _, body) = helen
        .call(Method::GET, "/admin/audit?format=xml", None, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // ... but still writes nothing.
    let (status, _, body) = helen
        .call(
            Method::PATCH,
            "/admin/users/bob",
            Some(json!({ "display_name": "Bobby" })),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Each export is itself in the log, with who made it and how.
    let exports: Vec<AuditEntry> = serde_json::from_value(
        full.get("/admin/audit?action=audit.export&actor=helen")
            .await,
    )
    .unwrap();
    let details: Vec<&str> = exports.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "format=json entries=2 truncated action=user.",
            "format=csv entries=2 action=user.update",
            "format=csv entries=1 actor=ann",
        ]
    );
    assert!(
        full.audit_actions("action=user.update&actor=helen")
            .await
            .is_empty()
    );

    // ---- the command line: a filtered list and an export to a file, times as typed
    let file = std::env::temp_dir().join(format!("audit-{}.csv", std::process::id()));
    let ucadmin = |args: &[&str]| {
        std::process::Command::new(switchboard_tests::ucserver::binary("ucadmin"))
            .args([
                "--url",
                &s1.url(),
                "--user",
                "helen",
                "--password",
                "helen-password-1",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let output = ucadmin(&[
        "audit",
        "list",
        "--actor",
        "ann",
        "--since",
        "2001-09-09",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let listed: Vec<AuditEntry> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].detail, old.detail);
    let output = ucadmin(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--since",
        "2001-09-09T01:46:40Z",
        "--until",
        "2001-09-09T01:46:40.001Z",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let written = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        written.ends_with(",10.1.2.3\n") && written.lines().count() == 3,
        "{written}"
    );
    let output = ucadmin(&[
        "audit", "list", "--action", "user.", "--since", "1h", "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let recent: Vec<AuditEntry> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(recent.len(), 5, "{recent:?}");
}
