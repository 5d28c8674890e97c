//! `ucadmin config`: the runtime settings (`GET/PUT/DELETE /api/v1/admin/settings`), as the
//! console's "Settings" view shows them: scope, effective value per server, and whether each
//! server confirmed it applied them.

use super::{emit, print, table};
use clap::Subcommand;
use shared::api::SettingsView;
use ucclient::AdminClient;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every setting: default, global value, overrides, and per server the effective value
    /// and whether the server applied it.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Sets a value cluster-wide, or for one server with `--server`. Refused values (out of
    /// bounds, not a number) change nothing and say why.
    Set {
        key: String,
        value: String,
        /// Override for this server only.
        #[arg(long)]
        server: Option<String>,
        /// Change only if the value in that scope is still at this version (0: not set).
        #[arg(long)]
        if_version: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Removes a server's override (`--server global` removes the cluster-wide value).
    Unset {
        key: String,
        #[arg(long)]
        server: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn act(admin: &AdminClient, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::List { json } => {
            let view = admin.settings().await?;
            print(json, &view, || settings_text(&view))
        }
        ConfigCommand::Set {
            key,
            value,
            server,
            if_version,
            json,
        } => {
            // A number or other JSON as such; anything else as text (which the server refuses
            // with its reason when the setting wants a number).
            let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
            let stored = admin
                .set_setting(&key, value, server.as_deref(), if_version)
                .await?;
            print(json, &stored, || {
                format!(
                    "{} = {} ({}, version {}); every server applies it now",
                    stored.key, stored.value, stored.scope, stored.version
                )
            })
        }
        ConfigCommand::Unset { key, server, json } => {
            admin.unset_setting(&key, &server).await?;
            if json {
                emit(&serde_json::json!({ "unset": key, "scope": server }).to_string())
            } else {
                emit(&format!("{key}: the value for {server} is removed"))
            }
        }
    }
}

/// One line per setting and server: the value it should run with, where it comes from, and
/// whether the server applied it.
pub fn settings_text(view: &SettingsView) -> String {
    let mut table = table(&[
        "setting",
        "server",
        "effective",
        "from",
        "running",
        "applied",
    ]);
    for setting in &view.settings {
        for on in &setting.servers {
            table.add_row(vec![
                setting.key.clone(),
                on.server.to_string(),
                on.effective.to_string(),
                on.source.clone(),
                on.running
                    .as_ref()
                    .map_or_else(|| "-".to_string(), ToString::to_string),
                if on.applied { "yes" } else { "not yet" }.to_string(),
            ]);
        }
    }
    let mut text = format!("revision {}\n{table}", view.revision);
    for server in &view.servers {
        let state = match server.revision {
            Some(revision) => format!("applied revision {revision}"),
            None => "has not reported".to_string(),
        };
        text.push_str(&format!("\n{}: {state}", server.server));
        for refusal in &server.refused {
            text.push_str(&format!("; refused {}: {}", refusal.key, refusal.reason));
        }
    }
    text
}
