//! REST bodies of the client API (`/api/v1`) and the admin API (`/api/v1/admin`).
//! The routes themselves are in the served OpenAPI document (`GET /api/v1/openapi.json`).

use crate::presence::{Availability, Capability, PresenceView};
use crate::{ConversationId, DeviceId, GroupId, MediaServerId, ServerId, TimestampMs, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every error answer of every Switchboard HTTP surface and WebSocket: a stable code for
/// programs and a sentence for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum ErrorCode {
    /// The request is not well formed (bad JSON, a missing or invalid field).
    BadRequest,
    /// Wrong user name or password.
    InvalidCredentials,
    /// Missing, expired or revoked session token.
    Unauthorized,
    /// Too many failed logins, or too many password checks under way at once; wait
    /// `retry_after_ms` and try again.
    TooManyAttempts,
    /// This device sends too fast (chat messages, typing notices, new conversations); wait
    /// `retry_after_ms` and try again.
    RateLimited,
    /// The caller may not do this (not an admin, not a delegate of that user, ...).
    Forbidden,
    /// The thing asked for does not exist.
    NotFound,
    /// Posting to or reading a conversation one is not a member of.
    NotAMember,
    /// The user lives on another server; `home_url` says where to log in.
    WrongServer,
    /// No free license of the needed kind.
    LicenseExhausted,
    /// The thing exists already, or was changed by someone else meanwhile.
    Conflict,
    /// A body, frame or field is larger than allowed.
    PayloadTooLarge,
    /// A WebSocket frame that is not JSON or not a known command.
    MalformedFrame,
    /// A WebSocket frame whose `type` is not known.
    UnknownType,
    /// A server or service the request needs cannot be reached now.
    ServerUnavailable,
    /// The server has more work queued than it takes on (its database is slow); nothing of
    /// the request was kept: wait `retry_after_ms` and send it again.
    ServerBusy,
    /// Something broke inside the server; the log says what.
    Internal,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::MalformedFrame | Self::UnknownType => 400,
            Self::InvalidCredentials | Self::Unauthorized => 401,
            Self::Forbidden | Self::NotAMember => 403,
            Self::NotFound => 404,
            Self::WrongServer | Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::TooManyAttempts | Self::RateLimited => 429,
            Self::LicenseExhausted | Self::ServerUnavailable | Self::ServerBusy => 503,
            Self::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Unauthorized => "unauthorized",
            Self::TooManyAttempts => "too_many_attempts",
            Self::RateLimited => "rate_limited",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::NotAMember => "not_a_member",
            Self::WrongServer => "wrong_server",
            Self::LicenseExhausted => "license_exhausted",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::MalformedFrame => "malformed_frame",
            Self::UnknownType => "unknown_type",
            Self::ServerUnavailable => "server_unavailable",
            Self::ServerBusy => "server_busy",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error}: {message}")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ApiError {
    pub error: ErrorCode,
    pub message: String,
    /// With `wrong_server`: the user's home server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_server: Option<ServerId>,
    /// With `wrong_server`: the base URL to log in at instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_url: Option<String>,
    /// With `too_many_attempts` and `rate_limited`: how long to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// With `conflict` for an edit made from an old version (`If-Match`): the version the
    /// thing has now, and who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Box<VersionInfo>>,
}

impl ApiError {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
            home_server: None,
            home_url: None,
            retry_after_ms: None,
            current: None,
        }
    }
}

/// `POST /api/v1/login` and `POST /api/v1/admin/login`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct LoginRequest {
    pub user: UserId,
    pub password: String,
    /// The device this session is for; the server picks one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct LoginResponse {
    /// Bearer token for every further request and for the WebSocket.
    pub token: String,
    pub user: UserId,
    pub device: DeviceId,
    pub display_name: String,
    /// The server that issued the token (the one serving the user, for client logins).
    pub server: ServerId,
    pub admin: bool,
    /// Every live UCServer of the cluster: where to knock when this one cannot be reached
    /// (any of them names the one serving the user).
    #[serde(default)]
    pub servers: Vec<ServerLink>,
}

