//! Prometheus metrics (the `prometheus` crate, one registry per server, so
//! several servers in one process, as in the tests, do not share counts).

use crate::error::ApiError;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    /// Runs ended, by status (as the state records them).
    pub runs: IntCounterVec,
    /// Rows of ended runs, by outcome (`ok`, `rejected`, `invalid`,
    /// `unchanged`).
    pub rows: IntCounterVec,
    /// API requests, by route template and status code.
    pub http: IntCounterVec,
    /// Destination HTTP requests of the ended runs, by what happened:
    /// `sent` (every request), `throttled` (waits the API asked for: 429,
    /// Retry-After), `paced` (waits the host's pace imposed, shared budget
    /// included).
    pub destination: IntCounterVec,
    /// Runs taken over: marked `killed` because their worker was presumed
    /// dead and another took their sync's lease.
    pub takeovers: IntCounterVec,
    /// Jobs in the run queue (graphile-worker's tables), by state:
    /// `ready`, `scheduled` (a retry's or a tick's later `run_at`),
    /// `running` (locked by a worker), `failed` (attempts used up).
    pub queue: IntGaugeVec,
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
            destination: counter(
                "sluice_destination_requests_total",
                "Destination HTTP requests of the runs ended, by what happened (sent, throttled, paced).",
                &["outcome"],
            ),
            takeovers: counter(
                "sluice_lease_takeovers_total",
                "Runs whose worker was presumed dead and whose sync another run took over.",
                &[],
            ),
            queue: {
                let g = IntGaugeVec::new(
                    Opts::new("sluice_queue_jobs", "Jobs in the run queue, by state."),
                    &["state"],
                )
                .expect("metric names and labels are valid");
                registry
                    .register(Box::new(g.clone()))
                    .expect("each metric is registered once");
                g
            },
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
                        COALESCE(sum(invalid), 0)::bigint, COALESCE(sum(unchanged), 0)::bigint,
                        COALESCE(sum(requests), 0)::bigint, COALESCE(sum(throttled_waits), 0)::bigint,
                        COALESCE(sum(paced_waits), 0)::bigint,
                        count(*) FILTER (WHERE status = 'killed')
                 FROM sluice.runs WHERE status <> 'running'",
                &[],
            )
            .await?;
        self.count_queue(&client).await?;
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
        self.destination.reset();
        for (i, outcome) in ["sent", "throttled", "paced"].iter().enumerate() {
            let n: i64 = rows.get(4 + i);
            self.destination
                .with_label_values(&[*outcome])
                .inc_by(n as u64);
        }
        self.takeovers.reset();
        let killed: i64 = rows.get(7);
        self.takeovers
            .with_label_values(&[] as &[&str])
            .inc_by(killed as u64);
        Ok(())
    }

    /// Sets the queue gauge from graphile-worker's jobs table (a successful
    /// job's row is deleted; a failed one stays with its attempts used).
    async fn count_queue(&self, client: &deadpool_postgres::Client) -> Result<(), ApiError> {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE locked_at IS NULL AND attempts < max_attempts AND run_at <= now()),
                    count(*) FILTER (WHERE locked_at IS NULL AND attempts < max_attempts AND run_at > now()),
                    count(*) FILTER (WHERE locked_at IS NOT NULL),
                    count(*) FILTER (WHERE locked_at IS NULL AND attempts >= max_attempts)
             FROM {}._private_jobs",
            crate::queue::SCHEMA
        );
        let depth = client.query_one(&sql, &[]).await?;
        for (i, state) in ["ready", "scheduled", "running", "failed"]
            .iter()
            .enumerate()
        {
            let n: i64 = depth.get(i);
            self.queue.with_label_values(&[*state]).set(n);
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
