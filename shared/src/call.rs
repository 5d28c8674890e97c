//! Call signalling as it travels: the commands a device sends about calls, the events it
//! receives, the bus messages between UCServers, and the forwarding rules.
//!
//! A call is owned by the UCServer that placed it (the caller's home server): it runs the
//! call's state machine (`ucserver::core::call`) and talks to the call's MediaServer. Devices
//! on other servers reach it over the bus ([`CallBusBody::CallRelay`]), and it reaches them
//! the same way ([`CallBusBody::CallDeliver`]). Media never passes through a UCServer: each
//! device sends an SDP offer for its own leg on the MediaServer and gets the MediaServer's
//! answer back ([`CallEvent::CallMediaAnswer`]). See `mediaserver/README.md` for the m-lines a
//! device must offer (N-2 extra `recvonly` audio m-lines for a conference of N).
//!
//! [`CallCommand`] and [`CallEvent`] are spliced into `ws::ClientCommand` and
//! `ws::ServerEvent` as untagged variants (same `type` tag, names prefixed with `call_`/
//! `forward_` so they do not collide); [`CallBusBody`] into `bus::BusBody` (tag `kind`).
//!
//! A call id is `<owner server>~<random>`: `~` never occurs in a server id, so every server
//! knows where to relay a command for a call without asking anyone ([`call_owner`]).

use crate::api::{ApiError, CallResult, ErrorCode};
use crate::presence::TelephonyState;
use crate::{CallId, DeviceId, MediaServerId, ServerId, UserId};
use serde::{Deserialize, Serialize};

/// When a forwarding rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum ForwardMode {
    /// Every call goes to the target; the user's devices never ring.
    Always,
    /// Calls that arrive while the user is in a call go to the target.
    Busy,
    /// Calls not answered within the ring timeout (or arriving while no device of the user is
    /// online) go to the target.
    NoAnswer,
}

impl ForwardMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
        }
    }
}

impl std::str::FromStr for ForwardMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "always" => Ok(Self::Always),
            "busy" => Ok(Self::Busy),
            "noanswer" | "no_answer" | "no-answer" => Ok(Self::NoAnswer),
            other => Err(format!(
                "unknown forwarding mode '{other}': use always, busy or noanswer"
            )),
        }
    }
}

/// A user's forwarding rules: at most one target per mode, so two rules can never disagree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ForwardingRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_answer: Option<UserId>,
}

impl ForwardingRules {
    /// The target of one mode.
    pub fn get(&self, mode: ForwardMode) -> Option<&UserId> {
        match mode {
            ForwardMode::Always => self.always.as_ref(),
            ForwardMode::Busy => self.busy.as_ref(),
            ForwardMode::NoAnswer => self.no_answer.as_ref(),
        }
    }

    /// Sets (`Some`) or clears (`None`) the target of one mode.
    pub fn set(&mut self, mode: ForwardMode, target: Option<UserId>) {
        match mode {
            ForwardMode::Always => self.always = target,
            ForwardMode::Busy => self.busy = target,
            ForwardMode::NoAnswer => self.no_answer = target,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.always.is_none() && self.busy.is_none() && self.no_answer.is_none()
    }
}

/// A command from a device about calls. Carried in the WebSocket envelope (with its `ref`),
/// and over the bus inside [`CallBusBody::CallRelay`] when the call lives on another server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CallCommand {
    /// Call a user. `sdp` is this device's offer for its leg on the MediaServer. Answered with
    /// `call_placed` (the call id), then `call_media_answer`.
    CallPlace {
        to: UserId,
        sdp: String,
        #[serde(default)]
        video: bool,
    },
    /// Take a call that rings at this device (an incoming call or a conference invitation).
    /// `sdp` is this device's offer for its MediaServer leg.
    CallAnswer { call: CallId, sdp: String },
    /// Decline a call that rings at this device: all of the user's devices stop ringing.
    CallReject { call: CallId },
    /// Leave a call (or cancel one this device placed and that still rings).
    CallHangup { call: CallId },
    /// Take a call that rings at a colleague's devices. Needs the right to pick up `user`'s
    /// calls; `call` chooses among several calls ringing there (the oldest when absent).
    CallPickup {
        user: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
        sdp: String,
    },
    /// Ring `user` into a call this device is connected to (a conference).
    CallInvite { call: CallId, user: UserId },
    /// Set one forwarding rule of one's own (or, with `user`, of someone one is a delegate of).
    ForwardSet {
        mode: ForwardMode,
        to: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<UserId>,
    },
    /// Clear one forwarding rule, or all of them when `mode` is absent.
    ForwardClear {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<ForwardMode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<UserId>,
    },
}

