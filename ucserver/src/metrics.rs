//! The metrics of one server at `/metrics`, in the OpenMetrics text format, through
//! prometheus-client.
//!
//! Each [`Metrics`] owns its own `Registry` (no global recorder), so several servers in one
//! test process keep their numbers apart. Every series carries the `server` label (a const
//! label of the registry); none carries a user: the HTTP histogram is labelled by the matched
//! route *template* (`/api/v1/presence/{user}`), never by the path that was asked for.
//!
//! Counters and gauges stay plain atomics that the call sites bump (`fetch_add`); the
//! registry reads them at scrape time through a collector, so instrumenting a place needs no
//! import of this crate's types. Latencies are histograms with buckets ([`Latency`]), from
//! which a p99 can be computed across servers.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use shared::ServerId;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of every latency histogram: 100 µs (a loopback Redis round trip)
/// to 10 s (a login's password hash on a loaded machine).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram (seconds, [`LATENCY_BUCKETS`]). Cloning shares the same histogram.
#[derive(Clone, Debug)]
pub struct Latency(Histogram);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new(LATENCY_BUCKETS))
    }
}

impl Latency {
    pub fn observe(&self, elapsed: Duration) {
        self.0.observe(elapsed.as_secs_f64());
    }

    /// Observes the time until the returned guard is dropped, whichever way the scope ends.
    pub fn start_timer(&self) -> LatencyTimer<'_> {
        LatencyTimer {
            latency: self,
            started: Instant::now(),
        }
    }
}

/// See [`Latency::start_timer`].
pub struct LatencyTimer<'a> {
    latency: &'a Latency,
    started: Instant,
}

impl Drop for LatencyTimer<'_> {
    fn drop(&mut self) {
        self.latency.observe(self.started.elapsed());
    }
}

/// Labels of `uc_http_request_duration_seconds`: all of them have few values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template that matched (`/api/v1/contacts/{user}`), or `unmatched` (the web
    /// client's files and anything else outside the router's routes).
    pub route: String,
    pub method: &'static str,
    /// `2xx`, `4xx`, ...
    pub status: &'static str,
}

/// The HTTP request histogram, one series per [`HttpLabels`]; the state of [`track_http`].
#[derive(Clone, Debug)]
pub struct HttpRequests(Family<HttpLabels, Histogram, fn() -> Histogram>);

impl Default for HttpRequests {
    fn default() -> Self {
        Self(Family::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        }))
    }
}

