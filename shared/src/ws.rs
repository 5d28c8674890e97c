//! The client WebSocket (`GET /api/v1/ws`): commands a device sends and events it receives.
//! One JSON object per text frame. A command may carry `ref`, echoed in its `ack` or `error`.

use crate::api::{ChatMessage, ConversationSummary, ErrorCode, ServerLink};
use crate::call::{CallCommand, CallEvent};
use crate::presence::{Availability, PresenceView};
use crate::{CallId, ConversationId, DeviceId, ServerId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A command from a device, with its optional correlation id.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientEnvelope {
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<u64>,
    #[serde(flatten)]
    pub command: ClientCommand,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ClientCommand {
    /// Keep-alive; answered with `pong`.
    Ping,
    /// Set one's own presence (or another user's, with `user`, for admins and delegates).
    PresenceSet {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        availability: Option<Availability>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<UserId>,
    },
    /// Quiet mode and idle state of this device. `active: false` = in the background.
    DeviceState {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        active: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle: Option<bool>,
    },
    /// Send a chat message to a user (1:1) or a conversation.
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<ConversationId>,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Move one's read marker forward.
    Read {
        conversation: ConversationId,
        seq: u64,
    },
    /// Typing notification (not stored).
    Typing {
        conversation: ConversationId,
        typing: bool,
    },
    /// Ask for every message after the given sequence numbers.
    Sync {
        since: BTreeMap<ConversationId, u64>,
    },
    /// Calls and forwarding (`call_*`, `forward_*`): see `shared::call`.
    #[serde(untagged)]
    Call(CallCommand),
}

/// An event pushed to a device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ServerEvent {
    /// First frame after connecting.
    Hello {
        user: UserId,
        device: DeviceId,
        server: ServerId,
        conversations: Vec<ConversationSummary>,
        /// Presence of everyone the user watches, as the user may see it.
        presence: Vec<PresenceView>,
        /// Every live UCServer: where to knock when this one cannot be reached.
        #[serde(default)]
        servers: Vec<ServerLink>,
    },
    /// A command succeeded.
    Ack {
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<ChatMessage>,
        /// `call_place`: the new call's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
    },
    /// A command failed; the connection stays open.
    Error {
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
        error: ErrorCode,
        message: String,
        /// With `rate_limited` and `too_many_attempts`: how long to wait.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    Pong,
    Presence {
        presence: PresenceView,
    },
    /// A chat message. `alert` asks the device to notify its user (only the active device, or
    /// all when none is active). `replay` marks a message sent again after a reconnect.
    Message {
        message: ChatMessage,
        alert: bool,
        #[serde(default)]
        replay: bool,
    },
    /// Someone (possibly the user on another device) read up to `seq`.
    Read {
        conversation: ConversationId,
        user: UserId,
        seq: u64,
    },
    Typing {
        conversation: ConversationId,
        user: UserId,
        typing: bool,
    },
    /// A conversation was created or its members changed.
    Conversation {
        conversation: ConversationSummary,
    },
    /// Where each of the user's conversations stands now. Sent when the server may have
    /// missed deliveries (the bus between servers was away): the device asks (`sync`) for
    /// every conversation whose `last_seq` is past what it holds.
    ConversationHeads {
        conversations: Vec<ConversationSummary>,
    },
    /// The server is going away; reconnect (maybe elsewhere) after a pause.
    Goodbye {
        reason: String,
    },
    /// Another server serves this user from now on (fallback, drain, a move): connect there
    /// at once with the same token; the server closes this socket next.
    Reconnect {
        server: ServerId,
        url: String,
        reason: String,
    },
    /// Calls and forwarding (`call_*`, `forwarding_changed`): see `shared::call`.
    #[serde(untagged)]
    Call(CallEvent),
}