/// Why a device stopped ringing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum StopReason {
    /// Another device of the same user answered.
    AnsweredElsewhere,
    /// A device of the same user rejected the call.
    Rejected,
    /// A colleague picked the call up (`by` in the event says who).
    PickedUp,
    /// The caller (or inviter) hung up before anyone answered.
    Cancelled,
    /// Nobody answered within the ring timeout.
    NoAnswer,
    /// The call was forwarded elsewhere on no answer.
    Forwarded,
    /// The call failed (its media could not be set up).
    Failed,
}

/// Why a call (or one invitation into it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum EndReason {
    /// A party hung up after the call was answered.
    HungUp,
    /// The caller hung up before anyone answered.
    Cancelled,
    /// The callee rejected the call.
    Rejected,
    /// The callee was in another call and has no busy forwarding.
    Busy,
    /// Nobody answered within the ring timeout.
    NoAnswer,
    /// No device of the callee was online.
    Offline,
    /// The callee does not exist.
    UnknownUser,
    /// The MediaServer failed, or a leg's ICE/DTLS or SDP failed.
    MediaFailed,
    /// The server could not finish setting the call up (a forwarding target could not be
    /// looked up in time).
    SetupFailed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HungUp => "hung_up",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Offline => "offline",
            Self::UnknownUser => "unknown_user",
            Self::MediaFailed => "media_failed",
            Self::SetupFailed => "setup_failed",
        }
    }
}

/// Why a call command of a device was refused; the device gets an `error` frame with
/// [`Refusal::error_code`] and [`Refusal::message`], and the call goes on unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Answer, reject or pickup of a call that does not ring there (any more).
    NotRinging,
    /// Another device or person answered first.
    AlreadyAnswered,
    /// The device is not a party of this call (hangup or invite from elsewhere).
    NotAParty,
    /// A pickup of a call that rings at oneself, or that one placed: use answer or hangup.
    OwnCall,
    /// The invited user is in this call or rings for it already.
    AlreadyInCall,
    /// The conference has as many parties (connected and invited) as allowed.
    CallFull,
    /// The call is over.
    CallEnded,
}

impl Refusal {
    pub fn error_code(self) -> ErrorCode {
        match self {
            Self::NotRinging | Self::CallEnded => ErrorCode::NotFound,
            Self::AlreadyAnswered | Self::AlreadyInCall | Self::CallFull => ErrorCode::Conflict,
            Self::NotAParty | Self::OwnCall => ErrorCode::Forbidden,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::NotRinging => "this call does not ring here",
            Self::AlreadyAnswered => "the call was answered elsewhere",
            Self::NotAParty => "this device is not part of the call",
            Self::OwnCall => "this is your own call: answer or hang up instead",
            Self::AlreadyInCall => "that user is in the call already",
            Self::CallFull => "the conference is full",
            Self::CallEnded => "the call is over",
        }
    }
}

