//! Per-tenant resource ceilings, set by the operator
//! (`PUT /api/v1/tenants/{name}/resource-ceiling`): memory per instance,
//! the deadline of one plugin call, the deadline of a run, runs at once and
//! instances at once. A tenant's project can never exceed them:
//!
//! - **Refused**: a value the project sets above a ceiling (`limits:
//!   {memory: 1GiB}` under a 64 MiB ceiling, a sync's `run_deadline`) is a
//!   problem with its file, line and column when the project is applied,
//!   and again before every run (a ceiling lowered later stops the next
//!   run, like the network ceiling). Refused rather than clamped because
//!   the tenant asked for that value explicitly: silently running with
//!   less would make its runs fail later in a way it cannot explain.
//! - **Clamped**: a value the project leaves out is the runtime's default
//!   lowered to the ceiling ([`ResourceCeiling::limits_over`],
//!   [`ResourceCeiling::clamp_runs`]), so a tenant need not know its
//!   ceilings to stay under them.
//! - **Queued**: a tenant at its concurrent-run ceiling does not fail: the
//!   job waits for a run slot ([`acquire_run_slot`], PostgreSQL advisory
//!   locks shared by every worker) and, after [`SLOT_WAIT`], goes back to
//!   the queue to try again later.

use crate::api::{body, Operator};
use crate::error::ApiError;
use crate::Shared;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_config::{Diagnostic, Project};
use sluice_runtime::Limits;
use std::time::Duration;
use utoipa::ToSchema;

/// How long a job waits for one of its tenant's run slots before it goes
/// back to the queue.
pub const SLOT_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting job looks for a free slot.
const SLOT_POLL: Duration = Duration::from_millis(200);
/// When a job that found no slot is tried again.
pub const SLOT_RETRY: Duration = Duration::from_secs(5);

/// Bounds of what an operator may set (a typo like `memory_bytes: 64`
/// would otherwise make every instance fail).
const MIN_MEMORY: i64 = 1 << 20;
const MAX_MEMORY: i64 = 64 << 30;
const MIN_DEADLINE_MS: i64 = 10;
const MAX_DEADLINE_MS: i64 = 7 * 24 * 3600 * 1000;
const MAX_RUNS: i32 = 10_000;
/// A run holds its source and its destination instance at once.
const MIN_INSTANCES: i32 = 2;
const MAX_INSTANCES: i32 = 100_000;

/// A tenant's ceilings; `None` is no ceiling beyond the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceCeiling {
    /// Linear memory of one plugin instance, in bytes (1 MiB to 64 GiB).
    pub memory_bytes: Option<i64>,
    /// Wall-clock deadline of one plugin call (which bounds its CPU time
    /// too), in milliseconds.
    pub call_deadline_ms: Option<i64>,
    /// Wall-clock deadline of one run, in milliseconds: a run that reaches
    /// it is stopped and recorded as failed.
    pub run_deadline_ms: Option<i64>,
    /// Runs of the tenant's syncs at once, across every worker; more wait.
    pub concurrent_runs: Option<i32>,
    /// Plugin instances of the tenant alive at once on one worker (at least
    /// 2: a run holds a source and a destination).
    pub instances: Option<i32>,
}

/// The columns of `sluice.tenants` that hold the ceilings, in
/// [`ResourceCeiling`]'s order.
const COLUMNS: &str = "memory_bytes, call_deadline_ms, run_deadline_ms, concurrent_runs, instances";

impl ResourceCeiling {
    fn from_row(row: &tokio_postgres::Row, first: usize) -> Self {
        ResourceCeiling {
            memory_bytes: row.get(first),
            call_deadline_ms: row.get(first + 1),
            run_deadline_ms: row.get(first + 2),
            concurrent_runs: row.get(first + 3),
            instances: row.get(first + 4),
        }
    }

