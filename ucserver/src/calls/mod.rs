//! The call shell: carries out what `core::call` decides, for the calls this server owns,
//! and relays between devices and the calls' owners. See `docs/calls.md` for the protocol.
//!
//! - A call is owned by its caller's home server: one task per call ([`CallTask`]) drives the
//!   `Call` state machine with its timer, talks to the call's MediaServer and sends events.
//!   The core rings nobody before the caller's leg stands on a MediaServer; when that
//!   MediaServer fails the leg, the task chooses another (not one this call tried) and puts the
//!   leg there. A control request that gets no answer makes the MediaServer suspect for the
//!   choice of new calls (`MediaPool::mark_suspect`).
//! - A device's command about a call goes to the call's owner (the owner is named in the call
//!   id): handed to the task directly, or relayed over the bus with a reply token.
//! - Telephony states go to each user's home server, the only writer of their presence; it
//!   keeps each user's state per call, which is also how it finds a call to pick up and the
//!   calls to leave when a device goes offline or a call's owner dies.
//! - Softphone leases (`softphone`, one per user per call) are held by the owner and returned
//!   when the user leaves the call, or by the cluster when the owner dies.

use crate::core::call::{Call, CallInput, CallOutput, Callee, Endpoint, Reach};
use crate::core::license::{LeaseOutcome, SOFTPHONE};
use crate::error::{AppError, AppResult};
use crate::media::{ChosenMedia, ControlError};
use crate::server::Server;
use registry::{ActiveCall, CallMsg, CommandResult, Replier, lease_key};

pub mod registry;
pub use registry::Calls;
use shared::api::{ApiError, CallResult, Direction, ErrorCode, JournalEntry, JournalKind};
use shared::bus::BusBody;
use shared::call::{
    CallBusBody, CallCommand, CallEvent, EndReason, ForwardMode, Refusal, ReplyTo, call_owner,
    new_call_id,
};
use shared::media::MediaEvent;
use shared::presence::{Availability, Capability, TelephonyState};
use shared::ws::ServerEvent;
use shared::{CallId, DeviceId, MediaServerId, ServerId, UserId, now_ms};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a device waits for the owner of a call to take a relayed command.
const RELAY_TIMEOUT: Duration = Duration::from_secs(8);
/// Inputs queued for one call task.
const CALL_QUEUE: usize = 256;
/// Calls one user may have placed and not yet ended, on this server.
pub const MAX_PLACED_PER_USER: usize = 8;

fn refusal(reason: Refusal) -> ApiError {
    ApiError::new(reason.error_code(), reason.message())
}

fn gone() -> ApiError {
    refusal(Refusal::CallEnded)
}

// ---------------------------------------------------------------------- device commands

/// Runs a device's call command; the answer goes into its `ack` (or `error`).
/// Access (forwarding someone else's calls, picking up) was checked by the application layer.
pub async fn run_command(
    server: &std::sync::Arc<Server>,
    by: Endpoint,
    command: CallCommand,
) -> AppResult<Option<CallId>> {
    if let Some(sdp) = command_sdp(&command) {
        check_sdp(sdp)?;
    }
    match command {
        CallCommand::CallPlace { to, sdp, video } => {
            place(server, by, to, sdp, video).await.map(Some)
        }
        CallCommand::ForwardSet { mode, to, user } => {
            let owner = user.unwrap_or_else(|| by.user.clone());
            set_forwarding(server, &by.user, &owner, mode, Some(to)).await?;
            Ok(None)
        }
        CallCommand::ForwardClear { mode, user } => {
            let owner = user.unwrap_or_else(|| by.user.clone());
            let modes = match mode {
                Some(mode) => vec![mode],
                None => vec![
                    ForwardMode::Always,
                    ForwardMode::Busy,
                    ForwardMode::NoAnswer,
                ],
            };
            for mode in modes {
                set_forwarding(server, &by.user, &owner, mode, None).await?;
            }
            Ok(None)
        }
        CallCommand::CallPickup { user, call, sdp } => {
            if user == by.user {
                return Err(refusal(Refusal::OwnCall).into());
            }
            let home = server.relations.server_of(&user).await?;
            let (token, rx) = server.calls.wait_token();
            let body = CallBusBody::CallPickupRoute {
                user,
                call,
                by: by.user,
                device: by.device,
                sdp,
                reply: Some(ReplyTo {
                    server: server.id.clone(),
                    token,
                }),
            };
            route(server, &home, body).await;
            wait_reply(server, token, rx).await
        }
        CallCommand::CallAnswer { ref call, .. }
        | CallCommand::CallReject { ref call }
        | CallCommand::CallHangup { ref call }
        | CallCommand::CallInvite { ref call, .. } => {
            let call = call.clone();
            let Some(owner) = call_owner(&call) else {
                return Err(AppError::new(
                    ErrorCode::NotFound,
                    format!("no call '{call}'"),
                ));
            };
            let (token, rx) = server.calls.wait_token();
            let body = CallBusBody::CallRelay {
                call,
                user: by.user,
                device: by.device,
                command,
                reply: Some(ReplyTo {
                    server: server.id.clone(),
                    token,
                }),
            };
            route(server, &owner, body).await;
            wait_reply(server, token, rx).await
        }
    }
}

