//! Chat: messages checked and queued in order for the chat writer, which stores them in
//! batches (one SQL transaction each, a fixed number of statements per batch whatever the
//! number of conversations) and then delivers them: to the devices here, and with one bus
//! message per other home server. Read markers, typing and conversation changes go the same
//! ways. SQL first, then the bus: what a peer misses it reads back by sequence number.

use crate::cluster::Cluster;
use crate::devices::Devices;
use crate::error::{AppError, AppResult};
use crate::events::{DeviceEvent, Outgoing};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::relations::Relations;
use crate::store::{ConversationRecord, NewMessage, Store, StoreError, StoreResult};
use crate::timed;
use shared::api::{ChatMessage, ConversationKind, ErrorCode, JournalEntry, ReadMarker};
use shared::bus::{BusBody, Delivery};
use shared::ws::ServerEvent;
use shared::{ConversationId, ServerId, UserId, now_ms};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Messages stored in one SQL transaction at most.
const CHAT_BATCH: usize = 512;
/// Messages accepted and waiting for the writer, at most; beyond, `server_busy`.
const CHAT_QUEUE: usize = 16_384;
/// A write to SQL taking longer than this, with more than a batch waiting, refuses new
/// messages (`server_busy`) until it ends.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_secs(2);
/// Deliveries kept for publishing again at most; beyond, the oldest is dropped (the
/// receiver's resync still brings its devices what they lack).
const MAX_UNPUBLISHED: usize = 10_000;
/// What `server_busy` asks the sender to wait before sending again.
const BUSY_RETRY_MS: u64 = 1_000;

fn busy(why: String) -> AppError {
    let mut error = AppError::new(ErrorCode::ServerBusy, why);
    error.0.retry_after_ms = Some(BUSY_RETRY_MS);
    error
}

/// A message waiting for the chat writer.
struct ChatJob {
    message: NewMessage,
    reply: oneshot::Sender<AppResult<ChatMessage>>,
    /// When the message was checked and queued (for the chat delivery histogram).
    accepted: Instant,
}

pub struct Chat {
    id: ServerId,
    store: Arc<dyn Store>,
    cluster: Arc<dyn Cluster>,
    metrics: Arc<Metrics>,
    relations: Arc<Relations>,
    devices: Arc<Devices>,
    /// Messages for the writer, in the order they were accepted.
    queue: mpsc::Sender<ChatJob>,
    /// Messages and journal entries kept while SQL cannot be reached.
    outbox: Arc<Outbox>,
    /// Deliveries to other servers whose publish failed, to publish again (bounded).
    unpublished: std::sync::Mutex<std::collections::VecDeque<(ServerId, BusBody)>>,
    /// When the writer's SQL write under way began (ms), 0 when none is.
    writing_since_ms: AtomicI64,
}

impl Chat {
    /// The chat component and its writer, which the caller runs as a task.
    pub fn new(
        id: ServerId,
        store: Arc<dyn Store>,
        cluster: Arc<dyn Cluster>,
        metrics: Arc<Metrics>,
        relations: Arc<Relations>,
        devices: Arc<Devices>,
        outbox: Arc<Outbox>,
    ) -> (Arc<Self>, ChatWriter) {
        let (queue, rx) = mpsc::channel(CHAT_QUEUE);
        let chat = Arc::new(Self {
            id,
            store,
            cluster,
            metrics,
            relations,
            devices,
            queue,
            outbox,
            unpublished: std::sync::Mutex::new(std::collections::VecDeque::new()),
            writing_since_ms: AtomicI64::new(0),
        });
        (chat, ChatWriter { rx })
    }

