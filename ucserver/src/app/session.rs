//! [`Session`]: one signed-in device acting for one user. Every client operation of every
//! front end (REST, the WebSocket, later XMPP) is a method here, taking and returning typed
//! values; the front ends only decode requests and encode answers. Each method checks access
//! through [`super::authz`] first, then asks the server's components to act.

use super::authz;
use crate::auth::TokenInfo;
use crate::core::call::Endpoint;
use crate::error::{AppError, AppResult};
use crate::events::{DeviceEvent, Outgoing};
use crate::rate_limit::Action;
use crate::server::Server;
use crate::store::{ConversationRecord, HistoryPage};
use shared::api::{
    ChatMessage, Contact, ConversationKind, ConversationSummary, CreateConversation, ErrorCode,
    JournalEntry, ReadMarker, SetPresence, UserInfo,
};
use shared::bus::BusBody;
use shared::call::{CallCommand, ForwardingRules};
use shared::presence::{Availability, Capability, PresenceSnapshot, PresenceView, Visibility};
use shared::ws::ServerEvent;
use shared::{CallId, ConversationId, DeviceId, UserId, now_ms};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Conversations one `sync` may name at most.
pub const MAX_SYNC_CONVERSATIONS: usize = 1000;
/// Most members a group conversation may be created with.
pub const MAX_CONVERSATION_MEMBERS: usize = 500;

/// One device acting for one user.
#[derive(Clone)]
pub struct Session {
    pub(super) server: Arc<Server>,
    actor: TokenInfo,
    /// The device this session acts from: the socket's device, or the token's for REST.
    device: DeviceId,
}

/// A stored message's answer: resolves once the chat writer stored it (or could not).
pub type Stored = oneshot::Receiver<AppResult<ChatMessage>>;

impl Session {
    /// A client session (refused for an admin-console token), acting from `device`.
    pub fn client(server: Arc<Server>, actor: TokenInfo, device: DeviceId) -> AppResult<Self> {
        authz::require_client(&actor)?;
        Ok(Self::new(server, actor, device))
    }

    /// A session for any token's holder (the reads an admin console may make too).
    pub fn new(server: Arc<Server>, actor: TokenInfo, device: DeviceId) -> Self {
        Self {
            server,
            actor,
            device,
        }
    }

    pub fn user(&self) -> &UserId {
        &self.actor.user
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn actor(&self) -> &TokenInfo {
        &self.actor
    }

    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// This device's rate for one kind of action (`rate_limit.rs`); beyond it, `rate_limited`
    /// with how long to wait.
    fn within_rate(&self, action: Action) -> AppResult<()> {
        self.server
            .rate_limits
            .check(action, self.user(), &self.device)
    }

    // ------------------------------------------------------------------ the device's link

    /// Registers this device as connected (online for presence); returns its connection
    /// number, which [`Session::disconnect`] must name, and its queue of events.
    pub async fn connect(
        &self,
        capabilities: Vec<Capability>,
        origin: crate::devices::DeviceOrigin,
    ) -> (u64, mpsc::Receiver<DeviceEvent>) {
        self.server
            .connect_device(self.user(), &self.device, capabilities, origin)
            .await
    }

    /// The device's connection `conn` ended: it leaves presence, then the calls it was in.
    pub async fn disconnect(&self, conn: u64) {
        crate::dispatch::device_left(&self.server, self.user(), &self.device, conn).await;
    }

    /// The first event of a connection: the user's conversations and the presence of
    /// everyone they watch.
    pub async fn hello(&self) -> ServerEvent {
        let server = &self.server;
        let user = self.user();
        let conversations = self.conversations().await.unwrap_or_default();
        let watched = server.relations.watched_by(user).await.unwrap_or_default();
        let snapshots = server
            .bus("get presence", server.cluster.get_presence(&watched))
            .await
            .unwrap_or_default();
        let presence = watched
            .iter()
            .enumerate()
            .map(|(index, watched_user)| {
                let snapshot = snapshots
                    .get(index)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| PresenceSnapshot::offline(watched_user.clone()));
                PresenceView::of(&snapshot, Visibility::Full)
            })
            .collect();
        ServerEvent::Hello {
            user: user.clone(),
            device: self.device.clone(),
            server: server.id.clone(),
            conversations,
            presence,
            servers: server.owners.links(),
        }
    }

    /// What the device missed while away (unread messages), into `out`, waiting when it is
    /// full.
    pub async fn replay_unread(&self, out: &mpsc::Sender<DeviceEvent>) -> AppResult<()> {
        self.server.chat.replay_unread(self.user(), out).await
    }

    // ------------------------------------------------------------------ identity

