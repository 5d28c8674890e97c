//! Users from outside, for an administrator: the bulk import of a CSV or JSON file with a
//! dry run, the export of every user with groups and contacts, and (with `crate::ldap`) the
//! directory sync. All of them plan with `core::directory::plan` against what SQL holds now
//! and write a plan with [`apply`]: refused whole while any row is bad, otherwise in one SQL
//! transaction (`Store::apply_directory`), then announced like the admin API's other user
//! changes (caches forgotten on every server, disabled users' devices cut off, group chats
//! announced). Every apply is audited with its counts.

use super::AdminSession;
use super::authz::AdminAction;
use crate::core::directory::{self as planner, Current, CurrentUser, FileError, Plan, Row, Rules};
use crate::error::{AppError, AppResult};
use crate::server::Server;
use crate::store::{DirectoryUserWrite, DirectoryWrite};
use futures_util::StreamExt;
use shared::api::{AdminRole, ErrorCode};
use shared::bus::BusBody;
use shared::directory::{
    ChangeKind, DirectoryContact, DirectoryFile, DirectoryGroup, DirectoryPlan, DirectoryUser,
    NewPassword, RowError,
};
use shared::limits::{MAX_IMPORT_BYTES, MAX_IMPORT_ROWS};
use shared::{ConversationId, GroupId, ServerId, UserId, now_ms};
use std::collections::{BTreeMap, BTreeSet};

/// The password hash of users who have no password here (made by a directory sync: they
/// sign in against the directory). Not a PHC string, so no password ever matches it.
pub const NO_LOCAL_PASSWORD: &str = "!directory";

/// Users per bus message when many users changed at once.
const USERS_PER_ANNOUNCEMENT: usize = 1_000;

/// The two forms of an import file; the request's content type decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    Csv,
    Json,
}

impl ImportFormat {
    /// From a `Content-Type` (`text/csv`, `application/json`, parameters ignored).
    pub fn from_content_type(content_type: Option<&str>) -> AppResult<Self> {
        let media = content_type
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase());
        match media.as_deref() {
            Some("text/csv") => Ok(Self::Csv),
            Some("application/json") => Ok(Self::Json),
            other => Err(AppError::bad_request(format!(
                "send the import file as text/csv (with a header line) or application/json, not {}",
                other.unwrap_or("no content type")
            ))),
        }
    }
}

/// The rows of an import file and its group list, or why the whole file cannot be read.
pub fn read_file(format: ImportFormat, bytes: &[u8]) -> AppResult<(Vec<Row>, Vec<DirectoryGroup>)> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("an import file may have at most {MAX_IMPORT_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| AppError::bad_request(format!("the file is not UTF-8: {e}")))?;
    match format {
        ImportFormat::Csv => {
            let rows = planner::read_csv(text, MAX_IMPORT_ROWS).map_err(file_error)?;
            Ok((rows, Vec::new()))
        }
        ImportFormat::Json => read_json(text),
    }
}

fn file_error(error: FileError) -> AppError {
    match error {
        FileError::TooManyRows { .. } => {
            AppError::new(ErrorCode::PayloadTooLarge, error.to_string())
        }
        FileError::Bad { .. } => AppError::bad_request(error.to_string()),
    }
}

/// `{"users": [...], "groups": [...]}`: each user read on its own, so that one bad entry is
/// named by its position and the others are still checked.
fn read_json(text: &str) -> AppResult<(Vec<Row>, Vec<DirectoryGroup>)> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| AppError::bad_request(format!("the file is not JSON: {e}")))?;
    let users = value
        .get("users")
        .and_then(|users| users.as_array())
        .ok_or_else(|| {
            AppError::bad_request("a JSON import is an object with a 'users' list (and 'groups')")
        })?;
    if users.len() > MAX_IMPORT_ROWS {
        return Err(file_error(FileError::TooManyRows {
            max: MAX_IMPORT_ROWS,
        }));
    }
    let rows = users
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let line = index as u32 + 1;
            Row {
                line,
                user: serde_json::from_value::<DirectoryUser>(entry.clone()).map_err(|e| {
                    RowError {
                        line,
                        user: entry
                            .get("id")
                            .and_then(|id| id.as_str())
                            .map(str::to_string),
                        reason: e.to_string(),
                    }
                }),
            }
        })
        .collect();
    let groups = match value.get("groups") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(groups) => serde_json::from_value(groups.clone())
            .map_err(|e| AppError::bad_request(format!("the 'groups' list: {e}")))?,
    };
    Ok((rows, groups))
}