fn command_sdp(command: &CallCommand) -> Option<&str> {
    match command {
        CallCommand::CallPlace { sdp, .. }
        | CallCommand::CallAnswer { sdp, .. }
        | CallCommand::CallPickup { sdp, .. } => Some(sdp),
        _ => None,
    }
}

/// An SDP offer must look like one and fit the limit; the MediaServer judges the rest.
fn check_sdp(sdp: &str) -> AppResult<()> {
    if sdp.len() > shared::limits::MAX_SDP_BYTES {
        return Err(AppError::bad_request(format!(
            "the SDP offer exceeds {} bytes",
            shared::limits::MAX_SDP_BYTES
        )));
    }
    if !sdp.starts_with("v=0") {
        return Err(AppError::bad_request(
            "the SDP offer is not an SDP (it must start with v=0)",
        ));
    }
    Ok(())
}

async fn wait_reply(
    server: &Server,
    token: u64,
    rx: oneshot::Receiver<CommandResult>,
) -> AppResult<Option<CallId>> {
    match tokio::time::timeout(RELAY_TIMEOUT, rx).await {
        Ok(Ok(result)) => result.map_err(AppError),
        Ok(Err(_)) | Err(_) => {
            server.calls.replies.lock().unwrap().remove(&token);
            Err(AppError::new(
                ErrorCode::ServerUnavailable,
                "the server that holds the call did not answer; try again",
            ))
        }
    }
}

async fn set_forwarding(
    server: &Server,
    actor: &UserId,
    owner: &UserId,
    mode: ForwardMode,
    target: Option<UserId>,
) -> AppResult<()> {
    if target.as_ref() == Some(owner) {
        return Err(AppError::bad_request(
            "a user's calls cannot be forwarded to that same user",
        ));
    }
    let rules = server
        .sql(server.store.set_forwarding(owner, mode, target.as_ref()))
        .await?;
    server.relations.learn_forwarding(owner, &rules);
    tracing::info!(user = %owner, by = %actor, mode = mode.as_str(), target = ?target, "forwarding changed");
    server
        .broadcast(BusBody::Call(CallBusBody::ForwardingChanged {
            user: owner.clone(),
            rules,
        }))
        .await;
    Ok(())
}

/// Places a call from `by` to `to`; the call task takes over from here.
async fn place(
    server: &std::sync::Arc<Server>,
    by: Endpoint,
    to: UserId,
    sdp: String,
    video: bool,
) -> AppResult<CallId> {
    if to == by.user {
        return Err(AppError::bad_request("you cannot call yourself"));
    }
    let placed = server
        .calls
        .active
        .lock()
        .unwrap()
        .values()
        .filter(|c| c.caller == by.user)
        .count();
    if placed >= MAX_PLACED_PER_USER {
        return Err(AppError::new(
            ErrorCode::Conflict,
            format!("you have {placed} calls going already; end one first"),
        ));
    }
    home_for_call(server, &to).await?;
    let chosen = server
        .media
        .choose(&*server.store, &*server.cluster, &[])
        .await?;
    let id = new_call_id(&server.id, &crate::auth::random_hex(12));
    server
        .licenses
        .acquire(SOFTPHONE, &lease_key(&id, &by.user))
        .await?;
    let callee = match lookup_callee(server, &to).await {
        Ok(callee) => callee,
        Err(error) => {
            release_lease(server, &id, &by.user).await;
            return Err(error);
        }
    };
    server.metrics.calls_placed.fetch_add(1, Ordering::Relaxed);
    tracing::info!(call = %id, from = %by, %to, media = %chosen.id, "call placed");
    let call = Call::new(
        server.calls.config(),
        id.clone(),
        by.clone(),
        sdp,
        callee,
        now_ms(),
    );
    let (tx, rx) = mpsc::channel(CALL_QUEUE);
    server.metrics.calls_active.fetch_add(1, Ordering::Relaxed);
    server.calls.active.lock().unwrap().insert(
        id.clone(),
        ActiveCall {
            tx: tx.clone(),
            caller: by.user.clone(),
            media: chosen.id.clone(),
            incarnation: chosen.incarnation.clone(),
            media_failed: false,
            leases: BTreeSet::from([by.user.clone()]),
        },
    );
    send_event(
        server,
        &by.user,
        vec![by.device.clone()],
        CallEvent::CallPlaced {
            call: id.clone(),
            to,
            media: chosen.id.clone(),
        },
    )
    .await;
    let task = CallTask {
        server: server.clone(),
        id: id.clone(),
        tried: vec![chosen.id.clone()],
        media: chosen,
        video,
        tx,
    };
    tokio::spawn(task.run(call, rx));
    Ok(id)
}

async fn release_lease(server: &Server, call: &CallId, user: &UserId) {
    server
        .bus(
            "release softphone lease",
            server
                .cluster
                .lease_release(SOFTPHONE, &lease_key(call, user)),
        )
        .await;
}

