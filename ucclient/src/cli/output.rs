//! What `ucclient` prints: one function per kind of answer, pure, so the human format is
//! tested. `--json` output is the API's JSON and needs no function here (a call's report
//! is the client's own: [`super::phone::CallReport::json`]).

use super::phone::{CallKind, CallReport};
use comfy_table::{Table, presets};
use shared::UserId;
use shared::api::{
    ChatMessage, Contact, ConversationSummary, JournalEntry, JournalKind, ReadMarker, UserInfo,
};
use shared::call::{ForwardMode, ForwardingRules};
use shared::presence::{PresenceView, TelephonyState, Visibility};
use ucclient::text::format_utc;

/// A table with a header and no borders: easy to read and to `grep`.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.iter().copied());
    table
}

/// `bob: away "at lunch" (in call) on desk[chat,audio], phone[chat] (quiet)`.
pub fn presence(view: &PresenceView) -> String {
    let mut line = format!("{}: {}", view.user, view.availability.as_str());
    if let Some(note) = view.note.as_deref().filter(|note| !note.is_empty()) {
        line.push_str(&format!(" \"{note}\""));
    }
    if let Some(telephony) = view
        .telephony
        .filter(|state| *state != TelephonyState::Idle)
    {
        line.push_str(&format!(" ({})", telephony_text(telephony)));
    }
    if !view.devices.is_empty() {
        let devices: Vec<String> = view
            .devices
            .iter()
            .map(|device| {
                let capabilities = ucclient::capabilities_text(&device.capabilities);
                let mut text = format!("{}[{capabilities}]", device.device);
                if !device.active {
                    text.push_str(" (quiet)");
                }
                if device.idle {
                    text.push_str(" (idle)");
                }
                text
            })
            .collect();
        line.push_str(&format!(" on {}", devices.join(", ")));
    }
    match view.visibility {
        Visibility::None => line.push_str(" (not visible to you)"),
        Visibility::Basic => line.push_str(" (availability only)"),
        Visibility::Full => {}
    }
    line
}

fn telephony_text(state: TelephonyState) -> &'static str {
    match state {
        TelephonyState::Idle => "idle",
        TelephonyState::Forwarded => "forwarded",
        TelephonyState::Ringing => "ringing",
        TelephonyState::InCall => "in call",
    }
}

pub fn contacts(contacts: &[Contact]) -> String {
    let mut table = table(&["USER", "NAME", "GROUP", "AVAILABILITY", "NOTE"]);
    for contact in contacts {
        table.add_row(vec![
            contact.user.to_string(),
            contact.display_name.clone(),
            contact.group.clone(),
            contact.presence.availability.as_str().to_string(),
            contact.presence.note.clone().unwrap_or_default(),
        ]);
    }
    table.to_string()
}

/// `2026-11-22 04:02:03 #12 alice: hello`, one line per message.
pub fn message(message: &ChatMessage) -> String {
    format!(
        "{} #{} {}: {}",
        format_utc(message.sent_ms),
        message.seq,
        message.sender,
        message.body
    )
}

pub fn history(messages: &[ChatMessage]) -> String {
    messages.iter().map(message).collect::<Vec<_>>().join("\n")
}

pub fn sent(message: &ChatMessage) -> String {
    format!("sent #{} to {}", message.seq, message.conversation)
}

pub fn read_marker(marker: &ReadMarker) -> String {
    format!(
        "{} read up to #{} in {}",
        marker.user, marker.seq, marker.conversation
    )
}

pub fn journal(entries: &[JournalEntry]) -> String {
    let mut table = table(&["TIME", "KIND", "DIRECTION", "PARTY", "DETAIL"]);
    for entry in entries {
        let detail = match entry.kind {
            JournalKind::Chat => match &entry.summary {
                Some(summary) => format!("{} messages: {summary}", entry.messages),
                None => format!("{} messages", entry.messages),
            },
            JournalKind::Call => entry
                .result
                .map(|result| serde_name(&result))
                .unwrap_or_else(|| "ongoing".to_string()),
        };
        table.add_row(vec![
            format_utc(entry.started_ms),
            serde_name(&entry.kind),
            serde_name(&entry.direction),
            entry.party.clone(),
            detail,
        ]);
    }
    table.to_string()
}

