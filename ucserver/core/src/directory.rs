//! Users from outside: one planner for a bulk import file and for a directory sync (LDAP /
//! Active Directory). It takes the users and groups as SQL has them now and the users
//! wanted (rows of a file, entries of the directory) and answers a [`Plan`]: who is created,
//! updated (with each field's old and new value) or deactivated, how many stay unchanged,
//! and every row that cannot be applied with its line and the reason. A dry run shows the
//! plan; an apply refuses the whole plan while it has an error and otherwise writes it in
//! one SQL transaction, so nothing is ever half applied.
//!
//! Why one planner: both are "the wanted set against the stored set", and both must be
//! idempotent (importing the same file twice, or syncing an unchanged directory, plans
//! nothing). The rules that differ are data in [`Rules`]:
//! - a file import leaves users it does not name alone, and never changes a user that comes
//!   from the directory;
//! - a sync marks the users it creates with its source (`ldap`), never touches a user made
//!   here, deactivates (disables, never deletes) its users that vanished from the directory,
//!   and only manages memberships of the groups the directory names.
//!
//! Also here, as pure text functions: the CSV reader and writer of the import/export file.

use shared::directory::{
    ChangeKind, DirectoryContact, DirectoryGroup, DirectoryPlan, DirectoryUser, FieldChange,
    PlanCounts, PlannedChange, RowError,
};
use shared::limits::MAX_DISPLAY_NAME_BYTES;
use shared::{GroupId, ServerId, UserId, validate_name};
use std::collections::{BTreeMap, BTreeSet};

/// Shortest and longest password of a new user, in bytes (as for users made one by one).
pub const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=1024;
/// Longest contact-list label, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// A user as stored now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: UserId,
    pub display_name: String,
    pub home_server: ServerId,
    pub disabled: bool,
    /// Administrators are changed only by a full administrator ([`Rules::may_change_admins`]).
    pub admin: bool,
    /// Where the user comes from (`ldap`); `None` for users made here.
    pub source: Option<String>,
    pub version: u64,
    pub groups: BTreeSet<GroupId>,
    /// Contact -> label.
    pub contacts: BTreeMap<UserId, String>,
}

/// Everything stored that a plan compares against.
#[derive(Clone, Debug, Default)]
pub struct Current {
    pub users: BTreeMap<UserId, CurrentUser>,
    /// Group -> display name.
    pub groups: BTreeMap<GroupId, String>,
}

/// One wanted user as read from a file or a directory: parsed, or why it could not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub line: u32,
    pub user: Result<DirectoryUser, RowError>,
}

/// What differs between a file import and a directory sync.
#[derive(Clone, Debug)]
pub struct Rules {
    /// `None`: a file import. `Some(source)`: a sync from that source (see the module doc).
    pub source: Option<String>,
    /// Home server of new users that name none.
    pub default_home: ServerId,
    /// The administrator acting: they cannot disable themself.
    pub actor: UserId,
    /// Whether the actor may change administrators (a full administrator).
    pub may_change_admins: bool,
}

/// What to do. Apply it only when `errors` is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub unchanged: u32,
    /// Sorted by line.
    pub errors: Vec<RowError>,
    /// Groups to create first, with their display names.
    pub new_groups: Vec<DirectoryGroup>,
}

/// One user's change. For [`ChangeKind::Create`] every field is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub line: Option<u32>,
    pub user: UserId,
    /// The version the change was planned from (0 for a new user): the write refuses a
    /// user changed meanwhile.
    pub version: u64,
    pub display_name: Option<String>,
    pub home_server: Option<ServerId>,
    pub disabled: Option<bool>,
    /// A new user's source (`ldap`), `None` for users made here.
    pub source: Option<String>,
    /// A new user's password from the file; `None`: the shell makes one up (import) or sets
    /// none (a sync: directory users sign in against the directory).
    pub password: Option<String>,
    pub add_groups: Vec<GroupId>,
    pub remove_groups: Vec<GroupId>,
    /// The whole new contact list, when it changes.
    pub contacts: Option<Vec<DirectoryContact>>,
    /// The same change for people.
    pub fields: Vec<FieldChange>,
}

impl Plan {
    pub fn counts(&self) -> PlanCounts {
        let count = |kind| self.changes.iter().filter(|c| c.kind == kind).count() as u32;
        PlanCounts {
            create: count(ChangeKind::Create),
            update: count(ChangeKind::Update),
            deactivate: count(ChangeKind::Deactivate),
            unchanged: self.unchanged,
            errors: self.errors.len() as u32,
        }
    }

