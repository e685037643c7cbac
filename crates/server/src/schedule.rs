//! Scheduling: every worker started with a schedule interval looks, that
//! often, for the scheduled syncs of every tenant whose latest tick
//! ([`sluice_config::Schedule::latest_tick`]) has not been enqueued yet,
//! and enqueues one run job per such tick.
//!
//! **Once per tick, however many schedulers.** A tick is enqueued in the
//! transaction that moves the sync's `last_tick` (table
//! `sluice.schedule_ticks`, state migration 4) forward, by an `UPDATE ...
//! WHERE last_tick < tick`: of schedulers racing for one tick, one updates
//! the row and enqueues; the others update nothing and enqueue nothing.
//! The job also carries the key `schedule:<tenant>:<sync>:<tick>`.
//!
//! Ticks are computed on the database's clock, not the worker's.
//!
//! **Missed ticks.** A tick is enqueued only if it is the latest one: after
//! a time with no scheduler running (every worker down), the first pass
//! enqueues the latest tick once, not every tick missed. A sync seen for
//! the first time, or whose schedule changed, starts counting from the
//! pass that saw it: its first run is its next tick.

use crate::queue::{self, RunJob};
use deadpool_postgres::Pool;
use sluice_config::Schedule;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Enqueues due ticks every `every`, until the task is aborted; a pass
/// that fails is logged and the next one tries again.
pub async fn run(pool: Pool, every: Duration) {
    let mut seen = ProjectCache::default();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = match database_now(&pool).await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "scheduling pass skipped: the state database's clock cannot be read");
                continue;
            }
        };
        match enqueue_due(&pool, &mut seen, now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "scheduled runs enqueued"),
            Err(e) => tracing::warn!(error = %e, "scheduling pass failed; retrying next pass"),
        }
    }
}

/// The database's time (Unix seconds): every scheduler reads the same
/// clock, so a worker whose own clock is off by minutes neither claims a
/// tick early nor late.
async fn database_now(pool: &Pool) -> anyhow::Result<i64> {
    let client = pool.get().await?;
    let row = client
        .query_one("SELECT floor(extract(epoch FROM now()))::bigint", &[])
        .await?;
    Ok(row.get(0))
}

/// The schedules of each tenant's project, by the revision they were read
/// from (a revision's files never change, so it is parsed once).
#[derive(Default)]
pub struct ProjectCache {
    by_tenant: HashMap<String, (i64, BTreeMap<String, Schedule>)>,
}

/// The scheduled syncs of every tenant: (tenant, sync, schedule).
async fn scheduled_syncs(
    pool: &Pool,
    cache: &mut ProjectCache,
) -> anyhow::Result<Vec<(String, String, Schedule)>> {
    let client = pool.get().await?;
    // The login role owns the tables: it reads every tenant's revision.
    let rows = client
        .query("SELECT tenant, revision FROM sluice.projects", &[])
        .await?;
    drop(client);
    let mut out = Vec::new();
    for row in rows {
        let tenant: String = row.get(0);
        let revision: i64 = row.get(1);
        let fresh = cache
            .by_tenant
            .get(&tenant)
            .is_some_and(|(r, _)| *r == revision);
        if !fresh {
            let schedules = read_schedules(pool, &tenant, revision).await?;
            cache
                .by_tenant
                .insert(tenant.clone(), (revision, schedules));
        }
        let (_, schedules) = &cache.by_tenant[&tenant];
        out.extend(
            schedules
                .iter()
                .map(|(sync, s)| (tenant.clone(), sync.clone(), s.clone())),
        );
    }
    Ok(out)
}