/// A UCServer and the base URL clients reach it at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ServerLink {
    pub id: ServerId,
    pub url: String,
}

/// A user as the directory and the admin API show them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct UserInfo {
    pub id: UserId,
    pub display_name: String,
    pub home_server: ServerId,
    pub admin: bool,
    /// True when at least one device of the user is connected, on any server.
    pub online: bool,
}

/// What an administrator may do. Stored with the user; checked on every admin request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum AdminRole {
    /// Everything: users, groups, administrators, licenses, servers, MediaServers.
    Full,
    /// Users who are not administrators, and groups; reads everything else.
    Users,
    /// Reads everything, changes nothing (helpdesk).
    ReadOnly,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Users => "users",
            Self::ReadOnly => "read_only",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "full" => Some(Self::Full),
            "users" => Some(Self::Users),
            "read_only" | "read-only" | "readonly" => Some(Self::ReadOnly),
            _ => None,
        }
    }
}

impl std::fmt::Display for AdminRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version of an edited thing: the number an edit must name in `If-Match` (as the ETag
/// `"<version>"`), who made it and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct VersionInfo {
    pub version: u64,
    /// The administrator whose change made this version (`None`: made before versions were
    /// recorded, or by the server itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<UserId>,
    pub changed_ms: TimestampMs,
}

/// A user as the admin API shows them: [`UserInfo`] plus role, state and version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct AdminUser {
    pub id: UserId,
    pub display_name: String,
    pub home_server: ServerId,
    pub admin: bool,
    /// The administrator's role; `None` for users who are not administrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AdminRole>,
    /// A disabled user cannot sign in; their sessions ended when they were disabled.
    #[serde(default)]
    pub disabled: bool,
    /// True when at least one device of the user is connected, on any server.
    pub online: bool,
    pub created_ms: TimestampMs,
    /// The version `PATCH`/`DELETE` name in `If-Match` (also the `ETag` of `GET`).
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<UserId>,
    pub changed_ms: TimestampMs,
}

/// `POST /api/v1/admin/users`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct CreateUser {
    pub id: UserId,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Defaults to the server that receives the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_server: Option<ServerId>,
    /// A full administrator (`PATCH` gives another role afterwards).
    #[serde(default)]
    pub admin: bool,
}

/// `PATCH /api/v1/admin/users/{id}`: every field optional. With `If-Match: "<version>"` the
/// change is made only if the user is still at that version (else `409 conflict`, with the
/// current version and who made it).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct UpdateUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_server: Option<ServerId>,
    /// `false` takes the administrator's role away; `true` gives `role` (default `full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// An administrator's role (implies `admin: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AdminRole>,
    /// `true` ends the user's sessions and refuses their sign-ins until set `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// `POST /api/v1/admin/users/{id}/password`: a new password for the user, given or made up.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ResetPassword {
    /// The new password; when absent the server makes one up and answers it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The answer to [`ResetPassword`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct PasswordReset {
    pub user: AdminUser,
    /// The password made up by the server (shown once); `None` when the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// One entry of the admin audit log (`GET /api/v1/admin/audit`), newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct AuditEntry {
    pub at_ms: TimestampMs,
    /// The administrator who acted.
    pub actor: UserId,
    /// What was done: `user.create`, `user.update`, `group.member.add`, ...
    pub action: String,
    pub detail: String,
    /// The client address the request came from (behind trusted proxies: the browser's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Which audit entries to read (`GET /api/v1/admin/audit`); every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Entries at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<TimestampMs>,
    /// Entries before this time (exclusive: the `until_ms` of one read can be the
    /// `since_ms` of the next without an entry in both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<TimestampMs>,
    /// Entries of this administrator (`directory`: the scheduled directory sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<UserId>,
    /// Entries whose action starts with this: `user.` for every change of a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// The header by which an audit export (`GET /api/v1/admin/audit?format=…`) says that more
