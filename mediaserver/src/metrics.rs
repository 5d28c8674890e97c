//! Counters of the media engine and their Prometheus text form.
//!
//! The engine task owns the counters (plain integers, no atomics: nobody else touches them);
//! `/metrics` asks the engine for a [`MetricsSnapshot`] over its command channel.

use std::fmt::Write as _;
use std::time::Duration;

/// Histogram of the time from a datagram's arrival to the last forwarded copy leaving the
/// socket, at 1 µs resolution up to 10 ms (slower samples land in the last bucket).
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
}

const LATENCY_BUCKETS: usize = 10_000;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; LATENCY_BUCKETS],
            count: 0,
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as usize).min(LATENCY_BUCKETS - 1);
        self.buckets[micros] += 1;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value (µs, upper edge of its bucket) below which `quantile` of the samples fall.
    pub fn quantile_micros(&self, quantile: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let wanted = ((self.count as f64) * quantile.clamp(0.0, 1.0))
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0;
        for (micros, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return Some(micros as u64 + 1);
            }
        }
        Some(LATENCY_BUCKETS as u64)
    }
}

/// A copy of the engine's counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    pub legs: u64,
    pub legs_connected: u64,
    pub calls: u64,
    pub capacity: u64,
    /// Media packets (RTP payloads) written towards receiving legs.
    pub packets_relayed: u64,
    pub bytes_relayed: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Datagrams that no leg accepted (late STUN of a removed leg, strangers).
    pub datagrams_unrouted: u64,
    /// Sends the kernel refused (buffer full); UDP drops them.
    pub send_errors: u64,
    pub legs_added: u64,
    pub legs_connected_total: u64,
    pub legs_failed: u64,
    pub dtls_failures: u64,
    pub ice_timeouts: u64,
    /// Sender/receiver pairs that got no slot because the receiver offered too few m-lines.
    pub unserved_routes: u64,
    /// Kernel arrival of a datagram to its forwarded copies' send (includes `socket_wait`).
    pub forward_latency: LatencyHistogram,
    /// Kernel arrival of a datagram to the engine's read of it: time spent waiting for the
    /// engine (busy with earlier datagrams, or not yet scheduled on a CPU).
    pub socket_wait: LatencyHistogram,
}

impl MetricsSnapshot {
    /// Prometheus text exposition, every series labelled with the server id.
    pub fn render_prometheus(&self, server: &str) -> String {
        let mut out = String::new();
        let label = format!("{{server=\"{}\"}}", server.replace('"', ""));
        let mut series = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{label} {value}");
        };
        series(
            "mediaserver_legs",
            "gauge",
            "Legs (peer connections) open.",
            self.legs,
        );
        series(
            "mediaserver_legs_connected",
            "gauge",
            "Legs with ICE and DTLS up.",
            self.legs_connected,
        );
        series("mediaserver_calls", "gauge", "Calls open.", self.calls);
        series(
            "mediaserver_capacity_legs",
            "gauge",
            "Most legs accepted.",
            self.capacity,
        );
        series(
            "mediaserver_packets_relayed_total",
            "counter",
            "Media packets forwarded to receiving legs.",
            self.packets_relayed,
        );
        series(
            "mediaserver_bytes_relayed_total",
            "counter",
            "Media payload bytes forwarded.",
            self.bytes_relayed,
        );
        series(
            "mediaserver_datagrams_in_total",
            "counter",
            "UDP datagrams received.",
            self.datagrams_in,
        );
        series(
            "mediaserver_datagrams_out_total",
            "counter",
            "UDP datagrams sent.",
            self.datagrams_out,
        );
        series(
            "mediaserver_datagrams_unrouted_total",
            "counter",
            "UDP datagrams no leg accepted.",
            self.datagrams_unrouted,
        );
        series(
            "mediaserver_send_errors_total",
            "counter",
            "UDP sends refused by the kernel.",
            self.send_errors,
        );
        series(
            "mediaserver_legs_added_total",
            "counter",
            "Legs accepted.",
            self.legs_added,
        );
        series(
            "mediaserver_legs_connected_total",
            "counter",
            "Legs that got ICE and DTLS up.",
            self.legs_connected_total,
        );
        series(
            "mediaserver_legs_failed_total",
            "counter",
            "Legs failed (ICE or DTLS).",
            self.legs_failed,
        );
        series(
            "mediaserver_dtls_failures_total",
            "counter",
            "Legs failed in DTLS.",
            self.dtls_failures,
        );
        series(
            "mediaserver_ice_timeouts_total",
            "counter",
            "Legs not connected within the connect timeout.",
            self.ice_timeouts,
        );
        series(
            "mediaserver_unserved_routes",
            "gauge",
            "Sender/receiver pairs without a receive m-line.",
            self.unserved_routes,
        );
        let server = server.replace('"', "");
        let mut summary = |name: &str, help: &str, histogram: &LatencyHistogram| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} summary");
            for quantile in [0.5, 0.99, 0.999] {
                let value = histogram.quantile_micros(quantile).unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{name}{{server=\"{server}\",quantile=\"{quantile}\"}} {value}"
                );
            }
            let _ = writeln!(out, "{name}_count{label} {}", histogram.count());
        };
        summary(
            "mediaserver_forward_latency_us",
            "Datagram arrival in the socket to its forwarded copies sent, µs.",
            &self.forward_latency,
        );
        summary(
            "mediaserver_socket_wait_us",
            "Datagram arrival in the socket to the engine reading it, µs.",
            &self.socket_wait,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile_micros(0.5), None);
        for micros in 0..100u64 {
            histogram.record(Duration::from_micros(micros));
        }
        histogram.record(Duration::from_secs(1));
        assert_eq!(histogram.quantile_micros(0.5), Some(51));
        assert_eq!(histogram.quantile_micros(0.99), Some(100));
        assert_eq!(histogram.quantile_micros(1.0), Some(10_000));
    }

    #[test]
    fn prometheus_text_names_every_series() {
        let snapshot = MetricsSnapshot {
            legs: 3,
            dtls_failures: 1,
            ..Default::default()
        };
        let text = snapshot.render_prometheus("media-1");
        assert!(text.contains("mediaserver_legs{server=\"media-1\"} 3"));
        assert!(text.contains("mediaserver_dtls_failures_total{server=\"media-1\"} 1"));
        assert!(text.contains("mediaserver_packets_relayed_total{server=\"media-1\"} 0"));
        assert!(
            text.contains("mediaserver_socket_wait_us{server=\"media-1\",quantile=\"0.99\"} 0")
        );
        assert!(text.contains("mediaserver_forward_latency_us_count{server=\"media-1\"} 0"));
    }
}
