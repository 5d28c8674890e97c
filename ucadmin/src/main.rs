//! `ucadmin`: administers a Switchboard cluster over the admin API (users, groups, servers,
//! licenses, MediaServers, the audit log): everything the web console at `/admin` does.
//! Every command logs in, acts and logs out. Failures print
//! `error: <code>: <message>` on stderr and exit with 1. The syntax is a contract other tools
//! script against (issue 2, "Interfaces"): change it only by adding.

mod audit;
mod directory;
mod inspect;
mod live;
mod settings;

use anyhow::Context;
use audit::AuditCommand;
use clap::{Parser, Subcommand};
use comfy_table::{Table, presets};
use serde::Serialize;
use shared::api::{
    AdminRole, AdminUser, CreateGroup, CreateUser, GroupInfo, LicenseInfo, MediaServerInfo,
    Overview, ServerAction, ServerList, UpdateUser,
};
use shared::{GroupId, MediaServerId, ServerId, UserId};
use std::process::ExitCode;
use ucclient::text::format_age;
use ucclient::{AdminClient, ClientError};

#[derive(Debug, Parser)]
#[command(name = "ucadmin", version, about = "Switchboard administration tool")]
struct Cli {
    /// Base URL of any UCServer of the cluster.
    #[arg(long, env = "UC_URL")]
    url: String,
    /// An admin user.
    #[arg(long, env = "UC_USER")]
    user: String,
    #[arg(long, env = "UC_PASSWORD", hide_env_values = true)]
    password: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Users: add, list, set, remove.
    #[command(subcommand)]
    User(UserCommand),
    /// Admin-managed groups and their members.
    #[command(subcommand)]
    Group(GroupCommand),
    /// The cluster's UCServers and MediaServers.
    #[command(subcommand)]
    Server(ServerCommand),
    /// The license pool.
    #[command(subcommand)]
    License(LicenseCommand),
    /// MediaServers made known to the cluster.
    #[command(subcommand)]
    Media(MediaCommand),
    /// The log of administrators' actions.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Runtime settings: list, set (cluster-wide or per server), unset an override.
    #[command(subcommand)]
    Config(settings::ConfigCommand),
    /// The presence viewer: what one user sees of another, and who watches a user.
    #[command(subcommand)]
    Presence(inspect::PresenceCommand),
    /// The cluster at a glance: servers, MediaServers, SQL and bus health, licenses.
    Overview {
        #[arg(long)]
        json: bool,
    },
    /// Follows what administrators change anywhere in the cluster, and servers found dead,
    /// as it happens (the console's live updates).
    Watch {
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<u32>,
        /// One JSON event per line.
        #[arg(long)]
        json: bool,
    },
    /// Every server's load and counters over the last hour (the console's charts).
    History {
        #[arg(long)]
        json: bool,
    },
    /// Imports users with their groups and contact lists from a CSV or JSON file: all of it
    /// or, when any row is bad, nothing (each bad row named by its line).
    Import {
        file: std::path::PathBuf,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// The LDAP / Active Directory sync: `sync [--dry-run]`, `status`.
    #[command(subcommand)]
    Directory(directory::DirectoryCommand),
    /// Exports every user with groups, contacts and disabled flag (never a password).
    Export {
        #[arg(long, value_enum, default_value = "json")]
        format: directory::ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

/// `--role`: an administrator's role, or `none` for a plain user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RoleArg(Option<AdminRole>);

fn parse_role(text: &str) -> Result<RoleArg, String> {
    if text == "none" {
        return Ok(RoleArg(None));
    }
    AdminRole::parse(text)
        .map(|role| RoleArg(Some(role)))
        .ok_or_else(|| format!("'{text}' is not a role: full, users, read_only or none"))
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    Add {
        name: String,
        #[arg(long)]
        password: String,
        /// Home server id (default: the server receiving the request).
        #[arg(long)]
        home: Option<String>,
        /// Display name.
        #[arg(long)]
        display: Option<String>,
        /// Make the user an administrator (a full one unless `--role` says otherwise).
        #[arg(long)]
        admin: bool,
        /// An administrator's role: full, users (user admin) or read_only (helpdesk).
        #[arg(long, value_parser = parse_role)]
        role: Option<RoleArg>,
        #[arg(long)]
        json: bool,
    },
    List {
        /// Only users whose id or display name contains this.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One user, with the version that `--if-version` names.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    Remove {
        name: String,
        /// Only if the user is still at this version (see `user show`).
        #[arg(long)]
        if_version: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Change a user's home server, display name, password or administrator role.
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["home", "display", "password", "role"])))]
    Set {
        name: String,
        #[arg(long)]
        home: Option<String>,
        #[arg(long)]
        display: Option<String>,
        #[arg(long)]
        password: Option<String>,
        /// full, users, read_only, or none (no administrator).
        #[arg(long, value_parser = parse_role)]
        role: Option<RoleArg>,
        /// Only if the user is still at this version (see `user show`).
        #[arg(long)]
        if_version: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Give a user another home server while they are online: their devices follow them
    /// there without signing in (a user in a call moves when it ends).
    Move {
        name: String,
        server: String,
        #[arg(long)]
        json: bool,
    },
    /// Refuse the user's sign-ins and end their sessions.
    Disable {
        name: String,
        #[arg(long)]
        if_version: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Let a disabled user sign in again.
    Enable {
        name: String,
        #[arg(long)]
        if_version: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// A new password: the one given, or one the server makes up and prints once.
    ResetPassword {
        name: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The user's connected devices (client, address, since, quiet mode), on whichever
    /// server serves them.
    Sessions {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// End one device's session: it is disconnected and its token ended; the user's other
    /// devices stay.
    Kick {
        name: String,
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// The users who act for NAME (set their presence, answer and forward their calls, see
    /// everything of them).
    Delegates {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Let DELEGATE act for NAME.
    DelegateAdd {
        name: String,
        delegate: String,
        #[arg(long)]
        json: bool,
    },
    /// DELEGATE no longer acts for NAME.
    DelegateRemove {
        name: String,
        delegate: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    Add {
        name: String,
        #[arg(long)]
        display: Option<String>,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    Add {
        group: String,
        user: String,
        #[arg(long)]
        json: bool,
    },
    Remove {
        group: String,
        user: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Every UCServer and MediaServer, with each UCServer's high-availability state and why.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Move every user off a server to their backups (maintenance), without signing anyone
    /// out; they stay there until `undrain`.
    Drain {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Let a drained server serve its users again (they move back at once).
    Undrain {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cisco's failover: the same as drain.
    Failover {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Bring a returned server's users back from their backups now.
    Fallback {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Keep a returned server's users on their backups (no automatic fallback).
    Hold {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Clear drain, hold and fallback of a server: the automatic rules apply again.
    Recover {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Spread the users over the live servers (after one was added); online users follow
    /// without signing in. `--dry-run` shows what would move.
    Rebalance {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LicenseCommand {
    Set {
        kind: String,
        capacity: u32,
        #[arg(long)]
        json: bool,
    },
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MediaCommand {
    Add {
        id: String,
        control_url: String,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Takes a MediaServer out of service: no new call goes there; its calls go on.
    Drain {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Puts a drained MediaServer back into service.
    Undrain {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: internal: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let text = match error.downcast_ref::<ClientError>() {
                Some(client_error) => client_error.to_string(),
                None => format!("client: {error:#}"),
            };
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let admin =
        AdminClient::login(&cli.url, &UserId::from(cli.user.as_str()), &cli.password).await?;
    let result = act(&admin, cli.command).await;
    let logout = admin.logout().await;
    result?;
    logout?;
    Ok(())
}

async fn act(admin: &AdminClient, command: Command) -> anyhow::Result<()> {
    let now_ms = shared::now_ms();
    match command {
        Command::User(UserCommand::Add {
            name,
            password,
            home,
            display,
            admin: is_admin,
            role,
            json,
        }) => {
            let role = role.and_then(|RoleArg(role)| role);
            let request = CreateUser {
                id: UserId::new(name),
                password,
                display_name: display,
                home_server: home.map(ServerId::new),
                admin: is_admin || role.is_some(),
            };
            let mut user = admin.create_user(request).await?;
            if let Some(role) = role.filter(|role| *role != AdminRole::Full) {
                // Made a full administrator first, then given the role asked for.
                let request = UpdateUser {
                    role: Some(role),
                    ..UpdateUser::default()
                };
                user = admin
                    .update_user_at(&user.id, request, Some(user.version))
                    .await?;
            }
            print(json, &user, || {
                format!("added user {} (home {})", user.id, user.home_server)
            })
        }
        Command::User(UserCommand::List { search, json }) => {
            let users = match search {
                Some(text) => admin.search_users(&text).await?,
                None => admin.users().await?,
            };
            print(json, &users, || users_table(&users))
        }
        Command::User(UserCommand::Show { name, json }) => {
            let user = admin.user(&UserId::new(name)).await?;
            print(json, &user, || user_text(&user, now_ms))
        }
        Command::User(UserCommand::Remove {
            name,
            if_version,
            json,
        }) => {
            admin
                .delete_user_at(&UserId::new(name.clone()), if_version)
                .await?;
            print(json, &serde_json::json!({ "removed": name }), || {
                format!("removed user {name}")
            })
        }
        Command::User(UserCommand::Move { name, server, json }) => {
            let request = UpdateUser {
                home_server: Some(ServerId::new(server)),
                ..UpdateUser::default()
            };
            let user = admin.update_user(&UserId::new(name), request).await?;
            print(json, &user, || {
                format!(
                    "moved user {} to {}: their devices follow within a heartbeat",
                    user.id, user.home_server
                )
            })
        }
        Command::User(UserCommand::Set {
            name,
            home,
            display,
            password,
            role,
            if_version,
            json,
        }) => {
            let request = UpdateUser {
                password,
                display_name: display,
                home_server: home.map(ServerId::new),
                admin: role.map(|RoleArg(role)| role.is_some()),
                role: role.and_then(|RoleArg(role)| role),
                disabled: None,
            };
            let user = admin
                .update_user_at(&UserId::new(name), request, if_version)
                .await?;
            print(json, &user, || {
                format!(
                    "updated user {} ({}, home {}, version {})",
                    user.id, user.display_name, user.home_server, user.version
                )
            })
        }
        Command::User(UserCommand::Disable {
            name,
            if_version,
            json,
        }) => set_disabled(admin, name, if_version, json, true).await,
        Command::User(UserCommand::Enable {
            name,
            if_version,
            json,
        }) => set_disabled(admin, name, if_version, json, false).await,
        Command::User(UserCommand::ResetPassword {
            name,
            password,
            json,
        }) => {
            let reset = admin.reset_password(&UserId::new(name), password).await?;
            print(json, &reset, || match &reset.password {
                Some(password) => {
                    format!("new password of {}: {password} (shown once)", reset.user.id)
                }
                None => format!("password of {} changed", reset.user.id),
            })
        }
        Command::Group(GroupCommand::Add {
            name,
            display,
            json,
        }) => {
            let group = admin
                .create_group(CreateGroup {
                    id: GroupId::new(name),
                    display_name: display,
                })
                .await?;
            print(json, &group, || format!("added group {}", group.id))
        }
        Command::Group(GroupCommand::List { json }) => {
            let groups = admin.groups().await?;
            print(json, &groups, || groups_table(&groups))
        }
        Command::Group(GroupCommand::Member(MemberCommand::Add { group, user, json })) => {
            let info = admin
                .add_member(&GroupId::new(group), &UserId::new(user.clone()))
                .await?;
            print(json, &info, || {
                format!(
                    "added {user} to {} ({} members)",
                    info.id,
                    info.members.len()
                )
            })
        }
        Command::Group(GroupCommand::Member(MemberCommand::Remove { group, user, json })) => {
            let info = admin
                .remove_member(&GroupId::new(group), &UserId::new(user.clone()))
                .await?;
            print(json, &info, || {
                format!(
                    "removed {user} from {} ({} members)",
                    info.id,
                    info.members.len()
                )
            })
        }
        Command::Server(ServerCommand::List { json }) => {
            let list = admin.servers().await?;
            print(json, &list, || servers_text(&list, now_ms))
        }
        Command::Server(ServerCommand::Rebalance { dry_run, json }) => {
            let plan = admin.rebalance(dry_run).await?;
            print(json, &plan, || {
                let verb = if plan.applied { "moved" } else { "would move" };
                let mut text = format!("{verb} {} users", plan.moves.len());
                for one in &plan.moves {
                    text.push_str(&format!("\n  {}: {} -> {}", one.user, one.from, one.to));
                }
                let homes: Vec<String> = plan
                    .homes
                    .iter()
                    .map(|(server, count)| format!("{server} {count}"))
                    .collect();
                text.push_str(&format!("\nusers per server: {}", homes.join(", ")));
                text
            })
        }
        Command::Server(command) => {
            let (id, action, json) = match command {
                ServerCommand::Drain { id, json } => (id, ServerAction::Drain, json),
                ServerCommand::Undrain { id, json } => (id, ServerAction::Undrain, json),
                ServerCommand::Failover { id, json } => (id, ServerAction::Failover, json),
                ServerCommand::Fallback { id, json } => (id, ServerAction::Fallback, json),
                ServerCommand::Hold { id, json } => (id, ServerAction::Hold, json),
                ServerCommand::Recover { id, json } => (id, ServerAction::Recover, json),
                ServerCommand::List { .. } | ServerCommand::Rebalance { .. } => {
                    unreachable!("handled above")
                }
            };
            let list = admin.server_action(&ServerId::new(id), action).await?;
            print(json, &list, || servers_text(&list, now_ms))
        }
        Command::License(LicenseCommand::Set {
            kind,
            capacity,
            json,
        }) => {
            let license = admin.set_license(&kind, capacity).await?;
            print(json, &license, || {
                format!("license {}: {}", license.kind, license_usage(&license))
            })
        }
        Command::Config(command) => settings::act(admin, command).await,
        Command::License(LicenseCommand::Show { json }) => {
            let licenses = admin.licenses().await?;
            print(json, &licenses, || licenses_table(&licenses))
        }
        Command::Media(MediaCommand::Add {
            id,
            control_url,
            json,
        }) => {
            let added = admin
                .add_media(&MediaServerId::new(id.clone()), &control_url)
                .await?;
            print(json, &added, || {
                format!("added MediaServer {id} at {control_url}")
            })
        }
        Command::Media(MediaCommand::List { json }) => {
            let media = admin.media().await?;
            print(json, &media, || media_table(&media, now_ms))
        }
        Command::Media(MediaCommand::Remove { id, json }) => {
            admin.remove_media(&MediaServerId::new(id.clone())).await?;
            let removed = serde_json::json!({ "removed": id });
            print(json, &removed, || format!("removed MediaServer {id}"))
        }
        Command::Media(MediaCommand::Drain { id, json }) => {
            drain_media(admin, &id, true, json).await
        }
        Command::Media(MediaCommand::Undrain { id, json }) => {
            drain_media(admin, &id, false, json).await
        }
        Command::User(UserCommand::Sessions { name, json }) => {
            inspect::sessions(admin, name, json).await
        }
        Command::User(UserCommand::Kick { name, device, json }) => {
            inspect::kick(admin, name, device, json).await
        }
        Command::User(UserCommand::Delegates { name, json }) => {
            let user = UserId::new(name);
            let delegates = admin.delegates(&user).await?;
            print(json, &delegates, || delegates_text(&user, &delegates))
        }
        Command::User(UserCommand::DelegateAdd {
            name,
            delegate,
            json,
        }) => {
            let user = UserId::new(name);
            let delegates = admin.add_delegate(&user, &UserId::new(delegate)).await?;
            print(json, &delegates, || delegates_text(&user, &delegates))
        }
        Command::User(UserCommand::DelegateRemove {
            name,
            delegate,
            json,
        }) => {
            let user = UserId::new(name);
            let delegates = admin.remove_delegate(&user, &UserId::new(delegate)).await?;
            print(json, &delegates, || delegates_text(&user, &delegates))
        }
        Command::Presence(command) => inspect::presence(admin, command).await,
        Command::Audit(command) => audit::run(admin, command, now_ms).await,
        Command::Overview { json } => {
            let overview = admin.overview().await?;
            print(json, &overview, || overview_text(&overview, now_ms))
        }
        Command::Watch { count, json } => live::watch(admin, count, json).await,
        Command::History { json } => live::history(admin, json).await,
        Command::Import {
            file,
            dry_run,
            json,
        } => directory::import(admin, file, dry_run, json).await,
        Command::Export { format, output } => directory::export(admin, format, output).await,
        Command::Directory(command) => directory::directory(admin, command).await,
    }
}

/// `user disable` and `user enable`.
async fn set_disabled(
    admin: &AdminClient,
    name: String,
    if_version: Option<u64>,
    json: bool,
    disabled: bool,
) -> anyhow::Result<()> {
    let request = UpdateUser {
        disabled: Some(disabled),
        ..UpdateUser::default()
    };
    let user = admin
        .update_user_at(&UserId::new(name), request, if_version)
        .await?;
    print(json, &user, || {
        let state = if user.disabled { "disabled" } else { "enabled" };
        format!("{state} user {} (version {})", user.id, user.version)
    })
}

/// Prints the API's JSON with `--json`, else the human form.
fn print<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        emit(&serde_json::to_string_pretty(value).context("encoding the answer")?)?;
    } else {
        emit(&human())?;
    }
    Ok(())
}

/// A table with a header and no borders: easy to read and to `grep`.
fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.iter().copied());
    table
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn users_table(users: &[AdminUser]) -> String {
    let mut table = table(&[
        "ID",
        "DISPLAY NAME",
        "HOME SERVER",
        "ONLINE",
        "ADMIN",
        "DISABLED",
        "VERSION",
    ]);
    for user in users {
        table.add_row(vec![
            user.id.to_string(),
            user.display_name.clone(),
            user.home_server.to_string(),
            yes_no(user.online).to_string(),
            user.role.map_or("no", AdminRole::as_str).to_string(),
            yes_no(user.disabled).to_string(),
            user.version.to_string(),
        ]);
    }
    table.to_string()
}

fn user_text(user: &AdminUser, now_ms: i64) -> String {
    let changed = match &user.changed_by {
        Some(who) => format!("{} ago by {who}", format_age(now_ms, user.changed_ms)),
        None => "at creation".to_string(),
    };
    [
        format!("user:         {}", user.id),
        format!("display name: {}", user.display_name),
        format!("home server:  {}", user.home_server),
        format!(
            "admin role:   {}",
            user.role.map_or("none", AdminRole::as_str)
        ),
        format!("disabled:     {}", yes_no(user.disabled)),
        format!("online:       {}", yes_no(user.online)),
        format!("version:      {} (changed {changed})", user.version),
    ]
    .join("\n")
}

fn overview_text(overview: &Overview, now_ms: i64) -> String {
    let list = ServerList {
        servers: overview.servers.clone(),
        media: overview.media.clone(),
    };
    let checks: Vec<String> = overview
        .checks
        .iter()
        .map(|check| {
            let state = if check.ok { "ok" } else { "DOWN" };
            match &check.detail {
                Some(detail) => format!("{}: {state} ({detail})", check.name),
                None => format!("{}: {state}", check.name),
            }
        })
        .collect();
    let users = overview
        .users
        .map_or("unknown".to_string(), |n| n.to_string());
    let stats: Vec<&shared::console::ServerStats> = overview
        .servers
        .iter()
        .filter_map(|server| server.stats.as_ref())
        .collect();
    let sum = |value: fn(&shared::console::ServerStats) -> u64| -> u64 {
        stats.iter().map(|s| value(s)).sum()
    };
    format!(
        "{}\n\nhealth (seen from {}): {}\nusers: {users}\n\
         messages since start: {} stored, {} delivered to devices\n\
         multi-device messaging: {} devices quiet, {} batches held and sent, {} events in them\n\n\
         Licenses\n{}",
        servers_text(&list, now_ms),
        overview.server,
        checks.join(", "),
        sum(|s| s.messages_stored),
        sum(|s| s.messages_delivered),
        sum(|s| s.mdm_quiet_sessions),
        sum(|s| s.mdm_buffer_flushes),
        sum(|s| s.mdm_flushed_packets),
        licenses_table(&overview.licenses)
    )
}

fn delegates_text(user: &UserId, delegates: &[UserId]) -> String {
    if delegates.is_empty() {
        return format!("nobody acts for {user}");
    }
    let names: Vec<&str> = delegates.iter().map(UserId::as_str).collect();
    format!("acting for {user}: {}", names.join(", "))
}

fn groups_table(groups: &[GroupInfo]) -> String {
    let mut table = table(&["ID", "DISPLAY NAME", "MEMBERS"]);
    for group in groups {
        let members: Vec<&str> = group.members.iter().map(UserId::as_str).collect();
        table.add_row(vec![
            group.id.to_string(),
            group.display_name.clone(),
            members.join(","),
        ]);
    }
    table.to_string()
}

fn servers_text(list: &ServerList, now_ms: i64) -> String {
    let mut table = table(&[
        "ID",
        "URL",
        "ALIVE",
        "STATE",
        "VERSION",
        "SESSIONS",
        "DEVICES",
        "CALLS",
        "CPU",
        "MEMORY",
        "LAST SEEN",
    ]);
    for server in &list.servers {
        let (cpu, memory) = match &server.stats {
            Some(stats) => (
                format!("{:.0} %", stats.cpu_percent),
                format!("{} MiB", stats.resident_bytes / (1024 * 1024)),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        table.add_row(vec![
            server.id.to_string(),
            server.url.clone(),
            yes_no(server.alive).to_string(),
            server.state.clone(),
            server.version.clone(),
            server.sessions.to_string(),
            server.devices.to_string(),
            server.calls.to_string(),
            cpu,
            memory,
            format_age(now_ms, server.last_seen_ms),
        ]);
    }
    let mut text = table.to_string();
    let reasons: Vec<String> = list
        .servers
        .iter()
        .filter(|s| !s.reason.is_empty())
        .map(|s| format!("{}: {} ({})", s.id, s.state, s.reason))
        .collect();
    if !reasons.is_empty() {
        text.push_str("\n\n");
        text.push_str(&reasons.join("\n"));
    }
    if !list.media.is_empty() {
        text.push_str("\n\nMediaServers\n");
        text.push_str(&media_table(&list.media, now_ms));
    }
    text
}

/// `media drain|undrain ID`.
async fn drain_media(admin: &AdminClient, id: &str, drain: bool, json: bool) -> anyhow::Result<()> {
    let media = admin
        .drain_media(&MediaServerId::new(id.to_string()), drain)
        .await?;
    print(json, &media, || {
        if media.draining {
            format!(
                "MediaServer {id} is out of service: no new calls; its {} calls go on",
                media.calls
            )
        } else {
            format!("MediaServer {id} takes new calls again")
        }
    })
}

fn media_table(media: &[MediaServerInfo], now_ms: i64) -> String {
    let mut table = table(&[
        "ID",
        "CONTROL URL",
        "ALIVE",
        "CALLS",
        "LEGS",
        "LOAD",
        "LAST SEEN",
    ]);
    for server in media {
        table.add_row(vec![
            server.id.to_string(),
            server.control_url.clone(),
            if server.draining {
                format!("{} (drained)", yes_no(server.alive))
            } else {
                yes_no(server.alive).to_string()
            },
            server.calls.to_string(),
            format!("{}/{}", server.legs, server.capacity),
            format!("{:.0}%", server.load * 100.0),
            format_age(now_ms, server.last_seen_ms),
        ]);
    }
    table.to_string()
}

fn license_usage(license: &LicenseInfo) -> String {
    match license.capacity {
        Some(capacity) => format!("{} of {capacity} in use", license.in_use),
        None => format!("{} in use, not limited", license.in_use),
    }
}

fn licenses_table(licenses: &[LicenseInfo]) -> String {
    let mut table = table(&["KIND", "CAPACITY", "IN USE", "FREE"]);
    for license in licenses {
        let (capacity, free) = match license.capacity {
            Some(capacity) => (
                capacity.to_string(),
                capacity.saturating_sub(license.in_use).to_string(),
            ),
            None => ("unlimited".to_string(), "-".to_string()),
        };
        table.add_row(vec![
            license.kind.clone(),
            capacity,
            license.in_use.to_string(),
            free,
        ]);
    }
    table.to_string()
}

/// Writes one line to stdout. A closed pipe (`ucadmin user list | head -1`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(error).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use shared::api::ServerInfo;

    const LOGIN: [&str; 7] = [
        "ucadmin",
        "--url",
        "http://a:1",
        "--user",
        "admin",
        "--password",
        "pw",
    ];

    fn parse(words: &[&str]) -> Command {
        let all: Vec<&str> = LOGIN.iter().chain(words).copied().collect();
        Cli::try_parse_from(all)
            .unwrap_or_else(|error| panic!("{words:?}: {error}"))
            .command
    }

    fn refused(words: &[&str]) -> bool {
        let all: Vec<&str> = LOGIN.iter().chain(words).copied().collect();
        Cli::try_parse_from(all).is_err()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn user_commands() {
        match parse(&[
            "user",
            "add",
            "alice",
            "--password",
            "pw1",
            "--home",
            "s2",
            "--display",
            "Alice A",
        ]) {
            Command::User(UserCommand::Add {
                name,
                password,
                home,
                display,
                admin,
                role,
                json,
            }) => {
                assert_eq!(role, None);
                assert_eq!((name.as_str(), password.as_str()), ("alice", "pw1"));
                assert_eq!(home.as_deref(), Some("s2"));
                assert_eq!(display.as_deref(), Some("Alice A"));
                assert!(!admin && !json);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["user", "add", "root2", "--password", "x", "--admin"]),
            Command::User(UserCommand::Add {
                admin: true,
                home: None,
                ..
            })
        ));
        assert!(refused(&["user", "add", "alice"]), "--password is required");
        assert!(matches!(
            parse(&["user", "list"]),
            Command::User(UserCommand::List {
                json: false,
                search: None
            })
        ));
        assert!(matches!(
            parse(&["user", "list", "--json", "--search", "ali"]),
            Command::User(UserCommand::List { json: true, search: Some(text) }) if text == "ali"
        ));
        assert!(matches!(
            parse(&["user", "remove", "alice"]),
            Command::User(UserCommand::Remove { name, if_version: None, .. }) if name == "alice"
        ));
        assert!(matches!(
            parse(&["user", "remove", "alice", "--if-version", "4", "--json"]),
            Command::User(UserCommand::Remove {
                if_version: Some(4),
                json: true,
                ..
            })
        ));
        assert!(matches!(
            parse(&[
                "user",
                "add",
                "helen",
                "--password",
                "x",
                "--role",
                "read_only"
            ]),
            Command::User(UserCommand::Add {
                role: Some(RoleArg(Some(AdminRole::ReadOnly))),
                ..
            })
        ));
        assert!(
            refused(&["user", "add", "helen", "--password", "x", "--role", "boss"]),
            "unknown role"
        );
        assert!(matches!(
            parse(&[
                "user",
                "set",
                "helen",
                "--role",
                "none",
                "--if-version",
                "2"
            ]),
            Command::User(UserCommand::Set {
                role: Some(RoleArg(None)),
                if_version: Some(2),
                ..
            })
        ));
        assert!(matches!(
            parse(&["user", "disable", "bob", "--json"]),
            Command::User(UserCommand::Disable { name, json: true, .. }) if name == "bob"
        ));
        assert!(matches!(
            parse(&["user", "enable", "bob", "--if-version", "7"]),
            Command::User(UserCommand::Enable {
                if_version: Some(7),
                ..
            })
        ));
        assert!(matches!(
            parse(&["user", "reset-password", "bob"]),
            Command::User(UserCommand::ResetPassword { password: None, .. })
        ));
        assert!(matches!(
            parse(&["user", "show", "bob", "--json"]),
            Command::User(UserCommand::Show { json: true, .. })
        ));
        assert!(matches!(
            parse(&["audit", "list", "--json"]),
            Command::Audit(AuditCommand::List {
                limit: 50,
                json: true,
                ..
            })
        ));
        assert!(matches!(
            parse(&["overview"]),
            Command::Overview { json: false }
        ));
        match parse(&["user", "set", "alice", "--home", "s1", "--password", "new"]) {
            Command::User(UserCommand::Set {
                name,
                home,
                display,
                password,
                ..
            }) => {
                assert_eq!(name, "alice");
                assert_eq!(home.as_deref(), Some("s1"));
                assert_eq!(display, None);
                assert_eq!(password.as_deref(), Some("new"));
            }
            other => panic!("{other:?}"),
        }
        assert!(refused(&["user", "set", "alice"]), "nothing to change");
    }

    #[test]
    fn config_commands() {
        use settings::ConfigCommand;
        assert!(matches!(
            parse(&["config", "list", "--json"]),
            Command::Config(ConfigCommand::List { json: true })
        ));
        assert!(matches!(
            parse(&["config", "set", "ring_timeout_ms", "5000", "--server", "s2"]),
            Command::Config(ConfigCommand::Set { key, value, server: Some(server), .. })
                if key == "ring_timeout_ms" && value == "5000" && server == "s2"
        ));
        assert!(refused(&["config", "unset", "ring_timeout_ms"]));
    }

    #[test]
    fn inspect_commands() {
        assert!(matches!(
            parse(&["user", "sessions", "bob", "--json"]),
            Command::User(UserCommand::Sessions { name, json: true }) if name == "bob"
        ));
        assert!(matches!(
            parse(&["user", "kick", "bob", "phone"]),
            Command::User(UserCommand::Kick { name, device, json: false }) if name == "bob" && device == "phone"
        ));
        assert!(refused(&["user", "kick", "bob"]));
        assert!(matches!(
            parse(&["presence", "show", "bob", "--watcher", "alice"]),
            Command::Presence(inspect::PresenceCommand::Show { user, watcher, json: false }) if user == "bob" && watcher == "alice"
        ));
        assert!(refused(&["presence", "show", "bob"]));
        assert!(matches!(
            parse(&["presence", "watchers", "bob", "--json"]),
            Command::Presence(inspect::PresenceCommand::Watchers { user, json: true }) if user == "bob"
        ));
    }

    #[test]
    fn group_commands() {
        assert!(matches!(
            parse(&["group", "add", "ops"]),
            Command::Group(GroupCommand::Add { name, display: None, .. }) if name == "ops"
        ));
        assert!(matches!(
            parse(&["group", "list", "--json"]),
            Command::Group(GroupCommand::List { json: true })
        ));
        assert!(matches!(
            parse(&["group", "member", "add", "ops", "alice"]),
            Command::Group(GroupCommand::Member(MemberCommand::Add { group, user, .. })) if group == "ops" && user == "alice"
        ));
        assert!(matches!(
            parse(&["group", "member", "remove", "ops", "alice"]),
            Command::Group(GroupCommand::Member(MemberCommand::Remove { group, user, .. })) if group == "ops" && user == "alice"
        ));
        assert!(refused(&["group", "member", "add", "ops"]));
    }

    #[test]
    fn server_license_media_commands() {
        assert!(matches!(
            parse(&["server", "list"]),
            Command::Server(ServerCommand::List { json: false })
        ));
        assert!(matches!(
            parse(&["server", "list", "--json"]),
            Command::Server(ServerCommand::List { json: true })
        ));
        assert!(matches!(
            parse(&["server", "drain", "uc2"]),
            Command::Server(ServerCommand::Drain { id, json: false }) if id == "uc2"
        ));
        assert!(matches!(
            parse(&["server", "fallback", "uc2", "--json"]),
            Command::Server(ServerCommand::Fallback { id, json: true }) if id == "uc2"
        ));
        assert!(refused(&["server", "drain"]));
        assert!(matches!(
            parse(&["server", "rebalance", "--dry-run"]),
            Command::Server(ServerCommand::Rebalance {
                dry_run: true,
                json: false
            })
        ));
        assert!(matches!(
            parse(&["user", "move", "bob", "uc3"]),
            Command::User(UserCommand::Move { name, server, .. }) if name == "bob" && server == "uc3"
        ));
        assert!(matches!(
            parse(&["license", "set", "uc-seat", "100"]),
            Command::License(LicenseCommand::Set { kind, capacity: 100, .. }) if kind == "uc-seat"
        ));
        assert!(refused(&["license", "set", "uc-seat", "many"]));
        assert!(matches!(
            parse(&["license", "show", "--json"]),
            Command::License(LicenseCommand::Show { json: true })
        ));
        assert!(matches!(
            parse(&["media", "add", "m1", "http://10.0.0.5:7100"]),
            Command::Media(MediaCommand::Add { id, control_url, json: false }) if id == "m1" && control_url == "http://10.0.0.5:7100"
        ));
        assert!(matches!(
            parse(&["media", "list"]),
            Command::Media(MediaCommand::List { json: false })
        ));
        assert!(
            matches!(parse(&["media", "remove", "m1", "--json"]), Command::Media(MediaCommand::Remove { id, json: true }) if id == "m1")
        );
        assert!(
            matches!(parse(&["media", "drain", "m1", "--json"]), Command::Media(MediaCommand::Drain { id, json: true }) if id == "m1")
        );
        assert!(
            matches!(parse(&["media", "undrain", "m1"]), Command::Media(MediaCommand::Undrain { id, json: false }) if id == "m1")
        );
    }

    #[test]
    fn tables() {
        let users = [AdminUser {
            id: UserId::from("alice"),
            display_name: "Alice A".into(),
            home_server: ServerId::from("s2"),
            admin: true,
            role: Some(AdminRole::ReadOnly),
            disabled: false,
            online: true,
            created_ms: 1,
            version: 3,
            changed_by: None,
            changed_ms: 0,
        }];
        let text = users_table(&users);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for word in ["ID", "DISPLAY NAME", "HOME SERVER", "ONLINE"] {
            assert!(lines[0].contains(word), "{text}");
        }
        for word in ["alice", "Alice A", "s2", "yes", "read_only"] {
            assert!(lines[1].contains(word), "{text}");
        }
        let text = user_text(&users[0], 10_000);
        assert!(
            text.contains("version:      3") && text.contains("at creation"),
            "{text}"
        );

        let list = ServerList {
            servers: vec![ServerInfo {
                id: ServerId::from("s1"),
                url: "http://127.0.0.1:7001".into(),
                alive: true,
                sessions: 3,
                devices: 4,
                last_seen_ms: 9_000,
                version: "0.1.0".into(),
                calls: 2,
                state: "running_in_backup_mode".into(),
                reason: "serving the users of s2".into(),
                group: None,
                since_ms: 1_000,
                stats: None,
            }],
            media: Vec::new(),
        };
        let text = servers_text(&list, 10_000);
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .contains("http://127.0.0.1:7001"),
            "{text}"
        );
        assert!(!text.contains("MediaServers"), "{text}");
        assert!(
            text.contains("s1: running_in_backup_mode (serving the users of s2)"),
            "the state's reason is shown: {text}"
        );
        let with_media = ServerList {
            media: vec![MediaServerInfo {
                id: MediaServerId::from("m1"),
                control_url: "http://127.0.0.1:7100".into(),
                alive: false,
                calls: 2,
                legs: 5,
                capacity: 100,
                load: 0.05,
                last_seen_ms: 0,
                draining: false,
            }],
            ..list
        };
        let text = servers_text(&with_media, 10_000);
        assert!(
            text.contains("MediaServers") && text.contains("5%") && text.contains("never"),
            "{text}"
        );

        let licenses = [
            LicenseInfo {
                kind: "uc-seat".into(),
                capacity: Some(10),
                in_use: 3,
            },
            LicenseInfo {
                kind: "video".into(),
                capacity: None,
                in_use: 1,
            },
        ];
        let text = licenses_table(&licenses);
        assert!(text.lines().nth(1).unwrap().contains('7'), "{text}");
        assert!(text.contains("unlimited"), "{text}");
        assert_eq!(license_usage(&licenses[0]), "3 of 10 in use");
    }
}
