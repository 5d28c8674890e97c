//! The device registry: which of this server's users have which devices connected, each
//! with its event queue and quiet-mode state (`core::mdm`). Events go into the queues as
//! typed values (`events.rs`); the device's front end drains and encodes them.
//!
//! A device that does not drain its queue is cut off rather than waited for: its queue is
//! dropped, which ends its socket task, which then disconnects it the usual way (presence,
//! metrics, online set); it catches up from SQL when it returns. Locks here are held for map
//! work only, never across an `.await` (there is none in this module).

use crate::core::mdm::{self, DeviceMdm, MdmConfig, Offer};
use crate::events::{DeviceEvent, Outgoing};
use crate::metrics::Metrics;
use shared::inspect::{DeviceSession, MAX_CLIENT_NAME_BYTES};
use shared::ws::ServerEvent;
use shared::{DeviceId, TimestampMs, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Events queued for one device before it counts as too slow and is disconnected.
pub const DEVICE_QUEUE: usize = 1024;

/// One connected device.
struct DeviceConn {
    /// Tells this connection apart from a later one with the same device id.
    conn: u64,
    /// Typed events for the device's front end, which encodes them.
    tx: mpsc::Sender<DeviceEvent>,
    mdm: DeviceMdm<DeviceEvent>,
    /// Where the connection came from, for the admin's view of the user's devices.
    origin: DeviceOrigin,
    /// When this connection was made.
    since: TimestampMs,
}

/// Where a device's connection comes from: shown to administrators, and the token that an
/// administrator's kick ends with the connection.
#[derive(Clone, Default)]
pub struct DeviceOrigin {
    /// The client program (its `User-Agent`), cut to `shared::inspect::MAX_CLIENT_NAME_BYTES`.
    pub client: String,
    pub address: Option<std::net::IpAddr>,
    /// The session token the connection was opened with (a connection may name another
    /// device id than its token's).
    pub token: Option<String>,
}

impl DeviceOrigin {
    pub fn new(client: &str, address: Option<std::net::IpAddr>, token: Option<String>) -> Self {
        let mut end = client.len().min(MAX_CLIENT_NAME_BYTES);
        while !client.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            client: client[..end].chars().filter(|c| !c.is_control()).collect(),
            address,
            token,
        }
    }
}

impl DeviceConn {
    /// Ends this connection's queue: its socket task sees the end and disconnects the device
    /// the usual way (presence, metrics, online set).
    fn cut_off(&mut self) {
        self.tx = mpsc::channel(1).0;
    }
}

/// A device just registered.
pub struct Connected {
    /// This connection's number: a disconnect must name it, so a replaced connection's late
    /// goodbye does not remove its successor.
    pub conn: u64,
    pub events: mpsc::Receiver<DeviceEvent>,
    /// The user had no device here before.
    pub first: bool,
}

pub struct Devices {
    users: Mutex<HashMap<UserId, HashMap<DeviceId, DeviceConn>>>,
    next_conn: AtomicU64,
    /// Quiet-mode settings; `buffer_limit` is `mdm_buffer_limit`, a runtime setting.
    mdm: std::sync::RwLock<MdmConfig>,
    metrics: Arc<Metrics>,
}