/// The home server of a user a call is for, from the relations cache. While SQL is away, a
/// user this server has never looked up is found where they are online (the cluster's
/// online sets) and remembered; one online nowhere is `server_unavailable`.
async fn home_for_call(server: &Server, user: &UserId) -> AppResult<ServerId> {
    let error = match server.relations.home_of(user).await {
        Err(error) if error.code() == ErrorCode::ServerUnavailable => error,
        known => return known,
    };
    let servers = server
        .bus("list servers", server.cluster.servers())
        .await
        .unwrap_or_default();
    for seen in servers {
        let id = seen.heartbeat.id;
        let online = server
            .bus("online users", server.cluster.online_users(&id))
            .await
            .unwrap_or_default();
        if online.contains(user) {
            tracing::info!(%user, home = %id, "home unknown while the database is away; found where the user is online");
            server.relations.learn_home(user, &id);
            return Ok(id);
        }
    }
    Err(error)
}

/// What a call needs to know of a user it is offered to. Read through the relations cache,
/// so that it works while SQL is away for every user this server has dealt with; a user's
/// forwarding never read here is then taken from their presence: one who forwards every call
/// (`forwarded`) cannot be called (`server_unavailable`, the target is unknown), anyone else
/// rings their own devices (forwarding on busy or no answer unknown, so not applied).
async fn lookup_callee(server: &Server, user: &UserId) -> AppResult<Callee> {
    match home_for_call(server, user).await {
        Ok(_) => {}
        Err(error) if error.code() == ErrorCode::NotFound => {
            return Ok(Callee {
                user: user.clone(),
                reach: Reach::Unknown,
                forwarding: Default::default(),
            });
        }
        Err(error) => return Err(error),
    }
    let snapshot = server.presence.snapshot_of(user).await;
    let forwarding = match server.relations.forwarding_of(user).await {
        Ok(rules) => rules,
        Err(error) if error.code() == ErrorCode::ServerUnavailable => {
            if snapshot.telephony == TelephonyState::Forwarded {
                return Err(AppError::new(
                    ErrorCode::ServerUnavailable,
                    format!(
                        "'{user}' forwards their calls, and where to cannot be read while the database is away; try again shortly"
                    ),
                ));
            }
            tracing::warn!(%user, "forwarding unknown while the database is away; ringing the user's own devices");
            Default::default()
        }
        Err(error) => return Err(error),
    };
    let takes_calls: BTreeSet<DeviceId> = snapshot
        .devices
        .iter()
        .filter(|d| {
            d.capabilities
                .iter()
                .any(|c| matches!(c, Capability::Audio | Capability::Softphone))
        })
        .map(|d| d.device.clone())
        .collect();
    let reach = if snapshot.availability == Availability::Offline || takes_calls.is_empty() {
        Reach::Offline
    } else if snapshot.telephony == TelephonyState::InCall {
        Reach::Busy
    } else {
        Reach::Online(takes_calls)
    };
    Ok(Callee {
        user: user.clone(),
        reach,
        forwarding,
    })
}

// ---------------------------------------------------------------------- routing

/// Hands a call body to the server it is for: this one directly, any other over the bus.
async fn route(server: &std::sync::Arc<Server>, to: &ServerId, body: CallBusBody) {
    if *to == server.id {
        Box::pin(handle_bus(server, body)).await;
    } else {
        server.publish(to, BusBody::Call(body)).await;
    }
}

/// Sends a call event to some devices of a user (all of them when `devices` is empty),
/// through the user's home server.
async fn send_event(
    server: &std::sync::Arc<Server>,
    user: &UserId,
    devices: Vec<DeviceId>,
    event: CallEvent,
) {
    match server.relations.server_of(user).await {
        Ok(home) if home == server.id => {
            server.deliver_to_devices(user, &devices, &ServerEvent::Call(event));
        }
        Ok(home) => {
            server
                .publish(
                    &home,
                    BusBody::Call(CallBusBody::CallDeliver {
                        user: user.clone(),
                        devices,
                        event,
                    }),
                )
                .await;
        }
        Err(error) => {
            tracing::warn!(%user, %error, "call event not delivered: the user's home is unknown");
        }
    }
}

