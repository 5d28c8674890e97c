//! The routes of a UCServer: every REST route, the WebSocket, the API documents and the
//! operations endpoints, with the embedded web client as the fallback. Routing lives apart
//! from the handlers so that the documents (`api_docs`, which name the handlers) and the
//! handlers never import each other.

use crate::extract::AppState;
use crate::{api_docs, http, http_inspect, ws};
use axum::Router;
use axum::routing::{delete, get, post, put};

pub fn router(server: AppState) -> Router {
    let api = Router::new()
        .route("/login", post(http::session_login))
        .route("/logout", post(http::session_logout))
        .route("/me", get(http::me_get))
        .route("/ws", get(ws::ws_upgrade))
        .route("/presence", put(http::presence_put))
        .route("/presence/{user}", get(http::presence_get))
        .route("/contacts", get(http::contacts_list))
        .route(
            "/contacts/{user}",
            put(http::contacts_put).delete(http::contacts_delete),
        )
        .route("/directory", get(http::directory_search))
        .route(
            "/delegates/{user}",
            put(http::delegates_put).delete(http::delegates_delete),
        )
        .route(
            "/conversations",
            get(http::conversations_list).post(http::conversations_create),
        )
        .route("/conversations/{id}/messages", get(http::messages_list))
        .route(
            "/conversations/{id}/read",
            post(http::conversations_read).get(http::conversations_read_markers),
        )
        .route("/messages", post(http::messages_send))
        .route("/journal", get(http::journal_list))
        .route("/users/{user}/forwarding", get(http::forwarding_get))
        .route("/admin/login", post(http::admin_login))
        .route(
            "/admin/users",
            get(http::admin_users_list).post(http::admin_users_create),
        )
        .route(
            "/admin/users/{id}",
            get(http::admin_users_get)
                .patch(http::admin_users_update)
                .delete(http::admin_users_delete),
        )
        .route(
            "/admin/users/{id}/password",
            post(http::admin_users_password),
        )
        .route(
            "/admin/users/{id}/delegates",
            get(http::admin_delegates_list),
        )
        .route(
            "/admin/users/{id}/delegates/{delegate}",
            put(http::admin_delegates_put).delete(http::admin_delegates_delete),
        )
        .route("/admin/audit", get(http::admin_audit_list))
        .route("/admin/overview", get(http::admin_overview))
        .route("/admin/history", get(http::admin_history))
        .route("/admin/events", get(crate::admin_ws::admin_events))
        .route(
            "/admin/groups",
            get(http::admin_groups_list).post(http::admin_groups_create),
        )
        .route("/admin/groups/{id}/members", post(http::admin_members_add))
        .route(
            "/admin/groups/{id}/members/{user}",
            delete(http::admin_members_remove),
        )
        .route("/admin/servers", get(http::admin_servers_list))
        .route(
            "/admin/servers/rebalance",
            post(http::admin_servers_rebalance),
        )
        .route(
            "/admin/servers/{id}/{action}",
            post(http::admin_server_action),
        )
        .route("/admin/licenses", get(http::admin_licenses_list))
        .route("/admin/licenses/{kind}", put(http::admin_licenses_set))
        .route(
            "/admin/media",
            get(http::admin_media_list).post(http::admin_media_add),
        )
        .route("/admin/media/{id}", delete(http::admin_media_remove))
        .route("/admin/media/{id}/{action}", post(http::admin_media_action))
        .route("/admin/settings", get(http::admin_settings_list))
        .route(
            "/admin/settings/{key}",
            put(http::admin_settings_put).delete(http::admin_settings_delete),
        )
        .route(
            "/admin/users/{id}/sessions",
            get(http_inspect::admin_user_sessions),
        )
        .route(
            "/admin/users/{id}/sessions/{device}",
            delete(http_inspect::admin_user_kick),
        )
        .route(
            "/admin/presence/{user}",
            get(http_inspect::admin_presence_show),
        )
        .route(
            "/admin/presence/{user}/watchers",
            get(http_inspect::admin_presence_watchers),
        )
        .route(
            "/admin/import",
            post(http::admin_import).layer(axum::extract::DefaultBodyLimit::max(
                shared::limits::MAX_IMPORT_BYTES,
            )),
        )
        .route("/admin/export", get(http::admin_export))
        .route("/admin/directory", get(http::admin_directory_status))
        .route("/admin/directory/sync", post(http::admin_directory_sync))
        .route("/openapi.json", get(api_docs::openapi_get))
        .route("/ws-schema.json", get(api_docs::ws_schema_get))
        .route("/{*rest}", axum::routing::any(http::api_not_found));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/metrics", get(http::metrics))
        // The admin console at /admin, then everything else is the web client, both served
        // from the binary itself.
        .merge(ucweb::console_router())
        .merge(ucweb::client_router())
        .layer(axum::extract::DefaultBodyLimit::max(
            shared::limits::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn_with_state(
            server.metrics.http_requests.clone(),
            crate::metrics::track_http,
        ))
        .with_state(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Server;
    use axum::body::Body as HttpBody;
    use axum::http::Request as HttpRequest;
    use axum::http::StatusCode;
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn app() -> Router {
        let store = crate::store::SqlStore::connect("sqlite::memory:")
            .await
            .unwrap();
        let cluster = crate::cluster::LocalCluster::new(crate::cluster::LocalHub::new());
        let config = crate::config::Config::default();
        let path = std::env::temp_dir()
            .join(format!("routes-test-{}", uuid::Uuid::now_v7()))
            .join("outbox.sqlite");
        let outbox = crate::outbox::Outbox::open(&path, config.outbox_limits())
            .await
            .unwrap();
        let (server, _writer) = Server::new(
            config,
            "http://localhost:0".into(),
            Arc::new(store),
            Arc::new(cluster),
            Arc::new(outbox),
        );
        router(server)
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(HttpRequest::get(path).body(HttpBody::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn the_web_client_is_served_beside_the_api() {
        let (status, body) = get(app().await, "/").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"),
            "{body}"
        );
        // The client's modules live in a subfolder and must come back as JavaScript.
        let response = app()
            .await
            .oneshot(
                HttpRequest::get("/js/main.js")
                    .body(HttpBody::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let (status, body) = get(app().await, "/api/v1/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("\"not_found\""), "{body}");
        let (status, body) = get(app().await, "/api/v1/me").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
}
