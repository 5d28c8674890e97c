//! The calls this server owns and the commands waiting for another server's answer: the
//! state of the call shell, with no IO of its own. It lives apart from the shell (`mod.rs`),
//! so that the server's components can hold it without importing the shell.

use crate::core::call::{CallConfig, Callee, Endpoint};
use crate::media::ChosenMedia;
use shared::api::ApiError;
use shared::call::{CallCommand, ReplyTo};
use shared::{CallId, MediaServerId, UserId};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// The outcome of a call command: the call it concerned (place, pickup), or why not.
pub type CommandResult = Result<Option<CallId>, ApiError>;

/// Where a command's outcome goes (this server's own commands use a reply token too).
pub(super) enum Replier {
    Remote(Option<ReplyTo>),
}

/// What a call task is fed.
pub(super) enum CallMsg {
    Command {
        by: Endpoint,
        command: CallCommand,
        reply: Replier,
    },
    DeviceGone(Endpoint),
    LegAnswer {
        party: Endpoint,
        sdp: String,
    },
    LegFailed {
        party: Endpoint,
        reason: String,
    },
    MediaFailed(String),
    /// The call now runs on this MediaServer (the one before failed the caller's leg).
    MediaMoved(ChosenMedia),
    Target(Callee),
}

/// A call this server owns.
pub(super) struct ActiveCall {
    pub(super) tx: mpsc::Sender<CallMsg>,
    pub(super) caller: UserId,
    pub(super) media: MediaServerId,
    pub(super) incarnation: String,
    /// The MediaServer was found dead and the call told so (tell it once).
    pub(super) media_failed: bool,
    /// Users holding a softphone lease for this call (the call task's; read by the
    /// heartbeat to tell leases in use from stale ones).
    pub(super) leases: BTreeSet<UserId>,
}

/// The key of `user`'s softphone lease for `call`.
pub fn lease_key(call: &CallId, user: &UserId) -> String {
    format!("{call}/{user}")
}

/// The calls of this server and the commands waiting for another server's answer.
pub struct Calls {
    /// The call core's settings, except the ring timeout, which is `ring_timeout_ms`.
    config: CallConfig,
    /// `ring_timeout_ms`, a runtime setting: a new call rings this long (`settings/`).
    ring_timeout_ms: AtomicI64,
    pub(super) active: Mutex<HashMap<CallId, ActiveCall>>,
    pub(super) replies: Mutex<HashMap<u64, oneshot::Sender<CommandResult>>>,
    next_token: AtomicU64,
    /// When the MediaServers' heartbeats could be read again after they could not (0: never
    /// unreadable; -1: unreadable now). Their calls are judged from then on, not before.
    media_seen_again_ms: AtomicI64,
}

impl Calls {
    pub fn new(ring_timeout_ms: u64) -> Self {
        Self {
            config: CallConfig::default(),
            ring_timeout_ms: AtomicI64::new(ring_timeout_ms as i64),
            active: Mutex::new(HashMap::new()),
            replies: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            media_seen_again_ms: AtomicI64::new(0),
        }
    }

    /// The settings a new call starts with.
    pub fn config(&self) -> CallConfig {
        CallConfig {
            ring_timeout_ms: self.ring_timeout_ms.load(Ordering::Relaxed),
            ..self.config
        }
    }

    /// Calls placed from now on ring this long (calls ringing already keep their deadline).
    pub fn set_ring_timeout(&self, ring_timeout_ms: u64) {
        self.ring_timeout_ms
            .store(ring_timeout_ms as i64, Ordering::Relaxed);
    }

    /// Calls this server owns now.
    pub fn active_count(&self) -> usize {
        self.active.lock().unwrap().len()
    }

    /// The MediaServers' heartbeats cannot be read (the cluster store is away).
    pub fn media_unseen(&self) {
        self.media_seen_again_ms.store(-1, Ordering::Relaxed);
    }

    /// The heartbeats were read at `now`; returns since when they have been readable without
    /// a break (0 if they always were).
    pub fn media_seen(&self, now: shared::TimestampMs) -> shared::TimestampMs {
        let _ = self.media_seen_again_ms.compare_exchange(
            -1,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.media_seen_again_ms.load(Ordering::Relaxed)
    }

    /// The keys of the softphone leases this server's calls hold.
    pub fn softphone_leases(&self) -> BTreeSet<String> {
        let active = self.active.lock().unwrap();
        active
            .iter()
            .flat_map(|(id, call)| call.leases.iter().map(|user| lease_key(id, user)))
            .collect()
    }

    pub(super) fn holds_lease(&self, call: &CallId, user: &UserId) -> bool {
        self.active
            .lock()
            .unwrap()
            .get(call)
            .is_some_and(|c| c.leases.contains(user))
    }

    pub(super) fn lease_taken(&self, call: &CallId, user: &UserId) {
        if let Some(active) = self.active.lock().unwrap().get_mut(call) {
            active.leases.insert(user.clone());
        }
    }

    /// Forgets a user's lease for a call; true if it was held (the caller returns it).
    pub(super) fn lease_returned(&self, call: &CallId, user: &UserId) -> bool {
        self.active
            .lock()
            .unwrap()
            .get_mut(call)
            .is_some_and(|c| c.leases.remove(user))
    }

    pub(super) fn sender(&self, call: &CallId) -> Option<mpsc::Sender<CallMsg>> {
        self.active.lock().unwrap().get(call).map(|c| c.tx.clone())
    }

    pub(super) fn wait_token(&self) -> (u64, oneshot::Receiver<CommandResult>) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.replies.lock().unwrap().insert(token, tx);
        (token, rx)
    }

    pub(super) fn resolve(&self, token: u64, result: CommandResult) {
        if let Some(tx) = self.replies.lock().unwrap().remove(&token) {
            let _ = tx.send(result);
        }
    }
}