/// entries matched than it holds (value `true`): the oldest were left out.
pub const AUDIT_TRUNCATED_HEADER: &str = "x-audit-truncated";

/// `GET /api/v1/admin/overview`: what the console's overview page shows, in one answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct Overview {
    /// The server that answered.
    pub server: ServerId,
    pub at_ms: TimestampMs,
    pub servers: Vec<ServerInfo>,
    pub media: Vec<MediaServerInfo>,
    /// SQL and the bus (Redis or in-process), as the answering server sees them, with the
    /// error text.
    pub checks: Vec<HealthCheck>,
    pub licenses: Vec<LicenseInfo>,
    /// Users in SQL (`None` when SQL could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u64>,
    /// The role of the administrator asking, so a console can hide what it may not do.
    pub role: AdminRole,
}

/// `POST /api/v1/admin/groups`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct CreateGroup {
    pub id: GroupId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct GroupInfo {
    pub id: GroupId,
    pub display_name: String,
    pub members: Vec<UserId>,
}

/// `POST /api/v1/admin/groups/{id}/members`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct AddMember {
    pub user: UserId,
}

/// One UCServer as `server list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ServerInfo {
    pub id: ServerId,
    pub url: String,
    pub alive: bool,
    /// Users with at least one device connected.
    pub sessions: u64,
    /// Connected devices.
    pub devices: u64,
    pub last_seen_ms: TimestampMs,
    /// The server's software version, from its heartbeat ("" when not alive or older).
    #[serde(default)]
    pub version: String,
    /// Calls the server owns now, from its heartbeat.
    #[serde(default)]
    pub calls: u64,
    /// High-availability state, named as Cisco IM and Presence names node states where it
    /// fits: `normal`, `running_in_backup_mode`, `failed_over`, `failed`, `taking_back`,
    /// `draining`, `unknown`.
    #[serde(default)]
    pub state: String,
    /// Why it is in that state (whose users it serves, who serves its users).
    #[serde(default)]
    pub reason: String,
    /// Its redundancy group (`UC_REDUNDANCY_GROUP`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Since when it is in `state` (the cluster store's clock): up without lapsing for a
    /// normal or returning server, its last beat for a failed one, the admin's command for a
    /// draining one, the newest failover or drain for a backup; 0 if unknown.
    #[serde(default)]
    pub since_ms: TimestampMs,
    /// Its load and counters from its last heartbeat (`None` when it is not beating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::console::ServerStats>,
}

/// `POST /api/v1/admin/servers/rebalance`: users whose home changes to spread them over the
/// live servers (each to its rendezvous choice among them, so an added server takes about its
/// share and nobody else moves). Online users follow to their new home without signing in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct Rebalance {
    /// Whether the moves were made (`false`: `dry_run`, a preview).
    pub applied: bool,
    pub moves: Vec<UserMove>,
    /// Users per server after the moves.
    pub homes: BTreeMap<ServerId, u32>,
}

/// One user's change of home server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct UserMove {
    pub user: UserId,
    pub from: ServerId,
    pub to: ServerId,
}

/// What an admin asks of a UCServer's users (`POST /api/v1/admin/servers/{id}/{action}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum ServerAction {
    /// Move every user off it to their backups (maintenance); they stay there until undrain.
    Drain,
    /// Let it serve its users again (they move back at once, without signing in).
    Undrain,
    /// Cisco's "failover": the same as drain.
    Failover,
    /// Bring its users back from their backups now, without waiting for the fallback delay.
    Fallback,
    /// Keep its users on their backups although it is back (no automatic fallback).
    Hold,
    /// Clear every admin setting of it (drain, hold, fallback): the automatic rules apply.
    Recover,
}

impl ServerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::Undrain => "undrain",
            Self::Failover => "failover",
            Self::Fallback => "fallback",
            Self::Hold => "hold",
            Self::Recover => "recover",
        }
    }
}

