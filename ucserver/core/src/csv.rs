//! Writing CSV (RFC 4180) for the exports: a cell is quoted when it holds a comma, a quote, a
//! line break or edge spaces, and a quote inside is doubled, so that any spreadsheet or CSV
//! reader gets the text back exactly. Lines end with `\n`. Reading CSV is the import's
//! business (`directory::read_csv`).

use shared::api::AuditEntry;
use shared::time::format_rfc3339;

/// The audit export's columns, in order.
pub const AUDIT_COLUMNS: [&str; 6] = ["at_ms", "time_utc", "actor", "action", "detail", "client"];

/// One line of cells, each quoted as needed, with its line end.
pub fn line<S: AsRef<str>>(cells: &[S]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| cell(c.as_ref())).collect();
    let mut out = cells.join(",");
    out.push('\n');
    out
}

/// One cell: as it is, or quoted with its quotes doubled.
pub fn cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Audit entries as a CSV file with a header line ([`AUDIT_COLUMNS`]); the time both as
/// milliseconds (exact, sortable) and as RFC 3339 in UTC (readable).
pub fn audit(entries: &[AuditEntry]) -> String {
    let mut out = line(&AUDIT_COLUMNS);
    for entry in entries {
        out.push_str(&line(&[
            entry.at_ms.to_string(),
            format_rfc3339(entry.at_ms),
            entry.actor.to_string(),
            entry.action.clone(),
            entry.detail.clone(),
            entry.client.clone().unwrap_or_default(),
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::UserId;

    #[test]
    fn audit_lines_quote_what_needs_it() {
        let entries = [
            AuditEntry {
                at_ms: 1_700_000_000_123,
                actor: UserId::new("helen"),
                action: "user.update".into(),
                detail: "bob display_name=\"Bob, Jr.\"\nsecond line".into(),
                client: Some("127.0.0.1".into()),
            },
            AuditEntry {
                at_ms: 0,
                actor: UserId::new("directory"),
                action: "directory.sync".into(),
                detail: " padded ".into(),
                client: None,
            },
        ];
        assert_eq!(
            audit(&entries),
            "at_ms,time_utc,actor,action,detail,client\n\
             1700000000123,2023-11-14T22:13:20.123Z,helen,user.update,\"bob display_name=\"\"Bob, Jr.\"\"\nsecond line\",127.0.0.1\n\
             0,1970-01-01T00:00:00.000Z,directory,directory.sync,\" padded \",\n"
        );
    }
}
