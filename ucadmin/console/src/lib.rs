//! The UCAdmin web console's files: `assets/` (plain ES modules in `js/`, CSS, no build step),
//! embedded with rust-embed. The console is a browser client of the admin REST API
//! (`/api/v1/admin/...`), the same API the `ucadmin` CLI uses; it holds no state of its own.
//!
//! This crate only owns the files. `ucweb::console_router` serves them at `/admin` (with the
//! same caching and security headers as the web client), and both `ucweb` and a `ucserver`
//! mount that router, so the console is reached at the same path on either.

/// The console's files. The folder is absolute (from `CARGO_MANIFEST_DIR`), so debug builds
/// read it from disk whatever the working directory is.
#[derive(rust_embed::RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/assets/"]
pub struct ConsoleAssets;

/// The path the console is served at.
pub const MOUNT: &str = "/admin";

/// Names of every embedded file (for tests and diagnostics).
pub fn asset_names() -> Vec<String> {
    <ConsoleAssets as rust_embed::RustEmbed>::iter()
        .map(|name| name.into_owned())
        .collect()
}