/// An event about calls pushed to a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CallEvent {
    /// The call this device asked for exists; it runs on `media`.
    CallPlaced {
        call: CallId,
        to: UserId,
        media: MediaServerId,
    },
    /// A call rings at this device. `from` is the caller (or the inviter of a conference);
    /// `forwarded_from` the user it was forwarded from; `parties` who is in it already.
    CallIncoming {
        call: CallId,
        from: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forwarded_from: Option<UserId>,
        #[serde(default)]
        conference: bool,
        #[serde(default)]
        parties: Vec<UserId>,
        #[serde(default)]
        video: bool,
    },
    /// To the caller or inviter: `user`'s devices are ringing.
    CallRinging { call: CallId, user: UserId },
    /// This device stops ringing; `by` names who answered, rejected or picked up if known.
    CallRingingStopped {
        call: CallId,
        reason: StopReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
    },
    /// To the caller: the call was forwarded from one user to another.
    CallRedirected {
        call: CallId,
        from: UserId,
        to: UserId,
        mode: ForwardMode,
    },
    /// The MediaServer's SDP answer for this device's leg.
    CallMediaAnswer {
        call: CallId,
        media: MediaServerId,
        sdp: String,
    },
    /// Who is connected now (sent whenever a party joins).
    CallConnected { call: CallId, parties: Vec<UserId> },
    /// A party left a call that goes on.
    CallPartyLeft {
        call: CallId,
        user: UserId,
        parties: Vec<UserId>,
    },
    /// To the inviter: the invited user did not join.
    CallInviteFailed {
        call: CallId,
        user: UserId,
        reason: EndReason,
    },
    /// The call is over for this device; `result` is what the journal says for its user.
    CallEnded {
        call: CallId,
        reason: EndReason,
        result: CallResult,
    },
    /// A user's forwarding rules changed (to the user's devices and their delegates').
    ForwardingChanged {
        user: UserId,
        rules: ForwardingRules,
    },
}

/// Where the outcome of a relayed command is sent: `token` on `server`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    pub server: ServerId,
    pub token: u64,
}

impl CallEvent {
    /// The `type` of this event as the wire spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::CallPlaced { .. } => "call_placed",
            Self::CallIncoming { .. } => "call_incoming",
            Self::CallRinging { .. } => "call_ringing",
            Self::CallRingingStopped { .. } => "call_ringing_stopped",
            Self::CallRedirected { .. } => "call_redirected",
            Self::CallMediaAnswer { .. } => "call_media_answer",
            Self::CallConnected { .. } => "call_connected",
            Self::CallPartyLeft { .. } => "call_party_left",
            Self::CallInviteFailed { .. } => "call_invite_failed",
            Self::CallEnded { .. } => "call_ended",
            Self::ForwardingChanged { .. } => "forwarding_changed",
        }
    }

    /// The call this event is about (`None` for forwarding changes).
    pub fn call(&self) -> Option<&CallId> {
        match self {
            Self::CallPlaced { call, .. }
            | Self::CallIncoming { call, .. }
            | Self::CallRinging { call, .. }
            | Self::CallRingingStopped { call, .. }
            | Self::CallRedirected { call, .. }
            | Self::CallMediaAnswer { call, .. }
            | Self::CallConnected { call, .. }
            | Self::CallPartyLeft { call, .. }
            | Self::CallInviteFailed { call, .. }
            | Self::CallEnded { call, .. } => Some(call),
            Self::ForwardingChanged { .. } => None,
        }
    }
}

/// Extra `recvonly` audio m-lines a softphone offers besides its `sendrecv` one, so that it
/// hears a conference of up to `2 + EXTRA_RECV_AUDIO` parties without renegotiation (the
/// MediaServer gives each other sender one receive m-line, in join order).
pub const EXTRA_RECV_AUDIO: usize = 3;