    pub async fn me(&self) -> AppResult<UserInfo> {
        let user = self
            .server
            .sql(self.server.store.get_user(self.user()))
            .await?
            .ok_or_else(|| AppError::not_found("your user no longer exists"))?;
        Ok(UserInfo {
            id: user.id,
            display_name: user.display_name,
            home_server: user.home_server,
            admin: user.admin,
            online: self.server.devices.is_online(self.user()),
        })
    }

    // ------------------------------------------------------------------ presence

    /// Sets presence for the caller or, with `user`, for someone they may act for, wherever
    /// that user lives.
    pub async fn set_presence(&self, request: SetPresence) -> AppResult<PresenceView> {
        let server = &self.server;
        if let Some(note) = &request.note
            && note.len() > shared::limits::MAX_NOTE_BYTES
        {
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a note may have at most {} bytes",
                    shared::limits::MAX_NOTE_BYTES
                ),
            ));
        }
        if request.availability == Some(Availability::Offline) {
            return Err(AppError::bad_request(
                "'offline' is not something to set: sign out instead, or choose dnd",
            ));
        }
        let target = request.user.clone().unwrap_or_else(|| self.user().clone());
        authz::may_act_for(server, &self.actor, &target).await?;
        let home = server.relations.server_of(&target).await?;
        if home == server.id {
            server
                .set_presence(&target, request.availability, request.note)
                .await;
        } else {
            let message = shared::bus::BusMessage::new(
                server.id.clone(),
                BusBody::SetPresence {
                    user: target.clone(),
                    by: self.user().clone(),
                    availability: request.availability,
                    note: request.note,
                },
            );
            server.cluster.publish(&home, &message).await.map_err(|_| {
                AppError::new(
                    ErrorCode::ServerUnavailable,
                    format!("the home server of '{target}' cannot be reached now"),
                )
            })?;
        }
        let snapshot = server.presence.snapshot_of(&target).await;
        Ok(PresenceView::of(&snapshot, Visibility::Full))
    }

    /// What this user may see of `user`'s presence now.
    pub async fn presence_of(&self, user: &UserId) -> AppResult<PresenceView> {
        self.server.relations.home_of(user).await?;
        let visibility = authz::visibility(&self.server, &self.actor, user).await?;
        let snapshot = self.server.presence.snapshot_of(user).await;
        Ok(PresenceView::of(&snapshot, visibility))
    }

    /// Quiet mode and idle state of this device.
    pub async fn set_device_state(&self, active: Option<bool>, idle: Option<bool>) {
        self.server
            .set_device_state(self.user(), &self.device, active, idle)
            .await;
    }

    /// The device did something: it counts as active for alerts.
    pub fn touch(&self) {
        self.server
            .devices
            .touch(self.user(), &self.device, now_ms());
    }

    // ------------------------------------------------------------------ contacts, delegates

    pub async fn contacts(&self) -> AppResult<Vec<Contact>> {
        let server = &self.server;
        let records = server.sql(server.store.contacts(self.user())).await?;
        let users: Vec<UserId> = records.iter().map(|r| r.contact.clone()).collect();
        let snapshots = server
            .bus("get presence", server.cluster.get_presence(&users))
            .await
            .unwrap_or_default();
        Ok(records
            .into_iter()
            .enumerate()
            .map(|(index, record)| {
                let snapshot = snapshots
                    .get(index)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| PresenceSnapshot::offline(record.contact.clone()));
                Contact {
                    user: record.contact,
                    display_name: record.display_name,
                    group: record.group,
                    presence: PresenceView::of(&snapshot, Visibility::Full),
                }
            })
            .collect())
    }

    pub async fn add_contact(&self, user: UserId, group: String) -> AppResult<Contact> {
        let server = &self.server;
        if group.len() > 64 {
            return Err(AppError::bad_request(
                "a contact group name may have at most 64 bytes",
            ));
        }
        if &user == self.user() {
            return Err(AppError::bad_request(
                "you cannot add yourself as a contact",
            ));
        }
        let record = server
            .sql(server.store.get_user(&user))
            .await?
            .ok_or_else(|| AppError::not_found(format!("there is no user '{user}'")))?;
        server
            .sql(server.store.put_contact(self.user(), &user, &group))
            .await?;
        server
            .relations_changed(vec![self.user().clone(), user.clone()])
            .await;
        let snapshot = server.presence.snapshot_of(&user).await;
        Ok(Contact {
            user,
            display_name: record.display_name,
            group,
            presence: PresenceView::of(&snapshot, Visibility::Full),
        })
    }

    pub async fn remove_contact(&self, user: UserId) -> AppResult<()> {
        let server = &self.server;
        server
            .sql(server.store.delete_contact(self.user(), &user))
            .await?;
        server
            .relations_changed(vec![self.user().clone(), user])
            .await;
        Ok(())
    }

    /// Users whose id or name contains `query` (at most 50).
    pub async fn directory(&self, query: &str) -> AppResult<Vec<UserInfo>> {
        if query.len() > 64 {
            return Err(AppError::bad_request(
                "the search text may have at most 64 bytes",
            ));
        }
        let users = self
            .server
            .sql(self.server.store.search_users(query, 50))
            .await?;
        Ok(super::user_infos(&self.server, users).await)
    }

    // ------------------------------------------------------------------ chat

    /// The user's conversations; their members are remembered on the way (see
    /// `Relations::learn_members`).
    pub async fn conversations(&self) -> AppResult<Vec<ConversationSummary>> {
        let conversations = self
            .server
            .sql(self.server.store.conversations_of(self.user()))
            .await?;
        self.server.relations.learn_members(&conversations);
        Ok(conversations)
    }

    /// A new group conversation with this user and `members`.
    pub async fn create_conversation(
        &self,
        request: CreateConversation,
    ) -> AppResult<ConversationSummary> {
        let server = &self.server;
        self.within_rate(Action::CreateConversation)?;
        let name = request.name.trim().to_string();
        if name.is_empty() || name.len() > 128 {
            return Err(AppError::bad_request(
                "a conversation needs a name of 1 to 128 bytes",
            ));
        }
        if request.members.len() > MAX_CONVERSATION_MEMBERS {
            return Err(AppError::bad_request(format!(
                "a conversation may have at most {MAX_CONVERSATION_MEMBERS} members"
            )));
        }
        let mut members = request.members;
        members.push(self.user().clone());
        members.sort();
        members.dedup();
        for member in &members {
            server.relations.home_of(member).await?;
        }
        let id = ConversationId::new(format!("c:{}", uuid::Uuid::now_v7()));
        let record = ConversationRecord {
            id: id.clone(),
            kind: ConversationKind::Group,
            name,
            created_by: self.user().clone(),
            created_ms: now_ms(),
            last_seq: 0,
            members,
        };
        server
            .sql(server.store.ensure_conversation(&record))
            .await?;
        server.chat.announce_conversation(&id).await;
        self.conversations()
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| {
                AppError::new(
                    ErrorCode::Internal,
                    "the conversation was created but cannot be read back",
                )
            })
    }

    /// Checks a message and queues it for the chat writer, in order; the answer resolves once
    /// it is stored and handed to every server. `to` names a user (the 1:1 conversation is
    /// made on first use), `conversation` an existing one.
    pub async fn queue_message(
        &self,
        to: Option<&UserId>,
        conversation: Option<&ConversationId>,
        body: String,
        client_id: Option<String>,
    ) -> AppResult<Stored> {
        self.within_rate(Action::Send)?;
        let id = self
            .server
            .chat
            .conversation_for(self.user(), to, conversation)
            .await?;
        authz::require_member(&self.server, self.user(), &id).await?;
        self.server
            .chat
            .enqueue_message(self.user(), id, body, client_id)
    }

    /// Stores and delivers a message; returns it once stored.
    pub async fn send_message(
        &self,
        to: Option<&UserId>,
        conversation: Option<&ConversationId>,
        body: String,
        client_id: Option<String>,
    ) -> AppResult<ChatMessage> {
        let stored = self
            .queue_message(to, conversation, body, client_id)
            .await?;
        stored.await.map_err(|_| shutting_down())?
    }

    /// One page of a conversation's history.
    pub async fn history(
        &self,
        conversation: &ConversationId,
        page: HistoryPage,
        limit: u32,
    ) -> AppResult<Vec<ChatMessage>> {
        authz::require_member(&self.server, self.user(), conversation).await?;
        if limit == 0 || limit > shared::limits::MAX_HISTORY_PAGE {
            return Err(AppError::bad_request(format!(
                "limit must be 1 to {}",
                shared::limits::MAX_HISTORY_PAGE
            )));
        }
        self.server
            .sql(self.server.store.messages(conversation, page, limit))
            .await
    }

    /// Moves this user's read marker (to the newest message without `seq`); every device of
    /// every member is told.
    pub async fn mark_read(
        &self,
        conversation: &ConversationId,
        seq: Option<u64>,
    ) -> AppResult<ReadMarker> {
        let members = authz::require_member(&self.server, self.user(), conversation).await?;
        self.server
            .chat
            .mark_read(self.user(), conversation, &members, seq)
            .await
    }

    /// Every member's read marker, so a client shows who read what after a reload.
    pub async fn read_markers(&self, conversation: &ConversationId) -> AppResult<Vec<ReadMarker>> {
        authz::require_member(&self.server, self.user(), conversation).await?;
        let markers = self
            .server
            .sql(self.server.store.read_markers(conversation))
            .await?;
        Ok(markers
            .into_iter()
            .map(|(user, seq)| ReadMarker {
                conversation: conversation.clone(),
                user,
                seq,
            })
            .collect())
    }

    pub async fn typing(&self, conversation: &ConversationId, typing: bool) -> AppResult<()> {
        self.within_rate(Action::Typing)?;
        let members = authz::require_member(&self.server, self.user(), conversation).await?;
        self.server
            .chat
            .typing(self.user(), conversation, &members, typing)
            .await;
        Ok(())
    }

    /// Checks a catch-up request: every conversation named must be the user's. The returned
    /// [`CatchUp`] then streams what came after each sequence number, complete.
    pub async fn catch_up(&self, since: BTreeMap<ConversationId, u64>) -> AppResult<CatchUp> {
        if since.len() > MAX_SYNC_CONVERSATIONS {
            return Err(AppError::bad_request(format!(
                "sync at most {MAX_SYNC_CONVERSATIONS} conversations at once"
            )));
        }
        for conversation in since.keys() {
            authz::require_member(&self.server, self.user(), conversation).await?;
        }
        Ok(CatchUp {
            server: self.server.clone(),
            since,
        })
    }

    pub async fn journal(&self, limit: u32) -> AppResult<Vec<JournalEntry>> {
        self.server
            .sql(self.server.store.journal(self.user(), limit.clamp(1, 1000)))
            .await
    }

    // ------------------------------------------------------------------ calls

    /// A user's call forwarding: for the user, their delegates and admins.
    pub async fn forwarding_of(&self, user: &UserId) -> AppResult<ForwardingRules> {
        let server = &self.server;
        authz::may_act_for(server, &self.actor, user)
            .await
            .map_err(|_| {
                AppError::forbidden(format!("you may not read the forwarding of '{user}'"))
            })?;
        server.relations.home_of(user).await?;
        server.relations.forwarding_of(user).await
    }

    /// A call command from this device; the future answers once the call (maybe owned by
    /// another server) took it. Access is checked before anything is sent anywhere.
    pub async fn call(
        &self,
        command: CallCommand,
    ) -> AppResult<impl Future<Output = AppResult<Option<CallId>>> + Send + 'static> {
        match &command {
            CallCommand::ForwardSet {
                user: Some(owner), ..
            }
            | CallCommand::ForwardClear {
                user: Some(owner), ..
            } => {
                authz::may_act_for(&self.server, &self.actor, owner)
                    .await
                    .map_err(|_| {
                        AppError::forbidden(format!(
                            "you may not change the forwarding of '{owner}'"
                        ))
                    })?;
            }
            CallCommand::CallPickup { user, .. } if user != self.user() => {
                authz::may_pick_up(&self.server, &self.actor, user).await?;
            }
            _ => {}
        }
        let server = self.server.clone();
        let by = Endpoint::new(self.user().clone(), self.device.clone());
        Ok(async move { crate::calls::run_command(&server, by, command).await })
    }
}