/// The schedules of `revision` of `tenant`'s project, as stored (a project
/// is validated when it is applied, schedules included).
async fn read_schedules(
    pool: &Pool,
    tenant: &str,
    revision: i64,
) -> anyhow::Result<BTreeMap<String, Schedule>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT files FROM sluice.projects WHERE tenant = $1 AND revision = $2",
            &[&tenant, &revision],
        )
        .await?;
    let Some(row) = row else {
        return Ok(BTreeMap::new());
    };
    let files: BTreeMap<String, String> = serde_json::from_value(row.get(0))?;
    let text = files
        .get(sluice_config::PROJECT_FILE)
        .cloned()
        .unwrap_or_default();
    Ok(schedules_of(&text))
}

/// Each sync's `schedule:` in a `sluice.yaml`, read without validating
/// the rest (the worker validates the whole project when it runs the
/// job). A schedule that does not parse is skipped.
fn schedules_of(yaml: &str) -> BTreeMap<String, Schedule> {
    let mut out = BTreeMap::new();
    let Ok(docs) = yaml_rust2::YamlLoader::load_from_str(yaml) else {
        return out;
    };
    let Some(syncs) = docs.first().and_then(|d| d["syncs"].as_hash()) else {
        return out;
    };
    for (name, sync) in syncs {
        let (Some(name), Some(text)) = (name.as_str(), sync["schedule"].as_str()) else {
            continue;
        };
        if let Ok(s) = Schedule::parse(text) {
            out.insert(name.to_owned(), s);
        }
    }
    out
}

/// One scheduling pass at `now` (Unix seconds): how many jobs it enqueued.
pub async fn enqueue_due(pool: &Pool, cache: &mut ProjectCache, now: i64) -> anyhow::Result<u64> {
    let mut enqueued = 0;
    for (tenant, sync, schedule) in scheduled_syncs(pool, cache).await? {
        let Some(tick) = schedule.latest_tick(now) else {
            continue;
        };
        if claim_and_enqueue(pool, &tenant, &sync, &schedule, tick, now).await? {
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// Moves the sync's last tick to `tick` and enqueues its job, in one
/// transaction; false when another scheduler had (or the tick is not new,
/// or the sync is seen for the first time with this schedule).
async fn claim_and_enqueue(
    pool: &Pool,
    tenant: &str,
    sync: &str,
    schedule: &Schedule,
    tick: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let text = schedule.text();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // A sync seen for the first time, or with a new schedule, starts from
    // now: no tick before this pass is owed to it.
    let started = tx
        .execute(
            "INSERT INTO sluice.schedule_ticks (tenant, sync, schedule, last_tick)
             VALUES ($1, $2, $3, to_timestamp($4::bigint))
             ON CONFLICT (tenant, sync) DO UPDATE
                 SET schedule = EXCLUDED.schedule, last_tick = EXCLUDED.last_tick
                 WHERE sluice.schedule_ticks.schedule <> EXCLUDED.schedule",
            &[&tenant, &sync, &text, &now],
        )
        .await?;
    if started > 0 {
        tx.commit().await?;
        return Ok(false);
    }
    let claimed = tx
        .execute(
            "UPDATE sluice.schedule_ticks SET last_tick = to_timestamp($3::bigint)
             WHERE tenant = $1 AND sync = $2 AND last_tick < to_timestamp($3::bigint)
                   AND NOT paused",
            &[&tenant, &sync, &tick],
        )
        .await?;
    if claimed == 0 {
        tx.commit().await?;
        return Ok(false);
    }
    let at = chrono::DateTime::from_timestamp(tick, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| tick.to_string());
    let job = RunJob {
        tenant: tenant.to_owned(),
        sync: sync.to_owned(),
        full_resync: false,
        trigger: format!("schedule {at}"),
    };
    let key = format!("schedule:{tenant}:{sync}:{tick}");
    queue::enqueue_in(&tx, job, Some(key)).await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_read_from_the_project_file() {
        let yaml = "syncs:\n  a: { model: m, schedule: every 15m }\n  b: { model: m }\n  c: { schedule: '*/5 * * * *' }\n  d: { schedule: nonsense }\n";
        let s = schedules_of(yaml);
        assert_eq!(s.keys().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(s["a"], Schedule::Every(Duration::from_secs(900)));
    }
}
