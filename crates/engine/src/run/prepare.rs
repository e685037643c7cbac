//! Before anything is read: the plugins are loaded and instantiated with
//! their grants, the destination's object is discovered and the mappings
//! are checked against it.

use super::*;
use crate::budget::BudgetKey;
use crate::observe;
use crate::pacing::{DailyCap, SharedPace};

impl<S: StateStore> SyncEngine<'_, S> {
    pub(super) async fn prepare<'p>(
        &self,
        sync: &'p SyncConfig,
        options: &RunOptions,
        clock: Arc<StageClock>,
    ) -> Result<Prepared<'p>> {
        clock.enter(Stage::Load);
        let project = self.project;
        let model = project.model_of(sync);
        let source_cfg = project.source_of(model);
        let dest_cfg = &project.destination_of(sync).instance;
        let retry = RetryPolicy {
            max_wait: sync.max_wait.unwrap_or(options.retry.max_wait),
            ..options.retry
        };

        let (source, _, _) =
            open_run_instance(self.runtime, &project.dir, source_cfg, "source", &clock).await?;
        let in_warehouse = model.diff == sluice_config::DiffLocation::Warehouse;
        if in_warehouse {
            warehouse::check_can_diff(sync, model, source_cfg, &source)?;
        }
        let (mut destination, spec, dest_identity) =
            open_run_instance(self.runtime, &project.dir, dest_cfg, "destination", &clock).await?;
        let rate = sync_rate(project, sync, &spec);
        let writers = if options.dry_run {
            1
        } else {
            pacing::concurrency(rate.as_ref())
        };
        let pacer = pacer_for(
            (rate.as_ref(), sync_daily_cap(project, sync)),
            writers,
            &retry,
            (dest_cfg, &spec),
            options.budgets.as_ref(),
        )?;
        // Every HTTP request a destination instance makes waits for the
        // shared pace, whichever call makes it, discovery included: the
        // API counts it against the same limit.
        destination.set_request_gate(pacer.request_gate());
        if let Some(observer) = &options.observer {
            observe::watch_requests(&mut destination, observer, &spec.name);
        }
        clock.enter(Stage::Discover);
        let config = dest_cfg.config_json();
        let plugin = destination.plugin_name().to_owned();
        let objects = retry
            .run(async || {
                let discovering = destination.discover(&config);
                pacer.call(&plugin, "discover", discovering).await
            })
            .await?;
        let object = find_object(&objects, dest_cfg, sync)?;
        clock.enter(Stage::Mappings);
        check_mappings(sync, dest_cfg, &object)?;
        let mapper = Mapper::new(sync).map_err(|problems| {
            anyhow!(
                "invalid mappings: {}",
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        // The outcome table is checked (and its writer opened) before
        // anything is read, like the sync's own object.
        clock.enter(Stage::Discover);
        let outcomes =
            super::outcomes::open_outcomes(self.runtime, project, sync, &retry, options, &clock)
                .await?;
        clock.enter(Stage::Load);
        let mut transforms = Vec::new();
        let mut transform_identities = Vec::new();
        for t in &sync.transforms {
            let cfg = &project.transforms[t];
            let (mut instance, _, identity) =
                open_run_instance(self.runtime, &project.dir, cfg, "transform", &clock).await?;
            let handle = instance.open_transformer(&cfg.config_json()).await?;
            transforms.push((instance, handle));
            transform_identities.push((cfg, identity));
        }
        let fingerprint = fingerprint::fingerprint(
            sync,
            (dest_cfg, &dest_identity),
            &transform_identities
                .iter()
                .map(|(cfg, id)| (*cfg, id))
                .collect::<Vec<_>>(),
        );
        let identifier = sync.identifier.as_ref().map(|i| i.expose().to_string());
        let target = WriteTarget {
            object: sync.object.expose().to_string(),
            mode: sync.mode.write_mode(),
            identifier: identifier.clone().unwrap_or_default(),
        };
        // The sync's batch size wins; otherwise the destination's preference.
        let batch_size = sync.batch_size.unwrap_or(spec.batch_size);
        let mut destinations = vec![destination];
        while destinations.len() < writers {
            let (mut instance, _, _) =
                open_run_instance(self.runtime, &project.dir, dest_cfg, "destination", &clock)
                    .await?;
            instance.set_request_gate(pacer.request_gate());
            if let Some(observer) = &options.observer {
                observe::watch_requests(&mut instance, observer, &spec.name);
            }
            destinations.push(instance);
        }
        // `diff: warehouse`: a second source instance records what the
        // destination acknowledged while the first one reads (none for a
        // plan, which records nothing).
        let warehouse = match in_warehouse {
            false => None,
            true => {
                let request = warehouse::request(sync, model, fingerprint, options);
                let advancer = match options.dry_run {
                    true => None,
                    false => Some(
                        open_run_instance(self.runtime, &project.dir, source_cfg, "source", &clock)
                            .await?
                            .0,
                    ),
                };
                Some((request, advancer))
            }
        };
        Ok(Prepared {
            sync,
            secrets: Scrubber::new(project.secret_values()),
            source: Some(source),
            source_config: source_cfg.config_json(),
            destinations,
            delivery: Some(DeliveryContext {
                pacer,
                retry,
                config: dest_cfg.config_json(),
                identifier,
            }),
            target,
            mapper,
            transforms,
            batch_size,
            primary_key: model.primary_key.clone(),
            read: model.read_request(),
            fingerprint,
            reconciler: None,
            mirror: MirrorSummary::default(),
            clock,
            only_keys: None,
            rows_read: 0,
            warehouse,
            advancer: None,
            outcomes: super::outcomes::Outcomes::new(outcomes),
        })
    }
}

/// How many plugin instances a run of sync `name` holds at once: its
/// source, its transforms, one destination instance per writer and one
/// for its `outcomes:`. (The
/// instance that answers a plugin's `spec` while it loads comes and goes
/// before the instance it precedes, so it fits in the count.) A server
/// reserves them in one piece before the run starts
/// ([`sluice_runtime::Runtime::reserve_instances`]), so runs queue at a
/// tenant's instance ceiling instead of failing there. Loads the
/// destination's spec with one instance of `runtime`.
pub async fn instances_needed(runtime: &Runtime, project: &Project, name: &str) -> Result<usize> {
    let sync = project.sync(name).map_err(|e| anyhow!(e))?;
    let dest_cfg = &project.destination_of(sync).instance;
    let plugin = load_plugin(runtime, &project.dir, dest_cfg)
        .with_context(|| format!("loading destination `{}`", dest_cfg.name))?;
    let spec = plugin.spec().await?;
    let writers = pacing::concurrency(sync_rate(project, sync, &spec).as_ref());
    // `outcomes:` holds one instance of its destination for the whole run.
    let outcomes = usize::from(sync.outcomes.is_some());
    // `diff: warehouse` records acknowledged rows on a second source
    // instance.
    let advancer =
        usize::from(project.model_of(sync).diff == sluice_config::DiffLocation::Warehouse);
    Ok(1 + sync.transforms.len() + writers + outcomes + advancer)
}

/// The pace of a destination's calls: its declared `rate` for `writers`
/// and its `daily` cap, drawing from the budget its credentials share with
/// every other run when the run has a shared budget store.
pub(super) fn pacer_for(
    (rate, daily): (Option<&RateLimit>, Option<u32>),
    writers: usize,
    retry: &RetryPolicy,
    (dest_cfg, spec): (&PluginInstance, &PluginSpec),
    budgets: Option<&Arc<dyn crate::budget::SharedBudgets>>,
) -> Result<Arc<Pacer>> {
    let mut pacer = Pacer::new(rate, writers, retry.max_wait)
        .map_err(|e| anyhow!("destination `{}`: {e}", dest_cfg.name))?;
    let key = BudgetKey::of(&spec.name, &dest_cfg.config);
    if let Some(cap) = daily {
        pacer = pacer.with_daily_cap(DailyCap {
            cap,
            destination: dest_cfg.name.clone(),
            key: key.clone(),
        });
    }
    if let Some(budgets) = budgets {
        pacer = pacer.with_shared(SharedPace {
            budgets: budgets.clone(),
            key,
            concurrency: rate.map_or(0, |r| pacing::concurrency(Some(r)) as u32),
        });
    }
    Ok(Arc::new(pacer))
}

/// The requests per UTC day a sync's destination calls may make: the
/// sync's `rate_limit.daily`, else its destination's. (The cap belongs to
/// the credentials, so a sync that overrides only the pace keeps it.)
pub(super) fn sync_daily_cap(project: &Project, sync: &SyncConfig) -> Option<u32> {
    sync.rate_limit.and_then(|r| r.daily).or(project
        .destination_of(sync)
        .rate_limit
        .and_then(|r| r.daily))
}

/// The rate a sync's destination calls go at: the sync's override wins over
/// the destination's, and either over the limit the plugin declares.
pub(super) fn sync_rate(
    project: &Project,
    sync: &SyncConfig,
    spec: &PluginSpec,
) -> Option<RateLimit> {
    sync.rate_limit
        .or(project.destination_of(sync).rate_limit)
        .map(RateLimit::from)
        .or(spec.rate_limit)
}

/// [`open_instance`] for a run: the instantiation is counted on the run's
/// clock (`instantiate_us`), every instance the run holds passing here.
pub(super) async fn open_run_instance(
    runtime: &Runtime,
    project_dir: &Path,
    cfg: &PluginInstance,
    role: &str,
    clock: &StageClock,
) -> Result<(Instance, PluginSpec, PluginIdentity)> {
    let opened = open_instance(runtime, project_dir, cfg, role).await?;
    clock.instantiated(opened.0.instantiated_in());
    Ok(opened)
}

pub(super) async fn open_instance(
    runtime: &Runtime,
    project_dir: &Path,
    cfg: &PluginInstance,
    role: &str,
) -> Result<(Instance, PluginSpec, PluginIdentity)> {
    let plugin = load_plugin(runtime, project_dir, cfg)
        .with_context(|| format!("loading {role} `{}`", cfg.name))?;
    // The run's instance gets the intersection of the spec's requests and
    // the grants.
    let spec = plugin.spec().await?;
    let sandbox = sandbox_for(runtime, project_dir, cfg, &spec)?;
    let identity = PluginIdentity {
        name: spec.name.clone(),
        version: spec.version.clone(),
        digest: plugin.digest().to_owned(),
    };
    Ok((plugin.instantiate(&sandbox).await?, spec, identity))
}

/// The object a sync writes, among those the destination discovered.
fn find_object(
    objects: &[ObjectInfo],
    cfg: &PluginInstance,
    sync: &SyncConfig,
) -> Result<ObjectInfo> {
    let wanted = sync.object.expose();
    if let Some(o) = objects.iter().find(|o| o.name == wanted) {
        return Ok(o.clone());
    }
    // A destination with one catch-all object (webhooks) accepts any name.
    if let [only] = objects {
        if only.fields.iter().any(|f| f.name == "*") {
            return Ok(ObjectInfo {
                name: wanted.to_string(),
                ..only.clone()
            });
        }
    }
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let hint = sluice_config::suggest(wanted, names.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    bail!(
        "destination `{}` has no object `{wanted}` (it has: {}){hint}",
        cfg.name,
        names.join(", ")
    )
}

/// The sync's mode, identifier and mappings against the object.
fn check_mappings(sync: &SyncConfig, cfg: &PluginInstance, object: &ObjectInfo) -> Result<()> {
    mapping::check_against_destination(sync, None, object).map_err(|problems| {
        anyhow!(
            "the mapping does not fit `{}` on destination `{}`:\n  {}",
            sync.object,
            cfg.name,
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })
}

/// What `sluice validate` learns from a sync's destination.
#[derive(Debug)]
pub enum DestinationCheck {
    /// The object exists and supports the sync's mode, identifier and fields.
    Fits,
    /// What `run` would refuse, and why.
    Refused(String),
}

/// Ask a destination what it can write (`discover`, once, without retries),
/// for [`check_destination`]. An error means it could not be asked now (it
/// did not load; no network, no credentials): `run` asks again.
pub async fn discover_destination(
    runtime: &Runtime,
    project: &Project,
    cfg: &PluginInstance,
) -> Result<Vec<ObjectInfo>> {
    let (mut destination, _, _) = open_instance(runtime, &project.dir, cfg, "destination").await?;
    Ok(destination.discover(&cfg.config_json()).await?)
}

/// Check a sync against what its destination discovered, exactly as a run
/// does before reading anything, so `validate` refuses what `run` would.
pub fn check_destination(
    objects: &[ObjectInfo],
    cfg: &PluginInstance,
    sync: &SyncConfig,
) -> DestinationCheck {
    let checked =
        find_object(objects, cfg, sync).and_then(|object| check_mappings(sync, cfg, &object));
    match checked {
        Ok(()) => DestinationCheck::Fits,
        Err(e) => DestinationCheck::Refused(format!("{e:#}")),
    }
}