impl std::str::FromStr for ServerAction {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Self::Drain,
            Self::Undrain,
            Self::Failover,
            Self::Fallback,
            Self::Hold,
            Self::Recover,
        ]
        .into_iter()
        .find(|action| action.as_str() == text)
        .ok_or_else(|| {
            format!("'{text}' is not a server action: drain, undrain, failover, fallback, hold or recover")
        })
    }
}

/// One MediaServer as `server list` and `media list` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct MediaServerInfo {
    pub id: MediaServerId,
    pub control_url: String,
    pub alive: bool,
    pub calls: u32,
    pub legs: u32,
    pub capacity: u32,
    /// legs / capacity, 0.0 to 1.0.
    pub load: f64,
    pub last_seen_ms: TimestampMs,
    /// Taken out of service by an admin: no new call goes there; its calls go on.
    #[serde(default)]
    pub draining: bool,
}

/// `GET /api/v1/admin/servers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ServerList {
    pub servers: Vec<ServerInfo>,
    #[serde(default)]
    pub media: Vec<MediaServerInfo>,
}

/// One license kind of the pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct LicenseInfo {
    pub kind: String,
    /// `None` means not limited (no capacity was set).
    pub capacity: Option<u32>,
    pub in_use: u32,
}

/// `PUT /api/v1/admin/licenses/{kind}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct SetLicense {
    pub capacity: u32,
}

/// `POST /api/v1/admin/media`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct AddMediaServer {
    pub id: MediaServerId,
    pub control_url: String,
}

/// `PUT /api/v1/presence`: set one's own presence, or another user's with the right.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct SetPresence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// `Some("")` clears the note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Set this user's presence instead of one's own (admins and delegates only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
}

/// An entry of the contact list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct Contact {
    pub user: UserId,
    pub display_name: String,
    /// The contact-list group this entry is filed under ("" for none).
    pub group: String,
    pub presence: PresenceView,
}

/// `PUT /api/v1/contacts/{user}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct PutContact {
    #[serde(default)]
    pub group: String,
}

/// `POST /api/v1/messages`: send to a user (1:1) or to a conversation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct SendMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<UserId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationId>,
    pub body: String,
    /// Chosen by the client; a resend with the same id is stored once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// A stored chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ChatMessage {
    pub conversation: ConversationId,
    /// Position in the conversation: 1, 2, 3, ... without gaps.
    pub seq: u64,
    pub id: String,
    pub sender: UserId,
    pub body: String,
    pub sent_ms: TimestampMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum ConversationKind {
    Direct,
    Group,
}

/// A conversation as the caller sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ConversationSummary {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub name: String,
    pub members: Vec<UserId>,
    pub last_seq: u64,
    /// The caller's read marker.
    pub last_read_seq: u64,
    pub unread: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<ChatMessage>,
}

/// `POST /api/v1/conversations`: an ad-hoc group conversation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct CreateConversation {
    pub name: String,
    pub members: Vec<UserId>,
}

/// `POST /api/v1/conversations/{id}/read`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct MarkRead {
    /// Defaults to the conversation's latest message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ReadMarker {
    pub conversation: ConversationId,
    pub user: UserId,
    pub seq: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum JournalKind {
    Chat,
    Call,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// How a call ended, for the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub enum CallResult {
    Answered,
    Missed,
    Rejected,
    Busy,
    Forwarded,
    PickedUp,
    Failed,
}