/// What SQL holds now, as the planner compares it.
pub async fn current_state(server: &Server) -> AppResult<Current> {
    let users = server.sql(server.store.list_users()).await?;
    let sources: BTreeMap<UserId, String> = server
        .sql(server.store.user_sources())
        .await?
        .into_iter()
        .collect();
    let groups = server.sql(server.store.list_groups()).await?;
    let contacts = server.sql(server.store.all_contacts()).await?;
    let mut current = Current::default();
    for user in users {
        current.users.insert(
            user.id.clone(),
            CurrentUser {
                source: sources.get(&user.id).cloned(),
                id: user.id,
                display_name: user.display_name,
                home_server: user.home_server,
                disabled: user.disabled,
                admin: user.admin,
                version: user.version,
                groups: BTreeSet::new(),
                contacts: BTreeMap::new(),
            },
        );
    }
    for group in groups {
        for member in &group.members {
            if let Some(user) = current.users.get_mut(member) {
                user.groups.insert(group.id.clone());
            }
        }
        current.groups.insert(group.id, group.display_name);
    }
    for (owner, contact, label) in contacts {
        if let Some(user) = current.users.get_mut(&owner) {
            user.contacts.insert(contact, label);
        }
    }
    Ok(current)
}

/// Writes `plan` (which must have no errors) in one transaction and announces it. New users
/// without a password get one made up when `make_passwords` (answered once), else
/// [`NO_LOCAL_PASSWORD`]. Returns the made-up passwords.
pub async fn apply(
    server: &Server,
    plan: &Plan,
    changed_by: Option<UserId>,
    make_passwords: bool,
) -> AppResult<Vec<NewPassword>> {
    debug_assert!(plan.errors.is_empty());
    let mut passwords = Vec::new();
    let mut clear: Vec<(usize, String)> = Vec::new();
    let mut made_up: Vec<(usize, String)> = Vec::new();
    for (index, change) in plan.changes.iter().enumerate() {
        if change.kind != ChangeKind::Create {
            continue;
        }
        match (&change.password, make_passwords) {
            (Some(password), _) => clear.push((index, password.clone())),
            (None, true) => {
                // 128 random bits: see `hash_random_secret` for why these hash cheaply.
                let password = crate::auth::random_hex(16);
                made_up.push((index, password.clone()));
                passwords.push(NewPassword {
                    user: change.user.clone(),
                    password,
                });
            }
            (None, false) => {}
        }
    }
    let mut hashes: BTreeMap<usize, String> = tokio::task::spawn_blocking(move || {
        made_up
            .into_iter()
            .map(|(index, secret)| Ok((index, crate::password::hash_random_secret(&secret)?)))
            .collect::<Result<BTreeMap<_, _>, crate::password::PasswordError>>()
    })
    .await
    .map_err(|e| AppError::new(ErrorCode::Internal, format!("hashing failed: {e}")))??;
    // Passwords from the file at full cost, on the bounded pool, as many at once as it has
    // workers.
    let workers = server.passwords.workers().max(1);
    let hashed: Vec<(usize, String)> = futures_util::stream::iter(clear)
        .map(|(index, password)| async move {
            server
                .passwords
                .hash(password)
                .await
                .map(|hash| (index, hash))
        })
        .buffered(workers)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    hashes.extend(hashed);
    let write = DirectoryWrite {
        changed_by,
        now: now_ms(),
        groups: plan
            .new_groups
            .iter()
            .map(|g| (g.id.clone(), g.display_name.clone()))
            .collect(),
        users: plan
            .changes
            .iter()
            .enumerate()
            .map(|(index, change)| DirectoryUserWrite {
                id: change.user.clone(),
                new_password_hash: (change.kind == ChangeKind::Create).then(|| {
                    hashes
                        .remove(&index)
                        .unwrap_or_else(|| NO_LOCAL_PASSWORD.to_string())
                }),
                version: change.version,
                display_name: change.display_name.clone(),
                home_server: change.home_server.clone(),
                disabled: change.disabled,
                source: change.source.clone(),
                add_groups: change.add_groups.clone(),
                remove_groups: change.remove_groups.clone(),
                contacts: change.contacts.as_ref().map(|list| {
                    list.iter()
                        .map(|c: &DirectoryContact| (c.user.clone(), c.label.clone()))
                        .collect()
                }),
            })
            .collect(),
    };
    match server.sql(server.store.apply_directory(&write)).await {
        Ok(()) => {}
        Err(error) if error.code() == ErrorCode::Conflict => {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!("{}; nothing was applied: plan again", error.0.message),
            ));
        }
        Err(error) => return Err(error),
    }
    announce(server, plan).await;
    Ok(passwords)
}

