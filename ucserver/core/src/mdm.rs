//! Multi-device messaging (MDM): quiet mode and alert targeting.
//!
//! A device may declare itself inactive (a phone app in the background). While it is quiet,
//! presence and typing events for it are held in a buffer and flushed as one burst when the
//! device becomes active again or the buffer reaches its limit. Chat messages and read
//! markers are never held. Alerts (the "notify your user" flag on a message) go to the
//! active device — the one not quiet and last active within the window — or to every
//! device when none is.
//!
//! Generic over the packet type so it holds whatever the shell sends to a device.

use shared::TimestampMs;

/// Buffer settings, per server (the shell may change `buffer_limit` while it runs).
#[derive(Clone, Copy, Debug)]
pub struct MdmConfig {
    /// Packets held for one quiet device before it is flushed anyway.
    pub buffer_limit: usize,
    /// How recently a device must have been active to get alerts alone.
    pub active_window_ms: i64,
}

impl Default for MdmConfig {
    fn default() -> Self {
        Self {
            buffer_limit: 100,
            active_window_ms: 5 * 60 * 1000,
        }
    }
}

/// What to do with one packet offered to a device.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<P> {
    /// Send it now.
    Deliver(P),
    /// Held in the buffer.
    Held,
    /// The buffer hit its limit: send these now (the offered packet last).
    Flush(Flush<P>),
}

/// A burst of held packets, in the order they were held.
#[derive(Debug, PartialEq, Eq)]
pub struct Flush<P> {
    pub packets: Vec<P>,
    pub at_limit: bool,
    /// Sum over the packets of the time each was held.
    pub held_ms_total: i64,
}

/// The MDM state of one device.
#[derive(Debug)]
pub struct DeviceMdm<P> {
    quiet: bool,
    last_active_ms: TimestampMs,
    buffer: Vec<(TimestampMs, P)>,
}

impl<P> DeviceMdm<P> {
    pub fn new(now: TimestampMs) -> Self {
        Self {
            quiet: false,
            last_active_ms: now,
            buffer: Vec::new(),
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    pub fn last_active_ms(&self) -> TimestampMs {
        self.last_active_ms
    }

    /// The device did something (sent a command): it counts as active now.
    pub fn touch(&mut self, now: TimestampMs) {
        if !self.quiet {
            self.last_active_ms = now;
        }
    }

    /// Offers a packet. `bufferable` packets (presence, typing) are held while quiet.
    pub fn offer(
        &mut self,
        now: TimestampMs,
        packet: P,
        bufferable: bool,
        config: &MdmConfig,
    ) -> Offer<P> {
        if !self.quiet || !bufferable {
            return Offer::Deliver(packet);
        }
        self.buffer.push((now, packet));
        if self.buffer.len() >= config.buffer_limit.max(1) {
            Offer::Flush(self.drain(now, true))
        } else {
            Offer::Held
        }
    }

    /// Enters or leaves quiet mode. Leaving it flushes what was held.
    pub fn set_quiet(&mut self, now: TimestampMs, quiet: bool) -> Option<Flush<P>> {
        self.quiet = quiet;
        if quiet {
            return None;
        }
        self.last_active_ms = now;
        if self.buffer.is_empty() {
            None
        } else {
            Some(self.drain(now, false))
        }
    }

    fn drain(&mut self, now: TimestampMs, at_limit: bool) -> Flush<P> {
        let held_ms_total = self.buffer.iter().map(|(at, _)| (now - at).max(0)).sum();
        let packets = self.buffer.drain(..).map(|(_, p)| p).collect();
        Flush {
            packets,
            at_limit,
            held_ms_total,
        }
    }
}

/// Which devices get the alert of a message: indexes into `devices`, given each device's
/// (quiet, last active) state.
pub fn alert_targets(
    devices: &[(bool, TimestampMs)],
    now: TimestampMs,
    config: &MdmConfig,
) -> Vec<usize> {
    let active = devices
        .iter()
        .enumerate()
        .filter(|(_, (quiet, last))| !quiet && now - last <= config.active_window_ms)
        .max_by_key(|(_, (_, last))| *last)
        .map(|(index, _)| index);
    match active {
        Some(index) => vec![index],
        None => (0..devices.len()).collect(),
    }
}

/// The seed's MDM counters, kept by the shell from the flushes it carries out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MdmCounters {
    pub buffer_flushes: u64,
    pub buffer_flushes_limit_reached: u64,
    /// Packets in the most recent flush.
    pub last_flush_packet_count: u64,
    pub flushed_packets_total: u64,
    pub held_ms_total: i64,
}

impl MdmCounters {
    pub fn record<P>(&mut self, flush: &Flush<P>) {
        self.buffer_flushes += 1;
        if flush.at_limit {
            self.buffer_flushes_limit_reached += 1;
        }
        self.last_flush_packet_count = flush.packets.len() as u64;
        self.flushed_packets_total += flush.packets.len() as u64;
        self.held_ms_total += flush.held_ms_total;
    }