pub fn conversations(conversations: &[ConversationSummary]) -> String {
    let mut table = table(&["ID", "NAME", "UNREAD", "LAST MESSAGE"]);
    for conversation in conversations {
        let last = conversation
            .last_message
            .as_ref()
            .map(|message| format!("{}: {}", message.sender, shorten(&message.body, 60)))
            .unwrap_or_default();
        table.add_row(vec![
            conversation.id.to_string(),
            conversation.name.clone(),
            conversation.unread.to_string(),
            last,
        ]);
    }
    table.to_string()
}

pub fn users(users: &[UserInfo]) -> String {
    let mut table = table(&["ID", "NAME", "HOME", "ONLINE"]);
    for user in users {
        table.add_row(vec![
            user.id.to_string(),
            user.display_name.clone(),
            user.home_server.to_string(),
            yes_no(user.online).to_string(),
        ]);
    }
    table.to_string()
}

/// Two lines: what the call was and how it ended, then its media.
/// `call s1~ab to bob via m1: connected after 1.2 s, talked 5.0 s; hung_up (answered)`.
pub fn call(report: &CallReport) -> String {
    let other = match report.kind {
        CallKind::Placed => format!("to {}", report.other),
        CallKind::PickedUp => format!("picked up from {}", report.other),
        CallKind::Answered => format!("from {}", report.other),
    };
    let media = report
        .media
        .as_ref()
        .map(|media| format!(" via {media}"))
        .unwrap_or_default();
    let state = if report.connected {
        format!(
            "connected after {}, talked {}",
            seconds(report.setup_ms.unwrap_or(0)),
            seconds(report.duration_ms)
        )
    } else {
        "not connected".to_string()
    };
    let end = match (report.reason, report.result) {
        (Some(reason), Some(result)) => format!("{} ({})", reason.as_str(), serde_name(&result)),
        _ => "no call_ended".to_string(),
    };
    let mut first = format!("call {} {other}{media}: {state}; {end}", report.call);
    for redirect in &report.redirects {
        first.push_str(&format!(
            "; forwarded {} → {} ({})",
            redirect.from,
            redirect.to,
            redirect.mode.as_str()
        ));
    }
    let mut second = format!(
        "media: {} packets sent, {} received",
        report.packets_sent, report.packets_received
    );
    if !report.parties.is_empty() {
        let parties: Vec<&str> = report.parties.iter().map(UserId::as_str).collect();
        second.push_str(&format!("; parties: {}", parties.join(", ")));
    }
    for failure in &report.invite_failures {
        second.push_str(&format!(
            "; invite of {} failed: {}",
            failure.user, failure.reason
        ));
    }
    format!("{first}\n{second}")
}

/// `alice: always → carol, no_answer → dave`, or `alice: no forwarding`.
pub fn forwarding(user: &UserId, rules: &ForwardingRules) -> String {
    let set: Vec<String> = [
        ForwardMode::Always,
        ForwardMode::Busy,
        ForwardMode::NoAnswer,
    ]
    .into_iter()
    .filter_map(|mode| {
        rules
            .get(mode)
            .map(|target| format!("{} → {target}", mode.as_str()))
    })
    .collect();
    if set.is_empty() {
        format!("{user}: no forwarding")
    } else {
        format!("{user}: {}", set.join(", "))
    }
}

/// `5.0 s`.
fn seconds(millis: u64) -> String {
    format!("{:.1} s", millis as f64 / 1000.0)
}

pub fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// A wire enum as its JSON string (`in_call`, `incoming`).
fn serde_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "?".to_string(),
    }
}