    /// The plan as the API answers it.
    pub fn to_wire(&self, applied: bool) -> DirectoryPlan {
        DirectoryPlan {
            applied,
            counts: self.counts(),
            changes: self
                .changes
                .iter()
                .map(|change| PlannedChange {
                    kind: change.kind,
                    line: change.line,
                    user: change.user.clone(),
                    fields: change.fields.clone(),
                })
                .collect(),
            errors: self.errors.clone(),
            new_groups: self.new_groups.iter().map(|g| g.id.clone()).collect(),
            passwords: Vec::new(),
        }
    }
}

/// Plans `rows` (and the file's `groups`) against `current` under `rules`.
pub fn plan(current: &Current, rows: &[Row], groups: &[DirectoryGroup], rules: &Rules) -> Plan {
    let mut plan = Plan::default();
    let mut errors = Vec::new();

    // 1. Each row on its own, and duplicates (the first occurrence stays, later ones are bad).
    let mut first_line: BTreeMap<UserId, u32> = BTreeMap::new();
    let mut valid: Vec<(u32, &DirectoryUser)> = Vec::new();
    for row in rows {
        let user = match &row.user {
            Ok(user) => user,
            Err(error) => {
                errors.push(error.clone());
                continue;
            }
        };
        let bad = |reason: String| RowError {
            line: row.line,
            user: Some(user.id.to_string()),
            reason,
        };
        if let Some(first) = first_line.get(&user.id) {
            errors.push(bad(format!(
                "user '{}' is already on line {first}",
                user.id
            )));
            continue;
        }
        first_line.insert(user.id.clone(), row.line);
        match check_row(user) {
            Ok(()) => valid.push((row.line, user)),
            Err(reason) => errors.push(bad(reason)),
        }
    }
    let mut group_names: BTreeMap<GroupId, String> = BTreeMap::new();
    for group in groups {
        match validate_name(group.id.as_str()) {
            Ok(()) if display_name_ok(&group.display_name) => {
                group_names.insert(group.id.clone(), group.display_name.clone());
            }
            _ => errors.push(RowError {
                line: 0,
                user: None,
                reason: format!(
                    "group '{}': a group id is 1-64 of a-z 0-9 . _ - and its display name at most {MAX_DISPLAY_NAME_BYTES} bytes without control characters",
                    group.id
                ),
            }),
        }
    }

    // 2. Each valid row against what is stored.
    let managed_groups: Option<BTreeSet<&GroupId>> = rules.source.as_ref().map(|_| {
        valid
            .iter()
            .flat_map(|(_, user)| user.groups.iter().flatten())
            .collect()
    });
    for &(line, user) in &valid {
        let bad = |reason: String| RowError {
            line,
            user: Some(user.id.to_string()),
            reason,
        };
        if let Some(contact) = user
            .contacts
            .iter()
            .flatten()
            .find(|c| !current.users.contains_key(&c.user) && !first_line.contains_key(&c.user))
        {
            errors.push(bad(format!(
                "contact '{}' is neither a user nor in this file",
                contact.user
            )));
            continue;
        }
        let change = match current.users.get(&user.id) {
            None => create(line, user, rules),
            Some(existing) => match update(line, user, existing, rules, managed_groups.as_ref()) {
                Ok(change) => change,
                Err(reason) => {
                    errors.push(bad(reason));
                    continue;
                }
            },
        };
        match change {
            Some(change) => plan.changes.push(change),
            None => plan.unchanged += 1,
        }
    }

    // 3. A sync deactivates its users the directory no longer has (or no longer enables).
    if let Some(source) = &rules.source {
        for existing in current.users.values() {
            if existing.source.as_deref() != Some(source.as_str())
                || existing.disabled
                || first_line.contains_key(&existing.id)
            {
                continue;
            }
            if existing.admin && !rules.may_change_admins {
                errors.push(RowError {
                    line: 0,
                    user: Some(existing.id.to_string()),
                    reason: admin_reason(&existing.id),
                });
                continue;
            }
            plan.changes.push(Change {
                kind: ChangeKind::Deactivate,
                line: None,
                user: existing.id.clone(),
                version: existing.version,
                disabled: Some(true),
                fields: vec![field("disabled", "false", "true")],
                ..empty_change(&existing.id)
            });
        }
    }

    // 4. Groups to create: named by a change or by the file's group list.
    let mut new_groups: BTreeMap<GroupId, String> = BTreeMap::new();
    let named = plan
        .changes
        .iter()
        .flat_map(|c| c.add_groups.iter())
        .chain(group_names.keys());
    for group in named {
        if !current.groups.contains_key(group) {
            let name = group_names
                .get(group)
                .cloned()
                .unwrap_or_else(|| group.to_string());
            new_groups.insert(group.clone(), name);
        }
    }
    plan.new_groups = new_groups
        .into_iter()
        .map(|(id, display_name)| DirectoryGroup { id, display_name })
        .collect();
    errors.sort_by_key(|e| e.line);
    plan.errors = errors;
    plan
}