/// One line of a user's journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct JournalEntry {
    pub id: String,
    pub user: UserId,
    pub kind: JournalKind,
    pub direction: Direction,
    /// The other party (for a group chat: the conversation's name).
    pub party: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationId>,
    pub started_ms: TimestampMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_ms: Option<TimestampMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<TimestampMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CallResult>,
    /// Chat entries: messages in the conversation that this entry covers.
    #[serde(default)]
    pub messages: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct Health {
    pub server: ServerId,
    pub ok: bool,
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Capabilities a device announces when it connects (`?caps=chat,audio` on the WebSocket).
pub fn parse_capabilities(text: &str) -> Result<Vec<Capability>, String> {
    let mut caps = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let cap = match part {
            "chat" => Capability::Chat,
            "audio" => Capability::Audio,
            "video" => Capability::Video,
            "screen_share" | "screen-share" => Capability::ScreenShare,
            "softphone" => Capability::Softphone,
            other => return Err(format!("unknown capability '{other}'")),
        };
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    caps.sort();
    Ok(caps)
}

/// `GET /api/v1/admin/settings`: every runtime setting with its scopes and, for each server,
/// the value it should run with and whether it confirmed that it does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct SettingsView {
    /// Grows by one with every change of any setting; a server that applied this revision
    /// runs with every change made so far.
    pub revision: u64,
    pub settings: Vec<SettingView>,
    /// Every registered server and the revision it last applied.
    pub servers: Vec<ServerSettings>,
}

/// One runtime setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct SettingView {
    pub key: String,
    pub description: String,
    /// Allowed values (integers, inclusive).
    pub min: u64,
    pub max: u64,
    /// True when a change takes effect without a restart.
    pub applies_live: bool,
    /// What must be restarted for a change to count, when it does not apply live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// The value of this server's file and environment configuration (each server has its
    /// own: see `ServerSetting::default`).
    pub default: serde_json::Value,
    /// The cluster-wide value, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<SettingValue>,
    /// Per-server overrides (scope = the server's id).
    #[serde(default)]
    pub overrides: Vec<SettingValue>,
    /// Per server: the value it should run with, where it comes from, what it runs with.
    pub servers: Vec<ServerSetting>,
}

/// A stored value of a setting in one scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct SettingValue {
    /// `global` or a server id.
    pub scope: String,
    pub key: String,
    pub value: serde_json::Value,
    /// Names this value in `If-Match` (1 at creation, one more with every change).
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<UserId>,
    pub changed_ms: TimestampMs,
}

/// A setting on one server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ServerSetting {
    pub server: ServerId,
    /// The value the server should run with: its override, else the global value, else its
    /// own configuration's.
    pub effective: serde_json::Value,
    /// `server`, `global` or `default`.
    pub source: String,
    /// The value the server said it runs with (`None`: it has not reported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<serde_json::Value>,
    /// The server applied the latest revision and runs with `effective`.
    pub applied: bool,
}

/// What one server applied last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct ServerSettings {
    pub server: ServerId,
    /// True when its heartbeat is fresh.
    pub alive: bool,
    /// The revision it applied last (`None`: never reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_ms: Option<TimestampMs>,
    /// Values it refused (kept its previous one), with the reason.
    #[serde(default)]
    pub refused: Vec<SettingRefusal>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct SettingRefusal {
    pub key: String,
    pub reason: String,
}

/// `PUT /api/v1/admin/settings/{key}`. With `If-Match: "<version>"` (`"0"`: only if the
/// scope has no value yet) the change is made only at that version, else `409 conflict` with
/// the current version and who made it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema, schemars::JsonSchema))]
pub struct PutSetting {
    /// `global` (the default) or a server id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub value: serde_json::Value,
}

/// What a server reports it applied (stored in SQL with its revision; the admin API reads
/// it back into [`ServerSettings`] and [`ServerSetting`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SettingsReport {
    /// Every runtime setting's value the server runs with.
    pub values: std::collections::BTreeMap<String, serde_json::Value>,
    /// Its own configuration's value of each (file and environment).
    pub defaults: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub refused: Vec<SettingRefusal>,
}

/// The settings a server keeps on its own disk, to run on while SQL cannot be reached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SettingsCache {
    pub revision: u64,
    /// The stored values that concern the server (global and its own scope).
    pub values: Vec<SettingValue>,
}
