//! Counters and gauges of one server, rendered as Prometheus text at `/metrics`.
//! Plain atomics instead of a global recorder, so several servers in one test process keep
//! their numbers apart. Every series carries the `server` label; none carries a user.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Sum and count of a latency, in microseconds.
#[derive(Default)]
pub struct Latency {
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Latency {
    pub fn observe(&self, elapsed: std::time::Duration) {
        self.sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Metrics {
    pub sessions: AtomicI64,
    pub devices: AtomicI64,
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub messages_stored: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub presence_changes: AtomicU64,
    pub presence_deliveries: AtomicU64,
    pub bus_published: AtomicU64,
    pub bus_received: AtomicU64,
    pub bus_errors: AtomicU64,
    pub client_errors: AtomicU64,
    pub slow_devices_dropped: AtomicU64,
    pub mdm_quiet_sessions: AtomicI64,
    pub mdm_buffer_flushes: AtomicU64,
    pub mdm_buffer_flushes_limit: AtomicU64,
    pub mdm_last_flush_packets: AtomicU64,
    pub mdm_flushed_packets: AtomicU64,
    pub mdm_held_ms_total: AtomicU64,
    pub dead_servers_cleaned: AtomicU64,
    pub calls_placed: AtomicU64,
    pub calls_active: AtomicI64,
    pub redis_latency: Latency,
    pub sql_latency: Latency,
}

impl Metrics {
    /// Prometheus text for all series, plus the license usage and process memory given.
    pub fn render(&self, server: &str, licenses: &[(String, Option<u32>, u32)]) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{server=\"{server}\"}} {value}"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let geti = |a: &AtomicI64| a.load(Ordering::Relaxed).to_string();
        line(
            "uc_sessions",
            "gauge",
            "Users with at least one device connected here.",
            geti(&self.sessions),
        );
        line(
            "uc_devices",
            "gauge",
            "Devices (WebSocket connections) connected here.",
            geti(&self.devices),
        );
        line(
            "uc_logins_total",
            "counter",
            "Successful logins.",
            get(&self.logins),
        );
        line(
            "uc_login_failures_total",
            "counter",
            "Failed logins.",
            get(&self.login_failures),
        );
        line(
            "uc_messages_stored_total",
            "counter",
            "Chat messages stored by this server.",
            get(&self.messages_stored),
        );
        line(
            "uc_messages_delivered_total",
            "counter",
            "Chat messages pushed to local devices.",
            get(&self.messages_delivered),
        );
        line(
            "uc_presence_changes_total",
            "counter",
            "Presence changes of local users.",
            get(&self.presence_changes),
        );
        line(
            "uc_presence_deliveries_total",
            "counter",
            "Presence events pushed to local devices.",
            get(&self.presence_deliveries),
        );
        line(
            "uc_bus_published_total",
            "counter",
            "Messages published on the cluster bus.",
            get(&self.bus_published),
        );
        line(
            "uc_bus_received_total",
            "counter",
            "Messages received from the cluster bus.",
            get(&self.bus_received),
        );
        line(
            "uc_bus_errors_total",
            "counter",
            "Failed bus or cluster-store operations.",
            get(&self.bus_errors),
        );
        line(
            "uc_client_errors_total",
            "counter",
            "Typed errors answered to clients.",
            get(&self.client_errors),
        );
        line(
            "uc_slow_devices_dropped_total",
            "counter",
            "Devices disconnected for not reading their events.",
            get(&self.slow_devices_dropped),
        );
        line(
            "uc_mdm_sessions",
            "gauge",
            "MDM sessions (connected devices).",
            geti(&self.devices),
        );
        line(
            "uc_mdm_quiet_mode_sessions",
            "gauge",
            "Devices in quiet mode.",
            geti(&self.mdm_quiet_sessions),
        );
        line(
            "uc_mdm_buffer_flushes_total",
            "counter",
            "MDM buffer flushes.",
            get(&self.mdm_buffer_flushes),
        );
        line(
            "uc_mdm_buffer_flushes_limit_reached_total",
            "counter",
            "MDM buffer flushes forced by the size limit.",
            get(&self.mdm_buffer_flushes_limit),
        );
        line(
            "uc_mdm_buffer_flush_packet_count",
            "gauge",
            "Packets in the most recent MDM flush.",
            get(&self.mdm_last_flush_packets),
        );
        line(
            "uc_mdm_buffer_flushed_packets_total",
            "counter",
            "Packets flushed from MDM buffers.",
            get(&self.mdm_flushed_packets),
        );
        let flushed = self.mdm_flushed_packets.load(Ordering::Relaxed);
        let average = if flushed == 0 {
            0.0
        } else {
            self.mdm_held_ms_total.load(Ordering::Relaxed) as f64 / flushed as f64 / 1000.0
        };
        line(
            "uc_mdm_buffer_avg_queued_seconds",
            "gauge",
            "Average time a flushed packet was held.",
            format!("{average:.3}"),
        );
        line(
            "uc_dead_servers_cleaned_total",
            "counter",
            "Dead peers this server cleaned up.",
            get(&self.dead_servers_cleaned),
        );
        line(
            "uc_calls_placed_total",
            "counter",
            "Calls placed by users of this server.",
            get(&self.calls_placed),
        );
        line(
            "uc_calls_active",
            "gauge",
            "Calls this server owns now.",
            geti(&self.calls_active),
        );
        for (name, latency, help) in [
            (
                "uc_redis_latency_seconds",
                &self.redis_latency,
                "Cluster-store operation latency.",
            ),
            (
                "uc_sql_latency_seconds",
                &self.sql_latency,
                "SQL operation latency.",
            ),
        ] {
            let sum = latency.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let count = latency.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} summary\n{name}_sum{{server=\"{server}\"}} {sum:.6}\n{name}_count{{server=\"{server}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP uc_license_in_use Leases held, by kind.\n# TYPE uc_license_in_use gauge"
        );
        for (kind, _, in_use) in licenses {
            let _ = writeln!(
                out,
                "uc_license_in_use{{server=\"{server}\",kind=\"{kind}\"}} {in_use}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP uc_license_capacity License capacity, by kind (absent = unlimited).\n# TYPE uc_license_capacity gauge"
        );
        for (kind, capacity, _) in licenses {
            if let Some(capacity) = capacity {
                let _ = writeln!(
                    out,
                    "uc_license_capacity{{server=\"{server}\",kind=\"{kind}\"}} {capacity}"
                );
            }
        }
        if let Some(rss) = resident_bytes() {
            let _ = writeln!(
                out,
                "# HELP uc_process_resident_bytes Resident memory of the process.\n# TYPE uc_process_resident_bytes gauge\nuc_process_resident_bytes{{server=\"{server}\"}} {rss}"
            );
        }
        out
    }
}

/// Resident set size from /proc (Linux); `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
