//! `ucadmin user sessions|kick` and `ucadmin presence show|watchers`: the admin's look into
//! live state (a user's devices and the kick of one; the presence viewer), as in the
//! console's Sessions and Presence views.

use crate::{print, table, yes_no};
use clap::Subcommand;
use shared::inspect::{PresenceInspection, PresenceWatchers, UserSessions};
use shared::{DeviceId, UserId};
use ucclient::AdminClient;
use ucclient::text::format_age;

#[derive(Debug, Subcommand)]
pub enum PresenceCommand {
    /// What WATCHER sees of USER now, and the rule that decided it.
    Show {
        user: String,
        #[arg(long)]
        watcher: String,
        #[arg(long)]
        json: bool,
    },
    /// Who gets USER's live presence events, and who of them is online now.
    Watchers {
        user: String,
        #[arg(long)]
        json: bool,
    },
}

/// `user sessions NAME`.
pub async fn sessions(admin: &AdminClient, name: String, json: bool) -> anyhow::Result<()> {
    let sessions = admin.user_sessions(&UserId::new(name)).await?;
    print(json, &sessions, || {
        sessions_text(&sessions, shared::now_ms())
    })
}

/// `user kick NAME DEVICE`.
pub async fn kick(
    admin: &AdminClient,
    name: String,
    device: String,
    json: bool,
) -> anyhow::Result<()> {
    let kicked = admin
        .kick_device(&UserId::new(name), &DeviceId::new(device))
        .await?;
    print(json, &kicked, || {
        let left: Vec<&str> = kicked.devices_left.iter().map(DeviceId::as_str).collect();
        format!(
            "ended the session of {}'s device {} on {} ({} token(s) ended); still connected: {}",
            kicked.user,
            kicked.device,
            kicked.server,
            kicked.tokens_ended,
            if left.is_empty() {
                "none".to_string()
            } else {
                left.join(", ")
            }
        )
    })
}

pub async fn presence(admin: &AdminClient, command: PresenceCommand) -> anyhow::Result<()> {
    match command {
        PresenceCommand::Show {
            user,
            watcher,
            json,
        } => {
            let seen = admin
                .presence_inspection(&UserId::new(user), &UserId::new(watcher))
                .await?;
            print(json, &seen, || inspection_text(&seen))
        }
        PresenceCommand::Watchers { user, json } => {
            let watchers = admin.presence_watchers(&UserId::new(user)).await?;
            print(json, &watchers, || watchers_text(&watchers))
        }
    }
}

fn sessions_text(sessions: &UserSessions, now_ms: i64) -> String {
    let head = format!(
        "{}: served by {} (home {}), {} device(s) connected",
        sessions.user,
        sessions.server,
        sessions.home_server,
        sessions.devices.len()
    );
    if sessions.devices.is_empty() {
        return head;
    }
    let mut rows = table(&[
        "DEVICE",
        "CLIENT",
        "ADDRESS",
        "SINCE",
        "QUIET",
        "LAST ACTIVE",
    ]);
    for device in &sessions.devices {
        rows.add_row(vec![
            device.device.to_string(),
            device.client.clone(),
            device.address.clone().unwrap_or_default(),
            format_age(now_ms, device.since_ms),
            yes_no(device.quiet).to_string(),
            format_age(now_ms, device.last_active_ms),
        ]);
    }
    format!("{head}\n{rows}")
}

fn inspection_text(seen: &PresenceInspection) -> String {
    let view = &seen.presence;
    let mut lines = vec![
        format!(
            "{} sees {}: {:?} ({:?} visibility)",
            seen.watcher, seen.user, view.availability, seen.visibility
        ),
        format!("rule:       {} ({})", seen.rule.as_str(), seen.explanation),
        format!("live:       {}", yes_no(seen.live)),
    ];
    if let Some(note) = &view.note {
        lines.push(format!("note:       {note}"));
    }
    if let Some(telephony) = view.telephony {
        lines.push(format!("telephony:  {telephony:?}"));
    }
    if !view.devices.is_empty() {
        let devices: Vec<&str> = view.devices.iter().map(|d| d.device.as_str()).collect();
        lines.push(format!("devices:    {}", devices.join(", ")));
    }
    lines.push(format!("version:    {}", view.version));
    lines.join("\n")
}

fn watchers_text(watchers: &PresenceWatchers) -> String {
    let mut rows = table(&["WATCHER", "RULE", "ONLINE", "DEVICES", "SERVER"]);
    for watcher in &watchers.watchers {
        rows.add_row(vec![
            watcher.user.to_string(),
            watcher.rule.as_str().to_string(),
            yes_no(watcher.online).to_string(),
            watcher.devices.to_string(),
            watcher
                .server
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ]);
    }
    let cut = if watchers.truncated {
        " (list cut)"
    } else {
        ""
    };
    format!(
        "{} watcher(s) of {}, {} online now{cut}\n{rows}",
        watchers.watchers.len(),
        watchers.user,
        watchers.watching_now
    )
}
