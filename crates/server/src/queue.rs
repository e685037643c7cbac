//! The run queue: graphile-worker's Rust port (`graphile_worker`, on its
//! tokio-postgres driver) in the schema [`SCHEMA`] of the state database.
//!
//! A job is a [`RunJob`]: ids only (tenant, sync, why), never the project
//! or its secrets; the worker reads the tenant's current project when it
//! takes the job. Jobs of one sync share the named queue [`sync_queue`],
//! which graphile-worker runs one job at a time across every worker, so a
//! sync's jobs never overlap; the state's lease on the sync
//! (crates/state/src/postgres.rs) is the second guard, covering a
//! `sluice run` or a job whose worker was presumed dead.
//!
//! Delivery is at least once: a job whose worker died (SIGKILL, lost host)
//! is handed back by the heartbeat sweep of a live worker
//! ([`crate::worker::Recovery`]) and runs again; the engine's commits make
//! the rerun send only what the dead run had not committed.

use deadpool_postgres::Pool;
use graphile_worker::{IntoTaskHandlerResult, JobSpec, TaskHandler, WorkerContext, WorkerUtils};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The schema the queue's tables live in (graphile-worker's own
/// migrations create and upgrade it).
pub const SCHEMA: &str = "sluice_queue";

/// How often a job whose run could not start (the sync locked, the state
/// database unreachable) is tried before it is given up; graphile-worker
/// waits `exp(min(attempts, 10))` seconds between tries.
pub const MAX_ATTEMPTS: i16 = 12;

/// Run one sync of one tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunJob {
    pub tenant: String,
    pub sync: String,
    #[serde(default)]
    pub full_resync: bool,
    /// `manual`, or `schedule` with its tick (RFC 3339).
    pub trigger: String,
}

impl TaskHandler for RunJob {
    const IDENTIFIER: &'static str = "sluice_run";

    async fn run(self, ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        match ctx.get_ext::<Arc<crate::worker::Executor>>().cloned() {
            Some(executor) => executor.execute(self).await,
            None => Err("this worker was started without a run executor".to_owned()),
        }
    }
}

/// The named queue of `tenant`'s `sync`: one job of it runs at a time.
pub fn sync_queue(tenant: &str, sync: &str) -> String {
    format!("sync:{tenant}:{sync}")
}

/// The queue's client on `pool`.
pub fn utils(pool: &Pool) -> WorkerUtils {
    WorkerUtils::new(pool.clone(), SCHEMA)
}

/// Creates or upgrades the queue's schema.
pub async fn migrate(pool: &Pool) -> anyhow::Result<()> {
    utils(pool)
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("migrating the job queue (schema {SCHEMA}): {e}"))
}

/// How `job` is queued: on its sync's queue, keyed when `key` is given (a
/// waiting job of the same key is replaced rather than doubled).
fn spec_of(job: &RunJob, key: Option<String>) -> JobSpec {
    let mut spec = JobSpec::builder()
        .queue_name(sync_queue(&job.tenant, &job.sync))
        .max_attempts(MAX_ATTEMPTS);
    if let Some(key) = key {
        spec = spec.job_key(key);
    }
    spec.build()
}

/// Enqueues `job`; its id.
pub async fn enqueue(
    pool: &Pool,
    job: RunJob,
    key: Option<String>,
) -> Result<i64, graphile_worker::errors::GraphileWorkerError> {
    let spec = spec_of(&job, key);
    let added = utils(pool).add_job(job, spec).await?;
    Ok(*added.id())
}

/// Enqueues `job` inside `tx`: it exists only if `tx` commits.
pub async fn enqueue_in(
    tx: &deadpool_postgres::Transaction<'_>,
    job: RunJob,
    key: Option<String>,
) -> anyhow::Result<i64> {
    let spec = spec_of(&job, key);
    let payload = serde_json::to_value(&job)?;
    let inner: &tokio_postgres::Transaction<'_> = tx;
    let added = graphile_worker::sql::add_job::single::add_job(
        inner,
        SCHEMA,
        RunJob::IDENTIFIER,
        payload,
        spec,
        false,
    )
    .await
    .map_err(|e| anyhow::anyhow!("enqueueing a run of `{}`: {e}", job.sync))?;
    Ok(*added.id())
}

/// Wakes the workers' job slots when a job is waiting, after a job ended.
///
/// graphile-worker's slots take a job only on a signal: its poll tick
/// (every second) or a `jobs:insert` notification, sent when a job is
/// added. A slot that finished a run therefore idled until the next tick
/// while jobs waited: a backlog (200 schedules due at one tick) drained at
/// about one job per slot per second however short the runs
/// (BENCHMARKS.md, "200 tenants on one host"). The same notification after
/// each job, sent only while a job is due, keeps the slots busy. Best
/// effort: a failure only leaves the poll tick to wake them.
pub async fn wake_if_waiting(pool: &Pool) {
    let sql = format!(
        "SELECT pg_notify('jobs:insert', '') WHERE EXISTS (
             SELECT 1 FROM {SCHEMA}._private_jobs
             WHERE locked_at IS NULL AND run_at <= now() AND attempts < max_attempts)"
    );
    let woken = match pool.get().await {
        Ok(client) => client
            .execute(&sql, &[])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = woken {
        tracing::debug!(error = %e, "waking the job slots; the poll tick will");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_row_holds_ids_only() {
        let job = RunJob {
            tenant: "acme".into(),
            sync: "contacts".into(),
            full_resync: false,
            trigger: "manual".into(),
        };
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"tenant": "acme", "sync": "contacts", "full_resync": false, "trigger": "manual"})
        );
        assert_eq!(sync_queue("acme", "contacts"), "sync:acme:contacts");
    }
}
