//! The machine-readable API documents, generated from the code rather than written beside it:
//!
//! - `GET /api/v1/openapi.json`: OpenAPI (utoipa) for every REST route of [`crate::http`] and
//!   the WebSocket upgrade. Each handler carries its `#[utoipa::path]`; the bodies are the
//!   wire types of `shared::api` (feature `schema` of `shared`). A test keeps the router and
//!   this document in step.
//! - `GET /api/v1/ws-schema.json`: JSON Schema (schemars, draft 2020-12) of the WebSocket
//!   frames: `$defs/ClientEnvelope` (device → server) and `$defs/ServerEvent` (server →
//!   device), from `shared::ws`.
//!
//! Both are built once per process and served without login. `docs/api.md` keeps the prose
//! (visibility rule, ordering, errors); the field-level reference is here.

use axum::response::{IntoResponse, Response};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};
use shared::api::ApiError;
use shared::ws::{ClientEnvelope, ServerEvent};
use std::sync::LazyLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard client and admin API",
        version = "1",
        description = "REST API of a UCServer. Prose (visibility rule, WebSocket behaviour, \
                       ordering, errors): docs/api.md. WebSocket frames: /api/v1/ws-schema.json."
    ),
    paths(
        crate::http::healthz,
        crate::http::readyz,
        crate::http::metrics,
        crate::http::session_login,
        crate::http::session_logout,
        crate::http::me_get,
        crate::ws::ws_upgrade,
        crate::http::presence_put,
        crate::http::presence_get,
        crate::http::contacts_list,
        crate::http::contacts_put,
        crate::http::contacts_delete,
        crate::http::directory_search,
        crate::http::delegates_put,
        crate::http::delegates_delete,
        crate::http::conversations_list,
        crate::http::conversations_create,
        crate::http::messages_list,
        crate::http::conversations_read,
        crate::http::conversations_read_markers,
        crate::http::messages_send,
        crate::http::journal_list,
        crate::http::forwarding_get,
        crate::http::admin_login,
        crate::http::admin_users_list,
        crate::http::admin_users_create,
        crate::http::admin_users_get,
        crate::http::admin_users_update,
        crate::http::admin_users_password,
        crate::http::admin_users_delete,
        crate::http::admin_delegates_list,
        crate::http::admin_delegates_put,
        crate::http::admin_delegates_delete,
        crate::http::admin_audit_list,
        crate::http::admin_overview,
        crate::http::admin_history,
        crate::admin_ws::admin_events,
        crate::http::admin_groups_list,
        crate::http::admin_groups_create,
        crate::http::admin_members_add,
        crate::http::admin_members_remove,
        crate::http::admin_servers_list,
        crate::http::admin_server_action,
        crate::http::admin_servers_rebalance,
        crate::http::admin_licenses_list,
        crate::http::admin_licenses_set,
        crate::http::admin_media_list,
        crate::http::admin_media_add,
        crate::http::admin_media_remove,
        crate::http::admin_media_action,
        crate::http::admin_settings_list,
        crate::http::admin_settings_put,
        crate::http::admin_settings_delete,
        crate::http_inspect::admin_user_sessions,
        crate::http_inspect::admin_user_kick,
        crate::http_inspect::admin_presence_show,
        crate::http_inspect::admin_presence_watchers,
        crate::http::admin_import,
        crate::http::admin_export,
        crate::http::admin_directory_status,
        crate::http::admin_directory_sync,
        openapi_get,
        ws_schema_get,
    ),
    components(schemas(ApiError)),
    modifiers(&BearerAndErrors),
    security(("bearer" = [])),
    tags(
        (name = "client", description = "Client API: a user's session (`/api/v1`)."),
        (name = "admin", description = "Admin API: an administrator's session (`/api/v1/admin`)."),
        (name = "operations", description = "Health, readiness and metrics of every server."),
        (name = "documents", description = "These API documents."),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme (the session token of `POST /login` or
/// `POST /admin/login`), and to every operation the `default` answer: an [`ApiError`] with
/// the HTTP status of its `ErrorCode`.
struct BearerAndErrors;

impl Modify for BearerAndErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The `token` of a login answer, as `Authorization: Bearer <token>` \
                         (the WebSocket also takes `?token=`).",
                    ))
                    .build(),
            ),
        );
        let error = ResponseBuilder::new()
            .description(
                "Every error: `{\"error\": code, \"message\": sentence}` with the HTTP status of \
                 the code (`ErrorCode::http_status`).",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ApiError",
                    ))))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                // OpenAPI requires a description on every response.
                for response in responses.values_mut() {
                    if let RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = "Success.".to_string();
                    }
                }
                responses
                    .entry("default".to_string())
                    .or_insert_with(|| RefOr::T(error.clone()));
            }
        }
    }
}

/// The OpenAPI document as served.
pub static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
});

/// The JSON Schema of the WebSocket frames, as served.
pub static WS_SCHEMA_JSON: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string_pretty(&ws_schema()).expect("the frame schema serializes")
});

/// JSON Schema (draft 2020-12) of the frames of `GET /api/v1/ws`: the root accepts either
/// direction; validate a direction against `$defs/ClientEnvelope` or `$defs/ServerEvent`.
pub fn ws_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let client = generator.subschema_for::<ClientEnvelope>();
    let server = generator.subschema_for::<ServerEvent>();
    let definitions = generator.take_definitions(true);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Switchboard WebSocket frames",
        "description": "One JSON object per text frame of GET /api/v1/ws. A device sends \
                        ClientEnvelope frames (a command with an optional `ref`) and receives \
                        ServerEvent frames (the first is `hello`; `ack` and `error` echo `ref`). \
                        Prose: docs/api.md and docs/calls.md.",
        "anyOf": [client, server],
        "$defs": definitions,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "documents",
    security(()),
    responses((status = 200, description = "This document.", content_type = "application/json", body = serde_json::Value))
)]
pub async fn openapi_get() -> Response {
    json_text(&OPENAPI_JSON)
}

