//! The audit log: `ucadmin audit list` (a filtered page, newest first) and `ucadmin audit
//! export` (every matching entry as the server's CSV or JSON file). Times are RFC 3339
//! (`2026-11-22T04:00:00Z`, or a date) or an age back from now (`90s`, `15m`, `1h`, `7d`).

use super::{emit, print, table};
use anyhow::Context;
use clap::{Args, Subcommand};
use shared::api::{AuditEntry, AuditFilter};
use shared::{TimestampMs, UserId};
use std::path::PathBuf;
use ucclient::AdminClient;
use ucclient::text::format_age;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest matching entries, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// How many (at most 1,000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Every matching entry (at most 100,000, newest first) as a file; says on stderr when
    /// more matched.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "csv")]
        format: super::directory::ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

/// The filter options both commands share.
#[derive(Debug, Default, Args)]
pub struct FilterArgs {
    /// Entries at or after this time (RFC 3339, a date, or an age: 90s, 15m, 1h, 7d).
    #[arg(long, value_parser = parse_time)]
    since: Option<TimeArg>,
    /// Entries before this time (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    until: Option<TimeArg>,
    /// Entries of this administrator (`directory`: the scheduled directory sync).
    #[arg(long)]
    actor: Option<String>,
    /// Entries whose action starts with this (`user.` for every change of a user).
    #[arg(long)]
    action: Option<String>,
}

/// A time as given: absolute, or an age resolved against the clock when the command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    At(TimestampMs),
    Ago(i64),
}

impl TimeArg {
    fn resolve(self, now_ms: TimestampMs) -> TimestampMs {
        match self {
            TimeArg::At(ms) => ms,
            TimeArg::Ago(ms) => now_ms - ms,
        }
    }
}

/// `90s`, `15m`, `1h`, `7d` (an age), else RFC 3339 or a date.
fn parse_time(text: &str) -> Result<TimeArg, String> {
    let text = text.trim();
    let unit_ms = match text.chars().last() {
        Some('s') => Some(1_000),
        Some('m') => Some(60_000),
        Some('h') => Some(3_600_000),
        Some('d') => Some(86_400_000),
        _ => None,
    };
    if let Some(unit_ms) = unit_ms
        && let Ok(count) = text[..text.len() - 1].parse::<u32>()
    {
        return Ok(TimeArg::Ago(i64::from(count) * unit_ms));
    }
    shared::time::parse_rfc3339(text)
        .map(TimeArg::At)
        .map_err(|error| format!("{error}, or an age like 90s, 15m, 1h, 7d"))
}

impl FilterArgs {
    fn filter(&self, now_ms: TimestampMs) -> AuditFilter {
        AuditFilter {
            since_ms: self.since.map(|time| time.resolve(now_ms)),
            until_ms: self.until.map(|time| time.resolve(now_ms)),
            actor: self.actor.as_deref().map(UserId::new),
            action: self.action.clone(),
        }
    }
}

pub async fn run(
    admin: &AdminClient,
    command: AuditCommand,
    now_ms: TimestampMs,
) -> anyhow::Result<()> {
    match command {
        AuditCommand::List {
            filter,
            limit,
            json,
        } => {
            let entries = admin.audit_filtered(&filter.filter(now_ms), limit).await?;
            print(json, &entries, || audit_table(&entries, now_ms))
        }
        AuditCommand::Export {
            filter,
            format,
            output,
        } => {
            let csv = format == super::directory::ExportFormat::Csv;
            let export = admin
                .audit_export(&filter.filter(now_ms), csv, None)
                .await?;
            if export.truncated {
                eprintln!(
                    "warning: more entries matched than one export holds (100,000); the oldest \
                     were left out: export again with --until set to the oldest time written"
                );
            }
            match output {
                Some(path) => std::fs::write(&path, &export.text)
                    .with_context(|| format!("writing {}", path.display())),
                None => emit(export.text.trim_end()),
            }
        }
    }
}

pub fn audit_table(entries: &[AuditEntry], now_ms: i64) -> String {
    let mut table = table(&["AGE", "ADMIN", "ACTION", "DETAIL", "FROM"]);
    for entry in entries {
        table.add_row(vec![
            format_age(now_ms, entry.at_ms),
            entry.actor.to_string(),
            entry.action.clone(),
            entry.detail.clone(),
            entry.client.clone().unwrap_or_default(),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_ages_or_rfc3339() {
        assert_eq!(parse_time("90s"), Ok(TimeArg::Ago(90_000)));
        assert_eq!(parse_time("1h"), Ok(TimeArg::Ago(3_600_000)));
        assert_eq!(parse_time("7d"), Ok(TimeArg::Ago(7 * 86_400_000)));
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z"),
            Ok(TimeArg::At(1_700_000_000_000))
        );
        assert!(parse_time("soon").is_err());
        assert!(parse_time("-1h").is_err());
        assert_eq!(TimeArg::Ago(1_000).resolve(5_000), 4_000);
    }
}