    /// The tenant's ceilings, read as the owner (a tenant cannot change
    /// its own).
    pub async fn read(client: &tokio_postgres::Client, tenant: &str) -> Result<Self, ApiError> {
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM sluice.tenants WHERE tenant = $1"),
                &[&tenant],
            )
            .await?
            .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}`")))?;
        Ok(Self::from_row(&row, 0))
    }

    /// Refuses values out of bounds; the error names the field.
    fn check(&self) -> Result<(), ApiError> {
        fn within<T: PartialOrd + std::fmt::Display + Copy>(
            field: &str,
            value: Option<T>,
            min: T,
            max: T,
            unit: &str,
        ) -> Result<(), ApiError> {
            match value {
                Some(v) if v < min || v > max => Err(ApiError::invalid(
                    field,
                    format!("{field} is {v}; it must be {min} to {max}{unit}"),
                )),
                _ => Ok(()),
            }
        }
        within(
            "memory_bytes",
            self.memory_bytes,
            MIN_MEMORY,
            MAX_MEMORY,
            " bytes",
        )?;
        within(
            "call_deadline_ms",
            self.call_deadline_ms,
            MIN_DEADLINE_MS,
            MAX_DEADLINE_MS,
            " ms",
        )?;
        within(
            "run_deadline_ms",
            self.run_deadline_ms,
            MIN_DEADLINE_MS,
            MAX_DEADLINE_MS,
            " ms",
        )?;
        within("concurrent_runs", self.concurrent_runs, 1, MAX_RUNS, "")?;
        within(
            "instances",
            self.instances,
            MIN_INSTANCES,
            MAX_INSTANCES,
            " (a run holds a source and a destination instance at once)",
        )
    }

    fn memory(&self) -> Option<usize> {
        self.memory_bytes.map(|m| m as usize)
    }

    fn call_deadline(&self) -> Option<Duration> {
        self.call_deadline_ms
            .map(|ms| Duration::from_millis(ms as u64))
    }

    fn run_deadline(&self) -> Option<Duration> {
        self.run_deadline_ms
            .map(|ms| Duration::from_millis(ms as u64))
    }

    /// `base` (the worker's default limits) lowered to the ceilings: what
    /// a tenant's instances get for every limit its project leaves out.
    pub fn limits_over(&self, base: &Limits) -> Limits {
        let mut limits = base.clone();
        if let Some(m) = self.memory() {
            limits.memory_bytes = limits.memory_bytes.min(m);
        }
        if let Some(d) = self.call_deadline() {
            limits.call_deadline = limits.call_deadline.min(d);
            limits.wall_deadline = limits.wall_deadline.min(d);
        }
        if let Some(n) = self.instances {
            limits.instances_per_tenant = n as usize;
        }
        limits
    }

    /// Gives every sync without a `run_deadline` the ceiling's (a sync's
    /// own is at most the ceiling: [`ResourceCeiling::exceeded_by`]).
    pub fn clamp_runs(&self, project: &mut Project) {
        if let Some(ceiling) = self.run_deadline() {
            for sync in project.syncs.values_mut() {
                sync.run_deadline = Some(sync.run_deadline.map_or(ceiling, |d| d.min(ceiling)));
            }
        }
    }

    /// Every value `project` sets above a ceiling, at its place in the
    /// project's files.
    pub fn exceeded_by(&self, project: &Project) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let expected = "a value within the tenant's resource ceiling";
        let instances = project
            .sources
            .values()
            .chain(project.transforms.values())
            .chain(project.destinations.values().map(|d| &d.instance));
        for cfg in instances {
            let mut over = |key: &str, value: String, ceiling: String| {
                problems.push(Diagnostic {
                    file: cfg.location.file.to_path_buf(),
                    line: cfg.location.line,
                    column: cfg.location.column,
                    message: format!(
                        "`{}` sets `limits.{key}: {value}`, above what the operator allows this \
                         tenant ({ceiling}); lower it or leave it out to get the ceiling",
                        cfg.name
                    ),
                    expected: Some(expected.into()),
                });
            };
            if let (Some(set), Some(max)) = (cfg.limits.memory, self.memory()) {
                if set > max {
                    over(
                        "memory",
                        bytes(set),
                        format!("memory ceiling {}", bytes(max)),
                    );
                }
            }
            if let Some(max) = self.call_deadline() {
                for (key, set) in [
                    ("cpu_per_call", cfg.limits.cpu_per_call),
                    ("call_deadline", cfg.limits.call_deadline),
                ] {
                    if let Some(set) = set.filter(|s| *s > max) {
                        over(
                            key,
                            secs(set),
                            format!("call deadline ceiling {}", secs(max)),
                        );
                    }
                }
            }
        }
        if let Some(max) = self.run_deadline() {
            for sync in project.syncs.values() {
                if let Some(set) = sync.run_deadline.filter(|d| *d > max) {
                    problems.push(Diagnostic {
                        file: sync.location.file.to_path_buf(),
                        line: sync.location.line,
                        column: sync.location.column,
                        message: format!(
                            "sync `{}` sets `run_deadline: {}`, above what the operator allows \
                             this tenant (run deadline ceiling {}); lower it or leave it out to \
                             get the ceiling",
                            sync.name,
                            secs(set),
                            secs(max)
                        ),
                        expected: Some(expected.into()),
                    });
                }
            }
        }
        problems
    }
}

fn bytes(n: usize) -> String {
    if n.is_multiple_of(1 << 20) {
        format!("{}MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The operator's routes of this module.
pub fn routes() -> Router<Shared> {
    Router::new().route(
        "/api/v1/tenants/{name}/resource-ceiling",
        axum::routing::get(get_resource_ceiling).put(put_resource_ceiling),
    )
}

/// A tenant's resource ceilings (operator only).
#[utoipa::path(get, path = "/api/v1/tenants/{name}/resource-ceiling", params(("name" = String, Path)),
    responses((status = 200, body = ResourceCeiling), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_resource_ceiling(
    _: Operator,
    State(state): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<ResourceCeiling>, ApiError> {
    let client = state.pool.get().await?;
    Ok(Json(ResourceCeiling::read(&client, &name).await?))
}

/// Replaces a tenant's resource ceilings (operator only); `null` or absent
/// removes one. The tenant's stored project is checked against them again
/// before each run.
#[utoipa::path(put, path = "/api/v1/tenants/{name}/resource-ceiling", params(("name" = String, Path)),
    request_body = ResourceCeiling,
    responses((status = 200, body = ResourceCeiling), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn put_resource_ceiling(
    _: Operator,
    State(state): State<Shared>,
    Path(name): Path<String>,
    json: Result<Json<ResourceCeiling>, JsonRejection>,
) -> Result<Json<ResourceCeiling>, ApiError> {
    let ceiling = body(json)?;
    ceiling.check()?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE sluice.tenants SET memory_bytes = $2, call_deadline_ms = $3,
                     run_deadline_ms = $4, concurrent_runs = $5, instances = $6
                 WHERE tenant = $1 RETURNING {COLUMNS}"
            ),
            &[
                &name,
                &ceiling.memory_bytes,
                &ceiling.call_deadline_ms,
                &ceiling.run_deadline_ms,
                &ceiling.concurrent_runs,
                &ceiling.instances,
            ],
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{name}`")))?;
    Ok(Json(ResourceCeiling::from_row(&row, 0)))
}

