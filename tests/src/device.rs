//! A listening device for fault tests: one WebSocket that shows messages through the client's
//! [`Inbox`] (once each, in order, holes filled by `sync`) and records every message it
//! shows, so a test can count what reached each device.

use shared::ConversationId;
use shared::api::ChatMessage;
use shared::ws::{ClientCommand, ServerEvent};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use ucclient::{Client, Connection, Inbox};

/// A device whose task reads its socket until dropped.
pub struct Device {
    name: String,
    shown: Arc<Mutex<Vec<ChatMessage>>>,
    task: JoinHandle<()>,
}

impl Device {
    /// Connects `client` as device `name` and starts reading.
    pub async fn start(client: &Client, name: &str) -> Device {
        let connection = client
            .connect(Some(&name.into()), &[])
            .await
            .unwrap_or_else(|e| panic!("device {name} connects: {e}"));
        let shown = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(read(connection, shown.clone()));
        Device {
            name: name.to_string(),
            shown,
            task,
        }
    }

    /// Every message shown so far, in the order shown.
    pub fn messages(&self) -> Vec<ChatMessage> {
        self.shown.lock().unwrap().clone()
    }

    /// The sequence numbers shown in `conversation`, in the order shown.
    pub fn seqs(&self, conversation: &ConversationId) -> Vec<u64> {
        self.messages()
            .iter()
            .filter(|m| &m.conversation == conversation)
            .map(|m| m.seq)
            .collect()
    }

    /// Waits until `conversation` shows `count` stored messages (not counting provisional
    /// ones, `seq` 0), or `limit` passes; returns how long it took, or `None`.
    pub async fn wait_for_stored(
        &self,
        conversation: &ConversationId,
        count: usize,
        limit: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.seqs(conversation).iter().filter(|&&s| s > 0).count() >= count {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Asserts that `conversation` showed the stored messages `1..=count` once each, in order,
    /// and that every provisional one (`seq` 0) was shown once and then stored (same id).
    pub fn assert_stored_exactly(&self, conversation: &ConversationId, count: u64) {
        let messages: Vec<ChatMessage> = self
            .messages()
            .into_iter()
            .filter(|m| &m.conversation == conversation)
            .collect();
        let stored: Vec<u64> = messages
            .iter()
            .filter(|m| m.seq > 0)
            .map(|m| m.seq)
            .collect();
        let expected: Vec<u64> = (1..=count).collect();
        assert_eq!(
            stored, expected,
            "device {} in {conversation}: stored messages shown {stored:?}",
            self.name
        );
        let mut provisional = std::collections::BTreeSet::new();
        for message in messages.iter().filter(|m| m.seq == 0) {
            assert!(
                provisional.insert(message.id.clone()),
                "device {}: provisional {} shown twice",
                self.name,
                message.id
            );
            assert!(
                messages.iter().any(|m| m.seq > 0 && m.id == message.id),
                "device {}: provisional {} ({:?}) never stored",
                self.name,
                message.id,
                message.body
            );
        }
    }

    /// Waits until `conversation` shows `count` messages (or `limit` passes); returns how
    /// long it took, or `None`.
    pub async fn wait_for(
        &self,
        conversation: &ConversationId,
        count: usize,
        limit: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.seqs(conversation).len() >= count {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Asserts that `conversation` showed exactly `first..=last`, each once, in order.
    pub fn assert_exactly(&self, conversation: &ConversationId, first: u64, last: u64) {
        let seqs = self.seqs(conversation);
        let expected: Vec<u64> = (first..=last).collect();
        assert_eq!(
            seqs, expected,
            "device {} in {conversation}: shown {seqs:?}, expected {first}..={last} once each in order",
            self.name
        );
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read(mut connection: Connection, shown: Arc<Mutex<Vec<ChatMessage>>>) {
    let mut inbox = Inbox::new();
    let hello = connection.hello().to_event();
    let since = inbox.on_hello(&hello, true);
    assert!(since.is_empty());
    while let Some(event) = connection.next_event().await {
        let Ok(event) = event else { continue };
        let step = inbox.on_event(event);
        for event in step.show {
            if let ServerEvent::Message { message, .. } = event {
                shown.lock().unwrap().push(message);
            }
        }
        if !step.sync.is_empty() {
            let Ok(reference) = connection
                .send(ClientCommand::Sync { since: step.sync })
                .await
            else {
                return;
            };
            inbox.sync_sent(reference);
        }
    }
}

/// Waits for up to `limit` until `done` holds, checking every 50 ms.
pub async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}
