//! Presence of this server's users, and delivery of everyone's presence to the watchers here.
//!
//! This server is the only writer of its users' presence: their inputs (manual state, note,
//! devices, telephony) live here and are aggregated by `core::presence`; every change is
//! published as a versioned snapshot to the cluster store and fanned out to the watchers,
//! locally and with one bus message per other server that is home to watchers. Snapshots
//! from anywhere reach the watchers here through [`Presence::deliver`], which drops any
//! version older than one already delivered.

use crate::cluster::Cluster;
use crate::core::presence::UserPresence;
use crate::devices::Devices;
use crate::events::Outgoing;
use crate::metrics::Metrics;
use crate::relations::Relations;
use crate::timed;
use shared::bus::{BusBody, BusMessage};
use shared::presence::{Availability, PresenceSnapshot, PresenceView, Visibility};
use shared::ws::ServerEvent;
use shared::{ServerId, TimestampMs, UserId, now_ms};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub struct Presence {
    id: ServerId,
    cluster: Arc<dyn Cluster>,
    metrics: Arc<Metrics>,
    relations: Arc<Relations>,
    devices: Arc<Devices>,
    /// Each local user's presence inputs.
    inputs: Mutex<HashMap<UserId, UserPresence>>,
    /// Newest version delivered here per user, so a late older snapshot is dropped.
    delivered: Mutex<HashMap<UserId, u64>>,
}

impl Presence {
    pub fn new(
        id: ServerId,
        cluster: Arc<dyn Cluster>,
        metrics: Arc<Metrics>,
        relations: Arc<Relations>,
        devices: Arc<Devices>,
    ) -> Self {
        Self {
            id,
            cluster,
            metrics,
            relations,
            devices,
            inputs: Mutex::new(HashMap::new()),
            delivered: Mutex::new(HashMap::new()),
        }
    }

    /// Changes a local user's inputs (made on first use); publish afterwards.
    pub fn update(&self, user: &UserId, change: impl FnOnce(&mut UserPresence)) {
        let mut inputs = self.inputs.lock().unwrap();
        change(
            inputs
                .entry(user.clone())
                .or_insert_with(|| UserPresence::new(user.clone(), 0)),
        );
    }

    /// Changes the inputs of a user known here; false if there are none.
    pub fn update_known(&self, user: &UserId, change: impl FnOnce(&mut UserPresence)) -> bool {
        match self.inputs.lock().unwrap().get_mut(user) {
            Some(inputs) => {
                change(inputs);
                true
            }
            None => false,
        }
    }

    /// Forgets a user this server no longer serves (handed to another server).
    pub fn forget_user(&self, user: &UserId) {
        self.inputs.lock().unwrap().remove(user);
    }

    /// A user's first device came: their version continues from the cluster's snapshot, so
    /// watchers never see it go back (after a restart of this server, say).
    pub async fn continue_from_cluster(&self, user: &UserId) {
        let previous = timed::bus(
            &self.metrics,
            "get presence",
            self.cluster.get_presence(std::slice::from_ref(user)),
        )
        .await
        .and_then(|mut found| found.pop().flatten());
        let Some(previous) = previous else {
            return;
        };
        let mut inputs = self.inputs.lock().unwrap();
        if let Some(local) = inputs.get_mut(user)
            && local.version() < previous.version
        {
            let mut fresh = UserPresence::new(user.clone(), previous.version);
            // A user new here (taken over from a server that died, or handed over) keeps
            // the availability they chose there.
            fresh.manual = if local.version() == 0
                && matches!(
                    previous.availability,
                    Availability::Busy | Availability::Dnd
                ) {
                previous.availability
            } else {
                local.manual
            };
            fresh.note = local.note.clone().or(previous.note);
            fresh.telephony = local.telephony;
            fresh.devices = std::mem::take(&mut local.devices);
            *local = fresh;
        }
    }

    /// Publishes a local user's presence if it changed.
    pub async fn publish(&self, user: &UserId) {
        let snapshot = {
            let mut inputs = self.inputs.lock().unwrap();
            let Some(local) = inputs.get_mut(user) else {
                return;
            };
            local.publish(now_ms())
        };
        if let Some(snapshot) = snapshot {
            self.metrics
                .presence_changes
                .fetch_add(1, Ordering::Relaxed);
            self.fan_out(snapshot).await;
        }
    }