    /// The outbox that keeps messages while SQL cannot be reached.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    async fn publish(&self, to: &ServerId, body: BusBody) {
        if let Err(body) = timed::publish(&self.metrics, &*self.cluster, &self.id, to, body).await
            && matches!(body, BusBody::Messages { .. })
        {
            let mut unpublished = self.unpublished.lock().unwrap();
            if unpublished.len() == MAX_UNPUBLISHED {
                // The receiver's own resync (`conversation_heads`) still covers these.
                unpublished.pop_front();
            }
            unpublished.push_back((to.clone(), body));
        }
    }

    /// Publishes again the deliveries the bus refused, oldest first, until one fails. Called
    /// when the bus is back and on every heartbeat while any wait: a delivery whose publish
    /// failed after the receiver had already resynced would otherwise reach its devices only
    /// with the conversation's next message. Devices drop what they have already.
    pub async fn republish(&self) {
        loop {
            let Some((to, body)) = self.unpublished.lock().unwrap().pop_front() else {
                return;
            };
            if let Err(body) =
                timed::publish(&self.metrics, &*self.cluster, &self.id, &to, body).await
            {
                self.unpublished.lock().unwrap().push_front((to, body));
                return;
            }
        }
    }

    fn deliver(
        &self,
        users: &[UserId],
        event: &DeviceEvent,
        bufferable: bool,
        alert: Option<&DeviceEvent>,
    ) -> u64 {
        self.devices
            .deliver(users, None, event, bufferable, alert, now_ms())
    }

    /// A typing notice for recipients here (quiet devices get it when they wake, if at all).
    pub fn deliver_typing(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        typing: bool,
        recipients: &[UserId],
    ) {
        let event = ServerEvent::Typing {
            conversation: conversation.clone(),
            user: user.clone(),
            typing,
        };
        self.deliver(recipients, &Outgoing::new(event), true, None);
    }

    /// The conversation a message goes to: `conversation`, or the 1:1 with `to` (made on
    /// first use). Whether `sender` may post there is the application layer's check.
    pub async fn conversation_for(
        &self,
        sender: &UserId,
        to: Option<&UserId>,
        conversation: Option<&ConversationId>,
    ) -> AppResult<ConversationId> {
        let id = match (to, conversation) {
            (Some(to), None) => {
                self.relations.home_of(to).await?;
                let id = ConversationId::direct(sender, to);
                let known = self.relations.knows_conversation(&id);
                if !known {
                    let record = direct_record(&id, sender, to);
                    match timed::sql_store(&self.metrics, self.store.ensure_conversation(&record))
                        .await
                    {
                        Ok(()) => {}
                        // Made when the outbox is drained (`Pipeline::drain_once`).
                        Err(error) if unreachable(&error) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
                id
            }
            (None, Some(conversation)) => conversation.clone(),
            _ => {
                return Err(AppError::bad_request(
                    "give either 'to' (a user) or 'conversation', not both or neither",
                ));
            }
        };
        Ok(id)
    }

    /// Stores and delivers a message; returns it once stored and handed to every server.
    pub async fn send_message(
        &self,
        sender: &UserId,
        conversation: ConversationId,
        body: String,
        client_id: Option<String>,
    ) -> AppResult<ChatMessage> {
        let stored = self.enqueue_message(sender, conversation, body, client_id)?;
        stored.await.map_err(|_| {
            AppError::new(ErrorCode::ServerUnavailable, "the server is shutting down")
        })?
    }

    /// Checks a message and queues it for the chat writer, in order; the returned receiver
    /// answers once it is stored and handed to every server. A device can queue its next
    /// message before the previous one is stored, so one connection is not limited to one
    /// message per write batch. Refused with `server_busy` when the writer is behind.
    pub fn enqueue_message(
        &self,
        sender: &UserId,
        conversation: ConversationId,
        body: String,
        client_id: Option<String>,
    ) -> AppResult<oneshot::Receiver<AppResult<ChatMessage>>> {
        if body.trim().is_empty() {
            return Err(AppError::bad_request("the message is empty"));
        }
        if body.len() > shared::limits::MAX_MESSAGE_BYTES {
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a message may have at most {} bytes",
                    shared::limits::MAX_MESSAGE_BYTES
                ),
            ));
        }
        if client_id.as_ref().is_some_and(|c| c.len() > 128) {
            return Err(AppError::bad_request(
                "client_id may have at most 128 characters",
            ));
        }
        let id = uuid::Uuid::now_v7().to_string();
        // Every message carries a client id (its own id when the sender gave none), so that a
        // write retried from the outbox never stores it twice.
        let client_id = Some(client_id.unwrap_or_else(|| id.clone()));
        let message = NewMessage {
            conversation,
            id,
            sender: sender.clone(),
            body,
            sent_ms: now_ms(),
            client_id,
        };
        self.refuse_when_behind()?;
        let (reply, answer) = oneshot::channel();
        let job = ChatJob {
            message,
            reply,
            accepted: Instant::now(),
        };
        match self.queue.try_send(job) {
            Ok(()) => Ok(answer),
            Err(mpsc::error::TrySendError::Full(_)) => Err(busy(format!(
                "{CHAT_QUEUE} messages are waiting to be stored"
            ))),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AppError::new(
                ErrorCode::ServerUnavailable,
                "the server is shutting down",
            )),
        }
    }

    /// Push-back while SQL is slow: once a write has taken longer than [`SLOW_WRITE`] and more
    /// than a batch waits behind it, new messages are refused (`server_busy`) rather than
    /// queued behind a database that does not keep up.
    fn refuse_when_behind(&self) -> AppResult<()> {
        let since = self.writing_since_ms.load(Ordering::Relaxed);
        let waiting = self.queue.max_capacity() - self.queue.capacity();
        if since == 0 || waiting <= CHAT_BATCH {
            return Ok(());
        }
        let writing_ms = now_ms() - since;
        if writing_ms < SLOW_WRITE.as_millis() as i64 {
            return Ok(());
        }
        Err(busy(format!(
            "the database is slow: a write has taken {writing_ms} ms and {waiting} messages wait"
        )))
    }

    /// Delivers stored messages: locally and with one bus message per other home server.
    async fn deliver_messages(&self, messages: &[ChatMessage]) {
        let mut remote: BTreeMap<ServerId, Vec<Delivery>> = BTreeMap::new();
        for message in messages {
            let members = match self.relations.members_of(&message.conversation).await {
                Ok(members) => members,
                Err(error) => {
                    tracing::warn!(error = %error.0, "no members for a stored message");
                    continue;
                }
            };
            for (home, users) in self.relations.by_server(&members).await {
                if home == self.id {
                    self.deliver_message_locally(message, &users, false);
                } else {
                    remote.entry(home).or_default().push(Delivery {
                        message: message.clone(),
                        recipients: users,
                    });
                }
            }
        }
        for (home, deliveries) in remote {
            self.publish(&home, BusBody::Messages { deliveries }).await;
        }
    }

    pub fn deliver_message_locally(&self, message: &ChatMessage, users: &[UserId], replay: bool) {
        let plain = Outgoing::new(ServerEvent::Message {
            message: message.clone(),
            alert: false,
            replay,
        });
        // The sender's own devices get no alert for their own message.
        let others: Vec<UserId> = users
            .iter()
            .filter(|u| **u != message.sender)
            .cloned()
            .collect();
        let mut delivered = 0;
        if others.len() != users.len() {
            delivered += self.deliver(std::slice::from_ref(&message.sender), &plain, false, None);
        }
        let alert = Outgoing::new(ServerEvent::Message {
            message: message.clone(),
            alert: true,
            replay,
        });
        delivered += self.deliver(&others, &plain, false, Some(&alert));
        self.metrics
            .messages_delivered
            .fetch_add(delivered, Ordering::Relaxed);
    }

    /// Moves a read marker and tells every device of every member.
    pub async fn mark_read(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        members: &[UserId],
        seq: Option<u64>,
    ) -> AppResult<ReadMarker> {
        let seq = timed::sql(
            &self.metrics,
            self.store
                .mark_read(conversation, user, seq.unwrap_or(u64::MAX)),
        )
        .await?;
        let marker = ReadMarker {
            conversation: conversation.clone(),
            user: user.clone(),
            seq,
        };
        for (home, users) in self.relations.by_server(members).await {
            if home == self.id {
                self.deliver_read(&marker, &users);
            } else {
                self.publish(
                    &home,
                    BusBody::Read {
                        marker: marker.clone(),
                        recipients: users,
                    },
                )
                .await;
            }
        }
        Ok(marker)
    }

    pub fn deliver_read(&self, marker: &ReadMarker, users: &[UserId]) {
        let event = ServerEvent::Read {
            conversation: marker.conversation.clone(),
            user: marker.user.clone(),
            seq: marker.seq,
        };
        self.deliver(users, &Outgoing::new(event), false, None);
    }

    /// Tells the other members' devices that `user` is (or stopped) typing.
    pub async fn typing(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        members: &[UserId],
        typing: bool,
    ) {
        let others: Vec<UserId> = members.iter().filter(|m| *m != user).cloned().collect();
        for (home, users) in self.relations.by_server(&others).await {
            if home == self.id {
                let event = ServerEvent::Typing {
                    conversation: conversation.clone(),
                    user: user.clone(),
                    typing,
                };
                self.deliver(&users, &Outgoing::new(event), true, None);
            } else {
                self.publish(
                    &home,
                    BusBody::Typing {
                        conversation: conversation.clone(),
                        user: user.clone(),
                        typing,
                        recipients: users,
                    },
                )
                .await;
            }
        }
    }

    /// Tells the members of a new or changed conversation about it.
    pub async fn announce_conversation(&self, conversation: &ConversationId) {
        self.relations.forget_conversation(conversation);
        let Ok(members) = self.relations.members_of(conversation).await else {
            return;
        };
        for (home, users) in self.relations.by_server(&members).await {
            if home == self.id {
                self.deliver_conversation(conversation, &users).await;
            } else {
                self.publish(
                    &home,
                    BusBody::ConversationChanged {
                        conversation: conversation.clone(),
                        recipients: users,
                    },
                )
                .await;
            }
        }
    }

    /// Tells the online ones of `users` (members living here) about a new or changed
    /// conversation. Its members are learned either way, while SQL answers, so that members
    /// whose devices are offline now can post to it through a later outage.
    pub async fn deliver_conversation(&self, conversation: &ConversationId, users: &[UserId]) {
        if !users.iter().any(|user| self.devices.is_online(user))
            && let Err(error) = self.relations.members_of(conversation).await
        {
            tracing::debug!(%conversation, error = %error.0, "members of an announced conversation not read");
        }
        for user in users {
            if !self.devices.is_online(user) {
                continue;
            }
            let Ok(summaries) = timed::sql(&self.metrics, self.store.conversations_of(user)).await
            else {
                continue;
            };
            self.relations.learn_members(&summaries);
            if let Some(summary) = summaries.into_iter().find(|s| &s.id == conversation) {
                self.deliver(
                    std::slice::from_ref(user),
                    &Outgoing::new(ServerEvent::Conversation {
                        conversation: summary,
                    }),
                    false,
                    None,
                );
            }
        }
    }

    /// Tells every device of `user` here where each of their conversations stands
    /// (`conversation_heads`), so that each fetches what deliveries lost on the bus left out.
    pub async fn announce_heads(&self, user: &UserId) -> AppResult<()> {
        let conversations = timed::sql(&self.metrics, self.store.conversations_of(user)).await?;
        self.relations.learn_members(&conversations);
        let event = Outgoing::new(ServerEvent::ConversationHeads { conversations });
        self.deliver(std::slice::from_ref(user), &event, false, None);
        Ok(())
    }

    /// Writes a journal entry: to SQL, or, while SQL cannot be reached (or older entries
    /// still wait in the outbox), to the outbox, whose drainer writes it later.
    pub async fn add_journal(&self, entry: &JournalEntry) -> AppResult<()> {
        if self.outbox.journal_len() == 0 {
            match timed::sql_store(&self.metrics, self.store.add_journal(entry)).await {
                Ok(()) => return Ok(()),
                Err(error) if unreachable(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.outbox
            .push_journal(entry)
            .await
            .map_err(|error| AppError::new(ErrorCode::ServerUnavailable, error.to_string()))
    }

    /// Replays unread messages of every conversation to one fresh device queue.
    pub async fn replay_unread(
        &self,
        user: &UserId,
        tx: &mpsc::Sender<DeviceEvent>,
    ) -> AppResult<()> {
        for summary in timed::sql(&self.metrics, self.store.conversations_of(user)).await? {
            if summary.unread == 0 {
                continue;
            }
            let page = crate::store::HistoryPage::After(summary.last_read_seq);
            for message in
                timed::sql(&self.metrics, self.store.messages(&summary.id, page, 200)).await?
            {
                let event = ServerEvent::Message {
                    message,
                    alert: false,
                    replay: true,
                };
                if tx.send(Outgoing::new(event)).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// The chat writer: batches messages into SQL transactions, then delivers them in order.
/// While SQL cannot be reached it keeps them in the [`Outbox`] instead and delivers them as
/// provisional (`seq` 0); its drainer stores them in SQL when it answers and delivers the
/// stored ones (same `id`, final `seq`).
pub struct ChatWriter {
    rx: mpsc::Receiver<ChatJob>,
}

/// A batch on its way to delivery: the jobs to answer, their results, and the messages to
/// deliver (stored, or provisional ones kept in the outbox).
struct StoredBatch {
    jobs: Vec<ChatJob>,
    results: Vec<AppResult<ChatMessage>>,
    stored: Vec<ChatMessage>,
}

/// How long the writer gives one SQL write before it keeps the batch in the outbox instead. A
/// write that commits after all is found again by its client id when the outbox is drained.
const SQL_WRITE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Pause between attempts to drain the outbox while SQL does not answer.
const DRAIN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a failed write means SQL could not be reached (keep the batch in the outbox)
/// rather than that it refused the batch.
fn unreachable(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable(_))
}

/// A 1:1 conversation as first stored.
fn direct_record(id: &ConversationId, created_by: &UserId, other: &UserId) -> ConversationRecord {
    let mut members = vec![created_by.clone(), other.clone()];
    members.sort();
    members.dedup();
    ConversationRecord {
        id: id.clone(),
        kind: ConversationKind::Direct,
        name: String::new(),
        created_by: created_by.clone(),
        created_ms: now_ms(),
        last_seq: 0,
        members,
    }
}

/// The message as delivered before SQL has it: `seq` 0 until the stored one follows.
fn provisional(message: &NewMessage) -> ChatMessage {
    ChatMessage {
        conversation: message.conversation.clone(),
        seq: 0,
        id: message.id.clone(),
        sender: message.sender.clone(),
        body: message.body.clone(),
        sent_ms: message.sent_ms,
        client_id: message.client_id.clone(),
    }
}

fn store_result(result: StoreResult<ChatMessage>) -> AppResult<ChatMessage> {
    result.map_err(|error| match error {
        StoreError::NotFound(what) => AppError::new(
            ErrorCode::NotAMember,
            format!("cannot post: {what} (not a member, or no such conversation)"),
        ),
        other => AppError::from(other),
    })
}

/// What the writer and the drainer share: the outbox, the order lock and the delivery stage.
struct Pipeline {
    chat: Arc<Chat>,
    outbox: Arc<Outbox>,
    /// Held while deciding where a batch goes and handing it to delivery, so that messages
    /// reach SQL and the devices in the order they were accepted: nothing is written to SQL
    /// directly while the outbox holds older messages.
    order: tokio::sync::Mutex<()>,
    deliveries: mpsc::Sender<StoredBatch>,
}

impl Pipeline {
    /// Writes one batch: to SQL when the outbox is empty and SQL answers, else to the outbox.
    async fn write(&self, jobs: Vec<ChatJob>) -> bool {
        let batch: Vec<NewMessage> = jobs.iter().map(|j| j.message.clone()).collect();
        let _order = self.order.lock().await;
        let results = if self.outbox.is_empty() {
            match self.write_sql(&batch).await {
                Ok(results) => Some(results),
                Err(error) if unreachable(&error) => {
                    tracing::warn!(%error, "the database cannot be reached; keeping messages in the outbox");
                    None
                }
                Err(error) => {
                    let refusal = AppError::from(error);
                    Some(batch.iter().map(|_| Err(refusal.clone())).collect())
                }
            }
        } else {
            None
        };
        let batch = match results {
            Some(results) => {
                let stored: Vec<ChatMessage> = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok().cloned())
                    .collect();
                self.chat
                    .metrics
                    .messages_stored
                    .fetch_add(stored.len() as u64, Ordering::Relaxed);
                StoredBatch {
                    jobs,
                    results,
                    stored,
                }
            }
            None => self.keep(jobs, &batch).await,
        };
        self.deliveries.send(batch).await.is_ok()
    }

    async fn write_sql(&self, batch: &[NewMessage]) -> StoreResult<Vec<AppResult<ChatMessage>>> {
        let chat = &self.chat;
        chat.writing_since_ms.store(now_ms(), Ordering::Relaxed);
        let written = tokio::time::timeout(
            SQL_WRITE_LIMIT,
            timed::sql_store(&chat.metrics, chat.store.append_messages(batch)),
        )
        .await;
        chat.writing_since_ms.store(0, Ordering::Relaxed);
        match written {
            Ok(Ok(results)) => Ok(results.into_iter().map(store_result).collect()),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(StoreError::Unavailable(format!(
                "a write took over {} s",
                SQL_WRITE_LIMIT.as_secs()
            ))),
        }
    }

    /// Keeps a batch in the outbox; answered with the provisional messages, or refused when
    /// the outbox cannot take it.
    async fn keep(&self, jobs: Vec<ChatJob>, batch: &[NewMessage]) -> StoredBatch {
        match self.outbox.push(batch, now_ms()).await {
            Ok(()) => {
                let stored: Vec<ChatMessage> = batch.iter().map(provisional).collect();
                self.chat
                    .metrics
                    .messages_kept
                    .fetch_add(stored.len() as u64, Ordering::Relaxed);
                StoredBatch {
                    jobs,
                    results: stored.iter().cloned().map(Ok).collect(),
                    stored,
                }
            }
            Err(error) => {
                tracing::warn!(%error, "refusing messages: the database is away and the outbox cannot take them");
                let refusal = AppError::new(
                    ErrorCode::ServerUnavailable,
                    format!("the database cannot be reached and {error}; send it again later"),
                );
                StoredBatch {
                    results: jobs.iter().map(|_| Err(refusal.clone())).collect(),
                    jobs,
                    stored: Vec::new(),
                }
            }
        }
    }

    /// Stores the outbox's oldest messages in SQL and delivers them; false when SQL does not
    /// take them yet.
    async fn drain_once(&self) -> bool {
        let (last, batch) = match self.outbox.oldest(CHAT_BATCH).await {
            Ok(oldest) => oldest,
            Err(error) => {
                tracing::error!(%error, "cannot read the outbox");
                return false;
            }
        };
        if batch.is_empty() {
            return true;
        }
        // A 1:1 conversation begun while SQL was away is made now (made once: `ensure`).
        let mut direct = BTreeMap::new();
        for message in &batch {
            if let Some((a, b)) = message.conversation.direct_members() {
                let other = if a == message.sender { b } else { a };
                direct
                    .entry(message.conversation.clone())
                    .or_insert_with(|| {
                        direct_record(&message.conversation, &message.sender, &other)
                    });
            }
        }
        for record in direct.values() {
            if let Err(error) = timed::sql_store(
                &self.chat.metrics,
                self.chat.store.ensure_conversation(record),
            )
            .await
            {
                tracing::debug!(%error, "the outbox waits for the database");
                return false;
            }
        }
        let results = match self.write_sql(&batch).await {
            Ok(results) => results,
            Err(error) => {
                tracing::debug!(%error, "the outbox waits for the database");
                return false;
            }
        };
        let mut stored = Vec::with_capacity(results.len());
        for (message, result) in batch.iter().zip(results) {
            match result {
                Ok(message) => stored.push(message),
                // Accepted while SQL was away, refused by it now (the sender left the
                // conversation meanwhile): it stays provisional on the devices that have it.
                Err(error) => {
                    tracing::warn!(id = %message.id, conversation = %message.conversation, error = %error.0.message, "a kept message was refused by the database");
                }
            }
        }
        let _order = self.order.lock().await;
        if let Err(error) = self.outbox.remove_through(last).await {
            tracing::error!(%error, "cannot clear stored messages from the outbox; they will be found again by client id");
        }
        self.chat
            .metrics
            .messages_stored
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
        tracing::info!(
            count = stored.len(),
            left = self.outbox.len(),
            "stored messages from the outbox"
        );
        let batch = StoredBatch {
            jobs: Vec::new(),
            results: Vec::new(),
            stored,
        };
        self.deliveries.send(batch).await.is_ok()
    }

    /// Writes the outbox's oldest journal entries to SQL; false when SQL does not take them.
    async fn drain_journal_once(&self) -> bool {
        let (last, entries) = match self.outbox.oldest_journal(CHAT_BATCH).await {
            Ok(oldest) => oldest,
            Err(error) => {
                tracing::error!(%error, "cannot read the outbox's journal entries");
                return false;
            }
        };
        for entry in &entries {
            let written =
                timed::sql_store(&self.chat.metrics, self.chat.store.add_journal(entry)).await;
            match written {
                Ok(()) => {}
                Err(error) if unreachable(&error) => return false,
                Err(error) => {
                    tracing::error!(id = %entry.id, %error, "a kept journal entry was refused by the database");
                }
            }
        }
        if let Err(error) = self.outbox.remove_journal_through(last).await {
            tracing::error!(%error, "cannot clear written journal entries from the outbox; they are written again");
        }
        tracing::info!(
            count = entries.len(),
            "wrote journal entries from the outbox"
        );
        true
    }

    /// Drains the outbox whenever it holds something (messages first), until `stop`.
    async fn drain(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if !self.outbox.is_empty() && self.drain_once().await {
                continue;
            }
            if self.outbox.is_empty()
                && self.outbox.journal_len() > 0
                && self.drain_journal_once().await
            {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(DRAIN_RETRY) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

impl ChatWriter {
    /// Runs until every sender is gone. Three parts: this task takes batches off the queue
    /// and writes each (to SQL, or to the outbox); a delivery task (owned here, ended with it)
    /// pushes each written batch to devices and peers and answers its senders; a drainer
    /// stores what the outbox holds once SQL answers. A lock orders the writes and the hand-
    /// over to delivery, so a conversation's messages are delivered in the order they were
    /// accepted.
    pub async fn run(mut self, chat: Arc<Chat>) {
        let outbox = chat.outbox.clone();
        let (deliveries, mut stored_rx) = mpsc::channel::<StoredBatch>(2);
        let delivery_chat = chat.clone();
        let delivery = tokio::spawn(async move {
            while let Some(batch) = stored_rx.recv().await {
                delivery_chat.deliver_messages(&batch.stored).await;
                let handed_over = Instant::now();
                for (job, result) in batch.jobs.into_iter().zip(batch.results) {
                    if result.is_ok() {
                        let delivery = handed_over.duration_since(job.accepted);
                        delivery_chat.metrics.chat_delivery.observe(delivery);
                    }
                    let _ = job.reply.send(result);
                }
            }
        });
        let pipeline = Arc::new(Pipeline {
            chat,
            outbox,
            order: tokio::sync::Mutex::new(()),
            deliveries,
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let drainer = tokio::spawn({
            let pipeline = pipeline.clone();
            async move { pipeline.drain(stopped).await }
        });
        let mut jobs = Vec::with_capacity(CHAT_BATCH);
        while let Some(first) = self.rx.recv().await {
            jobs.push(first);
            while jobs.len() < CHAT_BATCH {
                match self.rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if !pipeline.write(std::mem::take(&mut jobs)).await {
                break;
            }
        }
        let _ = stop.send(true);
        let _ = drainer.await;
        drop(pipeline);
        let _ = delivery.await;
    }
}
