//! `GET /metrics`: what an operator watches, in the Prometheus text format
//! (OpenMetrics). Only counts and durations: no execution or profile ids, no names,
//! no hosts, so nothing here says who ran what.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The final status of an execution.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

/// Whether the egress proxy let an attempt through.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: &'static str,
}

/// The instance's counters; the gauges are set from the runner at each scrape.
pub struct Metrics {
    registry: Registry,
    finished: Family<StatusLabel, Counter>,
    running_seconds: Histogram,
    llm_wait_seconds: Histogram,
    egress: Family<DecisionLabel, Counter>,
    redactions: Counter,
    queued: Gauge,
    running: Gauge,
    paused: Gauge,
    workers: Gauge,
    max_paused: Gauge,
}

/// The runner's load at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub queued: usize,
    pub running: usize,
    pub paused: usize,
    pub workers: usize,
    pub max_paused: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("airlock");
        let finished = Family::<StatusLabel, Counter>::default();
        registry.register(
            "executions_finished",
            "Executions that reached a final state, by status",
            finished.clone(),
        );
        // 1 ms .. ~65 s
        let running_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            "execution_running_seconds",
            "Running time of finished executions (time paused in llm.complete excluded)",
            running_seconds.clone(),
        );
        // 10 ms .. ~11 min
        let llm_wait_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 17));
        registry.register(
            "execution_llm_wait_seconds",
            "Time finished executions spent paused in llm.complete (executions that paused)",
            llm_wait_seconds.clone(),
        );
        let egress = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "egress_attempts",
            "Connection attempts through the executions' egress proxy, allowed or refused",
            egress.clone(),
        );
        let redactions = Counter::default();
        registry.register(
            "redactions",
            "Credential values replaced in execution outputs, LLM exchanges and egress logs",
            redactions.clone(),
        );
        let gauges = [
            (
                "executions_queued",
                "Accepted executions waiting for a worker",
            ),
            ("executions_running", "Executions holding a worker"),
            (
                "executions_paused",
                "Executions paused in llm.complete without a worker",
            ),
            (
                "workers",
                "Executions that may run at once (AIRLOCK_WORKERS)",
            ),
            (
                "max_paused",
                "Executions that may be paused at once (AIRLOCK_MAX_PAUSED)",
            ),
        ]
        .map(|(name, help)| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        });
        let [queued, running, paused, workers, max_paused] = gauges;
        Metrics {
            registry,
            finished,
            running_seconds,
            llm_wait_seconds,
            egress,
            redactions,
            queued,
            running,
            paused,
            workers,
            max_paused,
        }
    }

    /// An execution reached `status` after `running_ms` of running time and
    /// `llm_wait_ms` paused.
    pub fn finished(&self, status: &'static str, running_ms: i64, llm_wait_ms: i64) {
        self.finished.get_or_create(&StatusLabel { status }).inc();
        self.running_seconds
            .observe(running_ms.max(0) as f64 / 1000.0);
        if llm_wait_ms > 0 {
            self.llm_wait_seconds.observe(llm_wait_ms as f64 / 1000.0);
        }
    }

    /// An execution ended in `status` without running (denied, or approved but
    /// not queued): counted, but not in the running-time histogram.
    pub fn ended_unrun(&self, status: &'static str) {
        self.finished.get_or_create(&StatusLabel { status }).inc();
    }

    /// One egress attempt of an execution.
    pub fn egress_attempt(&self, allowed: bool) {
        let decision = if allowed { "allowed" } else { "refused" };
        self.egress.get_or_create(&DecisionLabel { decision }).inc();
    }

    /// `n` values replaced.
    pub fn redacted(&self, n: u64) {
        self.redactions.inc_by(n);
    }

    /// The text exposition, with the gauges set from `load`.
    pub fn render(&self, load: Load) -> String {
        let set = |g: &Gauge, v: usize| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.queued, load.queued);
        set(&self.running, load.running);
        set(&self.paused, load.paused);
        set(&self.workers, load.workers);
        set(&self.max_paused, load.max_paused);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_gauges_are_exposed() {
        let m = Metrics::new();
        m.finished("completed", 12, 0);
        m.finished("error", 3, 1500);
        m.egress_attempt(true);
        m.egress_attempt(false);
        m.egress_attempt(false);
        m.redacted(4);
        let text = m.render(Load {
            queued: 3,
            running: 2,
            paused: 7,
            workers: 2,
            max_paused: 64,
        });
        for line in [
            "airlock_executions_finished_total{status=\"completed\"} 1",
            "airlock_executions_finished_total{status=\"error\"} 1",
            "airlock_execution_running_seconds_count 2",
            "airlock_execution_llm_wait_seconds_count 1",
            "airlock_egress_attempts_total{decision=\"refused\"} 2",
            "airlock_redactions_total 4",
            "airlock_executions_queued 3",
            "airlock_executions_paused 7",
            "airlock_max_paused 64",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
