//! The console's charts of the last hour, from the servers' own counters (no Prometheus
//! needed): every `UC_STATS_SAMPLE_MS` a server samples its load and counters
//! (`peers::record_sample`), keeps its samples of the last hour here, and appends each to its
//! history in the cluster store, where any server reads every server's history for the
//! console. While the store is away the answering server still shows its own.

use crate::metrics::CpuMeter;
use shared::console::StatsSample;
use std::collections::VecDeque;
use std::sync::Mutex;

/// How far back the charts go.
pub const WINDOW_MS: u64 = 3_600_000;
/// Most samples kept per server (a short sampling period shortens the window instead).
pub const MAX_SAMPLES: usize = 720;

/// This server's own samples, and the CPU meter whose readings span one sampling period.
pub struct History {
    pub sample_ms: u64,
    /// CPU use is averaged over a whole period, not taken from the last heartbeat's second.
    pub cpu: CpuMeter,
    own: Mutex<VecDeque<StatsSample>>,
}

impl History {
    pub fn new(sample_ms: u64) -> Self {
        Self {
            sample_ms: sample_ms.max(1),
            cpu: CpuMeter::default(),
            own: Mutex::new(VecDeque::new()),
        }
    }

    /// How many samples cover the window.
    pub fn keep(&self) -> usize {
        ((WINDOW_MS / self.sample_ms) as usize).clamp(2, MAX_SAMPLES)
    }

    /// How long a server's history outlives its last sample in the cluster store: the charts
    /// still show a server that died within the window.
    pub fn ttl_ms(&self) -> u64 {
        WINDOW_MS + self.sample_ms
    }

    pub fn record(&self, sample: StatsSample) {
        let keep = self.keep();
        let mut own = self.own.lock().unwrap();
        own.push_back(sample);
        while own.len() > keep {
            own.pop_front();
        }
    }

    /// This server's samples, oldest first.
    pub fn own(&self) -> Vec<StatsSample> {
        self.own.lock().unwrap().iter().cloned().collect()
    }
}

/// Samples within the window that ends at `now_ms`, oldest first.
pub fn within_window(samples: Vec<StatsSample>, now_ms: i64) -> Vec<StatsSample> {
    let since = now_ms - WINDOW_MS as i64;
    samples.into_iter().filter(|s| s.at_ms >= since).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: i64) -> StatsSample {
        StatsSample {
            at_ms,
            ..StatsSample::default()
        }
    }

    #[test]
    fn the_window_keeps_the_newest_hour_and_a_bounded_count() {
        let history = History::new(30_000);
        assert_eq!(history.keep(), 120);
        for i in 0..130 {
            history.record(at(i));
        }
        let own = history.own();
        assert_eq!((own.len(), own[0].at_ms, own[119].at_ms), (120, 10, 129));
        assert_eq!(
            History::new(100).keep(),
            MAX_SAMPLES,
            "a fast period is bounded"
        );

        let now = 10 * WINDOW_MS as i64;
        let kept = within_window(vec![at(now - WINDOW_MS as i64 - 1), at(now - 5)], now);
        assert_eq!(kept, vec![at(now - 5)]);
    }
}
