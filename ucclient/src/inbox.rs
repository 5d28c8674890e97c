//! A device's view of its conversations: every message once, in sequence order, without
//! holes — whatever the server's links did on the way.
//!
//! Sequence numbers of a conversation start at 1 and have no gaps, so a message past the one
//! expected shows that something is missing: a delivery lost while the bus between servers was
//! away, or one from another server still on its way. The inbox then holds the message back,
//! asks the server (`sync`) for everything after what it has, and releases the held ones in
//! order once the hole is filled. `conversation_heads` (the server may have missed deliveries)
//! and a reconnect's `hello` name where each conversation stands; the inbox asks for the ones
//! past what it has. Messages it already has, live or replayed, are dropped. A provisional
//! message (`seq` 0: accepted while the database was away) is shown at once; the stored one
//! with the same `id` follows in sequence, and the caller replaces the first by it.
//!
//! No IO: the caller sends the `sync` commands it returns and reports their references
//! ([`Inbox::sync_sent`]), so the inbox knows when a sync is answered.

use shared::ConversationId;
use shared::ws::ServerEvent;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Messages held back per conversation while a hole is being filled; past this, the held ones
/// are released in order with the hole left open (the server's history still has it).
pub const MAX_HELD: usize = 10_000;

/// Syncs the inbox asks for in a row for one hole before it gives up on it.
const MAX_SYNCS_PER_HOLE: u32 = 3;

/// What to do after an event: show these events (in order), then send a `sync` for `sync`
/// when it is not empty.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    pub show: Vec<ServerEvent>,
    pub sync: BTreeMap<ConversationId, u64>,
}

#[derive(Default)]
pub struct Inbox {
    /// The newest message shown per conversation; all before it were shown too.
    last_seq: BTreeMap<ConversationId, u64>,
    /// Messages past a hole, waiting for it to be filled.
    held: BTreeMap<ConversationId, BTreeMap<u64, ServerEvent>>,
    /// Conversations with a sync under way, and how many were asked for the current hole.
    syncing: BTreeMap<ConversationId, u32>,
    /// Syncs sent, by their command reference.
    sent: HashMap<u64, BTreeSet<ConversationId>>,
    /// Syncs asked for but not yet reported sent.
    unsent: BTreeSet<ConversationId>,
}