/// The first `max` characters of one line of `text`, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut cut: String = line.chars().take(max).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::{ConversationKind, Direction};
    use shared::presence::{Availability, Capability, DevicePresence};
    use shared::{ConversationId, DeviceId};

    fn view(visibility: Visibility) -> PresenceView {
        PresenceView {
            user: UserId::from("bob"),
            visibility,
            availability: Availability::Away,
            note: Some("at lunch".into()),
            telephony: Some(TelephonyState::InCall),
            capabilities: vec![Capability::Chat, Capability::Audio],
            devices: vec![
                DevicePresence {
                    device: DeviceId::from("desk"),
                    capabilities: vec![Capability::Chat, Capability::Audio],
                    active: true,
                    idle: false,
                },
                DevicePresence {
                    device: DeviceId::from("phone"),
                    capabilities: vec![Capability::Chat],
                    active: false,
                    idle: true,
                },
            ],
            version: 4,
            since_ms: 1_700_000_000_000,
        }
    }

    fn chat(seq: u64, body: &str) -> ChatMessage {
        ChatMessage {
            conversation: ConversationId::from("d:alice:bob"),
            seq,
            id: format!("m{seq}"),
            sender: UserId::from("alice"),
            body: body.to_string(),
            sent_ms: 1_700_000_000_000,
            client_id: None,
        }
    }

    #[test]
    fn presence_lines() {
        assert_eq!(
            presence(&view(Visibility::Full)),
            "bob: away \"at lunch\" (in call) on desk[chat,audio], phone[chat] (quiet) (idle)"
        );
        let basic = PresenceView {
            note: None,
            telephony: None,
            devices: Vec::new(),
            capabilities: Vec::new(),
            ..view(Visibility::Basic)
        };
        assert_eq!(presence(&basic), "bob: away (availability only)");
    }

    #[test]
    fn messages_and_markers() {
        assert_eq!(
            message(&chat(12, "hello")),
            "2023-11-14 22:13:20 #12 alice: hello"
        );
        assert_eq!(
            history(&[chat(1, "a"), chat(2, "b")]),
            "2023-11-14 22:13:20 #1 alice: a\n2023-11-14 22:13:20 #2 alice: b"
        );
        assert_eq!(sent(&chat(3, "x")), "sent #3 to d:alice:bob");
        let marker = ReadMarker {
            conversation: ConversationId::from("g:ops"),
            user: UserId::from("alice"),
            seq: 9,
        };
        assert_eq!(read_marker(&marker), "alice read up to #9 in g:ops");
    }

    #[test]
    fn tables_have_one_row_per_item() {
        let contact = Contact {
            user: UserId::from("bob"),
            display_name: "Bob B".into(),
            group: "team".into(),
            presence: view(Visibility::Full),
        };
        let text = contacts(&[contact]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("USER") && lines[0].contains("AVAILABILITY"));
        assert!(
            lines[1].contains("bob") && lines[1].contains("Bob B") && lines[1].contains("away")
        );

        let entry = JournalEntry {
            id: "j1".into(),
            user: UserId::from("alice"),
            kind: JournalKind::Chat,
            direction: Direction::Outgoing,
            party: "bob".into(),
            conversation: Some(ConversationId::from("d:alice:bob")),
            started_ms: 1_700_000_000_000,
            answered_ms: None,
            ended_ms: None,
            result: None,
            messages: 3,
            summary: None,
        };
        let text = journal(&[entry]);
        assert!(text.lines().nth(1).unwrap().contains("outgoing"), "{text}");
        assert!(text.contains("3 messages"), "{text}");

        let summary = ConversationSummary {
            id: ConversationId::from("g:ops"),
            kind: ConversationKind::Group,
            name: "ops".into(),
            members: vec![UserId::from("alice")],
            last_seq: 5,
            last_read_seq: 2,
            unread: 3,
            last_message: Some(chat(5, "line one\nline two")),
        };
        let text = conversations(&[summary]);
        assert!(text.contains("alice: line one…"), "{text}");
    }

    #[test]
    fn forwarding_rules() {
        let alice = UserId::from("alice");
        let mut rules = ForwardingRules::default();
        assert_eq!(forwarding(&alice, &rules), "alice: no forwarding");
        rules.set(ForwardMode::NoAnswer, Some(UserId::from("dave")));
        rules.set(ForwardMode::Always, Some(UserId::from("carol")));
        assert_eq!(
            forwarding(&alice, &rules),
            "alice: always → carol, no_answer → dave"
        );
    }
}