/// One of a tenant's run slots, held (as a session advisory lock on a
/// connection of its own) until dropped or released. A worker that dies
/// loses its connection and with it the slot.
pub struct RunSlot {
    client: deadpool_postgres::Object,
    key: (i32, i32),
}

impl RunSlot {
    /// Gives the slot back.
    pub async fn release(self) {
        let (tenant_key, slot) = self.key;
        if let Err(e) = self
            .client
            .execute("SELECT pg_advisory_unlock($1, $2)", &[&tenant_key, &slot])
            .await
        {
            // The connection is recycled with DISCARD ALL, which unlocks too.
            tracing::warn!(error = %crate::error::describe_pg(&e), "releasing a run slot");
        }
    }
}

/// The database's current time.
async fn database_now(
    pool: &deadpool_postgres::Pool,
) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let client = pool
        .get()
        .await
        .map_err(|e| format!("reading the database's time: {e}"))?;
    let micros: i64 = client
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
            &[],
        )
        .await
        .map_err(|e| {
            format!(
                "reading the database's time: {}",
                crate::error::describe_pg(&e)
            )
        })?
        .get(0);
    chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| format!("the database's time {micros} µs is out of range"))
}

/// Puts `job` back on its sync's queue to be tried after [`SLOT_RETRY`]:
/// its tenant was at a ceiling (`why`: which). The job at hand then ends.
pub async fn requeue_later(
    pool: &deadpool_postgres::Pool,
    job: crate::queue::RunJob,
    why: &str,
) -> Result<(), String> {
    let mut spec = graphile_worker::JobSpec::builder()
        .queue_name(crate::queue::sync_queue(&job.tenant, &job.sync))
        .max_attempts(crate::queue::MAX_ATTEMPTS)
        .build();
    // By the database's clock, which decides when a job is due: this
    // host's may be minutes off.
    spec.run_at =
        Some(database_now(pool).await? + chrono::TimeDelta::seconds(SLOT_RETRY.as_secs() as i64));
    let (tenant, sync) = (job.tenant.clone(), job.sync.clone());
    crate::queue::utils(pool)
        .add_job(job, spec)
        .await
        .map_err(|e| format!("requeueing `{sync}` of tenant `{tenant}` ({why}): {e}"))?;
    tracing::info!(tenant = %tenant, sync = %sync, "{why}: requeued");
    Ok(())
}