    /// Stores a snapshot in the cluster and sends it to every watcher: locally, and with one
    /// bus message per other server that is home to watchers.
    pub async fn fan_out(&self, snapshot: PresenceSnapshot) {
        let _timer = self.metrics.presence_fan_out.start_timer();
        timed::bus(
            &self.metrics,
            "put presence",
            self.cluster.put_presence(&snapshot),
        )
        .await;
        let watchers = match self.relations.watchers_of(&snapshot.user).await {
            Ok(watchers) => watchers,
            Err(error) => {
                tracing::warn!(error = %error.0, "cannot read watchers; presence not fanned out");
                return;
            }
        };
        for (home, users) in self.relations.by_server(&watchers).await {
            if home == self.id {
                self.deliver(&snapshot, &users);
                continue;
            }
            let body = BusBody::Presence {
                snapshot: snapshot.clone(),
                watchers: users,
            };
            let message = BusMessage::new(self.id.clone(), body);
            if timed::bus(
                &self.metrics,
                "publish",
                self.cluster.publish(&home, &message),
            )
            .await
            .is_some()
            {
                self.metrics.bus_published.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A snapshot for watchers on this server (unless an equal or newer one was delivered).
    pub fn deliver(&self, snapshot: &PresenceSnapshot, watchers: &[UserId]) {
        {
            let mut delivered = self.delivered.lock().unwrap();
            let seen = delivered.entry(snapshot.user.clone()).or_insert(0);
            if snapshot.version != 0 && snapshot.version <= *seen {
                return;
            }
            *seen = snapshot.version;
        }
        let event = Outgoing::new(ServerEvent::Presence {
            presence: PresenceView::of(snapshot, Visibility::Full),
        });
        let delivered = self
            .devices
            .deliver(watchers, None, &event, true, None, now_ms());
        self.metrics
            .presence_deliveries
            .fetch_add(delivered, Ordering::Relaxed);
    }

    /// A local user's presence now, from their inputs (whether online or not).
    pub fn current(&self, user: &UserId, now: TimestampMs) -> Option<PresenceSnapshot> {
        Some(self.inputs.lock().unwrap().get(user)?.snapshot(now))
    }

    /// A user's presence: from the inputs here while they have a device here, else the
    /// cluster's snapshot, else offline.
    pub async fn snapshot_of(&self, user: &UserId) -> PresenceSnapshot {
        if self.devices.is_online(user)
            && let Some(snapshot) = self.current(user, now_ms())
        {
            return snapshot;
        }
        timed::bus(
            &self.metrics,
            "get presence",
            self.cluster.get_presence(std::slice::from_ref(user)),
        )
        .await
        .and_then(|mut found| found.pop().flatten())
        .unwrap_or_else(|| PresenceSnapshot::offline(user.clone()))
    }

    /// After a bus outage, deliver whatever comes next, whatever its version.
    pub fn forget_delivered(&self) {
        self.delivered.lock().unwrap().clear();
    }

    /// After relations change, a local user gets the current presence of everyone they watch.
    /// With `include_unknown`, users without any snapshot are sent as offline (a new contact);
    /// without, they are skipped (after a Redis restart their home server re-publishes them).
    pub async fn send_watched(&self, user: &UserId, include_unknown: bool) {
        let Ok(watched) = self.relations.watched_by(user).await else {
            return;
        };
        let Some(snapshots) = timed::bus(
            &self.metrics,
            "get presence",
            self.cluster.get_presence(&watched),
        )
        .await
        else {
            return;
        };
        for (watched_user, snapshot) in watched.iter().zip(snapshots) {
            let snapshot = match snapshot {
                Some(snapshot) => snapshot,
                None if include_unknown => PresenceSnapshot::offline(watched_user.clone()),
                None => continue,
            };
            let event = Outgoing::new(ServerEvent::Presence {
                presence: PresenceView::of(&snapshot, Visibility::Full),
            });
            self.devices.deliver(
                std::slice::from_ref(user),
                None,
                &event,
                true,
                None,
                now_ms(),
            );
        }
    }
}