/// Tells every server what changed: their caches of these users, the devices of users now
/// disabled, the group chats whose members changed.
async fn announce(server: &Server, plan: &Plan) {
    let users: Vec<UserId> = plan.changes.iter().map(|c| c.user.clone()).collect();
    for chunk in users.chunks(USERS_PER_ANNOUNCEMENT) {
        server.relations_changed(chunk.to_vec()).await;
    }
    for change in &plan.changes {
        if change.kind != ChangeKind::Create && change.disabled == Some(true) {
            server
                .broadcast(BusBody::KickUser {
                    user: change.user.clone(),
                    reason: "account disabled".into(),
                })
                .await;
        }
    }
    let groups: BTreeSet<&GroupId> = plan
        .changes
        .iter()
        .flat_map(|c| c.add_groups.iter().chain(c.remove_groups.iter()))
        .collect();
    for group in groups {
        let conversation = ConversationId::group(group);
        server.relations.forget_conversation(&conversation);
        server.chat.announce_conversation(&conversation).await;
    }
}

/// The counts of a plan for the audit log.
pub fn audit_detail(plan: &Plan) -> String {
    let counts = plan.counts();
    format!(
        "created={} updated={} deactivated={} unchanged={} new_groups={}",
        counts.create,
        counts.update,
        counts.deactivate,
        counts.unchanged,
        plan.new_groups.len()
    )
}

/// Reads the directory and plans a sync against SQL; applies it unless `dry_run` (or it has
/// errors). `actor`: the administrator who asked (`None`: the schedule). While the directory
/// cannot be read nothing changes: its users keep working with what SQL has, and the status
/// says why (`server_unavailable`).
pub async fn sync(
    server: &Server,
    dry_run: bool,
    actor: Option<&UserId>,
    may_change_admins: bool,
) -> AppResult<(Plan, DirectoryPlan)> {
    if !server.directory.status().configured {
        return Err(AppError::bad_request(
            "no directory is configured: set UC_LDAP_URL and the other UC_LDAP_* settings",
        ));
    }
    let rows = server.directory.read(now_ms()).await.map_err(|error| {
        AppError::new(
            ErrorCode::ServerUnavailable,
            format!("the directory cannot be read ({error}); its users keep working as they are"),
        )
    })?;
    let current = current_state(server).await?;
    let rules = Rules {
        source: Some(crate::ldap::SOURCE.to_string()),
        default_home: server.id.clone(),
        actor: actor.cloned().unwrap_or_else(|| UserId::new("directory")),
        may_change_admins,
    };
    let plan = planner::plan(&current, &rows, &[], &rules);
    if dry_run || !plan.errors.is_empty() {
        let wire = plan.to_wire(false);
        return Ok((plan, wire));
    }
    apply(server, &plan, actor.cloned(), false).await?;
    server.directory.synced(now_ms(), plan.counts());
    let wire = plan.to_wire(true);
    Ok((plan, wire))
}

/// The name of the scheduled sync's lease in the cluster store.
pub const SCHEDULE_LEASE: &str = "directory-sync";

/// How many sync intervals the lease outlives its last renewal: a holder renews it every
/// round, so only a dead (or long stuck) holder lets it lapse, and another server takes over
/// at most this many intervals after the holder's last round.
const LEASE_INTERVALS: u32 = 3;

/// The scheduled sync: every `UC_LDAP_SYNC_SECS` until `stop`, run by one server of the
/// cluster at a time. Each run is audited as the server's own (actor `directory`, the
/// server named in the detail); a failed run is logged and shown in the status.
///
/// **One server at a time.** Every server ticks, and each round takes or renews the lease
/// [`SCHEDULE_LEASE`] (`Cluster::try_lock`, `SET NX PX` renewed by its holder, for
/// [`LEASE_INTERVALS`] intervals); only the holder syncs. While the holder lives it keeps
/// the schedule; when it dies another server takes the lease once it expires. Two syncs at
/// once (a holder stuck past its lease) would still be safe, only wasted: each is applied
/// in one transaction that checks every user's version.
///
/// **The cluster store down: nobody syncs on schedule** (each round is skipped with a
/// warning) rather than "the server whose id sorts first among the live servers". Which
/// servers live is itself known from the cluster store, so during its outage each server
/// would judge from its own stale view, and two could both think themselves first, or none.
/// And a sync's announcements (caches of the changed users forgotten, disabled users'
/// devices cut off on every server) travel over the bus, which is down with the store: a
/// sync applied then would leave the other servers' caches stale. Nothing is lost by
/// waiting: the first round after the store returns plans against the directory as it is
/// then, and an administrator can still sync on demand.
pub async fn run_schedule(
    server: std::sync::Arc<Server>,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) {
    let every = std::time::Duration::from_secs(server.directory.config.sync_secs.max(1));
    let lease_ms = u64::try_from((every * LEASE_INTERVALS).as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.recv() => break,
        }
        match server
            .cluster
            .try_lock(SCHEDULE_LEASE, server.id.as_str(), lease_ms)
            .await
        {
            Ok(true) => scheduled_round(&server).await,
            Ok(false) => tracing::debug!("the scheduled directory sync runs on another server"),
            Err(error) => tracing::warn!(
                %error,
                "scheduled directory sync skipped: the cluster store cannot say which server runs it"
            ),
        }
    }
}