/// Call messages between UCServers (spliced into `bus::BusBody`, tag `kind`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallBusBody {
    /// From the server that owns a call to the home server of `user`: push `event` to these
    /// devices of `user` (all of the user's devices when `devices` is empty).
    CallDeliver {
        user: UserId,
        #[serde(default)]
        devices: Vec<DeviceId>,
        event: CallEvent,
    },
    /// From a device's home server to the server that owns `call`: the device sent `command`
    /// (answer, reject, hangup, invite, or an authorised pickup).
    CallRelay {
        call: CallId,
        user: UserId,
        device: DeviceId,
        command: CallCommand,
        /// Where the outcome of the command goes ([`CallBusBody::CallReply`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply: Option<ReplyTo>,
    },
    /// The outcome of a relayed command: `error` is `None` when the call took it.
    CallReply {
        token: u64,
        /// The call the command concerned (a pickup names the call it took).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ApiError>,
    },
    /// From a device's home server to the server that owns `call`: the device went offline.
    CallDeviceGone {
        call: CallId,
        user: UserId,
        device: DeviceId,
    },
    /// From a picker's home server (which checked the right) to the home server of `user`,
    /// which knows the calls ringing there: relay the pickup to the owner of the right call.
    CallPickupRoute {
        user: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<CallId>,
        by: UserId,
        device: DeviceId,
        sdp: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply: Option<ReplyTo>,
    },
    /// From the server that owns `call` to the home server of `user`, the only writer of the
    /// user's presence: the user's telephony state in this call changed.
    CallTelephony {
        call: CallId,
        user: UserId,
        state: TelephonyState,
        /// Who placed the call: the home journals it should the owner die.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller: Option<UserId>,
    },
    /// From the home server of `user` to the server that owns `call`, while the user has had
    /// a part in it for a while: is the call still on? The owner answers only when it is not,
    /// with `CallTelephony` `idle`: the end it announced may have been lost with the bus, or
    /// with the owner's previous incarnation.
    CallCheck { call: CallId, user: UserId },
    /// A user's forwarding rules changed in SQL: drop cached copies, tell their devices.
    ForwardingChanged {
        user: UserId,
        rules: ForwardingRules,
    },
}

/// Longest call id accepted from a client.
pub const MAX_CALL_ID_BYTES: usize = 128;

/// A new call id owned by `server`.
pub fn new_call_id(server: &ServerId, random: &str) -> CallId {
    CallId::new(format!("{server}~{random}"))
}