/// The first advisory-lock key of `tenant`'s run slots (the two-key form,
/// a space apart from the state's one-key sync leases).
fn tenant_key(tenant: &str) -> i32 {
    let digest = Sha256::digest(format!("sluice run slots\0{tenant}").as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Takes one of `tenant`'s `limit` run slots, waiting up to `wait` for one
/// to be free; `None` when none was.
pub async fn acquire_run_slot(
    pool: &deadpool_postgres::Pool,
    tenant: &str,
    limit: i32,
    wait: Duration,
) -> Result<Option<RunSlot>, String> {
    let client = pool
        .get()
        .await
        .map_err(|e| format!("the state database cannot be reached for a run slot: {e}"))?;
    let key = tenant_key(tenant);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        for slot in 0..limit {
            let taken: bool = client
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&key, &slot])
                .await
                .map_err(|e| {
                    format!(
                        "taking a run slot of tenant `{tenant}`: {}",
                        crate::error::describe_pg(&e)
                    )
                })?
                .get(0);
            if taken {
                return Ok(Some(RunSlot {
                    client,
                    key: (key, slot),
                }));
            }
        }
        if tokio::time::Instant::now() + SLOT_POLL > deadline {
            return Ok(None);
        }
        tokio::time::sleep(SLOT_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_limits_are_lowered_to_the_ceiling_and_higher_ones_kept_out() {
        let ceiling = ResourceCeiling {
            memory_bytes: Some(64 << 20),
            call_deadline_ms: Some(2_000),
            instances: Some(5),
            ..Default::default()
        };
        let limits = ceiling.limits_over(&Limits::default());
        assert_eq!(limits.memory_bytes, 64 << 20);
        assert_eq!(limits.call_deadline, Duration::from_secs(2));
        assert_eq!(limits.wall_deadline, Duration::from_secs(2));
        assert_eq!(limits.instances_per_tenant, 5);
        // A ceiling above the default does not raise it.
        let high = ResourceCeiling {
            memory_bytes: Some(8 << 30),
            ..Default::default()
        };
        assert_eq!(
            high.limits_over(&Limits::default()).memory_bytes,
            Limits::default().memory_bytes
        );
    }

    #[test]
    fn out_of_bounds_ceilings_name_their_field() {
        let bad = ResourceCeiling {
            instances: Some(1),
            ..Default::default()
        };
        let err = bad.check().unwrap_err();
        assert_eq!(err.detail.field.as_deref(), Some("instances"));
        assert!(
            err.detail.message.contains("2 to 100000"),
            "{}",
            err.detail.message
        );
        let bad = ResourceCeiling {
            memory_bytes: Some(64),
            ..Default::default()
        };
        assert_eq!(
            bad.check().unwrap_err().detail.field.as_deref(),
            Some("memory_bytes")
        );
        assert!(ResourceCeiling::default().check().is_ok());
    }

    #[test]
    fn tenant_keys_differ_by_tenant() {
        assert_eq!(tenant_key("acme"), tenant_key("acme"));
        assert_ne!(tenant_key("acme"), tenant_key("beta"));
    }
}
