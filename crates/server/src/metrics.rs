//! Prometheus metrics (the `prometheus` crate, one registry per server, so
//! several servers in one process, as in the tests, do not share counts).

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    /// Runs ended, by status.
    pub runs: IntCounterVec,
    /// Rows of ended runs, by outcome (`ok`, `rejected`, `invalid`,
    /// `unchanged`).
    pub rows: IntCounterVec,
    /// API requests, by route template and status code.
    pub http: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric names and labels are valid");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric is registered once");
            c
        };
        Metrics {
            runs: counter("sluice_runs_total", "Runs ended, by status.", &["status"]),
            rows: counter(
                "sluice_sync_rows_total",
                "Rows of the runs ended, by outcome.",
                &["outcome"],
            ),
            http: counter(
                "sluice_http_requests_total",
                "API requests answered, by route and status code.",
                &["route", "status"],
            ),
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding counters into memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// Counts a run that ended.
    pub fn run_ended(&self, status: &str, counts: &sluice_state::RunCounts) {
        self.runs.with_label_values(&[status]).inc();
        for (outcome, n) in [
            ("ok", counts.ok),
            ("rejected", counts.rejected),
            ("invalid", counts.invalid),
            ("unchanged", counts.unchanged),
        ] {
            self.rows.with_label_values(&[outcome]).inc_by(n);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