/// One scheduled sync, on the server that holds the schedule's lease.
async fn scheduled_round(server: &Server) {
    match sync(server, false, None, false).await {
        Ok((plan, answer)) if answer.applied && !plan.changes.is_empty() => {
            let record = crate::store::AuditRecord {
                at_ms: now_ms(),
                actor: UserId::new("directory"),
                action: "directory.sync".to_string(),
                detail: format!("{} scheduled_on={}", audit_detail(&plan), server.id),
                client: None,
            };
            super::admin::record_audit(server, record).await;
        }
        Ok((plan, _)) if !plan.errors.is_empty() => {
            tracing::warn!(
                errors = plan.errors.len(),
                "directory sync refused: entries cannot be applied"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "directory sync failed"),
    }
}

impl AdminSession {
    /// A directory sync on demand: the plan, applied unless `dry_run`.
    pub async fn directory_sync(&self, dry_run: bool) -> AppResult<DirectoryPlan> {
        self.require(AdminAction::ChangeUsers)?;
        let (plan, answer) = sync(
            &self.server,
            dry_run,
            Some(&self.actor.user),
            self.role() == AdminRole::Full,
        )
        .await?;
        if answer.applied {
            self.audit("directory.sync", audit_detail(&plan)).await;
        }
        Ok(answer)
    }

    /// Whether a directory is configured and reachable, and what the last sync did.
    pub async fn directory_status(&self) -> AppResult<shared::directory::DirectoryStatus> {
        self.require(AdminAction::Read)?;
        let mut status = self.server.directory.status();
        if status.configured && status.interval_secs > 0 {
            status.scheduled_on = self
                .server
                .cluster
                .lock_holder(SCHEDULE_LEASE)
                .await
                .ok()
                .flatten()
                .map(ServerId::new);
        }
        // The schedule runs on one server: a newer sync another server applied (and audited,
        // having changed something) is the cluster's last one.
        let synced = shared::api::AuditFilter {
            action: Some("directory.sync".into()),
            ..Default::default()
        };
        if let Ok(newest) = self
            .server
            .sql(self.server.store.audit_log(&synced, 1))
            .await
            && let Some(entry) = newest.first()
            && status.last_sync_ms.is_none_or(|local| local < entry.at_ms)
        {
            status.last_sync_ms = Some(entry.at_ms);
            status.last_counts = None;
        }
        status.users = self
            .server
            .sql(self.server.store.user_sources())
            .await
            .map(|users| users.len() as u32)
            .unwrap_or_default();
        Ok(status)
    }

    fn rules(&self, source: Option<String>) -> Rules {
        Rules {
            source,
            default_home: self.server.id.clone(),
            actor: self.actor.user.clone(),
            may_change_admins: self.role() == AdminRole::Full,
        }
    }

    /// Plans an import file; applies it unless `dry_run`. An apply with any bad row changes
    /// nothing and answers the plan with its errors (`applied` false).
    pub async fn import(
        &self,
        format: ImportFormat,
        bytes: &[u8],
        dry_run: bool,
    ) -> AppResult<DirectoryPlan> {
        self.require(AdminAction::ChangeUsers)?;
        let (rows, groups) = read_file(format, bytes)?;
        let current = current_state(&self.server).await?;
        let plan = planner::plan(&current, &rows, &groups, &self.rules(None));
        if dry_run || !plan.errors.is_empty() {
            return Ok(plan.to_wire(false));
        }
        let passwords = apply(&self.server, &plan, Some(self.actor.user.clone()), true).await?;
        self.audit("directory.import", audit_detail(&plan)).await;
        let mut answer = plan.to_wire(true);
        answer.passwords = passwords;
        Ok(answer)
    }

    /// Every user with display name, home server, groups, contacts, disabled flag and
    /// source, and every group; never a password or its hash.
    pub async fn export(&self) -> AppResult<DirectoryFile> {
        self.require(AdminAction::Read)?;
        let current = current_state(&self.server).await?;
        let users = current
            .users
            .into_values()
            .map(|user| DirectoryUser {
                display_name: Some(user.display_name),
                home_server: Some(user.home_server),
                groups: Some(user.groups.into_iter().collect()),
                contacts: Some(
                    user.contacts
                        .into_iter()
                        .map(|(user, label)| DirectoryContact { user, label })
                        .collect(),
                ),
                disabled: Some(user.disabled),
                source: user.source,
                ..DirectoryUser::new(user.id)
            })
            .collect::<Vec<_>>();
        self.audit("directory.export", format!("{} users", users.len()))
            .await;
        Ok(DirectoryFile {
            users,
            groups: current
                .groups
                .into_iter()
                .map(|(id, display_name)| DirectoryGroup { id, display_name })
                .collect(),
        })
    }
}