/// The server that owns `call`, when the id is well-formed.
pub fn call_owner(call: &CallId) -> Option<ServerId> {
    let text = call.as_str();
    if text.len() > MAX_CALL_ID_BYTES {
        return None;
    }
    let (server, random) = text.split_once('~')?;
    let random_ok = !random.is_empty() && random.bytes().all(|b| b.is_ascii_alphanumeric());
    (random_ok && crate::validate_name(server).is_ok()).then(|| ServerId::from(server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_use_the_socket_tagging() {
        let place = CallCommand::CallPlace {
            to: UserId::from("bob"),
            sdp: "v=0".into(),
            video: false,
        };
        let text = serde_json::to_string(&place).unwrap();
        assert_eq!(
            text,
            r#"{"type":"call_place","to":"bob","sdp":"v=0","video":false}"#
        );
        let back: CallCommand =
            serde_json::from_str(r#"{"type":"call_place","to":"bob","sdp":"v=0"}"#).unwrap();
        assert_eq!(back, place);
        let forward: CallCommand =
            serde_json::from_str(r#"{"type":"forward_set","mode":"no_answer","to":"carol"}"#)
                .unwrap();
        assert_eq!(
            forward,
            CallCommand::ForwardSet {
                mode: ForwardMode::NoAnswer,
                to: UserId::from("carol"),
                user: None
            }
        );
    }

    #[test]
    fn events_and_bus_bodies_round_trip() {
        let ended = CallEvent::CallEnded {
            call: CallId::from("c1"),
            reason: EndReason::MediaFailed,
            result: CallResult::Failed,
        };
        let text = serde_json::to_string(&ended).unwrap();
        assert_eq!(
            text,
            r#"{"type":"call_ended","call":"c1","reason":"media_failed","result":"failed"}"#
        );
        let relay = CallBusBody::CallRelay {
            call: CallId::from("c1"),
            user: UserId::from("bob"),
            device: DeviceId::from("phone"),
            command: CallCommand::CallReject {
                call: CallId::from("c1"),
            },
            reply: None,
        };
        let text = serde_json::to_string(&relay).unwrap();
        assert!(text.starts_with(r#"{"kind":"call_relay""#), "{text}");
        let back: CallBusBody = serde_json::from_str(&text).unwrap();
        assert_eq!(back, relay);
    }

    #[test]
    fn call_ids_name_their_owner() {
        let id = new_call_id(&ServerId::from("uc-2"), "a1b2");
        assert_eq!(id.as_str(), "uc-2~a1b2");
        assert_eq!(call_owner(&id), Some(ServerId::from("uc-2")));
        assert_eq!(call_owner(&CallId::from("nope")), None);
        assert_eq!(call_owner(&CallId::from("UC~1")), None);
        assert_eq!(call_owner(&CallId::from("uc1~")), None);
        assert_eq!(call_owner(&CallId::from("uc1~a/b")), None);
    }

    #[test]
    fn calls_splice_into_the_socket_and_the_bus() {
        use crate::bus::{BusBody, BusMessage};
        use crate::ws::{ClientCommand, ClientEnvelope, ServerEvent};
        let envelope: ClientEnvelope =
            serde_json::from_str(r#"{"ref":7,"type":"call_hangup","call":"uc1~ab"}"#).unwrap();
        assert_eq!(envelope.reference, Some(7));
        assert!(matches!(
            envelope.command,
            ClientCommand::Call(CallCommand::CallHangup { .. })
        ));
        let ping: ClientEnvelope = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert!(matches!(ping.command, ClientCommand::Ping));
        assert!(serde_json::from_str::<ClientEnvelope>(r#"{"type":"call_fly"}"#).is_err());

        let event = ServerEvent::Call(CallEvent::CallRinging {
            call: CallId::from("uc1~ab"),
            user: UserId::from("bob"),
        });
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(
            text,
            r#"{"type":"call_ringing","call":"uc1~ab","user":"bob"}"#
        );
        assert_eq!(serde_json::from_str::<ServerEvent>(&text).unwrap(), event);
        let pong: ServerEvent = serde_json::from_str(r#"{"type":"pong"}"#).unwrap();
        assert_eq!(pong, ServerEvent::Pong);

        let message = BusMessage::new(
            ServerId::from("uc1"),
            BusBody::Call(CallBusBody::CallReply {
                token: 3,
                call: None,
                error: None,
            }),
        );
        let text = serde_json::to_string(&message).unwrap();
        assert!(text.contains(r#""kind":"call_reply""#), "{text}");
        assert_eq!(serde_json::from_str::<BusMessage>(&text).unwrap(), message);
        let down: BusMessage =
            serde_json::from_str(r#"{"v":1,"from":"uc1","body":{"kind":"licenses_changed"}}"#)
                .unwrap();
        assert_eq!(down.body, BusBody::LicensesChanged);
    }

    #[test]
    fn forwarding_rules_hold_one_target_per_mode() {
        let mut rules = ForwardingRules::default();
        assert!(rules.is_empty());
        rules.set(ForwardMode::Busy, Some(UserId::from("carol")));
        rules.set(ForwardMode::Busy, Some(UserId::from("dave")));
        assert_eq!(rules.get(ForwardMode::Busy), Some(&UserId::from("dave")));
        assert_eq!(serde_json::to_string(&rules).unwrap(), r#"{"busy":"dave"}"#);
        assert_eq!("noanswer".parse::<ForwardMode>(), Ok(ForwardMode::NoAnswer));
        assert!("sometimes".parse::<ForwardMode>().is_err());
    }
}