/// A call message from another server (or from this one, for its own users).
pub async fn handle_bus(server: &std::sync::Arc<Server>, body: CallBusBody) {
    match body {
        CallBusBody::CallDeliver {
            user,
            devices,
            event,
        } => {
            server.deliver_to_devices(&user, &devices, &ServerEvent::Call(event));
        }
        CallBusBody::CallRelay {
            call,
            user,
            device,
            command,
            reply,
        } => {
            let by = Endpoint::new(user, device);
            let reply = Replier::Remote(reply);
            match server.calls.sender(&call) {
                Some(tx) => {
                    let message = CallMsg::Command { by, command, reply };
                    if let Err(mpsc::error::SendError(CallMsg::Command { reply, .. })) =
                        tx.send(message).await
                    {
                        reply.send(server, Err(gone())).await;
                    }
                }
                None => reply.send(server, Err(gone())).await,
            }
        }
        CallBusBody::CallReply { token, call, error } => {
            server.calls.resolve(token, error.map_or(Ok(call), Err));
        }
        CallBusBody::CallTelephony {
            call,
            user,
            state,
            caller,
        } => {
            server.set_call_telephony(&user, &call, state, caller).await;
        }
        CallBusBody::CallCheck { call, user } => {
            if server.calls.sender(&call).is_none() {
                tracing::info!(%call, %user, "a call asked about is over here; telling the user's home");
                match server.relations.server_of(&user).await {
                    Ok(home) => {
                        let body = CallBusBody::CallTelephony {
                            call,
                            user,
                            state: TelephonyState::Idle,
                            caller: None,
                        };
                        Box::pin(route(server, &home, body)).await;
                    }
                    Err(error) => tracing::warn!(%user, %error, "cannot answer a call check"),
                }
            }
        }
        CallBusBody::CallDeviceGone { call, user, device } => {
            if let Some(tx) = server.calls.sender(&call) {
                let _ = tx
                    .send(CallMsg::DeviceGone(Endpoint::new(user, device)))
                    .await;
            }
        }
        CallBusBody::CallPickupRoute {
            user,
            call,
            by,
            device,
            sdp,
            reply,
        } => {
            let ringing = server.telephony.ringing_calls(&user);
            let chosen = match &call {
                Some(call) => ringing.into_iter().find(|c| c == call),
                None => ringing.into_iter().next(),
            };
            let Some(chosen) = chosen else {
                let error = ApiError::new(
                    ErrorCode::NotFound,
                    format!("no call is ringing at '{user}'"),
                );
                Replier::Remote(reply).send(server, Err(error)).await;
                return;
            };
            let Some(owner) = call_owner(&chosen) else {
                return;
            };
            let relay = CallBusBody::CallRelay {
                call: chosen.clone(),
                user: by,
                device,
                command: CallCommand::CallPickup {
                    user,
                    call: Some(chosen),
                    sdp,
                },
                reply,
            };
            route(server, &owner, relay).await;
        }
        CallBusBody::ForwardingChanged { user, rules } => {
            server.relations.learn_forwarding(&user, &rules);
            if matches!(server.relations.server_of(&user).await, Ok(home) if home == server.id) {
                server.set_forwarded(&user, rules.always.is_some()).await;
            }
            let event = ServerEvent::Call(CallEvent::ForwardingChanged {
                user: user.clone(),
                rules,
            });
            server.deliver_to_devices(&user, &[], &event);
        }
    }
}