/// The checks of one row that need nothing else.
fn check_row(user: &DirectoryUser) -> Result<(), String> {
    validate_name(user.id.as_str()).map_err(|e| e.to_string())?;
    if let Some(name) = &user.display_name
        && !display_name_ok(name)
    {
        return Err(format!(
            "the display name may have at most {MAX_DISPLAY_NAME_BYTES} bytes and no control characters"
        ));
    }
    if let Some(home) = &user.home_server {
        validate_name(home.as_str()).map_err(|e| format!("home server: {e}"))?;
    }
    for group in user.groups.iter().flatten() {
        validate_name(group.as_str()).map_err(|e| format!("group: {e}"))?;
    }
    let mut seen = BTreeSet::new();
    for contact in user.contacts.iter().flatten() {
        validate_name(contact.user.as_str()).map_err(|e| format!("contact: {e}"))?;
        if contact.user == user.id {
            return Err("a user cannot be their own contact".to_string());
        }
        if !seen.insert(&contact.user) {
            return Err(format!("contact '{}' is listed twice", contact.user));
        }
        if contact.label.len() > MAX_LABEL_BYTES || contact.label.chars().any(char::is_control) {
            return Err(format!(
                "contact '{}': a label may have at most {MAX_LABEL_BYTES} bytes and no control characters",
                contact.user
            ));
        }
    }
    if let Some(password) = &user.password
        && !PASSWORD_BYTES.contains(&password.len())
    {
        return Err("a password needs 8 to 1024 bytes".to_string());
    }
    Ok(())
}

fn display_name_ok(name: &str) -> bool {
    name.len() <= MAX_DISPLAY_NAME_BYTES && !name.chars().any(char::is_control)
}

fn admin_reason(id: &UserId) -> String {
    format!("'{id}' is an administrator: only a full administrator may change one")
}

fn field(name: &str, from: impl Into<String>, to: impl Into<String>) -> FieldChange {
    FieldChange {
        field: name.to_string(),
        from: from.into(),
        to: to.into(),
    }
}

fn empty_change(user: &UserId) -> Change {
    Change {
        kind: ChangeKind::Update,
        line: None,
        user: user.clone(),
        version: 0,
        display_name: None,
        home_server: None,
        disabled: None,
        source: None,
        password: None,
        add_groups: Vec::new(),
        remove_groups: Vec::new(),
        contacts: None,
        fields: Vec::new(),
    }
}

fn join_groups<'a>(groups: impl IntoIterator<Item = &'a GroupId>) -> String {
    groups
        .into_iter()
        .map(GroupId::as_str)
        .collect::<Vec<_>>()
        .join(";")
}

