//! The Switchboard web front.
//!
//! - [`client_router`]: the browser client's static files (`ucweb/assets/`), embedded with
//!   rust-embed (read from disk in debug builds, embedded in release builds). A state-free
//!   `Router` that `ucserver` or any other binary can `merge` or use as `fallback_service`.
//! - [`console_router`]: the UCAdmin console's files (`ucadmin/console/assets/`, crate
//!   `ucadmin-console`) at `/admin`, served the same way.
//! - [`proxy::proxy_router`]: forwards `/api/*` (REST and the WebSocket upgrade) to a UCServer.
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

pub mod proxy;

/// Where [`console_router`] serves the admin console.
pub const CONSOLE_PATH: &str = ucadmin_console::MOUNT;

/// The client's files. The folder is absolute (from `CARGO_MANIFEST_DIR`), so debug builds
/// read it from disk whatever the working directory is.
#[derive(rust_embed::RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/assets/"]
struct Assets;

/// A router that serves the web client: `/` is `index.html`, every file of `assets/` under its
/// path, and any other path without a file extension also gets `index.html` (client-side views).
pub fn client_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().fallback(serve_asset)
}

/// A router that serves the admin console at `/admin/` (`/admin` redirects there, so that the
/// page's relative paths and its `#/view` routes work): every file of the console's assets
/// under `/admin/`, and `index.html` for any other path without a file extension.
pub fn console_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    use axum::routing::get;
    let mount = ucadmin_console::MOUNT;
    Router::new()
        .route(
            mount,
            get(move || async move { axum::response::Redirect::permanent(&format!("{mount}/")) }),
        )
        .route(&format!("{mount}/"), get(serve_console))
        .route(&format!("{mount}/{{*path}}"), get(serve_console))
}

async fn serve_console(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri
        .path()
        .strip_prefix(ucadmin_console::MOUNT)
        .unwrap_or("")
        .trim_start_matches('/');
    serve_embedded::<ucadmin_console::ConsoleAssets>(path, &headers)
}

/// Names of every embedded file (for tests and diagnostics).
pub fn asset_names() -> Vec<String> {
    Assets::iter().map(|name| name.into_owned()).collect()
}

async fn serve_asset(uri: Uri, headers: HeaderMap) -> Response {
    serve_embedded::<Assets>(uri.path().trim_start_matches('/'), &headers)
}

/// One file of an embedded folder `A` (`path` relative to it): `""` is `index.html`, and so is
/// any path without a file extension that is not under `api/`. Revalidated with an ETag.
fn serve_embedded<A: rust_embed::RustEmbed>(path: &str, headers: &HeaderMap) -> Response {
    let path = if path.is_empty() { "index.html" } else { path };
    if path
        .split('/')
        .any(|part| part == ".." || part.starts_with('.'))
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (name, file) = match A::get(path) {
        Some(file) => (path, file),
        None if !path.rsplit('/').next().unwrap_or("").contains('.')
            && !path.starts_with("api/") =>
        {
            match A::get("index.html") {
                Some(file) => ("index.html", file),
                None => return StatusCode::NOT_FOUND.into_response(),
            }
        }
        None => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..12]));
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.data.into_owned()))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    // Revalidate every time: cheap with the ETag, and a new build is picked up at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if name.ends_with(".html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                 style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fetch(path: &str, if_none_match: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(etag) = if_none_match {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(etag).unwrap());
        }
        serve_asset(path.parse().unwrap(), headers).await
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    async fn text_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn every_module_is_served_as_javascript_from_its_folder() {
        let modules: Vec<String> = asset_names()
            .into_iter()
            .filter(|name| name.ends_with(".js"))
            .collect();
        assert!(
            modules.iter().any(|name| name == "js/main.js"),
            "{modules:?}"
        );
        for name in &modules {
            let response = fetch(&format!("/{name}"), None).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            // Browsers refuse a module with another type (and nosniff forbids guessing).
            assert_eq!(
                header_of(&response, header::CONTENT_TYPE),
                "text/javascript; charset=utf-8",
                "{name}"
            );
            assert_eq!(
                header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            let etag = header_of(&response, header::ETAG).to_string();
            assert!(etag.starts_with('"'), "{name}: {etag}");
            let again = fetch(&format!("/{name}"), Some(&etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{name}");
        }
    }

    #[tokio::test]
    async fn index_html_loads_an_entry_module_that_exists() {
        let page = text_of(fetch("/", None).await).await;
        let entry = page
            .split("<script type=\"module\" src=\"/")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("index.html loads a module");
        assert!(asset_names().iter().any(|name| name == entry), "{entry}");
    }

    #[tokio::test]
    async fn a_missing_file_is_not_found_and_a_view_path_is_the_page() {
        // A module that does not exist must fail as such, not come back as index.html.
        assert_eq!(
            fetch("/js/nothing.js", None).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            fetch("/js/../index.html", None).await.status(),
            StatusCode::NOT_FOUND
        );
        let view = fetch("/chats", None).await;
        assert_eq!(view.status(), StatusCode::OK);
        assert_eq!(
            header_of(&view, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn the_console_is_served_at_admin() {
        use tower::ServiceExt;
        let app: Router = console_router();
        let get = |path: &str| axum::http::Request::get(path).body(Body::empty()).unwrap();
        let redirect = app.clone().oneshot(get("/admin")).await.unwrap();
        assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header_of(&redirect, header::LOCATION), "/admin/");
        let page = app.clone().oneshot(get("/admin/")).await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(header_of(&page, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
        let page = text_of(page).await;
        let entry = page
            .split("<script type=\"module\" src=\"/admin/")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the console loads a module");
        let names = ucadmin_console::asset_names();
        assert!(names.iter().any(|name| name == entry), "{entry}");
        for name in names.iter().filter(|name| name.ends_with(".js")) {
            let module = app
                .clone()
                .oneshot(get(&format!("/admin/{name}")))
                .await
                .unwrap();
            assert_eq!(module.status(), StatusCode::OK, "{name}");
            assert_eq!(
                header_of(&module, header::CONTENT_TYPE),
                "text/javascript; charset=utf-8"
            );
        }
        let missing = app.oneshot(get("/admin/js/nothing.js")).await.unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