impl Replier {
    async fn send(self, server: &std::sync::Arc<Server>, result: CommandResult) {
        match self {
            Self::Remote(None) => {}
            Self::Remote(Some(to)) => {
                let (call, error) = match result {
                    Ok(call) => (call, None),
                    Err(error) => (None, Some(error)),
                };
                if to.server == server.id {
                    server.calls.resolve(to.token, error.map_or(Ok(call), Err));
                } else {
                    server
                        .publish(
                            &to.server,
                            BusBody::Call(CallBusBody::CallReply {
                                token: to.token,
                                call,
                                error,
                            }),
                        )
                        .await;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------- failures

/// A device of a local user went offline: it leaves (or stops ringing for) its calls.
pub async fn device_gone(server: &std::sync::Arc<Server>, user: &UserId, device: &DeviceId) {
    for call in server.telephony.calls_of(user) {
        if let Some(owner) = call_owner(&call) {
            let body = CallBusBody::CallDeviceGone {
                call,
                user: user.clone(),
                device: device.clone(),
            };
            route(server, &owner, body).await;
        }
    }
}

/// How long a local user's part in a call owned by another server may go without news before
/// the owner is asked whether the call is still on (and again after as long).
const CHECK_QUIET_PARTS_MS: shared::TimestampMs = 10_000;

/// Asks the owners of calls our users have had a part in for a while without news whether
/// those calls are still on (an end announced while the bus was away, or by a previous
/// incarnation of the owner, never arrived); an owner that no longer knows a call says so.
pub async fn check_quiet_parts(server: &std::sync::Arc<Server>) {
    let due = server
        .telephony
        .parts_to_check(&server.id, now_ms(), CHECK_QUIET_PARTS_MS);
    for (user, call, owner) in due {
        route(server, &owner, CallBusBody::CallCheck { call, user }).await;
    }
}

/// A server died: the calls it owned are over for our users (their owner cannot end them).
pub async fn owner_gone(server: &Server, dead: &ServerId) {
    for (user, call, part) in server.telephony.calls_owned_by(dead) {
        tracing::warn!(%user, %call, owner = %dead, "the call's server died; ending it here");
        // The owner would have written the journal; it is gone, so the user's home does. The
        // caller's own entry died with the caller's server (it owned the call).
        if let Some(caller) = part.caller.filter(|caller| *caller != user) {
            let entry = JournalEntry {
                id: uuid::Uuid::now_v7().to_string(),
                user: user.clone(),
                kind: JournalKind::Call,
                direction: Direction::Incoming,
                party: caller.to_string(),
                conversation: None,
                started_ms: part.started_ms,
                answered_ms: part.answered_ms,
                ended_ms: Some(shared::now_ms()),
                result: Some(CallResult::Failed),
                messages: 0,
                summary: Some(call.to_string()),
            };
            server.add_journal(&entry).await;
        }
        server.deliver_to_devices(
            &user,
            &[],
            &ServerEvent::Call(CallEvent::CallEnded {
                call: call.clone(),
                reason: EndReason::SetupFailed,
                result: CallResult::Failed,
            }),
        );
        server
            .set_call_telephony(&user, &call, TelephonyState::Idle, None)
            .await;
    }
}

/// A MediaServer reported something about a leg.
pub async fn media_event(server: &Server, event: MediaEvent) {
    let MediaEvent::Failed {
        media,
        call,
        leg,
        reason,
    } = event
    else {
        return;
    };
    // Only from the call's MediaServer now: one it moved away from has no say.
    let tx = match server.calls.active.lock().unwrap().get(&call) {
        Some(active) if active.media == media => active.tx.clone(),
        _ => return,
    };
    let Some((user, device)) = leg.split_once('/') else {
        return;
    };
    let party = Endpoint::new(UserId::from(user), DeviceId::from(device));
    let _ = tx.send(CallMsg::LegFailed { party, reason }).await;
}

/// On a graceful shutdown: every call this server owns ends now, told to its parties and
/// journalled as failed, instead of vanishing with the process. Waits up to `limit`.
pub async fn end_all(server: &Server, limit: Duration) {
    let calls: Vec<mpsc::Sender<CallMsg>> = server
        .calls
        .active
        .lock()
        .unwrap()
        .values()
        .map(|c| c.tx.clone())
        .collect();
    for tx in calls {
        let _ = tx
            .send(CallMsg::MediaFailed("the server is shutting down".into()))
            .await;
    }
    let deadline = tokio::time::Instant::now() + limit;
    while server.calls.active_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ends the calls whose MediaServer stopped beating or restarted (a new incarnation).
pub async fn check_media(server: &Server) {
    if server.calls.active_count() == 0 {
        return;
    }
    let embedded = server.media.embedded().map(|h| h.id().clone());
    let now = now_ms();
    // MediaServers beat into the cluster store: while it cannot be read their calls are not
    // judged (unknown is not gone), and once it can again, each gets the full window to beat
    // there before its calls count as lost.
    let statuses = match server.cluster.media_servers().await {
        Ok(statuses) => statuses,
        Err(error) => {
            tracing::warn!(%error, "MediaServer heartbeats cannot be read; calls not checked");
            server.calls.media_unseen();
            return;
        }
    };
    let seen_again_ms = server.calls.media_seen(now);
    let mut failing = Vec::new();
    {
        let mut active = server.calls.active.lock().unwrap();
        for (id, call) in active.iter_mut() {
            if call.media_failed || Some(&call.media) == embedded.as_ref() {
                continue;
            }
            let status = statuses.iter().find(|(s, _)| s.id == call.media);
            let reason = match status {
                None if server.media.calls_lost(now, seen_again_ms).is_none() => None,
                None => Some(format!("MediaServer {} is gone", call.media)),
                Some((_, seen))
                    if server
                        .media
                        .calls_lost(now, (*seen).max(seen_again_ms))
                        .is_some() =>
                {
                    Some(format!(
                        "MediaServer {} stopped answering {} ms ago",
                        call.media,
                        now - seen
                    ))
                }
                Some((s, _))
                    if !call.incarnation.is_empty() && s.incarnation != call.incarnation =>
                {
                    Some(format!(
                        "MediaServer {} restarted and lost its calls",
                        call.media
                    ))
                }
                _ => None,
            };
            if let Some(reason) = reason {
                call.media_failed = true;
                failing.push((id.clone(), call.tx.clone(), reason));
            }
        }
    }
    for (id, tx, reason) in failing {
        tracing::warn!(call = %id, %reason, "ending a call: its MediaServer failed");
        let _ = tx.send(CallMsg::MediaFailed(reason)).await;
    }
}

// ---------------------------------------------------------------------- the call task

/// Puts `party`'s leg on `media`; the message for the call task either way.
async fn add_leg(
    server: &Server,
    media: &ChosenMedia,
    call: &CallId,
    party: Endpoint,
    offer: String,
) -> CallMsg {
    match media.link.add_leg(call, &party.leg(), offer).await {
        Ok(sdp) => CallMsg::LegAnswer { party, sdp },
        Err(error) => {
            control_failed(server, media, &error);
            CallMsg::LegFailed {
                party,
                reason: error.to_string(),
            }
        }
    }
}

/// A control request to `media` failed: one that got no answer makes it suspect, so that
/// new calls avoid it at once rather than when its heartbeat has aged out.
fn control_failed(server: &Server, media: &ChosenMedia, error: &ControlError) {
    if matches!(error, ControlError::Unreachable(_)) {
        tracing::warn!(media = %media.id, %error, "MediaServer unreachable; no new calls for it until it beats again");
        server.media.mark_suspect(&media.id);
    }
}

/// One call this server owns, driven to its end.
struct CallTask {
    server: std::sync::Arc<Server>,
    id: CallId,
    /// The call's MediaServer now.
    media: ChosenMedia,
    /// Every MediaServer the call was placed on, the current one last; never chosen again.
    tried: Vec<MediaServerId>,
    video: bool,
    /// The task's own input, for the results of work it spawns (media, lookups).
    tx: mpsc::Sender<CallMsg>,
}

impl CallTask {
    async fn run(mut self, mut call: Call, mut rx: mpsc::Receiver<CallMsg>) {
        self.drain(&mut call, None).await;
        while !call.is_ended() {
            let wait = call
                .poll_timeout()
                .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64));
            tokio::select! {
                message = rx.recv() => match message {
                    Some(message) => self.handle(&mut call, message).await,
                    None => break,
                },
                _ = async {
                    match wait {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => std::future::pending().await,
                    }
                } => {
                    call.handle_timeout(now_ms());
                    self.drain(&mut call, None).await;
                }
            }
        }
        let ended = self.server.calls.active.lock().unwrap().remove(&self.id);
        self.server
            .metrics
            .calls_active
            .fetch_sub(1, Ordering::Relaxed);
        // Commands that raced with the end get their answer.
        rx.close();
        while let Ok(message) = rx.try_recv() {
            match message {
                CallMsg::Command { reply, .. } => reply.send(&self.server, Err(gone())).await,
                // Moved while it ended: the leg put there goes too.
                CallMsg::MediaMoved(media) => self.spawn_end_call(media),
                _ => {}
            }
        }
        for user in ended.map(|call| call.leases).unwrap_or_default() {
            release_lease(&self.server, &self.id, &user).await;
        }
        tracing::info!(call = %self.id, "call over");
    }

    async fn handle(&mut self, call: &mut Call, message: CallMsg) {
        let now = now_ms();
        match message {
            CallMsg::Command { by, command, reply } => {
                let result = self.command(call, by, command).await;
                reply.send(&self.server, result).await;
            }
            CallMsg::DeviceGone(by) => {
                call.handle_input(now, CallInput::DeviceGone { by });
                self.drain(call, None).await;
            }
            CallMsg::LegAnswer { party, sdp } => {
                if call.parties().contains(&party) {
                    let event = CallEvent::CallMediaAnswer {
                        call: self.id.clone(),
                        media: self.media.id.clone(),
                        sdp,
                    };
                    let device = party.device.clone();
                    send_event(&self.server, &party.user, vec![device], event).await;
                    call.handle_input(now, CallInput::LegAnswered { party });
                    self.drain(call, None).await;
                }
            }
            CallMsg::MediaMoved(chosen) => {
                tracing::info!(call = %self.id, from = %self.media.id, to = %chosen.id, "call moved to another MediaServer");
                self.tried.push(chosen.id.clone());
                if let Some(active) = self.server.calls.active.lock().unwrap().get_mut(&self.id) {
                    active.media = chosen.id.clone();
                    active.incarnation = chosen.incarnation.clone();
                    active.media_failed = false;
                }
                let old = std::mem::replace(&mut self.media, chosen);
                // Whatever the failed MediaServer may hold of the call goes (best effort).
                self.spawn_end_call(old);
            }
            CallMsg::LegFailed { party, reason } => {
                tracing::warn!(call = %self.id, media = %self.media.id, %party, %reason, "a leg failed");
                call.handle_input(now, CallInput::LegFailed { party, reason });
                self.drain(call, None).await;
            }
            CallMsg::MediaFailed(reason) => {
                call.handle_input(now, CallInput::MediaFailed { reason });
                self.drain(call, None).await;
            }
            CallMsg::Target(callee) => {
                call.handle_input(now, CallInput::Target(callee));
                self.drain(call, None).await;
            }
        }
    }

    /// A device's command; `Ok` once the call took it.
    async fn command(
        &mut self,
        call: &mut Call,
        by: Endpoint,
        command: CallCommand,
    ) -> CommandResult {
        let mut new_lease = false;
        let input = match command {
            CallCommand::CallAnswer { sdp, .. } => {
                new_lease = self.take_lease(&by.user).await?;
                CallInput::Answer {
                    by: by.clone(),
                    offer: sdp,
                }
            }
            CallCommand::CallPickup { sdp, .. } => {
                new_lease = self.take_lease(&by.user).await?;
                CallInput::PickUp {
                    by: by.clone(),
                    offer: sdp,
                }
            }
            CallCommand::CallReject { .. } => CallInput::Reject { by: by.clone() },
            CallCommand::CallHangup { .. } => CallInput::Hangup { by: by.clone() },
            CallCommand::CallInvite { user, .. } => {
                let invitee = lookup_callee(&self.server, &user).await.map_err(|e| e.0)?;
                CallInput::Invite {
                    by: by.clone(),
                    invitee,
                }
            }
            CallCommand::CallPlace { .. }
            | CallCommand::ForwardSet { .. }
            | CallCommand::ForwardClear { .. } => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "not a command about an existing call",
                ));
            }
        };
        call.handle_input(now_ms(), input);
        match self.drain(call, Some(&by)).await {
            Some(reason) => {
                if new_lease {
                    self.drop_lease(&by.user).await;
                }
                Err(refusal(reason))
            }
            None => Ok(Some(self.id.clone())),
        }
    }

    /// Takes a softphone lease for a user joining; true when it is new.
    async fn take_lease(&mut self, user: &UserId) -> Result<bool, ApiError> {
        if self.server.calls.holds_lease(&self.id, user) {
            return Ok(false);
        }
        let capacity = self
            .server
            .licenses
            .capacity(SOFTPHONE)
            .await
            .map_err(|e| e.0)?;
        let outcome = self
            .server
            .cluster
            .lease_acquire(
                SOFTPHONE,
                &lease_key(&self.id, user),
                &self.server.id,
                capacity,
            )
            .await
            .map_err(|e| AppError::from(e).0)?;
        match outcome {
            LeaseOutcome::Granted | LeaseOutcome::AlreadyHeld => {
                self.server.calls.lease_taken(&self.id, user);
                Ok(true)
            }
            LeaseOutcome::Exhausted { capacity } => Err(ApiError::new(
                ErrorCode::LicenseExhausted,
                format!(
                    "all {capacity} softphone licenses are in use; ask an administrator for more"
                ),
            )),
        }
    }

    async fn drop_lease(&mut self, user: &UserId) {
        if self.server.calls.lease_returned(&self.id, user) {
            release_lease(&self.server, &self.id, user).await;
        }
    }

    /// Carries out the call's outputs; returns the refusal of `current`'s command, if any.
    async fn drain(&mut self, call: &mut Call, current: Option<&Endpoint>) -> Option<Refusal> {
        let mut refused = None;
        while let Some(output) = call.poll_output() {
            match output {
                CallOutput::Ring {
                    user,
                    devices,
                    from,
                    forwarded_from,
                    parties,
                } => {
                    let incoming = CallEvent::CallIncoming {
                        call: self.id.clone(),
                        from: from.user.clone(),
                        forwarded_from,
                        conference: !parties.is_empty(),
                        parties,
                        video: self.video,
                    };
                    send_event(&self.server, &user, devices, incoming).await;
                    let ringing = CallEvent::CallRinging {
                        call: self.id.clone(),
                        user,
                    };
                    send_event(&self.server, &from.user, vec![from.device], ringing).await;
                }
                CallOutput::StopRinging {
                    user,
                    devices,
                    reason,
                    by,
                } => {
                    let event = CallEvent::CallRingingStopped {
                        call: self.id.clone(),
                        reason,
                        by,
                    };
                    send_event(&self.server, &user, devices, event).await;
                }
                CallOutput::Redirect { from, to, mode } => {
                    let caller = call.caller().clone();
                    let event = CallEvent::CallRedirected {
                        call: self.id.clone(),
                        from,
                        to: to.clone(),
                        mode,
                    };
                    send_event(&self.server, &caller.user, vec![caller.device], event).await;
                    let server = self.server.clone();
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        // A failed lookup is left to the call's lookup timeout (setup_failed).
                        match lookup_callee(&server, &to).await {
                            Ok(callee) => {
                                let _ = tx.send(CallMsg::Target(callee)).await;
                            }
                            Err(error) => {
                                tracing::warn!(%to, %error, "forwarding target lookup failed");
                            }
                        }
                    });
                }
                CallOutput::AddLeg { party, offer } => {
                    let server = self.server.clone();
                    let media = self.media.clone();
                    let call_id = self.id.clone();
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let message = add_leg(&server, &media, &call_id, party, offer).await;
                        let _ = tx.send(message).await;
                    });
                }
                CallOutput::MoveMedia {
                    party,
                    offer,
                    attempt,
                } => {
                    tracing::info!(call = %self.id, failed = %self.media.id, attempt, "choosing another MediaServer before anyone rings");
                    let server = self.server.clone();
                    let tried = self.tried.clone();
                    let call_id = self.id.clone();
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let chosen = server
                            .media
                            .choose(&*server.store, &*server.cluster, &tried)
                            .await;
                        match chosen {
                            Ok(media) => {
                                let _ = tx.send(CallMsg::MediaMoved(media.clone())).await;
                                let message =
                                    add_leg(&server, &media, &call_id, party, offer).await;
                                let _ = tx.send(message).await;
                            }
                            Err(error) => {
                                let _ = tx.send(CallMsg::MediaFailed(error.0.message)).await;
                            }
                        }
                    });
                }
                CallOutput::RemoveLeg { party } => {
                    let server = self.server.clone();
                    let media = self.media.clone();
                    let call_id = self.id.clone();
                    tokio::spawn(async move {
                        if let Err(error) = media.link.remove_leg(&call_id, &party.leg()).await {
                            control_failed(&server, &media, &error);
                            tracing::debug!(call = %call_id, %party, %error, "leg removal failed");
                        }
                    });
                }
                CallOutput::Connected { joined, parties } => {
                    tracing::info!(call = %self.id, %joined, "party connected");
                    let users: Vec<UserId> = parties.iter().map(|p| p.user.clone()).collect();
                    for party in parties {
                        let event = CallEvent::CallConnected {
                            call: self.id.clone(),
                            parties: users.clone(),
                        };
                        send_event(&self.server, &party.user, vec![party.device], event).await;
                    }
                }
                CallOutput::PartyLeft { left, parties } => {
                    let reason = if left.result == CallResult::Failed {
                        EndReason::MediaFailed
                    } else {
                        EndReason::HungUp
                    };
                    let ended = CallEvent::CallEnded {
                        call: self.id.clone(),
                        reason,
                        result: left.result,
                    };
                    let who = left.endpoint;
                    send_event(&self.server, &who.user, vec![who.device.clone()], ended).await;
                    let users: Vec<UserId> = parties.iter().map(|p| p.user.clone()).collect();
                    for party in &parties {
                        let event = CallEvent::CallPartyLeft {
                            call: self.id.clone(),
                            user: who.user.clone(),
                            parties: users.clone(),
                        };
                        send_event(&self.server, &party.user, vec![party.device.clone()], event)
                            .await;
                    }
                    if !users.contains(&who.user) {
                        self.drop_lease(&who.user).await;
                    }
                }
                CallOutput::InviteFailed {
                    inviter,
                    invitee,
                    reason,
                } => {
                    let event = CallEvent::CallInviteFailed {
                        call: self.id.clone(),
                        user: invitee,
                        reason,
                    };
                    send_event(&self.server, &inviter.user, vec![inviter.device], event).await;
                }
                CallOutput::Refused { to, reason } => {
                    if current == Some(&to) && refused.is_none() {
                        refused = Some(reason);
                    } else {
                        let error = refusal(reason);
                        self.server.deliver_to_devices(
                            &to.user,
                            std::slice::from_ref(&to.device),
                            &ServerEvent::Error {
                                reference: None,
                                error: error.error,
                                message: error.message,
                                retry_after_ms: error.retry_after_ms,
                            },
                        );
                    }
                }
                CallOutput::Telephony { user, state } => {
                    let caller = call.caller().user.clone();
                    self.telephony(&user, state, caller).await;
                }
                CallOutput::Journal(record) => {
                    let entry = JournalEntry {
                        id: uuid::Uuid::now_v7().to_string(),
                        user: record.user,
                        kind: JournalKind::Call,
                        direction: record.direction,
                        party: record.party.to_string(),
                        conversation: None,
                        started_ms: record.started_ms,
                        answered_ms: record.answered_ms,
                        ended_ms: Some(record.ended_ms),
                        result: Some(record.result),
                        messages: 0,
                        summary: Some(self.id.to_string()),
                    };
                    self.server.add_journal(&entry).await;
                }
                CallOutput::Ended { reason, parties } => {
                    tracing::info!(call = %self.id, reason = reason.as_str(), "call ended");
                    for party in parties {
                        let event = CallEvent::CallEnded {
                            call: self.id.clone(),
                            reason,
                            result: party.result,
                        };
                        let who = party.endpoint;
                        send_event(&self.server, &who.user, vec![who.device], event).await;
                    }
                    self.spawn_end_call(self.media.clone());
                }
            }
        }
        refused
    }

    /// Ends the call on `media` without waiting for the answer.
    fn spawn_end_call(&self, media: ChosenMedia) {
        let server = self.server.clone();
        let call_id = self.id.clone();
        tokio::spawn(async move {
            if let Err(error) = media.link.end_call(&call_id).await {
                control_failed(&server, &media, &error);
                tracing::debug!(call = %call_id, media = %media.id, %error, "ending the call on its MediaServer failed");
            }
        });
    }

    /// Tells a user's home server their telephony state in this call (and who placed it).
    async fn telephony(&self, user: &UserId, state: TelephonyState, caller: UserId) {
        match self.server.relations.server_of(user).await {
            Ok(home) if home == self.server.id => {
                self.server
                    .set_call_telephony(user, &self.id, state, Some(caller))
                    .await;
            }
            Ok(home) => {
                let body = CallBusBody::CallTelephony {
                    call: self.id.clone(),
                    user: user.clone(),
                    state,
                    caller: Some(caller),
                };
                self.server.publish(&home, BusBody::Call(body)).await;
            }
            Err(error) => tracing::warn!(%user, %error, "telephony state not delivered"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_checked_before_anything_else() {
        assert!(check_sdp("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n").is_ok());
        let error = check_sdp("hello").unwrap_err();
        assert_eq!(error.0.error, ErrorCode::BadRequest);
        let huge = format!("v=0\r\n{}", "a".repeat(shared::limits::MAX_SDP_BYTES));
        assert_eq!(check_sdp(&huge).unwrap_err().0.error, ErrorCode::BadRequest);
    }

    #[test]
    fn leases_are_per_user_and_call() {
        let call = CallId::from("uc1~ab");
        assert_eq!(lease_key(&call, &UserId::from("bob")), "uc1~ab/bob");
    }
}
