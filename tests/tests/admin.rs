//! The admin REST API with several administrators at once, over plain HTTP against two
//! UCServers sharing a real Redis and PostgreSQL: a read-only administrator gets `403
//! forbidden` on every write and nothing changes; an edit made from an old version (`If-Match`)
//! gets `409 conflict` with the current version and who made it, whichever server each
//! administrator uses; a changed role counts at once for tokens already issued.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::UserId;
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
        let (status, etag, body) = full
            .call(
                Method::POST,
                "/admin/users",
                Some(json!({ "id": id, "password": format!("{id}-password-1"), "admin": admin })),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(etag.as_deref(), Some("\"1\""));
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
