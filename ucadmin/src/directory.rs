//! Users from outside: `ucadmin import FILE [--dry-run]`, `ucadmin export [--format]`,
//! `ucadmin directory sync [--dry-run]` and `ucadmin directory status`. A plan with bad rows
//! is printed, then the command fails (exit 1): nothing of the file was applied.

use super::{emit, print, table};
use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use shared::directory::{ChangeKind, DirectoryPlan, DirectoryStatus};
use std::path::PathBuf;
use ucclient::AdminClient;

/// `ucadmin export --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

/// `ucadmin import FILE`: CSV when the name ends in `.csv` or the text does not start with
/// `{`, else JSON.
pub async fn import(
    admin: &AdminClient,
    file: PathBuf,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let csv = match file.extension().and_then(|e| e.to_str()) {
        Some("csv") => true,
        Some("json") => false,
        _ => bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_none_or(|b| *b != b'{'),
    };
    let plan = admin.import(bytes, csv, dry_run).await?;
    show_plan(&plan, json)
}

/// Prints a plan; fails when it has bad rows.
pub fn show_plan(plan: &DirectoryPlan, json: bool) -> anyhow::Result<()> {
    print(json, plan, || plan_text(plan))?;
    if !plan.errors.is_empty() {
        bail!(
            "bad_request: {} bad rows; nothing was applied",
            plan.errors.len()
        );
    }
    Ok(())
}

pub async fn export(
    admin: &AdminClient,
    format: ExportFormat,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let text = match format {
        ExportFormat::Csv => admin.export_csv().await?,
        ExportFormat::Json => {
            serde_json::to_string_pretty(&admin.export().await?).context("encoding the export")?
        }
    };
    match output {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => emit(text.trim_end()),
    }
}

fn plan_text(plan: &DirectoryPlan) -> String {
    let counts = &plan.counts;
    let mut out = format!(
        "{}: {} to create, {} to update, {} to deactivate, {} unchanged, {} bad rows, {} new groups\n",
        if plan.applied {
            "applied"
        } else {
            "plan (nothing applied)"
        },
        counts.create,
        counts.update,
        counts.deactivate,
        counts.unchanged,
        counts.errors,
        plan.new_groups.len()
    );
    if !plan.changes.is_empty() {
        let mut changes = table(&["change", "line", "user", "fields"]);
        for change in &plan.changes {
            let kind = match change.kind {
                ChangeKind::Create => "create",
                ChangeKind::Update => "update",
                ChangeKind::Deactivate => "deactivate",
            };
            let fields: Vec<String> = change
                .fields
                .iter()
                .map(|f| {
                    if f.from.is_empty() {
                        format!("{}={}", f.field, f.to)
                    } else {
                        format!("{}: {} -> {}", f.field, f.from, f.to)
                    }
                })
                .collect();
            changes.add_row(vec![
                kind.to_string(),
                change.line.map(|l| l.to_string()).unwrap_or_default(),
                change.user.to_string(),
                fields.join("; "),
            ]);
        }
        out.push_str(&changes.to_string());
        out.push('\n');
    }
    if !plan.errors.is_empty() {
        let mut errors = table(&["line", "user", "error"]);
        for error in &plan.errors {
            errors.add_row(vec![
                error.line.to_string(),
                error.user.clone().unwrap_or_default(),
                error.reason.clone(),
            ]);
        }
        out.push_str(&errors.to_string());
        out.push('\n');
    }
    if !plan.passwords.is_empty() {
        out.push_str("passwords of the new users (shown once):\n");
        let mut passwords = table(&["user", "password"]);
        for entry in &plan.passwords {
            passwords.add_row(vec![entry.user.to_string(), entry.password.clone()]);
        }
        out.push_str(&passwords.to_string());
    }
    out.trim_end().to_string()
}

/// `ucadmin directory ...`: the LDAP / Active Directory sync.
#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Reads the directory and shows (`--dry-run`) or applies what changes.
    Sync {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Whether a directory is configured and reachable, and the last sync.
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub async fn directory(admin: &AdminClient, command: DirectoryCommand) -> anyhow::Result<()> {
    match command {
        DirectoryCommand::Sync { dry_run, json } => {
            show_plan(&admin.directory_sync(dry_run).await?, json)
        }
        DirectoryCommand::Status { json } => {
            let status = admin.directory_status().await?;
            print(json, &status, || status_text(&status))
        }
    }
}

fn status_text(status: &DirectoryStatus) -> String {
    if !status.configured {
        return "no directory is configured (UC_LDAP_URL)".to_string();
    }
    let reach = match (status.reachable, &status.error) {
        (None, _) => "not read yet".to_string(),
        (Some(true), _) => "reachable".to_string(),
        (Some(false), error) => format!("DOWN: {}", error.as_deref().unwrap_or("unknown")),
    };
    let last = match (status.last_sync_ms, status.last_counts) {
        (Some(at), Some(c)) => format!(
            "{} ({} created, {} updated, {} deactivated)",
            ucclient::text::format_age(shared::now_ms(), at),
            c.create,
            c.update,
            c.deactivate
        ),
        _ => "never".to_string(),
    };
    format!(
        "directory: {}\nstate: {reach}\nusers from it: {}\nlast sync: {last}\nscheduled: {}",
        status.url.as_deref().unwrap_or_default(),
        status.users,
        if status.interval_secs == 0 {
            "no (on demand only)".to_string()
        } else {
            let on = status
                .scheduled_on
                .as_ref()
                .map_or_else(|| "no server yet".to_string(), ToString::to_string);
            format!("every {} s, run by {on}", status.interval_secs)
        }
    )
}