/// Contacts as the CSV cell writes them: `bob;carol:Team`.
pub fn join_contacts<'a>(contacts: impl IntoIterator<Item = &'a DirectoryContact>) -> String {
    contacts
        .into_iter()
        .map(|c| {
            if c.label.is_empty() {
                c.user.to_string()
            } else {
                format!("{}:{}", c.user, c.label)
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// A new user; `None` for a disabled directory entry nobody needs to be made for.
fn create(line: u32, user: &DirectoryUser, rules: &Rules) -> Option<Change> {
    let disabled = user.disabled.unwrap_or(false);
    if disabled && rules.source.is_some() {
        return None;
    }
    let display_name = user
        .display_name
        .clone()
        .unwrap_or_else(|| user.id.to_string());
    let home = user
        .home_server
        .clone()
        .unwrap_or_else(|| rules.default_home.clone());
    let groups: BTreeSet<GroupId> = user.groups.iter().flatten().cloned().collect();
    let mut contacts: Vec<DirectoryContact> = user.contacts.clone().unwrap_or_default();
    contacts.sort();
    let mut fields = vec![
        field("display_name", "", display_name.as_str()),
        field("home_server", "", home.as_str()),
    ];
    if disabled {
        fields.push(field("disabled", "", "true"));
    }
    if !groups.is_empty() {
        fields.push(field("groups", "", join_groups(&groups)));
    }
    if !contacts.is_empty() {
        fields.push(field("contacts", "", join_contacts(&contacts)));
    }
    Some(Change {
        kind: ChangeKind::Create,
        line: Some(line),
        display_name: Some(display_name),
        home_server: Some(home),
        disabled: Some(disabled),
        source: rules.source.clone(),
        password: user.password.clone(),
        add_groups: groups.into_iter().collect(),
        contacts: Some(contacts),
        fields,
        ..empty_change(&user.id)
    })
}

/// The change that makes `existing` what `user` wants; `Ok(None)` when it already is.
fn update(
    line: u32,
    user: &DirectoryUser,
    existing: &CurrentUser,
    rules: &Rules,
    managed_groups: Option<&BTreeSet<&GroupId>>,
) -> Result<Option<Change>, String> {
    if let Some(source) = &rules.source
        && existing.source.as_ref() != Some(source)
    {
        return Err(format!(
            "a user '{}' made here already exists: the directory does not take it over",
            existing.id
        ));
    }
    let mut change = Change {
        line: Some(line),
        version: existing.version,
        ..empty_change(&existing.id)
    };
    if let Some(name) = &user.display_name
        && name != &existing.display_name
    {
        change
            .fields
            .push(field("display_name", &existing.display_name, name.as_str()));
        change.display_name = Some(name.clone());
    }
    if let Some(home) = &user.home_server
        && home != &existing.home_server
    {
        change.fields.push(field(
            "home_server",
            existing.home_server.as_str(),
            home.as_str(),
        ));
        change.home_server = Some(home.clone());
    }
    if let Some(disabled) = user.disabled
        && disabled != existing.disabled
    {
        change.fields.push(field(
            "disabled",
            existing.disabled.to_string(),
            disabled.to_string(),
        ));
        change.disabled = Some(disabled);
    }
    if let Some(groups) = &user.groups {
        let wanted: BTreeSet<&GroupId> = groups.iter().collect();
        change.add_groups = wanted
            .iter()
            .filter(|g| !existing.groups.contains(**g))
            .map(|g| (*g).clone())
            .collect();
        change.remove_groups = existing
            .groups
            .iter()
            .filter(|g| !wanted.contains(g))
            .filter(|g| managed_groups.is_none_or(|managed| managed.contains(g)))
            .cloned()
            .collect();
        if !change.add_groups.is_empty() || !change.remove_groups.is_empty() {
            let after: BTreeSet<&GroupId> = existing
                .groups
                .iter()
                .filter(|g| !change.remove_groups.contains(g))
                .chain(change.add_groups.iter())
                .collect();
            change.fields.push(field(
                "groups",
                join_groups(&existing.groups),
                join_groups(after),
            ));
        }
    }
    if let Some(contacts) = &user.contacts {
        let wanted: BTreeMap<&UserId, &str> = contacts
            .iter()
            .map(|c| (&c.user, c.label.as_str()))
            .collect();
        let now: BTreeMap<&UserId, &str> = existing
            .contacts
            .iter()
            .map(|(user, label)| (user, label.as_str()))
            .collect();
        if wanted != now {
            let as_list = |map: &BTreeMap<&UserId, &str>| -> Vec<DirectoryContact> {
                map.iter()
                    .map(|(user, label)| DirectoryContact {
                        user: (*user).clone(),
                        label: label.to_string(),
                    })
                    .collect()
            };
            let after = as_list(&wanted);
            change.fields.push(field(
                "contacts",
                join_contacts(&as_list(&now)),
                join_contacts(&after),
            ));
            change.contacts = Some(after);
        }
    }
    if change.fields.is_empty() {
        return Ok(None);
    }
    if rules.source.is_none() && existing.source.is_some() {
        return Err(format!(
            "user '{}' comes from the directory ({}): change it there",
            existing.id,
            existing.source.as_deref().unwrap_or_default()
        ));
    }
    if existing.admin && !rules.may_change_admins {
        return Err(admin_reason(&existing.id));
    }
    if existing.id == rules.actor && change.disabled == Some(true) {
        return Err("you cannot disable yourself; ask another administrator".to_string());
    }
    Ok(Some(change))
}

// ------------------------------------------------------------------------------ CSV

/// The columns of the CSV file, in the order export writes them. `id` is required; a
/// column left out leaves that part of existing users as it is.
pub const CSV_COLUMNS: [&str; 7] = [
    "id",
    "display_name",
    "home_server",
    "groups",
    "contacts",
    "disabled",
    "password",
];

/// Why a whole file cannot be read (as opposed to one bad row).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("line {line}: {reason}")]
    Bad { line: u32, reason: String },
    #[error("the file has more than {max} users")]
    TooManyRows { max: usize },
}

/// Reads a CSV import file (RFC 4180: a header line, commas, fields in double quotes may
/// hold commas, quotes (doubled) and line breaks) into rows; a row's line is where its
/// record starts, the header being line 1. Groups and contacts are `;`-separated; a contact
/// may carry a label after `:` (`bob:Team`).
pub fn read_csv(text: &str, max_rows: usize) -> Result<Vec<Row>, FileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = csv_records(text)?;
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(FileError::Bad {
            line: 1,
            reason: "the file is empty: it needs a header line such as 'id,display_name'"
                .to_string(),
        });
    };
    let mut columns = Vec::new();
    for name in &header {
        let name = name.trim();
        if !CSV_COLUMNS.contains(&name) {
            return Err(FileError::Bad {
                line: 1,
                reason: format!(
                    "unknown column '{name}': the columns are {}",
                    CSV_COLUMNS.join(", ")
                ),
            });
        }
        if columns.contains(&name) {
            return Err(FileError::Bad {
                line: 1,
                reason: format!("column '{name}' appears twice"),
            });
        }
        columns.push(name);
    }
    if !columns.contains(&"id") {
        return Err(FileError::Bad {
            line: 1,
            reason: "the header has no 'id' column".to_string(),
        });
    }
    let mut rows = Vec::new();
    for (line, record) in records {
        if record.len() == 1 && record[0].trim().is_empty() {
            continue; // a blank line
        }
        if rows.len() == max_rows {
            return Err(FileError::TooManyRows { max: max_rows });
        }
        rows.push(Row {
            line,
            user: csv_user(line, &columns, &record),
        });
    }
    Ok(rows)
}

fn csv_user(line: u32, columns: &[&str], record: &[String]) -> Result<DirectoryUser, RowError> {
    let id_cell = columns
        .iter()
        .position(|c| *c == "id")
        .and_then(|i| record.get(i))
        .map(|id| id.trim().to_string());
    let bad = |reason: String| RowError {
        line,
        user: id_cell.clone().filter(|id| !id.is_empty()),
        reason,
    };
    if record.len() != columns.len() {
        return Err(bad(format!(
            "{} fields where the header has {}",
            record.len(),
            columns.len()
        )));
    }
    let mut user = DirectoryUser::new(UserId::new(""));
    for (column, cell) in columns.iter().zip(record) {
        let value = cell.trim();
        let optional = || (!value.is_empty()).then(|| value.to_string());
        let list = || {
            value
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        };
        match *column {
            "id" => user.id = UserId::new(value),
            "display_name" => user.display_name = optional(),
            "home_server" => user.home_server = optional().map(ServerId::new),
            "groups" => user.groups = Some(list().into_iter().map(GroupId::new).collect()),
            "contacts" => {
                user.contacts = Some(
                    list()
                        .into_iter()
                        .map(|entry| match entry.split_once(':') {
                            Some((id, label)) => DirectoryContact {
                                user: UserId::new(id.trim()),
                                label: label.trim().to_string(),
                            },
                            None => DirectoryContact {
                                user: UserId::new(entry),
                                label: String::new(),
                            },
                        })
                        .collect(),
                );
            }
            "disabled" => {
                user.disabled = match value.to_ascii_lowercase().as_str() {
                    "" => None,
                    "true" | "yes" | "1" => Some(true),
                    "false" | "no" | "0" => Some(false),
                    other => {
                        return Err(bad(format!(
                            "disabled must be true or false, not '{other}'"
                        )));
                    }
                }
            }
            "password" => user.password = (!cell.is_empty()).then(|| cell.clone()),
            _ => {}
        }
    }
    if user.id.as_str().is_empty() {
        return Err(bad("the id is empty".to_string()));
    }
    Ok(user)
}

/// Splits CSV text into records with the line each starts on.
fn csv_records(text: &str) -> Result<Vec<(u32, Vec<String>)>, FileError> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut line: u32 = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut field_started = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                other => field.push(other),
            }
            continue;
        }
        match c {
            '"' if !field_started => {
                quoted = true;
                field_started = true;
            }
            '"' => {
                return Err(FileError::Bad {
                    line,
                    reason: "a quote inside a field that does not start with one".to_string(),
                });
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push((start, std::mem::take(&mut record)));
                field_started = false;
                line += 1;
                start = line;
            }
            other => {
                field.push(other);
                field_started = true;
            }
        }
    }
    if quoted {
        return Err(FileError::Bad {
            line: start,
            reason: "a quoted field is not closed".to_string(),
        });
    }
    if field_started || !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push((start, record));
    }
    Ok(records)
}

