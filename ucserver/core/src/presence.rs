//! Presence aggregation: one user's devices and manual state in, one snapshot out.
//!
//! The rule: no device online means `offline`. Otherwise a manual `busy`, `dnd` or `away`
//! wins; a manual `available` shows as `away` when every device reports its user idle. The
//! telephony state is the strongest over the user's calls; capabilities are the union over
//! devices.

use shared::presence::{
    Availability, Capability, DevicePresence, PresenceSnapshot, TelephonyState,
};
use shared::{DeviceId, TimestampMs, UserId};
use std::collections::BTreeMap;

/// The presence inputs of one user that its home server holds.
#[derive(Clone, Debug)]
pub struct UserPresence {
    pub user: UserId,
    /// What the user chose; `Available` until they choose otherwise.
    pub manual: Availability,
    pub note: Option<String>,
    pub telephony: TelephonyState,
    pub devices: BTreeMap<DeviceId, DevicePresence>,
    /// Version of the last published snapshot.
    version: u64,
    /// Availability and time of the last published snapshot.
    last: Option<(Availability, TimestampMs)>,
    last_published: Option<PresenceSnapshot>,
}

impl UserPresence {
    /// A user with no device online. `version` continues from an earlier snapshot (after a
    /// restart) so watchers never see the version go back.
    pub fn new(user: UserId, version: u64) -> Self {
        Self {
            user,
            manual: Availability::Available,
            note: None,
            telephony: TelephonyState::Idle,
            devices: BTreeMap::new(),
            version,
            last: None,
            last_published: None,
        }
    }

    /// The availability the rule gives for the current inputs.
    pub fn aggregate_availability(&self) -> Availability {
        if self.devices.is_empty() {
            return Availability::Offline;
        }
        match self.manual {
            Availability::Available => {
                if self.devices.values().all(|d| d.idle) {
                    Availability::Away
                } else {
                    Availability::Available
                }
            }
            Availability::Offline => Availability::Offline,
            other => other,
        }
    }

    /// The snapshot for the current inputs, under the current version (what a watcher who
    /// asks now, or a resync, should get).
    pub fn snapshot(&self, now: TimestampMs) -> PresenceSnapshot {
        let availability = self.aggregate_availability();
        let mut capabilities: Vec<Capability> = self
            .devices
            .values()
            .flat_map(|d| d.capabilities.iter().copied())
            .collect();
        capabilities.sort();
        capabilities.dedup();
        let since_ms = match self.last {
            Some((previous, since)) if previous == availability => since,
            _ => now,
        };
        PresenceSnapshot {
            user: self.user.clone(),
            availability,
            note: self.note.clone(),
            telephony: if self.devices.is_empty() {
                TelephonyState::Idle
            } else {
                self.telephony
            },
            capabilities,
            devices: self.devices.values().cloned().collect(),
            version: self.version,
            since_ms,
        }
    }

    /// Builds the snapshot for the current inputs. Returns `None` when nothing a watcher
    /// sees has changed since the last snapshot; otherwise the version grows by one.
    pub fn publish(&mut self, now: TimestampMs) -> Option<PresenceSnapshot> {
        let candidate = PresenceSnapshot {
            version: 0,
            ..self.snapshot(now)
        };
        if self.last_published.as_ref() == Some(&candidate) {
            return None;
        }
        self.version += 1;
        self.last = Some((candidate.availability, candidate.since_ms));
        let snapshot = PresenceSnapshot {
            version: self.version,
            ..candidate.clone()
        };
        self.last_published = Some(candidate);
        Some(snapshot)
    }

    pub fn version(&self) -> u64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, caps: &[Capability], idle: bool) -> DevicePresence {
        DevicePresence {
            device: DeviceId::from(name),
            capabilities: caps.to_vec(),
            active: true,
            idle,
        }
    }

    /// Renders a snapshot on one line for the checks below.
    fn render(s: Option<&PresenceSnapshot>) -> String {
        match s {
            None => "unchanged".into(),
            Some(s) => format!(
                "v{} {} note={:?} tel={:?} caps={:?} devices={} since={}",
                s.version,
                s.availability.as_str(),
                s.note,
                s.telephony,
                s.capabilities,
                s.devices.len(),
                s.since_ms
            ),
        }
    }

    #[test]
    fn aggregation_follows_devices_and_manual_state() {
        let mut p = UserPresence::new(UserId::from("alice"), 0);
        assert_eq!(
            render(p.publish(10).as_ref()),
            "v1 offline note=None tel=Idle caps=[] devices=0 since=10"
        );
        assert_eq!(render(p.publish(11).as_ref()), "unchanged");

        p.devices.insert(
            DeviceId::from("desk"),
            device("desk", &[Capability::Chat, Capability::Audio], false),
        );
        assert_eq!(
            render(p.publish(20).as_ref()),
            "v2 available note=None tel=Idle caps=[Chat, Audio] devices=1 since=20"
        );
        p.devices.insert(
            DeviceId::from("phone"),
            device("phone", &[Capability::Chat, Capability::Video], true),
        );
        assert_eq!(
            render(p.publish(30).as_ref()),
            "v3 available note=None tel=Idle caps=[Chat, Audio, Video] devices=2 since=20"
        );
        // All devices idle: available shows as away.
        p.devices.get_mut(&DeviceId::from("desk")).unwrap().idle = true;
        assert_eq!(
            render(p.publish(40).as_ref()),
            "v4 away note=None tel=Idle caps=[Chat, Audio, Video] devices=2 since=40"
        );
        // A manual dnd wins over idleness.
        p.manual = Availability::Dnd;
        p.note = Some("focus".into());
        assert_eq!(
            render(p.publish(50).as_ref()),
            "v5 dnd note=Some(\"focus\") tel=Idle caps=[Chat, Audio, Video] devices=2 since=50"
        );
        p.telephony = TelephonyState::InCall;
        assert_eq!(
            render(p.publish(60).as_ref()),
            "v6 dnd note=Some(\"focus\") tel=InCall caps=[Chat, Audio, Video] devices=2 since=50"
        );
        // Last device leaves: offline, whatever was chosen.
        p.devices.clear();
        assert_eq!(
            render(p.publish(70).as_ref()),
            "v7 offline note=Some(\"focus\") tel=Idle caps=[] devices=0 since=70"
        );
    }

    #[test]
    fn snapshot_shows_the_current_state_without_a_new_version() {
        let mut p = UserPresence::new(UserId::from("carol"), 0);
        p.devices.insert(
            DeviceId::from("desk"),
            device("desk", &[Capability::Chat], false),
        );
        p.manual = Availability::Busy;
        let published = p.publish(100).unwrap();
        assert_eq!(p.snapshot(200), published);
        assert_eq!(p.publish(300), None);
    }

    #[test]
    fn version_continues_after_restart() {
        let mut p = UserPresence::new(UserId::from("bob"), 41);
        assert_eq!(p.publish(1).unwrap().version, 42);
    }
}