    /// Average time a flushed packet was held, in seconds.
    pub fn average_queued_seconds(&self) -> f64 {
        if self.flushed_packets_total == 0 {
            0.0
        } else {
            self.held_ms_total as f64 / self.flushed_packets_total as f64 / 1000.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_device_holds_presence_but_not_messages() {
        let config = MdmConfig {
            buffer_limit: 3,
            active_window_ms: 300_000,
        };
        let mut device = DeviceMdm::new(0);
        let mut counters = MdmCounters::default();
        assert_eq!(device.offer(1, "p1", true, &config), Offer::Deliver("p1"));
        assert_eq!(device.set_quiet(2, true), None);
        assert_eq!(device.offer(10, "p2", true, &config), Offer::Held);
        assert_eq!(
            device.offer(11, "msg", false, &config),
            Offer::Deliver("msg")
        );
        assert_eq!(device.offer(20, "p3", true, &config), Offer::Held);
        let flush = device.set_quiet(110, false).unwrap();
        assert_eq!(
            flush,
            Flush {
                packets: vec!["p2", "p3"],
                at_limit: false,
                held_ms_total: 100 + 90
            }
        );
        counters.record(&flush);
        assert_eq!(device.offer(111, "p4", true, &config), Offer::Deliver("p4"));

        device.set_quiet(200, true);
        assert_eq!(device.offer(200, "a", true, &config), Offer::Held);
        assert_eq!(device.offer(201, "b", true, &config), Offer::Held);
        let Offer::Flush(flush) = device.offer(202, "c", true, &config) else {
            panic!("expected a flush")
        };
        assert_eq!(flush.packets, vec!["a", "b", "c"]);
        assert!(flush.at_limit);
        counters.record(&flush);
        assert_eq!(counters.buffer_flushes, 2);
        assert_eq!(counters.buffer_flushes_limit_reached, 1);
        assert_eq!(counters.last_flush_packet_count, 3);
        assert_eq!(counters.flushed_packets_total, 5);
        assert!((counters.average_queued_seconds() - (190.0 + 3.0) / 5.0 / 1000.0).abs() < 1e-9);
    }

    #[test]
    fn alerts_go_to_the_active_device_or_to_all() {
        let config = MdmConfig::default();
        let now = 1_000_000;
        // desk active a minute ago, phone quiet, laptop active ten minutes ago
        let devices = [
            (false, now - 60_000),
            (true, now - 1_000),
            (false, now - 600_000),
        ];
        assert_eq!(alert_targets(&devices, now, &config), vec![0]);
        // nobody active within five minutes: everyone
        let devices = [(false, now - 400_000), (true, now - 1_000)];
        assert_eq!(alert_targets(&devices, now, &config), vec![0, 1]);
        // the most recently active wins
        let devices = [(false, now - 60_000), (false, now - 5_000)];
        assert_eq!(alert_targets(&devices, now, &config), vec![1]);
    }
}
