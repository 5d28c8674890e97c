//! Counters of the media engine and their OpenMetrics text form (prometheus-client).
//!
//! The engine task owns the counters (plain integers, no atomics: nobody else touches them);
//! `/metrics` asks the engine for a [`MetricsSnapshot`] over its command channel and encodes
//! that snapshot through a registry labelled with the server id. The latency histograms are
//! kept at 1 µs resolution (for the benchmark's quantiles) and exported with coarser
//! Prometheus buckets ([`EXPORTED_BUCKETS_US`]).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::time::Duration;

/// The `Content-Type` of [`MetricsSnapshot::render_prometheus`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (µs) of the exported latency buckets; `+Inf` follows.
pub const EXPORTED_BUCKETS_US: [u64; 10] = [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// Histogram of the time from a datagram's arrival to the last forwarded copy leaving the
/// socket, at 1 µs resolution up to 10 ms (slower samples land in the last bucket).
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    /// Samples of 10 ms or more (past the last bucket).
    overflow: u64,
    count: u64,
    sum_micros: u64,
}

const LATENCY_BUCKETS: usize = 10_000;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; LATENCY_BUCKETS],
            overflow: 0,
            count: 0,
            sum_micros: 0,
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, elapsed: Duration) {
        let micros = elapsed.as_micros();
        match self.buckets.get_mut(micros as usize) {
            Some(bucket) => *bucket += 1,
            None => self.overflow += 1,
        }
        self.count += 1;
        self.sum_micros = self
            .sum_micros
            .saturating_add(u64::try_from(micros).unwrap_or(u64::MAX));
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

    /// `(upper bound in seconds, samples in that bucket alone)` for [`EXPORTED_BUCKETS_US`]
    /// and `+Inf` (`f64::MAX`), as prometheus-client's histogram encoding takes them.
    fn exported_buckets(&self) -> Vec<(f64, u64)> {
        let mut buckets = Vec::with_capacity(EXPORTED_BUCKETS_US.len() + 1);
        let mut from = 0;
        for upper in EXPORTED_BUCKETS_US {
            // A sample of `m` µs sits at index `m` and is at most `upper` µs.
            let to = (upper as usize + 1).min(LATENCY_BUCKETS);
            buckets.push((upper as f64 / 1e6, self.buckets[from..to].iter().sum()));
            from = to;
        }
        let rest: u64 = self.buckets[from..].iter().sum();
        buckets.push((f64::MAX, rest + self.overflow));
        buckets
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
    /// OpenMetrics text exposition, every series labelled with the server id.
    pub fn render_prometheus(&self, server: &str) -> String {
        let mut registry = Registry::with_labels(std::iter::once((
            Cow::Borrowed("server"),
            Cow::Owned(server.to_string()),
        )));
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

impl Collector for MetricsSnapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "mediaserver_legs",
                "Legs (peer connections) open.",
                self.legs,
            ),
            (
                "mediaserver_legs_connected",
                "Legs with ICE and DTLS up.",
                self.legs_connected,
            ),
            ("mediaserver_calls", "Calls open.", self.calls),
            (
                "mediaserver_capacity_legs",
                "Most legs accepted.",
                self.capacity,
            ),
            (
                "mediaserver_unserved_routes",
                "Sender/receiver pairs without a receive m-line.",
                self.unserved_routes,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        // prometheus-client appends `_total` to a counter's samples:
        // `mediaserver_packets_relayed` is exported as `mediaserver_packets_relayed_total`.
        let counters = [
            (
                "mediaserver_packets_relayed",
                "Media packets forwarded to receiving legs.",
                self.packets_relayed,
            ),
            (
                "mediaserver_bytes_relayed",
                "Media payload bytes forwarded.",
                self.bytes_relayed,
            ),
            (
                "mediaserver_datagrams_in",
                "UDP datagrams received.",
                self.datagrams_in,
            ),
            (
                "mediaserver_datagrams_out",
                "UDP datagrams sent.",
                self.datagrams_out,
            ),
            (
                "mediaserver_datagrams_unrouted",
                "UDP datagrams no leg accepted.",
                self.datagrams_unrouted,
            ),
            (
                "mediaserver_send_errors",
                "UDP sends refused by the kernel.",
                self.send_errors,
            ),
            ("mediaserver_legs_added", "Legs accepted.", self.legs_added),
            // Not `mediaserver_legs_connected`: that family is the gauge above, and OpenMetrics
            // forbids two families of one name (`_total` is the counter's sample suffix).
            (
                "mediaserver_legs_established",
                "Legs that got ICE and DTLS up.",
                self.legs_connected_total,
            ),
            (
                "mediaserver_legs_failed",
                "Legs failed (ICE or DTLS).",
                self.legs_failed,
            ),
            (
                "mediaserver_dtls_failures",
                "Legs failed in DTLS.",
                self.dtls_failures,
            ),
            (
                "mediaserver_ice_timeouts",
                "Legs not connected within the connect timeout.",
                self.ice_timeouts,
            ),
        ];
        for (name, help, value) in counters {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let histograms = [
            (
                "mediaserver_forward_latency_seconds",
                "Datagram arrival in the socket to its forwarded copies sent.",
                &self.forward_latency,
            ),
            (
                "mediaserver_socket_wait_seconds",
                "Datagram arrival in the socket to the engine reading it.",
                &self.socket_wait,
            ),
        ];
        for (name, help, histogram) in histograms {
            encoder
                .encode_descriptor(name, help, None, MetricType::Histogram)?
                .encode_histogram::<NoLabelSet>(
                    histogram.sum_micros as f64 / 1e6,
                    histogram.count,
                    &histogram.exported_buckets(),
                    None,
                )?;
        }
        Ok(())
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
            text.contains(
                "mediaserver_socket_wait_seconds_bucket{server=\"media-1\",le=\"+Inf\"} 0"
            )
        );
        assert!(text.contains("mediaserver_forward_latency_seconds_count{server=\"media-1\"} 0"));
        assert!(
            text.contains("# TYPE mediaserver_packets_relayed counter\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn latencies_are_exported_with_cumulative_buckets() {
        let mut snapshot = MetricsSnapshot::default();
        for micros in [5, 10, 11, 400, 20_000] {
            snapshot
                .forward_latency
                .record(Duration::from_micros(micros));
        }
        let text = snapshot.render_prometheus("m");
        let bucket = |le: &str| {
            let prefix =
                format!("mediaserver_forward_latency_seconds_bucket{{server=\"m\",le=\"{le}\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no bucket {le}:\n{text}"))
                .to_string()
        };
        assert_eq!(bucket("0.00001"), "2");
        assert_eq!(bucket("0.000025"), "3");
        assert_eq!(bucket("0.0005"), "4");
        assert_eq!(bucket("0.01"), "4");
        assert_eq!(bucket("+Inf"), "5");
        assert!(text.contains("mediaserver_forward_latency_seconds_count{server=\"m\"} 5"));
        assert!(text.contains("mediaserver_forward_latency_seconds_sum{server=\"m\"} 0.020426"));
    }
}
