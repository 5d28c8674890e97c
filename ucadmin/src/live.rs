//! `ucadmin watch` and `ucadmin history`: the console's live updates and its charts of the
//! last hour, for a terminal or a script.

use crate::{emit, print, table};
use anyhow::Context;
use shared::console::{AdminEvent, History, ServerHistory, StatsSample};
use std::time::Duration;
use ucclient::AdminClient;

/// How often a quiet channel is pinged (proxies close idle WebSockets).
const PING_EVERY: Duration = Duration::from_secs(25);

/// `watch`: prints what administrators change, and servers found dead, as it happens; with
/// `count`, stops after that many such events.
pub async fn watch(admin: &AdminClient, count: Option<u32>, json: bool) -> anyhow::Result<()> {
    let mut events = admin.events().await?;
    let mut seen = 0u32;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let event = tokio::select! {
            event = events.next() => event?,
            _ = ping.tick() => {
                events.ping().await?;
                continue;
            }
        };
        let Some(event) = event else {
            anyhow::bail!("the server closed the live channel");
        };
        let counted = matches!(
            event,
            AdminEvent::Change { .. } | AdminEvent::ServerDown { .. }
        );
        if json {
            emit(&serde_json::to_string(&event).context("encoding the event")?)?;
        } else if let Some(line) = event_line(&event) {
            emit(&line)?;
        }
        if counted {
            seen += 1;
            if count.is_some_and(|count| seen >= count) {
                return Ok(());
            }
        }
    }
}

/// One line per event a person cares about (`pong` is not one).
fn event_line(event: &AdminEvent) -> Option<String> {
    match event {
        AdminEvent::Hello { server } => Some(format!("watching, through {server}")),
        AdminEvent::Change { server, entry } => Some(format!(
            "{} {} {} {} (on {server}{})",
            clock(entry.at_ms),
            entry.actor,
            entry.action,
            entry.detail,
            entry
                .client
                .as_ref()
                .map(|client| format!(", from {client}"))
                .unwrap_or_default()
        )),
        AdminEvent::ServerDown { server, by } => Some(format!(
            "{} server {server} was found dead (by {by})",
            clock(shared::now_ms())
        )),
        AdminEvent::Resync => Some("some events were missed: look again".to_string()),
        AdminEvent::Pong => None,
    }
}

/// `HH:MM:SS` UTC.
fn clock(at_ms: i64) -> String {
    let seconds = at_ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// `history`: per server, the last hour summed up (the JSON holds every sample).
pub async fn history(admin: &AdminClient, json: bool) -> anyhow::Result<()> {
    let history = admin.history().await?;
    print(json, &history, || history_text(&history))
}

fn history_text(history: &History) -> String {
    let mut table = table(&[
        "SERVER",
        "SAMPLES",
        "DEVICES NOW/MAX",
        "CALLS NOW/MAX",
        "CPU AVG/MAX",
        "MEMORY",
        "MESSAGES/MIN",
        "QUIET DEVICES",
    ]);
    for server in &history.servers {
        table.add_row(summary_row(server));
    }
    let mut text = format!(
        "last hour, one sample every {} s, seen from {}\n{table}",
        history.sample_ms / 1000,
        history.server
    );
    if let Some(note) = &history.note {
        text.push_str(&format!("\nnote: {note}"));
    }
    text
}

fn summary_row(server: &ServerHistory) -> Vec<String> {
    let samples = &server.samples;
    let Some(last) = samples.last() else {
        return vec![server.server.to_string(), "0".into()];
    };
    let max = |value: fn(&StatsSample) -> u64| samples.iter().map(value).max().unwrap_or(0);
    let cpu: Vec<f32> = samples.iter().map(|s| s.stats.cpu_percent).collect();
    let cpu_avg = cpu.iter().sum::<f32>() / cpu.len() as f32;
    let cpu_max = cpu.iter().copied().fold(0.0, f32::max);
    vec![
        server.server.to_string(),
        samples.len().to_string(),
        format!("{}/{}", last.devices, max(|s| s.devices)),
        format!("{}/{}", last.calls, max(|s| s.calls)),
        format!("{cpu_avg:.0} %/{cpu_max:.0} %"),
        format!("{} MiB", last.stats.resident_bytes / (1024 * 1024)),
        format!("{:.1}", per_minute(samples, |s| s.stats.messages_delivered)),
        last.stats.mdm_quiet_sessions.to_string(),
    ]
}

/// The average rate of a counter over the samples, per minute; a restart (the counter going
/// down) starts counting again from 0.
pub fn per_minute(samples: &[StatsSample], counter: fn(&StatsSample) -> u64) -> f64 {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return 0.0;
    };
    let minutes = (last.at_ms - first.at_ms) as f64 / 60_000.0;
    if minutes <= 0.0 {
        return 0.0;
    }
    let counted: u64 = samples
        .windows(2)
        .map(|pair| {
            let (before, after) = (counter(&pair[0]), counter(&pair[1]));
            if after >= before {
                after - before
            } else {
                after
            }
        })
        .sum();
    counted as f64 / minutes
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ServerId;
    use shared::api::AuditEntry;
    use shared::console::ServerStats;

    fn sample(at_ms: i64, delivered: u64) -> StatsSample {
        StatsSample {
            at_ms,
            stats: ServerStats {
                messages_delivered: delivered,
                ..ServerStats::default()
            },
            ..StatsSample::default()
        }
    }

    #[test]
    fn rates_survive_a_restart_and_changes_read_as_one_line() {
        let samples = [sample(0, 10), sample(60_000, 40), sample(120_000, 5)];
        // 30 before the restart, 5 after it, over two minutes.
        assert_eq!(per_minute(&samples, |s| s.stats.messages_delivered), 17.5);
        assert_eq!(
            per_minute(&samples[..1], |s| s.stats.messages_delivered),
            0.0
        );

        let change = AdminEvent::Change {
            server: ServerId::from("s2"),
            entry: AuditEntry {
                at_ms: 3_723_000,
                actor: "alice".into(),
                action: "user.update".into(),
                detail: "bob display_name".into(),
                client: Some("10.0.0.9".into()),
            },
        };
        assert_eq!(
            event_line(&change).unwrap(),
            "01:02:03 alice user.update bob display_name (on s2, from 10.0.0.9)"
        );
        assert_eq!(event_line(&AdminEvent::Pong), None);
    }
}