impl HttpRequests {
    pub fn observe(&self, labels: &HttpLabels, elapsed: Duration) {
        self.0.get_or_create(labels).observe(elapsed.as_secs_f64());
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`) timing every request from the
/// router's view: layered on the router, it runs after routing, so the matched route
/// template is known.
pub async fn track_http(
    State(requests): State<HttpRequests>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = HttpLabels {
        route,
        method,
        status: status_class(response.status()),
    };
    requests.observe(&labels, started.elapsed());
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The metrics of one server. The atomics are shared with the registry's collector
/// (`Arc`), and call sites use them as atomics: `metrics.logins.fetch_add(1, Relaxed)`.
pub struct Metrics {
    pub sessions: Arc<AtomicI64>,
    pub devices: Arc<AtomicI64>,
    pub logins: Arc<AtomicU64>,
    pub login_failures: Arc<AtomicU64>,
    pub messages_stored: Arc<AtomicU64>,
    /// Messages kept in the outbox while the database could not be reached.
    pub messages_kept: Arc<AtomicU64>,
    pub messages_delivered: Arc<AtomicU64>,
    pub presence_changes: Arc<AtomicU64>,
    pub presence_deliveries: Arc<AtomicU64>,
    pub bus_published: Arc<AtomicU64>,
    pub bus_received: Arc<AtomicU64>,
    pub bus_errors: Arc<AtomicU64>,
    pub client_errors: Arc<AtomicU64>,
    pub slow_devices_dropped: Arc<AtomicU64>,
    pub mdm_quiet_sessions: Arc<AtomicI64>,
    pub mdm_buffer_flushes: Arc<AtomicU64>,
    pub mdm_buffer_flushes_limit: Arc<AtomicU64>,
    pub mdm_last_flush_packets: Arc<AtomicU64>,
    pub mdm_flushed_packets: Arc<AtomicU64>,
    pub mdm_held_ms_total: Arc<AtomicU64>,
    pub dead_servers_cleaned: Arc<AtomicU64>,
    /// Peers this server declared dead before the window ended: their port refused.
    pub peers_found_killed: Arc<AtomicU64>,
    /// Users this server handed to another (fallback, drain, a lost lease).
    pub handovers: Arc<AtomicU64>,
    /// Users this server took from another that died or handed them over.
    pub takeovers: Arc<AtomicU64>,
    pub calls_placed: Arc<AtomicU64>,
    pub calls_active: Arc<AtomicI64>,
    /// 1 while the last SQL operation found the database unreachable (`timed::sql_store`);
    /// cached reads then give SQL only a short time before answering from their caches.
    pub sql_unreachable: Arc<AtomicI64>,
    /// Round trips to the cluster store and bus (Redis, or the in-process hub).
    pub redis_latency: Latency,
    /// Round trips to SQL (a chat write batch is one).
    pub sql_latency: Latency,
    /// A chat message from being accepted (checked and queued for the writer) to being
    /// handed to the local recipients' device queues and published to the other servers.
    pub chat_delivery: Latency,
    /// One presence change from its home server: stored in the cluster, delivered to local
    /// watchers, published to the watchers' other home servers.
    pub presence_fan_out: Latency,
    /// Every HTTP request, by route template, method and status class.
    pub http_requests: HttpRequests,
    /// The CPU share a heartbeat reports: the use since the previous beat.
    pub beat_cpu: CpuMeter,
    registry: Registry,
}

impl Metrics {
    /// The metrics of server `server`, whose id labels every series.
    pub fn new(server: &ServerId) -> Self {
        let mut metrics = Self {
            sessions: Arc::default(),
            devices: Arc::default(),
            logins: Arc::default(),
            login_failures: Arc::default(),
            messages_stored: Arc::default(),
            messages_kept: Arc::default(),
            messages_delivered: Arc::default(),
            presence_changes: Arc::default(),
            presence_deliveries: Arc::default(),
            bus_published: Arc::default(),
            bus_received: Arc::default(),
            bus_errors: Arc::default(),
            client_errors: Arc::default(),
            slow_devices_dropped: Arc::default(),
            mdm_quiet_sessions: Arc::default(),
            mdm_buffer_flushes: Arc::default(),
            mdm_buffer_flushes_limit: Arc::default(),
            mdm_last_flush_packets: Arc::default(),
            mdm_flushed_packets: Arc::default(),
            mdm_held_ms_total: Arc::default(),
            dead_servers_cleaned: Arc::default(),
            handovers: Arc::default(),
            peers_found_killed: Arc::default(),
            takeovers: Arc::default(),
            calls_placed: Arc::default(),
            calls_active: Arc::default(),
            sql_unreachable: Arc::default(),
            redis_latency: Latency::default(),
            sql_latency: Latency::default(),
            chat_delivery: Latency::default(),
            presence_fan_out: Latency::default(),
            http_requests: HttpRequests::default(),
            beat_cpu: CpuMeter::default(),
            registry: server_registry(server.as_str()),
        };
        let readings = metrics.readings();
        let registry = &mut metrics.registry;
        registry.register_collector(Box::new(readings));
        for (name, help, latency) in [
            (
                "uc_redis_latency_seconds",
                "Cluster-store and bus operation latency.",
                &metrics.redis_latency,
            ),
            (
                "uc_sql_latency_seconds",
                "SQL operation latency.",
                &metrics.sql_latency,
            ),
            (
                "uc_chat_delivery_seconds",
                "Chat message accepted to handed to the recipients' devices and servers.",
                &metrics.chat_delivery,
            ),
            (
                "uc_presence_fan_out_seconds",
                "Presence change stored, delivered locally and published to other servers.",
                &metrics.presence_fan_out,
            ),
        ] {
            registry.register(name, help, latency.0.clone());
        }
        registry.register(
            "uc_http_request_duration_seconds",
            "HTTP request latency by route template, method and status class.",
            metrics.http_requests.0.clone(),
        );
        metrics
    }

    /// The load and counters a heartbeat or a history sample carries; the CPU share is the
    /// use since `cpu`'s previous reading.
    pub fn stats(&self, cpu: &CpuMeter) -> shared::console::ServerStats {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        shared::console::ServerStats {
            cpu_percent: cpu.percent_since_last(),
            resident_bytes: resident_bytes().unwrap_or_default(),
            messages_stored: count(&self.messages_stored),
            messages_delivered: count(&self.messages_delivered),
            presence_changes: count(&self.presence_changes),
            logins: count(&self.logins),
            mdm_quiet_sessions: self.mdm_quiet_sessions.load(Ordering::Relaxed).max(0) as u64,
            mdm_buffer_flushes: count(&self.mdm_buffer_flushes),
            mdm_flushed_packets: count(&self.mdm_flushed_packets),
        }
    }

    /// The atomics as the collector reads them, under the names `/metrics` has always used.
    fn readings(&self) -> Readings {
        use Reading::{Counter, Gauge, GaugeCount};
        let series = vec![
            (
                "uc_sessions",
                "Users with at least one device connected here.",
                Gauge(self.sessions.clone()),
            ),
            (
                "uc_devices",
                "Devices (WebSocket connections) connected here.",
                Gauge(self.devices.clone()),
            ),
            (
                "uc_logins_total",
                "Successful logins.",
                Counter(self.logins.clone()),
            ),
            (
                "uc_login_failures_total",
                "Failed logins.",
                Counter(self.login_failures.clone()),
            ),
            (
                "uc_messages_stored_total",
                "Chat messages stored by this server.",
                Counter(self.messages_stored.clone()),
            ),
            (
                "uc_messages_kept_total",
                "Chat messages kept in the local outbox while the database could not be reached.",
                Counter(self.messages_kept.clone()),
            ),
            (
                "uc_messages_delivered_total",
                "Chat messages pushed to local devices.",
                Counter(self.messages_delivered.clone()),
            ),
            (
                "uc_presence_changes_total",
                "Presence changes of local users.",
                Counter(self.presence_changes.clone()),
            ),
            (
                "uc_presence_deliveries_total",
                "Presence events pushed to local devices.",
                Counter(self.presence_deliveries.clone()),
            ),
            (
                "uc_bus_published_total",
                "Messages published on the cluster bus.",
                Counter(self.bus_published.clone()),
            ),
            (
                "uc_bus_received_total",
                "Messages received from the cluster bus.",
                Counter(self.bus_received.clone()),
            ),
            (
                "uc_bus_errors_total",
                "Failed bus or cluster-store operations.",
                Counter(self.bus_errors.clone()),
            ),
            (
                "uc_client_errors_total",
                "Typed errors answered to clients.",
                Counter(self.client_errors.clone()),
            ),
            (
                "uc_slow_devices_dropped_total",
                "Devices disconnected for not reading their events.",
                Counter(self.slow_devices_dropped.clone()),
            ),
            (
                "uc_mdm_sessions",
                "MDM sessions (connected devices).",
                Gauge(self.devices.clone()),
            ),
            (
                "uc_mdm_quiet_mode_sessions",
                "Devices in quiet mode.",
                Gauge(self.mdm_quiet_sessions.clone()),
            ),
            (
                "uc_mdm_buffer_flushes_total",
                "MDM buffer flushes.",
                Counter(self.mdm_buffer_flushes.clone()),
            ),
            (
                "uc_mdm_buffer_flushes_limit_reached_total",
                "MDM buffer flushes forced by the size limit.",
                Counter(self.mdm_buffer_flushes_limit.clone()),
            ),
            (
                "uc_mdm_buffer_flush_packet_count",
                "Packets in the most recent MDM flush.",
                GaugeCount(self.mdm_last_flush_packets.clone()),
            ),
            (
                "uc_mdm_buffer_flushed_packets_total",
                "Packets flushed from MDM buffers.",
                Counter(self.mdm_flushed_packets.clone()),
            ),
            (
                "uc_dead_servers_cleaned_total",
                "Dead peers this server cleaned up.",
                Counter(self.dead_servers_cleaned.clone()),
            ),
            (
                "uc_peers_found_killed_total",
                "Peers this server declared dead at once: late beat, port refusing connections.",
                Counter(self.peers_found_killed.clone()),
            ),
            (
                "uc_handovers_total",
                "Users this server handed to another server.",
                Counter(self.handovers.clone()),
            ),
            (
                "uc_takeovers_total",
                "Users this server took from another server.",
                Counter(self.takeovers.clone()),
            ),
            (
                "uc_calls_placed_total",
                "Calls placed by users of this server.",
                Counter(self.calls_placed.clone()),
            ),
            (
                "uc_calls_active",
                "Calls this server owns now.",
                Gauge(self.calls_active.clone()),
            ),
            (
                "uc_sql_unreachable",
                "1 while the database cannot be reached (last SQL operation).",
                Gauge(self.sql_unreachable.clone()),
            ),
        ];
        Readings {
            series,
            mdm_flushed_packets: self.mdm_flushed_packets.clone(),
            mdm_held_ms_total: self.mdm_held_ms_total.clone(),
        }
    }

    /// The OpenMetrics text of every series, plus the license usage given
    /// (`(kind, capacity, in use)`), which is read from the cluster for each scrape.
    pub fn render(&self, server: &str, licenses: &[(String, Option<u32>, u32)]) -> String {
        let mut licenses_now = server_registry(server);
        licenses_now.register_collector(Box::new(LicenseReadings(licenses.to_vec())));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &licenses_now))
            .and_then(|()| encode_eof(&mut text));
        text
    }
}

fn server_registry(server: &str) -> Registry {
    Registry::with_labels(std::iter::once((
        Cow::Borrowed("server"),
        Cow::Owned(server.to_string()),
    )))
}

/// One atomic as the collector exports it.
#[derive(Debug)]
enum Reading {
    Counter(Arc<AtomicU64>),
    Gauge(Arc<AtomicI64>),
    /// A gauge kept in an unsigned atomic.
    GaugeCount(Arc<AtomicU64>),
}

impl Reading {
    /// The value of a gauge (counters are encoded apart).
    fn gauge_value(&self) -> i64 {
        match self {
            Self::Gauge(value) => value.load(Ordering::Relaxed),
            Self::GaugeCount(value) | Self::Counter(value) => {
                i64::try_from(value.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
            }
        }
    }
}

/// The collector over the atomics of [`Metrics`], plus the series derived from them.
#[derive(Debug)]
struct Readings {
    /// `(exported name, help, value)`. prometheus-client adds `_total` to a counter's samples
    /// itself, so a counter is described without it.
    series: Vec<(&'static str, &'static str, Reading)>,
    mdm_flushed_packets: Arc<AtomicU64>,
    mdm_held_ms_total: Arc<AtomicU64>,
}

impl Collector for Readings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, reading) in &self.series {
            match reading {
                Reading::Counter(value) => {
                    let metric = ConstCounter::new(value.load(Ordering::Relaxed));
                    let name = name.strip_suffix("_total").unwrap_or(name);
                    metric.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        metric.metric_type(),
                    )?)?;
                }
                Reading::Gauge(_) | Reading::GaugeCount(_) => {
                    let metric = ConstGauge::new(reading.gauge_value());
                    metric.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        metric.metric_type(),
                    )?)?;
                }
            }
        }
        let flushed = self.mdm_flushed_packets.load(Ordering::Relaxed);
        let average = if flushed == 0 {
            0.0
        } else {
            self.mdm_held_ms_total.load(Ordering::Relaxed) as f64 / flushed as f64 / 1000.0
        };
        let metric = ConstGauge::new(average);
        metric.encode(encoder.encode_descriptor(
            "uc_mdm_buffer_avg_queued_seconds",
            "Average time a flushed packet was held.",
            None,
            metric.metric_type(),
        )?)?;
        if let Some(rss) = resident_bytes() {
            let metric = ConstGauge::new(rss);
            metric.encode(encoder.encode_descriptor(
                "uc_process_resident_bytes",
                "Resident memory of the process.",
                None,
                metric.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// License usage of one scrape: `(kind, capacity, in use)`.
#[derive(Debug)]
struct LicenseReadings(Vec<(String, Option<u32>, u32)>);

impl Collector for LicenseReadings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(0u32).metric_type();
        let mut in_use =
            encoder.encode_descriptor("uc_license_in_use", "Leases held, by kind.", None, gauge)?;
        for (kind, _, used) in &self.0 {
            ConstGauge::new(*used).encode(in_use.encode_family(&[("kind", kind.as_str())])?)?;
        }
        let mut capacity = encoder.encode_descriptor(
            "uc_license_capacity",
            "License capacity, by kind (absent = unlimited).",
            None,
            gauge,
        )?;
        for (kind, limit, _) in &self.0 {
            if let Some(limit) = limit {
                ConstGauge::new(*limit)
                    .encode(capacity.encode_family(&[("kind", kind.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// Resident set size from /proc (Linux); `None` elsewhere.
/// The kernel's clock ticks per second for process times (`USER_HZ`, fixed at 100 in the
/// Linux ABI whatever the kernel's own tick rate).
const USER_HZ: f64 = 100.0;

/// Measures the process's CPU use between two readings of `/proc/self/stat`.
#[derive(Default)]
pub struct CpuMeter {
    last: std::sync::Mutex<Option<(Instant, u64)>>,
}

impl CpuMeter {
    /// Percent of one core used since the previous call (0 on the first, or without /proc).
    fn percent_since_last(&self) -> f32 {
        let Some(ticks) = cpu_ticks() else {
            return 0.0;
        };
        let now = Instant::now();
        let previous = self.last.lock().unwrap().replace((now, ticks));
        let Some((then, then_ticks)) = previous else {
            return 0.0;
        };
        let wall = now.duration_since(then).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        let used = ticks.saturating_sub(then_ticks) as f64 / USER_HZ;
        (used / wall * 100.0) as f32
    }
}

/// User plus system CPU time of this process, in clock ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
    }

    #[test]
    fn the_cpu_share_counts_work_done_since_the_last_reading() {
        let meter = CpuMeter::default();
        assert_eq!(meter.percent_since_last(), 0.0, "nothing to compare yet");
        let start = cpu_ticks().expect("/proc/self/stat");
        // Work until the kernel counted at least two ticks more (bounded: 10 s of work).
        let mut spin = 0u64;
        let begun = Instant::now();
        while cpu_ticks().unwrap() < start + 2 && begun.elapsed() < Duration::from_secs(10) {
            spin = spin.wrapping_add(std::hint::black_box(1));
        }
        assert!(meter.percent_since_last() > 0.0, "{spin}");
    }

    #[test]
    fn counters_keep_their_names_and_carry_the_server() {
        let metrics = Metrics::new(&ServerId::from("s1"));
        metrics.logins.fetch_add(3, Ordering::Relaxed);
        metrics.devices.fetch_add(2, Ordering::Relaxed);
        let text = metrics.render("s1", &[("uc-seat".into(), Some(10), 4)]);
        assert_eq!(sample(&text, "uc_logins_total{server=\"s1\"}"), Some("3"));
        assert_eq!(sample(&text, "uc_devices{server=\"s1\"}"), Some("2"));
        assert_eq!(sample(&text, "uc_mdm_sessions{server=\"s1\"}"), Some("2"));
        assert_eq!(
            sample(&text, "uc_license_in_use{server=\"s1\",kind=\"uc-seat\"}"),
            Some("4")
        );
        assert_eq!(
            sample(&text, "uc_license_capacity{server=\"s1\",kind=\"uc-seat\"}"),
            Some("10")
        );
        assert!(text.contains("# TYPE uc_logins counter\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn latencies_are_histograms_with_buckets() {
        let metrics = Metrics::new(&ServerId::from("s1"));
        metrics.sql_latency.observe(Duration::from_micros(300));
        metrics.sql_latency.observe(Duration::from_millis(30));
        drop(metrics.presence_fan_out.start_timer());
        let labels = HttpLabels {
            route: "/api/v1/me".into(),
            method: "GET",
            status: "2xx",
        };
        metrics
            .http_requests
            .observe(&labels, Duration::from_millis(2));
        let text = metrics.render("s1", &[]);
        assert!(
            text.contains("# TYPE uc_sql_latency_seconds histogram"),
            "{text}"
        );
        assert_eq!(
            sample(&text, "uc_sql_latency_seconds_count{server=\"s1\"}"),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                "uc_sql_latency_seconds_bucket{server=\"s1\",le=\"0.0005\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "uc_sql_latency_seconds_bucket{server=\"s1\",le=\"+Inf\"}"
            ),
            Some("2")
        );
        assert_eq!(
            sample(&text, "uc_presence_fan_out_seconds_count{server=\"s1\"}"),
            Some("1")
        );
        assert!(
            text.contains(
                "uc_http_request_duration_seconds_count{server=\"s1\",route=\"/api/v1/me\",method=\"GET\",status=\"2xx\"} 1"
            ),
            "{text}"
        );
    }
}
