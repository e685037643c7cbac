//! Prometheus metrics (the `prometheus` crate, one registry per server, so
//! several servers in one process, as in the tests, do not share counts).

use crate::error::ApiError;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    /// Runs ended, by status (as the state records them).
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

    /// Sets the run and row counters to what the state records: runs are
    /// executed by workers, in other processes, and the state is the one
    /// place that sees them all. Read as the login role (every tenant).
    pub async fn count_runs(&self, pool: &deadpool_postgres::Pool) -> Result<(), ApiError> {
        let client = pool.get().await?;
        let by_status = client
            .query(
                "SELECT status, count(*) FROM sluice.runs WHERE status <> 'running' GROUP BY status",
                &[],
            )
            .await?;
        let rows = client
            .query_one(
                "SELECT COALESCE(sum(ok), 0)::bigint, COALESCE(sum(rejected), 0)::bigint,
                        COALESCE(sum(invalid), 0)::bigint, COALESCE(sum(unchanged), 0)::bigint
                 FROM sluice.runs WHERE status <> 'running'",
                &[],
            )
            .await?;
        self.runs.reset();
        for r in &by_status {
            let n: i64 = r.get(1);
            self.runs
                .with_label_values(&[r.get::<_, &str>(0)])
                .inc_by(n as u64);
        }
        self.rows.reset();
        for (i, outcome) in ["ok", "rejected", "invalid", "unchanged"]
            .iter()
            .enumerate()
        {
            let n: i64 = rows.get(i);
            self.rows.with_label_values(&[*outcome]).inc_by(n as u64);
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