fn shutting_down() -> AppError {
    AppError::new(ErrorCode::ServerUnavailable, "the server is shutting down")
}

/// A checked catch-up: the messages after given sequence numbers, read page by page.
pub struct CatchUp {
    server: Arc<Server>,
    since: BTreeMap<ConversationId, u64>,
}

impl CatchUp {
    /// Streams every message after each sequence number into `out` as replayed `message`
    /// events, in order per conversation, waiting whenever `out` is full (so nothing is
    /// dropped however much there is), then `done` as the last event. A read that fails
    /// ends the stream with `error` instead; the device has what came before and can ask
    /// again from there. Returns false if the device went away first.
    pub async fn run(
        self,
        out: mpsc::Sender<DeviceEvent>,
        done: ServerEvent,
        failed: impl Fn(AppError) -> ServerEvent,
    ) -> bool {
        let page_size = shared::limits::MAX_HISTORY_PAGE;
        for (conversation, mut after) in self.since {
            loop {
                let page = match self
                    .server
                    .sql(self.server.store.messages(
                        &conversation,
                        HistoryPage::After(after),
                        page_size,
                    ))
                    .await
                {
                    Ok(page) => page,
                    Err(error) => return out.send(Outgoing::new(failed(error))).await.is_ok(),
                };
                let complete = page.len() < page_size as usize;
                for message in page {
                    after = after.max(message.seq);
                    let event = ServerEvent::Message {
                        message,
                        alert: false,
                        replay: true,
                    };
                    if out.send(Outgoing::new(event)).await.is_err() {
                        return false;
                    }
                }
                if complete {
                    break;
                }
            }
        }
        out.send(Outgoing::new(done)).await.is_ok()
    }
}
