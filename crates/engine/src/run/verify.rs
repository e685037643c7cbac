//! `sluice verify SYNC`: ask the destination which of the records the
//! snapshot says were delivered still exist, and forget the ones that are
//! gone, so the next run sends them again. State claims what the
//! destination accepted; records deleted there since (by hand, a merge, a
//! purge) would otherwise never come back while their rows stay unchanged.
//!
//! Only destinations that export `lookup-api` can answer; the lookup runs
//! under the sync's rate limit, like its writes.

use super::prepare::{open_instance, pacer_for, sync_daily_cap, sync_rate};
use super::*;

/// How to verify.
#[derive(Clone, Default)]
pub struct VerifyOptions {
    /// Report what is missing, forget nothing.
    pub dry_run: bool,
    /// Rate budgets shared with runs and other processes, as for runs
    /// ([`RunOptions::budgets`]): the lookups draw from the budget of the
    /// destination's credentials.
    pub budgets: Option<Arc<dyn crate::budget::SharedBudgets>>,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    pub sync: String,
    /// Delivered records asked about.
    pub checked: u64,
    /// Delivered rows with no destination identifier on record (delivered
    /// before identifiers were kept): they cannot be asked about.
    pub without_identifier: u64,
    /// Records the destination no longer holds, by key (at most
    /// [`MISSING_SAMPLES`] listed; `missing` counts them all).
    pub missing: u64,
    pub missing_keys: Vec<String>,
    /// Keys forgotten from the snapshot (0 in a dry run).
    pub forgotten: u64,
    /// HTTP requests the lookups made.
    pub requests: u64,
}

/// Identifiers asked about in one `exists` call (the contract's bound; a
/// plugin splits them into its API's own request sizes).
pub const LOOKUP_CHUNK: usize = 1000;

/// Missing keys listed in a report.
pub const MISSING_SAMPLES: usize = 100;

impl<S: StateStore> SyncEngine<'_, S> {
    pub async fn verify(&self, name: &str, options: VerifyOptions) -> Result<VerifyReport> {
        let sync = self.project.sync(name).map_err(|e| anyhow!(e))?;
        let dest_cfg = &self.project.destination_of(sync).instance;
        let (mut instance, spec, _) =
            open_instance(self.runtime, &self.project.dir, dest_cfg, "destination")
                .await
                .with_context(|| format!("verifying sync `{name}`"))?;
        let rate = sync_rate(self.project, sync, &spec);
        let retry = RetryPolicy::default();
        let pacer = pacer_for(
            (rate.as_ref(), sync_daily_cap(self.project, sync)),
            1,
            &retry,
            (dest_cfg, &spec),
            options.budgets.as_ref(),
        )?;
        instance.set_request_gate(pacer.request_gate());
        let target = WriteTarget {
            object: sync.object.expose().to_string(),
            mode: sync.mode.write_mode(),
            identifier: sync
                .identifier
                .as_ref()
                .map(|i| i.expose().to_string())
                .unwrap_or_default(),
        };
        let delivered = self.delivered_identifiers(name)?;
        let mut report = VerifyReport {
            sync: name.to_string(),
            without_identifier: delivered.without_identifier,
            ..Default::default()
        };
        let config = dest_cfg.config_json();
        let plugin = instance.plugin_name().to_owned();
        let mut missing = Vec::new();
        for part in delivered.entries.chunks(LOOKUP_CHUNK) {
            let ids: Vec<sluice_runtime::Value> = part.iter().map(|(_, id)| id.clone()).collect();
            let answers = retry
                .run(async || {
                    let asking = instance.exists(&config, &target, &ids);
                    pacer.call(&plugin, "exists", asking).await
                })
                .await
                .map_err(|e| anyhow!(e))
                .with_context(|| {
                    format!(
                        "verifying sync `{name}`: asking destination `{}`",
                        dest_cfg.name
                    )
                })?;
            report.checked += part.len() as u64;
            for ((key, _), exists) in part.iter().zip(answers) {
                if !exists {
                    missing.push(key.clone());
                }
            }
        }
        report.requests = pacer.take_request_counts().0;
        report.missing = missing.len() as u64;
        report.missing_keys = missing
            .iter()
            .take(MISSING_SAMPLES)
            .map(|k| k.to_string())
            .collect();
        if !options.dry_run && !missing.is_empty() {
            report.forgotten = lock(self.store).forget_keys(name, &missing)?;
        }
        Ok(report)
    }

    /// The snapshot's keys with the identifier each was delivered under.
    fn delivered_identifiers(&self, sync: &str) -> Result<Delivered> {
        let mut out = Delivered::default();
        let mut corrupt = None;
        lock(self.store).for_each_delivered(sync, &mut |row| match &row.dest_id {
            Some(id) => match id.to_value() {
                Ok(value) => out.entries.push((row.key, value)),
                Err(e) => corrupt = Some(format!("key {}: {e}", row.key)),
            },
            None => out.without_identifier += 1,
        })?;
        if let Some(e) = corrupt {
            bail!("sync `{sync}`: a destination identifier in state cannot be read ({e})");
        }
        Ok(out)
    }
}

#[derive(Default)]
struct Delivered {
    entries: Vec<(RowKey, sluice_runtime::Value)>,
    without_identifier: u64,
}