impl Devices {
    pub fn new(mdm: MdmConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            users: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            mdm: std::sync::RwLock::new(mdm),
            metrics,
        }
    }

    /// Events held for a quiet device from now on before a flush (`settings/`).
    pub fn set_mdm_buffer_limit(&self, buffer_limit: usize) {
        self.mdm.write().unwrap().buffer_limit = buffer_limit;
    }

    /// Registers a device (replacing an earlier connection with the same id).
    pub fn connect(
        &self,
        user: &UserId,
        device: &DeviceId,
        origin: DeviceOrigin,
        now: TimestampMs,
    ) -> Connected {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, events) = mpsc::channel(DEVICE_QUEUE);
        let (first, replaced) = {
            let mut users = self.users.lock().unwrap();
            let devices = users.entry(user.clone()).or_default();
            let first = devices.is_empty();
            let connection = DeviceConn {
                conn,
                tx,
                mdm: DeviceMdm::new(now),
                origin,
                since: now,
            };
            let replaced = devices.insert(device.clone(), connection).is_some();
            (first, replaced)
        };
        if !replaced {
            self.metrics.devices.fetch_add(1, Ordering::Relaxed);
        }
        if first {
            self.metrics.sessions.fetch_add(1, Ordering::Relaxed);
        }
        Connected {
            conn,
            events,
            first,
        }
    }

    /// Removes a device if `conn` is still its current connection. `None` if it was not;
    /// else whether the user has no device left here.
    pub fn disconnect(&self, user: &UserId, device: &DeviceId, conn: u64) -> Option<bool> {
        let (was_quiet, now_offline) = {
            let mut users = self.users.lock().unwrap();
            let devices = users.get_mut(user)?;
            if devices.get(device)?.conn != conn {
                return None;
            }
            let was_quiet = devices.remove(device).is_some_and(|d| d.mdm.is_quiet());
            let now_offline = devices.is_empty();
            if now_offline {
                users.remove(user);
            }
            (was_quiet, now_offline)
        };
        self.metrics.devices.fetch_sub(1, Ordering::Relaxed);
        if was_quiet {
            self.metrics
                .mdm_quiet_sessions
                .fetch_sub(1, Ordering::Relaxed);
        }
        if now_offline {
            self.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        }
        Some(now_offline)
    }

    /// The device sent something: it counts as active for alerts.
    pub fn touch(&self, user: &UserId, device: &DeviceId, now: TimestampMs) {
        if let Some(conn) = self
            .users
            .lock()
            .unwrap()
            .get_mut(user)
            .and_then(|devices| devices.get_mut(device))
        {
            conn.mdm.touch(now);
        }
    }

    /// Quiet mode on or off for one device; turning it off flushes what was held.
    pub fn set_active(&self, user: &UserId, device: &DeviceId, active: bool, now: TimestampMs) {
        let flush = {
            let mut users = self.users.lock().unwrap();
            let Some(conn) = users.get_mut(user).and_then(|d| d.get_mut(device)) else {
                return;
            };
            if conn.mdm.is_quiet() == active {
                self.metrics
                    .mdm_quiet_sessions
                    .fetch_add(if active { -1 } else { 1 }, Ordering::Relaxed);
            }
            let flush = conn.mdm.set_quiet(now, !active);
            if let Some(flush) = &flush {
                for packet in &flush.packets {
                    let _ = conn.tx.try_send(packet.clone());
                }
            }
            flush
        };
        if let Some(flush) = flush {
            self.record_flush(&flush);
        }
    }

    fn record_flush(&self, flush: &mdm::Flush<DeviceEvent>) {
        let metrics = &self.metrics;
        metrics.mdm_buffer_flushes.fetch_add(1, Ordering::Relaxed);
        if flush.at_limit {
            metrics
                .mdm_buffer_flushes_limit
                .fetch_add(1, Ordering::Relaxed);
        }
        let packets = flush.packets.len() as u64;
        metrics
            .mdm_last_flush_packets
            .store(packets, Ordering::Relaxed);
        metrics
            .mdm_flushed_packets
            .fetch_add(packets, Ordering::Relaxed);
        metrics
            .mdm_held_ms_total
            .fetch_add(flush.held_ms_total.max(0) as u64, Ordering::Relaxed);
    }

    /// Queues one event for every device of `users` here (only the devices in `only`, if
    /// given); the same event value goes to each, so it is encoded once per codec. `bufferable` events wait while a device is quiet. With `alert`, the alert copy
    /// goes to each user's active device (or to all, if none is active). Returns how many
    /// devices got it now.
    pub fn deliver(
        &self,
        users: &[UserId],
        only: Option<&[DeviceId]>,
        plain: &DeviceEvent,
        bufferable: bool,
        alerted: Option<&DeviceEvent>,
        now: TimestampMs,
    ) -> u64 {
        let mut delivered = 0;
        let mut flushes = Vec::new();
        let mut too_slow = 0u64;
        let mdm_config = *self.mdm.read().unwrap();
        {
            let mut all = self.users.lock().unwrap();
            for user in users {
                let Some(devices) = all.get_mut(user) else {
                    continue;
                };
                let targets: Vec<usize> = match alerted {
                    Some(_) => {
                        let states: Vec<(bool, TimestampMs)> = devices
                            .values()
                            .map(|d| (d.mdm.is_quiet(), d.mdm.last_active_ms()))
                            .collect();
                        mdm::alert_targets(&states, now, &mdm_config)
                    }
                    None => Vec::new(),
                };
                for (index, (device_id, device)) in devices.iter_mut().enumerate() {
                    if only.is_some_and(|only| !only.contains(device_id)) {
                        continue;
                    }
                    let event = match alerted {
                        Some(alert) if targets.contains(&index) => alert.clone(),
                        _ => plain.clone(),
                    };
                    let to_send = match device.mdm.offer(now, event, bufferable, &mdm_config) {
                        Offer::Deliver(event) => vec![event],
                        Offer::Held => Vec::new(),
                        Offer::Flush(flush) => {
                            let packets = flush.packets.clone();
                            flushes.push(flush);
                            packets
                        }
                    };
                    for event in to_send {
                        if device.tx.try_send(event).is_err() {
                            device.cut_off();
                            too_slow += 1;
                            break;
                        }
                        delivered += 1;
                    }
                }
            }
        }
        for flush in &flushes {
            self.record_flush(flush);
        }
        if too_slow > 0 {
            self.metrics
                .slow_devices_dropped
                .fetch_add(too_slow, Ordering::Relaxed);
            tracing::warn!(
                count = too_slow,
                "disconnected devices that did not read their events"
            );
        }
        delivered
    }

    pub fn is_online(&self, user: &UserId) -> bool {
        self.users.lock().unwrap().contains_key(user)
    }

    /// The devices of `user` connected here, by id.
    pub fn sessions_of(&self, user: &UserId) -> Vec<DeviceSession> {
        let users = self.users.lock().unwrap();
        let Some(devices) = users.get(user) else {
            return Vec::new();
        };
        let mut sessions: Vec<DeviceSession> = devices
            .iter()
            .map(|(id, conn)| DeviceSession {
                device: id.clone(),
                client: conn.origin.client.clone(),
                address: conn.origin.address.map(|ip| ip.to_string()),
                since_ms: conn.since,
                quiet: conn.mdm.is_quiet(),
                last_active_ms: conn.mdm.last_active_ms(),
            })
            .collect();
        sessions.sort_by(|a, b| a.device.cmp(&b.device));
        sessions
    }

    /// Whether `device` of `user` is connected here, and the token its connection was
    /// opened with.
    pub fn connection_token(&self, user: &UserId, device: &DeviceId) -> Option<Option<String>> {
        self.users
            .lock()
            .unwrap()
            .get(user)
            .and_then(|devices| devices.get(device))
            .map(|conn| conn.origin.token.clone())
    }

    /// Users with at least one device here.
    pub fn online_users(&self) -> Vec<UserId> {
        self.users.lock().unwrap().keys().cloned().collect()
    }

    /// Tells one device `goodbye` and cuts its queue; its socket task then disconnects it.
    pub fn drop_device(&self, user: &UserId, device: &DeviceId, goodbye: &ServerEvent) {
        let goodbye = Outgoing::new(goodbye.clone());
        if let Some(conn) = self
            .users
            .lock()
            .unwrap()
            .get_mut(user)
            .and_then(|devices| devices.get_mut(device))
        {
            let _ = conn.tx.try_send(goodbye);
            conn.cut_off();
        }
    }

    /// Tells every device of a user `goodbye` and forgets them at once; true if there were
    /// any.
    pub fn drop_user(&self, user: &UserId, goodbye: &ServerEvent) -> bool {
        let goodbye = Outgoing::new(goodbye.clone());
        let Some(devices) = self.users.lock().unwrap().remove(user) else {
            return false;
        };
        for device in devices.values() {
            let _ = device.tx.try_send(goodbye.clone());
        }
        self.metrics
            .devices
            .fetch_sub(devices.len() as i64, Ordering::Relaxed);
        self.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Tells every device `goodbye` and forgets them all (a graceful stop); returns the users
    /// who had devices.
    pub fn drop_all(&self, goodbye: &ServerEvent) -> Vec<UserId> {
        let goodbye = Outgoing::new(goodbye.clone());
        let all = std::mem::take(&mut *self.users.lock().unwrap());
        for device in all.values().flat_map(HashMap::values) {
            let _ = device.tx.try_send(goodbye.clone());
        }
        all.into_keys().collect()
    }
}