/// Users as a CSV export file (every column but `password`).
pub fn write_csv(users: &[DirectoryUser]) -> String {
    let columns: Vec<&str> = CSV_COLUMNS
        .iter()
        .copied()
        .filter(|c| *c != "password")
        .collect();
    let mut out = crate::csv::line(&columns);
    for user in users {
        let cells = [
            user.id.to_string(),
            user.display_name.clone().unwrap_or_default(),
            user.home_server
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            join_groups(user.groups.iter().flatten()),
            join_contacts(user.contacts.iter().flatten()),
            user.disabled.unwrap_or(false).to_string(),
        ];
        out.push_str(&crate::csv::line(&cells));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(source: Option<&str>) -> Rules {
        Rules {
            source: source.map(str::to_string),
            default_home: ServerId::new("s1"),
            actor: UserId::new("admin"),
            may_change_admins: false,
        }
    }

    fn stored(users: &[(&str, Option<&str>, &[&str])]) -> Current {
        let mut current = Current::default();
        for (id, source, groups) in users {
            current.users.insert(
                UserId::new(*id),
                CurrentUser {
                    id: UserId::new(*id),
                    display_name: id.to_string(),
                    home_server: ServerId::new("s1"),
                    disabled: false,
                    admin: *id == "admin",
                    source: source.map(str::to_string),
                    version: 1,
                    groups: groups.iter().map(|g| GroupId::new(*g)).collect(),
                    contacts: BTreeMap::new(),
                },
            );
            for group in *groups {
                current
                    .groups
                    .insert(GroupId::new(*group), group.to_string());
            }
        }
        current
    }

    /// Plans `csv` against `current` and renders the plan one line per change and error.
    fn check(current: &Current, csv: &str, rules: &Rules, expected: &str) {
        let rows = read_csv(csv, 100).unwrap();
        let plan = plan(current, &rows, &[], rules);
        let mut out = Vec::new();
        for change in &plan.changes {
            let fields: Vec<String> = change
                .fields
                .iter()
                .map(|f| format!("{}:{}->{}", f.field, f.from, f.to))
                .collect();
            out.push(format!(
                "{:?} {} line={:?} {}",
                change.kind,
                change.user,
                change.line,
                fields.join(" ")
            ));
        }
        for error in &plan.errors {
            out.push(format!(
                "error line {} {:?}: {}",
                error.line, error.user, error.reason
            ));
        }
        let groups: Vec<&str> = plan.new_groups.iter().map(|g| g.id.as_str()).collect();
        out.push(format!(
            "unchanged={} new_groups={}",
            plan.unchanged,
            groups.join(",")
        ));
        assert_eq!(out.join("\n"), expected.trim());
    }

    #[test]
    fn an_import_creates_updates_and_names_each_bad_row() {
        let current = stored(&[("admin", None, &[]), ("alice", None, &["sales"])]);
        let csv = "id,display_name,groups,contacts,disabled\n\
                   alice,Alice A.,sales;support,,\n\
                   bob,,support,alice:Team,\n\
                   bob,,,,\n\
                   Bad!,,,,\n\
                   carol,,,nobody,\n\
                   dave,,,,maybe\n\
                   erin,,\n\
                   admin,Boss,,,\n";
        check(
            &current,
            csv,
            &rules(None),
            "
Update alice line=Some(2) display_name:alice->Alice A. groups:sales->sales;support
Create bob line=Some(3) display_name:->bob home_server:->s1 groups:->support contacts:->alice:Team
error line 4 Some(\"bob\"): user 'bob' is already on line 3
error line 5 Some(\"Bad!\"): 'Bad!' is not a valid name: use 1-64 characters of a-z, 0-9, '.', '_' or '-'
error line 6 Some(\"carol\"): contact 'nobody' is neither a user nor in this file
error line 7 Some(\"dave\"): disabled must be true or false, not 'maybe'
error line 8 Some(\"erin\"): 3 fields where the header has 5
error line 9 Some(\"admin\"): 'admin' is an administrator: only a full administrator may change one
unchanged=0 new_groups=support",
        );
    }

    #[test]
    fn an_import_is_idempotent_and_leaves_unnamed_users_alone() {
        let mut current = stored(&[("alice", None, &["sales"]), ("bob", None, &[])]);
        current
            .users
            .get_mut(&UserId::new("alice"))
            .unwrap()
            .contacts
            .insert(UserId::new("bob"), "Team".to_string());
        let csv = "id,groups,contacts\nalice,sales,bob:Team\n";
        check(&current, csv, &rules(None), "unchanged=1 new_groups=");
    }

    #[test]
    fn a_sync_marks_its_users_deactivates_the_vanished_and_leaves_local_users_alone() {
        let current = stored(&[
            ("admin", None, &[]),
            ("local", None, &["staff"]),
            ("gone", Some("ldap"), &[]),
            ("kept", Some("ldap"), &["staff", "local-only"]),
        ]);
        let csv = "id,display_name,groups,disabled\n\
                   kept,Kept,,false\n\
                   new,New,staff,false\n\
                   off,Off,,true\n\
                   local,Local,,false\n";
        check(
            &current,
            csv,
            &rules(Some("ldap")),
            "
Update kept line=Some(2) display_name:kept->Kept groups:local-only;staff->local-only
Create new line=Some(3) display_name:->New home_server:->s1 groups:->staff
Deactivate gone line=None disabled:false->true
error line 5 Some(\"local\"): a user 'local' made here already exists: the directory does not take it over
unchanged=1 new_groups=",
        );
    }

    #[test]
    fn a_file_import_does_not_change_directory_users() {
        let current = stored(&[("dir", Some("ldap"), &[])]);
        check(
            &current,
            "id,display_name\ndir,Other\n",
            &rules(None),
            "error line 2 Some(\"dir\"): user 'dir' comes from the directory (ldap): change it there\nunchanged=0 new_groups=",
        );
        // Unchanged, it is fine (an export read back in).
        check(
            &current,
            "id,display_name\ndir,dir\n",
            &rules(None),
            "unchanged=1 new_groups=",
        );
    }

    #[test]
    fn csv_round_trips_quotes_commas_and_line_breaks() {
        let users = vec![DirectoryUser {
            id: UserId::new("alice"),
            display_name: Some("Smith, \"Al\"\nsecond line".to_string()),
            home_server: Some(ServerId::new("s1")),
            groups: Some(vec![GroupId::new("a"), GroupId::new("b")]),
            contacts: Some(vec![DirectoryContact {
                user: UserId::new("bob"),
                label: "Team X".to_string(),
            }]),
            disabled: Some(false),
            ..DirectoryUser::new(UserId::new("alice"))
        }];
        let text = write_csv(&users);
        let rows = read_csv(&format!("{text}bob,,,,,true\n"), 10).unwrap();
        assert_eq!(rows[0].user.as_ref().unwrap(), &users[0]);
        assert_eq!(rows[0].line, 2);
        // The quoted line break moved the next record's line on.
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].user.as_ref().unwrap().disabled, Some(true));
    }

    #[test]
    fn a_file_too_long_or_with_a_bad_header_is_refused_whole() {
        assert_eq!(
            read_csv("id\na\nb\nc\n", 2),
            Err(FileError::TooManyRows { max: 2 })
        );
        assert!(matches!(
            read_csv("id,colour\n", 2),
            Err(FileError::Bad { line: 1, .. })
        ));
        assert!(matches!(
            read_csv("display_name\nx\n", 2),
            Err(FileError::Bad { line: 1, .. })
        ));
        assert!(matches!(
            read_csv("id\n\"open\n", 2),
            Err(FileError::Bad { line: 2, .. })
        ));
    }
}