#[utoipa::path(
    get,
    path = "/api/v1/ws-schema.json",
    tag = "documents",
    security(()),
    responses((status = 200, description = "JSON Schema of the WebSocket frames.", content_type = "application/json", body = serde_json::Value))
)]
pub async fn ws_schema_get() -> Response {
    json_text(&WS_SCHEMA_JSON)
}

fn json_text(text: &'static str) -> Response {
    ([("content-type", "application/json")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `(METHOD, path)` of every route `routes::router` declares, read from its source: each
    /// `.route("path", method(handler).method(handler))` inside `fn router`, with the nested
    /// `/api/v1` prefix put back. Reading the source keeps the list in the one place routes
    /// are written; axum has no way to list a built router's routes.
    fn router_routes() -> BTreeSet<(String, String)> {
        let source = include_str!("routes.rs");
        let start = source
            .find("pub fn router(")
            .expect("routes::router exists");
        let body = &source[start..];
        let end = body.find("\n}\n").expect("end of router");
        let body = &body[..end];
        let nested_from = body
            .find("Router::new()\n        .nest(")
            .unwrap_or(body.len());
        let mut routes = BTreeSet::new();
        let mut rest = body;
        while let Some(at) = rest.find(".route(") {
            let position = body.len() - rest.len() + at;
            let call = &rest[at + ".route(".len()..];
            let path_start = call.find('"').expect("a route path") + 1;
            let path_end = path_start + call[path_start..].find('"').unwrap();
            let path = &call[path_start..path_end];
            // The call's arguments end at the parenthesis that closes `.route(`.
            let mut depth = 1;
            let mut end = 0;
            for (index, character) in call.char_indices() {
                match character {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = index;
                    break;
                }
            }
            let handlers = &call[path_end + 1..end];
            let prefix = if position < nested_from {
                "/api/v1"
            } else {
                ""
            };
            for method in ["get", "post", "put", "patch", "delete", "any"] {
                let called = handlers
                    .match_indices(&format!("{method}("))
                    .any(|(index, _)| {
                        index == 0
                            || !handlers[..index]
                                .ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                if called {
                    routes.insert((method.to_uppercase(), format!("{prefix}{path}")));
                }
            }
            rest = &call[end..];
        }
        routes
    }

    fn document_routes(document: &Value) -> BTreeSet<(String, String)> {
        let mut routes = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        routes
    }

    #[test]
    fn every_route_of_the_router_is_in_the_openapi_document() {
        let document: Value = serde_json::from_str(&OPENAPI_JSON).expect("valid JSON");
        let mut in_router = router_routes();
        assert!(
            in_router.len() > 30,
            "the router's source was not read right: {in_router:?}"
        );
        // The catch-all that answers `not_found` for unknown API paths is not a route to use.
        assert!(in_router.remove(&("ANY".to_string(), "/api/v1/{*rest}".to_string())));
        let in_document = document_routes(&document);
        let missing: Vec<_> = in_router.difference(&in_document).collect();
        assert!(
            missing.is_empty(),
            "routes without #[utoipa::path] in ApiDoc: {missing:?}"
        );
        let stale: Vec<_> = in_document.difference(&in_router).collect();
        assert!(
            stale.is_empty(),
            "documented routes the router lacks: {stale:?}"
        );
    }

    #[test]
    fn the_document_declares_bearer_and_uses_it() {
        let document: Value = serde_json::from_str(&OPENAPI_JSON).expect("valid JSON");
        assert!(
            document["openapi"].as_str().unwrap().starts_with("3."),
            "{}",
            document["openapi"]
        );
        let bearer = &document["components"]["securitySchemes"]["bearer"];
        assert_eq!(bearer["type"], "http");
        assert_eq!(bearer["scheme"], "bearer");
        assert_eq!(document["security"], json!([{ "bearer": [] }]));
        // Login is open; everything else takes the token.
        assert_eq!(
            document["paths"]["/api/v1/login"]["post"]["security"],
            json!([{}])
        );
        assert!(
            document["paths"]["/api/v1/me"]["get"]
                .get("security")
                .is_none()
        );
        // Every answer has the description OpenAPI requires.
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    assert!(
                        response["description"]
                            .as_str()
                            .is_some_and(|d| !d.is_empty()),
                        "{method} {path} {status}: no description"
                    );
                }
            }
        }
        // Bodies are the shared wire types, errors are ApiError.
        let schemas = &document["components"]["schemas"];
        for name in [
            "LoginRequest",
            "ApiError",
            "ErrorCode",
            "PresenceView",
            "UserId",
        ] {
            assert!(
                schemas.get(name).is_some(),
                "{name} missing from components"
            );
        }
        assert_eq!(
            document["paths"]["/api/v1/messages"]["post"]["responses"]["default"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/ApiError"
        );
    }

    #[test]
    fn the_frame_schema_names_both_directions() {
        let schema = ws_schema();
        for name in [
            "ClientEnvelope",
            "ServerEvent",
            "ChatMessage",
            "PresenceView",
        ] {
            assert!(schema["$defs"].get(name).is_some(), "{name} missing");
        }
    }
}