impl Inbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest message shown in `conversation` (0: none).
    pub fn last_seq(&self, conversation: &ConversationId) -> u64 {
        self.last_seq.get(conversation).copied().unwrap_or(0)
    }

    /// Messages held back behind a hole, over all conversations.
    pub fn held(&self) -> usize {
        self.held.values().map(BTreeMap::len).sum()
    }

    /// After `hello`: on the first connection, start where each conversation stands; on a
    /// reconnect, return what to `sync` (conversations past what was shown, and those with
    /// messages held back, whose syncs died with the old connection).
    pub fn on_hello(&mut self, event: &ServerEvent, first: bool) -> BTreeMap<ConversationId, u64> {
        self.sent.clear();
        self.syncing.clear();
        self.unsent.clear();
        let ServerEvent::Hello { conversations, .. } = event else {
            return BTreeMap::new();
        };
        if first && self.last_seq.is_empty() {
            for conversation in conversations {
                self.last_seq
                    .insert(conversation.id.clone(), conversation.last_seq);
            }
            return BTreeMap::new();
        }
        let mut since = BTreeMap::new();
        for conversation in conversations {
            if conversation.last_seq > self.last_seq(&conversation.id) {
                since.insert(conversation.id.clone(), self.last_seq(&conversation.id));
            }
        }
        for conversation in self.held.keys() {
            since.insert(conversation.clone(), self.last_seq(conversation));
        }
        for conversation in since.keys() {
            self.syncing.insert(conversation.clone(), 1);
            self.unsent.insert(conversation.clone());
        }
        since
    }

    /// The `sync` asked for last went out with command reference `reference`.
    pub fn sync_sent(&mut self, reference: u64) {
        let conversations = std::mem::take(&mut self.unsent);
        if !conversations.is_empty() {
            self.sent.insert(reference, conversations);
        }
    }

    /// Takes in one event from the server.
    pub fn on_event(&mut self, event: ServerEvent) -> Step {
        let mut step = Step::default();
        match event {
            ServerEvent::Message { ref message, .. } => {
                let conversation = message.conversation.clone();
                let seq = message.seq;
                let last = self.last_seq(&conversation);
                if seq == 0 {
                    // Provisional (accepted while the database was away): shown now; the
                    // stored one, with the same id, follows in sequence.
                    step.show.push(event);
                } else if seq <= last {
                    // Had it already (a replay of a live one, or the other way round).
                } else if seq == last + 1 {
                    self.last_seq.insert(conversation.clone(), seq);
                    step.show.push(event);
                    self.release(&conversation, &mut step);
                } else {
                    let held = self.held.entry(conversation.clone()).or_default();
                    held.insert(seq, event);
                    if held.len() > MAX_HELD {
                        self.give_up(&conversation, &mut step);
                    } else {
                        self.ask(&conversation, &mut step);
                    }
                }
            }
            ServerEvent::ConversationHeads { ref conversations } => {
                for conversation in conversations {
                    if conversation.last_seq > self.last_seq(&conversation.id) {
                        self.ask(&conversation.id, &mut step);
                    }
                }
            }
            ServerEvent::Conversation { ref conversation } => {
                self.last_seq
                    .entry(conversation.id.clone())
                    .or_insert(conversation.last_seq);
                step.show.push(event);
            }
            ServerEvent::Ack {
                reference: Some(reference),
                ..
            }
            | ServerEvent::Error {
                reference: Some(reference),
                ..
            } if self.sent.contains_key(&reference) => {
                let answered = self.sent.remove(&reference).unwrap_or_default();
                let failed = matches!(event, ServerEvent::Error { .. });
                for conversation in answered {
                    self.answered(&conversation, failed, &mut step);
                }
                if failed {
                    step.show.push(event);
                }
            }
            other => step.show.push(other),
        }
        step
    }

    /// Shows the held messages of `conversation` that follow on from what was shown.
    fn release(&mut self, conversation: &ConversationId, step: &mut Step) {
        let mut last = self.last_seq(conversation);
        let Some(held) = self.held.get_mut(conversation) else {
            return;
        };
        while let Some(entry) = held.first_entry() {
            let seq = *entry.key();
            if seq <= last {
                entry.remove();
            } else if seq == last + 1 {
                step.show.push(entry.remove());
                last = seq;
            } else {
                break;
            }
        }
        let empty = held.is_empty();
        self.last_seq.insert(conversation.clone(), last);
        if empty {
            self.held.remove(conversation);
            self.syncing.remove(conversation);
        }
    }

    /// Asks for what follows the last shown message of `conversation`, unless a sync for it
    /// is under way (its answer covers everything stored when it was read).
    fn ask(&mut self, conversation: &ConversationId, step: &mut Step) {
        if self.syncing.contains_key(conversation) {
            return;
        }
        self.syncing.insert(conversation.clone(), 1);
        self.unsent.insert(conversation.clone());
        step.sync
            .insert(conversation.clone(), self.last_seq(conversation));
    }

    /// A sync of `conversation` ended. A hole still open (messages held) is asked for again a
    /// few times — a message stored after the sync read the history was still on its way —
    /// then given up on.
    fn answered(&mut self, conversation: &ConversationId, failed: bool, step: &mut Step) {
        let Some(asked) = self.syncing.get(conversation).copied() else {
            return;
        };
        if !self.held.contains_key(conversation) {
            self.syncing.remove(conversation);
            return;
        }
        if asked >= MAX_SYNCS_PER_HOLE && !failed {
            self.give_up(conversation, step);
            return;
        }
        self.syncing.insert(conversation.clone(), asked + 1);
        self.unsent.insert(conversation.clone());
        step.sync
            .insert(conversation.clone(), self.last_seq(conversation));
    }

    /// Shows every held message of `conversation` in order, leaving the hole before them.
    fn give_up(&mut self, conversation: &ConversationId, step: &mut Step) {
        self.syncing.remove(conversation);
        if let Some(held) = self.held.remove(conversation) {
            for (seq, event) in held {
                self.last_seq.insert(conversation.clone(), seq);
                step.show.push(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::{ChatMessage, ConversationKind, ConversationSummary};

    fn conversation() -> ConversationId {
        ConversationId::from("d:alice:bob")
    }

    fn message(seq: u64, replay: bool) -> ServerEvent {
        ServerEvent::Message {
            message: ChatMessage {
                conversation: conversation(),
                seq,
                id: format!("m{seq}"),
                sender: "alice".into(),
                body: format!("message {seq}"),
                sent_ms: 0,
                client_id: None,
            },
            alert: false,
            replay,
        }
    }

    fn summary(last_seq: u64) -> ConversationSummary {
        ConversationSummary {
            id: conversation(),
            kind: ConversationKind::Direct,
            name: String::new(),
            members: vec!["alice".into(), "bob".into()],
            last_seq,
            last_read_seq: 0,
            unread: 0,
            last_message: None,
        }
    }

    fn hello(last_seq: u64) -> ServerEvent {
        ServerEvent::Hello {
            user: "bob".into(),
            device: "d1".into(),
            server: "s1".into(),
            conversations: vec![summary(last_seq)],
            presence: vec![],
            servers: vec![],
        }
    }

    fn seqs(step: &Step) -> Vec<u64> {
        step.show
            .iter()
            .filter_map(|event| match event {
                ServerEvent::Message { message, .. } => Some(message.seq),
                _ => None,
            })
            .collect()
    }

    fn ack(reference: u64) -> ServerEvent {
        ServerEvent::Ack {
            reference: Some(reference),
            message: None,
            call: None,
        }
    }

    #[test]
    fn in_order_messages_pass_and_repeats_are_dropped() {
        let mut inbox = Inbox::new();
        assert!(inbox.on_hello(&hello(2), true).is_empty());
        assert_eq!(seqs(&inbox.on_event(message(3, false))), vec![3]);
        assert_eq!(seqs(&inbox.on_event(message(3, true))), Vec::<u64>::new());
        assert_eq!(seqs(&inbox.on_event(message(2, false))), Vec::<u64>::new());
        assert_eq!(inbox.last_seq(&conversation()), 3);
    }

    #[test]
    fn a_hole_is_synced_and_the_held_message_follows_in_order() {
        let mut inbox = Inbox::new();
        inbox.on_hello(&hello(2), true);
        let step = inbox.on_event(message(5, false));
        assert!(step.show.is_empty(), "held back behind the hole");
        assert_eq!(step.sync, BTreeMap::from([(conversation(), 2)]));
        inbox.sync_sent(7);
        // A second message past the hole does not ask again.
        assert!(inbox.on_event(message(6, false)).sync.is_empty());
        assert_eq!(seqs(&inbox.on_event(message(3, true))), vec![3]);
        assert_eq!(seqs(&inbox.on_event(message(4, true))), vec![4, 5, 6]);
        assert_eq!(seqs(&inbox.on_event(message(5, true))), Vec::<u64>::new());
        let done = inbox.on_event(ack(7));
        assert!(done.show.is_empty() && done.sync.is_empty());
        assert_eq!(inbox.held(), 0);
        assert_eq!(seqs(&inbox.on_event(message(7, false))), vec![7]);
    }

    #[test]
    fn heads_past_what_was_shown_ask_for_the_rest() {
        let mut inbox = Inbox::new();
        inbox.on_hello(&hello(2), true);
        let heads = ServerEvent::ConversationHeads {
            conversations: vec![summary(4)],
        };
        let step = inbox.on_event(heads.clone());
        assert_eq!(step.sync, BTreeMap::from([(conversation(), 2)]));
        inbox.sync_sent(1);
        assert_eq!(seqs(&inbox.on_event(message(3, true))), vec![3]);
        assert_eq!(seqs(&inbox.on_event(message(4, true))), vec![4]);
        inbox.on_event(ack(1));
        // Heads no further than what was shown ask for nothing.
        assert!(inbox.on_event(heads).sync.is_empty());
    }

    #[test]
    fn provisional_messages_show_at_once_and_their_stored_ones_follow_in_order() {
        let mut inbox = Inbox::new();
        inbox.on_hello(&hello(2), true);
        assert_eq!(seqs(&inbox.on_event(message(0, false))), vec![0]);
        assert_eq!(seqs(&inbox.on_event(message(0, false))), vec![0]);
        assert_eq!(inbox.last_seq(&conversation()), 2);
        assert_eq!(seqs(&inbox.on_event(message(3, false))), vec![3]);
    }

    #[test]
    fn a_hole_that_stays_open_is_asked_for_again_then_given_up() {
        let mut inbox = Inbox::new();
        inbox.on_hello(&hello(2), true);
        assert!(!inbox.on_event(message(5, false)).sync.is_empty());
        for reference in 1..MAX_SYNCS_PER_HOLE as u64 {
            inbox.sync_sent(reference);
            let again = inbox.on_event(ack(reference));
            assert_eq!(again.sync, BTreeMap::from([(conversation(), 2)]));
        }
        inbox.sync_sent(99);
        let given_up = inbox.on_event(ack(99));
        assert_eq!(seqs(&given_up), vec![5]);
        assert_eq!(seqs(&inbox.on_event(message(6, false))), vec![6]);
    }

    #[test]
    fn a_reconnect_asks_for_what_moved_and_for_held_holes() {
        let mut inbox = Inbox::new();
        inbox.on_hello(&hello(2), true);
        inbox.on_event(message(4, false));
        inbox.sync_sent(1);
        // The connection dropped before the sync was answered.
        let since = inbox.on_hello(&hello(9), false);
        assert_eq!(since, BTreeMap::from([(conversation(), 2)]));
        inbox.sync_sent(1);
        let replayed: Vec<u64> = (3..=9)
            .flat_map(|seq| seqs(&inbox.on_event(message(seq, true))))
            .collect();
        assert_eq!(replayed, vec![3, 4, 5, 6, 7, 8, 9]);
    }
}
