//! `sluice validate | plan | run | runs`: syncs defined in a project's
//! `sluice.yaml`.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use sluice_config::{self as config, Diagnostic, Project};
use sluice_engine::run::{
    check_destination, check_outcome_table, discover_destination, DestinationCheck, ProgressFn,
    RunOptions, RunReport, SyncEngine, VerifyOptions,
};
use sluice_registry::{load_plugin, refused_grants};
use sluice_runtime::log::escape;
use sluice_runtime::sandbox::intersect as grants;
use sluice_runtime::{Runtime, RuntimeOptions};
use sluice_state::{RunCounts, RunRecord, StateStore};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Args)]
pub struct ProjectArg {
    /// The project folder (the one holding sluice.yaml).
    #[arg(
        long,
        short = 'C',
        global = true,
        env = "SLUICE_PROJECT",
        default_value = "."
    )]
    pub project: PathBuf,
    /// Where the state lives: a `postgres://user:password@host:port/db` URL
    /// (shared by every process and host that runs the project), or a
    /// SQLite file; by default `.sluice/state.db` in the project.
    #[arg(
        long,
        global = true,
        env = "SLUICE_STATE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub state: Option<String>,
}

/// The state store a command uses: SQLite or PostgreSQL (`--state`).
type Store = Box<dyn StateStore>;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[arg(long)]
    pub json: bool,
    /// Check the project file only: do not load the plugins to compare what
    /// they request with what the project grants them.
    #[arg(long)]
    pub skip_plugins: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The sync to plan.
    pub sync: String,
    /// Plan a full resync (as if nothing had been delivered).
    #[arg(long)]
    pub full_resync: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The sync to run.
    #[arg(required_unless_present_any = ["all", "after_dbt"], conflicts_with_all = ["all", "after_dbt"])]
    pub sync: Option<String>,
    /// Run every sync of the project, one after another.
    #[arg(long, conflicts_with = "after_dbt")]
    pub all: bool,
    /// Run the syncs whose dbt models (`dbt:` in a model) this dbt
    /// invocation rebuilt, read from its run_results.json: PATH is the dbt
    /// project folder or the file. A model whose build failed, or whose tests
    /// failed in the same `dbt build`, is not synced.
    #[arg(long, value_name = "PATH")]
    pub after_dbt: Option<PathBuf>,
    /// Re-send every row; the rejected-row ledger is kept.
    #[arg(long)]
    pub full_resync: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub show: Option<RunsCommand>,
    /// Only runs of this sync.
    pub sync: Option<String>,
    /// How many runs to list.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RejectedArgs {
    /// The sync whose ledger to list.
    pub sync: String,
    /// How many rows to list (the ledger is ordered by key).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The sync whose rejected rows to re-send.
    pub sync: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The sync whose delivered records to look up.
    pub sync: String,
    /// Report the missing records; forget nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
    /// The Redis holding the rate budgets the workers share (`sluice
    /// worker --rate-budgets`): the lookups draw from the budget of the
    /// destination's credentials, beside the runs writing with them.
    #[arg(
        long,
        env = "SLUICE_RATE_BUDGETS",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub rate_budgets: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One run in detail: its counts and a sample of rejected and invalid rows.
    Show {
        run: i64,
        #[arg(long)]
        json: bool,
    },
    /// Clear a sync's stale `running` runs: refused while a process holds
    /// the sync's lock (that process is running it), done at once otherwise.
    Unlock {
        /// The sync to unlock.
        sync: String,
    },
}

/// Load and validate a project, printing every problem.
pub fn load_project(dir: &Path) -> Result<Project> {
    config::validate(dir).map_err(|diagnostics| {
        let list: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
        anyhow!(
            "{} problem(s) in the project:\n{}",
            list.len(),
            list.join("\n")
        )
    })
}

pub fn validate(project: &ProjectArg, args: ValidateArgs) -> Result<()> {
    let checked = config::validate(&project.project).and_then(|p| {
        if args.skip_plugins {
            return Ok(p);
        }
        let problems = check_plugins_blocking(&p);
        if problems.is_empty() {
            Ok(p)
        } else {
            Err(problems)
        }
    });
    match checked {
        Ok(p) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "syncs": p.syncs.keys().collect::<Vec<_>>()})
                );
            } else {
                println!(
                    "{}: ok ({} sync(s): {})",
                    p.file.display(),
                    p.syncs.len(),
                    p.syncs.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            Ok(())
        }
        Err(diagnostics) => {
            if args.json {
                let list: Vec<_> = diagnostics
                    .iter()
                    .map(|d| serde_json::json!({"file": d.file, "line": d.line, "column": d.column, "message": d.message, "expected": d.expected}))
                    .collect();
                println!("{}", serde_json::json!({"ok": false, "problems": list}));
            } else {
                for d in &diagnostics {
                    eprintln!("{d}");
                }
            }
            bail!("{} problem(s) found", diagnostics.len())
        }
    }
}

/// [`check_plugins`] on a thread of its own with its own async runtime, so
/// `validate` stays a plain function callable from anywhere.
fn check_plugins_blocking(project: &Project) -> Vec<Diagnostic> {
    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<Vec<Diagnostic>> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting an async runtime to load the plugins")?;
                rt.block_on(async {
                    let runtime = Runtime::new(RuntimeOptions::default())?;
                    Ok(check_plugins(project, &runtime).await)
                })
            })
            .join()
    });
    match outcome {
        Ok(Ok(problems)) => problems,
        Ok(Err(e)) => vec![diagnostic_at(project, None, format!("{e:#}"), None)],
        Err(_) => vec![diagnostic_at(
            project,
            None,
            "checking the plugins panicked".into(),
            None,
        )],
    }
}

fn diagnostic_at(
    project: &Project,
    location: Option<&config::Location>,
    message: String,
    expected: Option<String>,
) -> Diagnostic {
    Diagnostic {
        file: location
            .map(|l| l.file.to_path_buf())
            .unwrap_or_else(|| project.file.clone()),
        line: location.map_or(1, |l| l.line),
        column: location.map_or(1, |l| l.column),
        message,
        expected,
    }
}

/// Load every source, destination and transform plugin of the project, ask
/// each for its spec, and refuse requests its grants do not cover
/// ([`sluice_runtime::sandbox::intersect`]), naming the request and the grants. Plugins that do
/// not load (missing, digest mismatch, unsupported WIT version) are reported
/// too, and so are directory grants that reach Sluice's own files.
pub async fn check_plugins(project: &Project, runtime: &Runtime) -> Vec<Diagnostic> {
    let instances = project
        .sources
        .values()
        .map(|p| ("source", p))
        .chain(
            project
                .destinations
                .values()
                .map(|d| ("destination", &d.instance)),
        )
        .chain(project.transforms.values().map(|t| ("transform", t)));
    let mut problems = Vec::new();
    for (role, cfg) in instances {
        let at = |message: String, expected: Option<String>| {
            diagnostic_at(project, Some(&cfg.location), message, expected)
        };
        for refusal in refused_grants(runtime, &project.dir, cfg) {
            problems.push(at(
                format!("{role} {refusal}"),
                Some("a directory grant that reaches neither .sluice, sluice.lock nor the compile cache".into()),
            ));
        }
        let spec = async {
            let plugin = load_plugin(runtime, &project.dir, cfg)?;
            anyhow::Ok(plugin.spec().await?)
        }
        .await;
        let spec = match spec {
            Ok(s) => s,
            Err(e) => {
                problems.push(at(format!("{role} `{}`: {e:#}", cfg.name), None));
                continue;
            }
        };
        let granted = cfg.granted();
        let result = grants::intersect(&spec, &cfg.config_json(), &granted);
        let granted_text = sluice_config::grant::describe_grants(&cfg.grants);
        for request in &result.uncovered {
            problems.push(at(
                format!(
                    "{role} `{}` (plugin {} {}) requests `{request}`, which its grants do not \
                     cover (grants: {granted_text})",
                    cfg.name, spec.name, spec.version
                ),
                Some(format!("a grant covering `{request}` in `grants:`")),
            ));
        }
        for why in &result.unresolved {
            problems.push(at(
                format!(
                    "{role} `{}` (plugin {} {}) requests {why} (grants: {granted_text})",
                    cfg.name, spec.name, spec.version
                ),
                None,
            ));
        }
    }
    if problems.is_empty() {
        problems.extend(check_destinations(project, runtime).await);
    }
    problems
}

/// Every sync against what its destination says it supports (`discover`,
/// asked once per destination): the object, the write mode (and delete for
/// mirror), the identifier and the mapped fields, as a run checks them
/// before reading anything. A destination that cannot be asked now (no
/// network, no credentials) is noted on stderr and checked by the run.
async fn check_destinations(project: &Project, runtime: &Runtime) -> Vec<Diagnostic> {
    let mut discovered = std::collections::BTreeMap::new();
    let mut problems = Vec::new();
    for sync in project.syncs.values() {
        let cfg = &project.destination_of(sync).instance;
        if !discovered.contains_key(&sync.destination) {
            let objects = discover_destination(runtime, project, cfg).await;
            if let Err(e) = &objects {
                eprintln!(
                    "note: destination `{}` could not be asked what it supports ({}); \
                     `run` checks the object, mode and fields of its syncs",
                    sync.destination,
                    escape(&format!("{e:#}"))
                );
            }
            discovered.insert(sync.destination.clone(), objects.ok());
        }
        let Some(Some(objects)) = discovered.get(&sync.destination) else {
            continue;
        };
        if let DestinationCheck::Refused(why) = check_destination(objects, cfg, sync) {
            problems.push(diagnostic_at(
                project,
                Some(&sync.location),
                format!("sync `{}`: {why}", sync.name),
                None,
            ));
        }
    }
    // `diff: warehouse` needs a source that can diff there, as a run does.
    for sync in project.syncs.values() {
        match sluice_engine::run::warehouse_diff_refusal(runtime, project, sync).await {
            Ok(None) => {}
            Ok(Some(why)) => problems.push(diagnostic_at(
                project,
                Some(&sync.location),
                format!("sync `{}`: {why}", sync.name),
                None,
            )),
            Err(e) => eprintln!(
                "note: the source of sync `{}` could not be loaded ({}); `run` checks its \
                 `diff: warehouse`",
                sync.name,
                escape(&format!("{e:#}"))
            ),
        }
    }
    // Each sync's outcome table, as a run checks it before reading.
    for sync in project.syncs.values() {
        let (Some(outcomes), Some(dest)) = (&sync.outcomes, project.outcomes_destination_of(sync))
        else {
            continue;
        };
        if !discovered.contains_key(&outcomes.destination) {
            let objects = discover_destination(runtime, project, &dest.instance).await;
            if let Err(e) = &objects {
                eprintln!(
                    "note: destination `{}` could not be asked what it supports ({}); \
                     `run` checks the outcome table of sync `{}`",
                    outcomes.destination,
                    escape(&format!("{e:#}")),
                    sync.name
                );
            }
            discovered.insert(outcomes.destination.clone(), objects.ok());
        }
        let Some(Some(objects)) = discovered.get(&outcomes.destination) else {
            continue;
        };
        if let Err(why) = check_outcome_table(objects, sync) {
            problems.push(diagnostic_at(project, Some(&outcomes.location), why, None));
        }
    }
    problems
}

fn open_store(dir: &Path, state: Option<&str>) -> Result<Mutex<Store>> {
    Ok(Mutex::new(sluice_state::open_state(dir, state)?))
}

/// Rows a sync's last successful run scanned: the expected total for the
/// progress bar's percentage and ETA.
fn expected_rows(store: &Mutex<Store>, sync: &str) -> Option<u64> {
    let runs = lock_store(store).runs(Some(sync), 20).ok()?;
    runs.iter()
        .find(|r| r.status == sluice_state::RunStatus::Succeeded && !r.full_resync)
        .map(|r| scanned(&r.counts))
        .filter(|&n| n > 0)
}

fn scanned(c: &RunCounts) -> u64 {
    c.added + c.changed + c.unchanged + c.invalid
}

/// A progress bar on a terminal (rows scanned, rows per second, and with
/// `expected` rows from the last run a percentage and ETA), structured logs
/// otherwise.
fn progress(
    sync: &str,
    quiet: bool,
    expected: Option<u64>,
) -> (Option<indicatif::ProgressBar>, Option<ProgressFn>) {
    if quiet {
        return (None, None);
    }
    if std::io::stderr().is_terminal() {
        let (bar, template) = match expected {
            Some(total) => (
                indicatif::ProgressBar::new(total),
                "{spinner} {prefix} [{bar:24}] {percent:>3}% {human_pos} rows, {per_sec}, ETA {eta} · {msg}",
            ),
            None => (
                indicatif::ProgressBar::new_spinner(),
                "{spinner} {prefix} {elapsed} {human_pos} rows, {per_sec} · {msg}",
            ),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(sync.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let b = bar.clone();
        let f: ProgressFn = Arc::new(move |c: &RunCounts| {
            // The model may have grown since the last run.
            let n = scanned(c);
            if b.length().is_some_and(|len| n > len) {
                b.set_length(n);
            }
            b.set_position(n);
            b.set_message(format!(
                "sent {} · ok {} · rejected {} · waits {} throttled, {} paced",
                c.sent, c.ok, c.rejected, c.throttled_waits, c.paced_waits
            ));
        });
        (Some(bar), Some(f))
    } else {
        let name = sync.to_string();
        let f: ProgressFn = Arc::new(move |c: &RunCounts| {
            tracing::debug!(sync = %name, scanned = scanned(c), sent = c.sent, ok = c.ok, rejected = c.rejected, throttled_waits = c.throttled_waits, paced_waits = c.paced_waits, "progress");
        });
        (None, Some(f))
    }
}

pub async fn plan(project: &ProjectArg, args: PlanArgs) -> Result<()> {
    let state = project.state.as_deref();
    let project = load_project(&project.project)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let store = open_store(&project.dir, state)?;
    let engine = SyncEngine {
        project: &project,
        runtime: &runtime,
        store: &store,
    };
    let (bar, progress) = progress(&args.sync, args.json, None);
    let options = RunOptions {
        full_resync: args.full_resync,
        dry_run: true,
        progress,
        ..Default::default()
    };
    let report = engine.run(&args.sync, &options).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let c = &report.counts;
    println!("plan for sync `{}` (nothing is written):", report.sync);
    println!("  {}", plan_summary(c));
    println!("  {}", diff_line(report.diff));
    if let Some(bytes) = report.scan_bytes {
        println!(
            "  the source's query scans {} (its dry-run estimate)",
            human_bytes(bytes)
        );
    }
    if let Ok(sync) = project.sync(&report.sync) {
        if report.config_changed {
            let resent = if sync.mode.sends_changed() {
                c.changed
            } else {
                0
            };
            println!(
                "  config changed since the last run: {resent} row(s) will be re-sent{}",
                if sync.mode.sends_changed() {
                    ""
                } else {
                    " (insert mode sends new keys only)"
                }
            );
        }
        if sync.mode.deletes_removed() {
            print_mirror(sync, &report.mirror);
        }
    }
    if let Some(o) = &report.outcomes {
        println!(
            "  outcomes: each run appends its per-row outcomes (rows: {}) to `{}` on destination `{}` (checked)",
            o.rows, o.object, o.destination
        );
    }
    for row in &report.planned {
        println!(
            "  {:<6} {}  {}",
            row.change,
            row.key,
            serde_json::Value::Object(row.fields.clone())
        );
    }
    Ok(())
}

/// `1234567` as `1.2 MB (1234567 bytes)`: decimal units, as BigQuery bills.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = None;
    for name in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = Some(name);
    }
    match unit {
        Some(name) => format!("{value:.1} {name} ({bytes} bytes)"),
        None => format!("{bytes} bytes"),
    }
}

/// The plan's counts in one line. `planned` counts every row selected to
/// send (deletes included) before mapping and transforms; the rows they
/// reject are not sent, so they are subtracted, never counted as sent.
pub fn plan_summary(c: &RunCounts) -> String {
    let writes = c.planned.saturating_sub(c.removed);
    let sends = writes.saturating_sub(c.rejected);
    let failing = if c.rejected > 0 {
        format!(
            " ({writes} selected, {} failing mapping or transforms)",
            c.rejected
        )
    } else {
        String::new()
    };
    format!(
        "would send {sends} row(s){failing}: {} added, {} changed; {} to delete; {} unchanged; {} invalid",
        c.added, c.changed, c.removed, c.unchanged, c.invalid
    )
}

pub async fn run(project: &ProjectArg, args: RunArgs) -> Result<()> {
    let state = project.state.as_deref();
    let project = load_project(&project.project)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let store = open_store(&project.dir, state)?;
    let mut reports = Vec::new();
    let names: Vec<String> = match (&args.sync, &args.after_dbt) {
        (Some(s), _) => vec![s.clone()],
        (None, Some(path)) => {
            let (run, skipped) = syncs_after_dbt(&project, path)?;
            for (sync, why) in skipped {
                if !args.json {
                    println!("sync `{sync}`: skipped ({why})");
                }
                reports.push(serde_json::json!({"sync": sync, "status": "skipped", "reason": why}));
            }
            run
        }
        (None, None) => project.syncs.keys().cloned().collect(),
    };
    let mut failed = Vec::new();
    // Every sync runs whatever happened to the ones before it; each is
    // reported, and the command fails if any did.
    for name in &names {
        let report = run_one(
            &project,
            &runtime,
            &store,
            name,
            RunOptions {
                full_resync: args.full_resync,
                ..Default::default()
            },
            args.json,
        )
        .await;
        match report {
            Ok(report) => {
                if report.error.is_some() {
                    failed.push(name.clone());
                }
                if !args.json {
                    print_report(&report, &store)?;
                }
                reports.push(serde_json::to_value(&report)?);
            }
            // No run could be recorded (the sync is already running, the
            // state store failed): reported all the same.
            Err(e) => {
                failed.push(name.clone());
                let text = format!("{e:#}");
                let error = if text.contains(&format!("sync `{name}`")) {
                    text
                } else {
                    format!("sync `{name}`: {text}")
                };
                if !args.json {
                    println!("sync `{name}`: not run");
                    println!("  error: {error}");
                }
                reports
                    .push(serde_json::json!({"sync": name, "status": "not run", "error": error}));
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} sync run(s) failed: {}",
            failed.len(),
            names.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The syncs to run after a dbt invocation, and each other sync with the
/// reason it is not run (the selection is shared with the server's dbt
/// triggers: [`config::dbt::select_syncs`]).
fn syncs_after_dbt(project: &Project, path: &Path) -> Result<(Vec<String>, config::dbt::Skipped)> {
    let results = config::dbt::run_results(path).map_err(|e| anyhow!(e))?;
    Ok(config::dbt::select_syncs(project, &results))
}

/// Mirror mode in a plan: the deletion guard, the keys kept under a new
/// key, and whether the run would refuse its deletes.
fn print_mirror(sync: &config::SyncConfig, m: &sluice_engine::run::MirrorSummary) {
    let max = sync
        .max_deletes
        .map_or_else(|| "no limit".to_owned(), |m| m.to_string());
    let empty = if sync.allow_empty {
        "an empty model may delete everything"
    } else {
        "an empty model is refused"
    };
    println!("  deletion guard: max_deletes {max}; {empty}");
    if m.rekeyed > 0 {
        println!(
            "  {} delivered record(s) keep their identifier under a new key: moved in state, not deleted",
            m.rekeyed
        );
    }
    if m.held > 0 {
        println!(
            "  {} row(s) that left the model are kept: their identifier is still carried or was never recorded",
            m.held
        );
    }
    if let Some(why) = &m.refused {
        println!("  the run would refuse its {} delete(s): {why}", m.deletes);
    }
}

/// Run one sync with a progress display; used by `run`, `retry` and `demo`.
pub async fn run_one(
    project: &Project,
    runtime: &Runtime,
    store: &Mutex<Store>,
    name: &str,
    options: RunOptions,
    quiet: bool,
) -> Result<RunReport> {
    let engine = SyncEngine {
        project,
        runtime,
        store,
    };
    let expected = expected_rows(store, name);
    let (bar, progress) = progress(name, quiet, expected);
    let options = RunOptions {
        progress,
        ..options
    };
    let report = engine.run(name, &options).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report
}

pub fn print_report(report: &RunReport, store: &Mutex<Store>) -> Result<()> {
    let id = report
        .run_id
        .map(|i| format!("run {i}"))
        .unwrap_or_default();
    println!(
        "sync `{}`: {} in {:.1}s ({id})",
        report.sync,
        report.status,
        report.elapsed_ms as f64 / 1000.0
    );
    print_counts(&report.counts);
    if report.mirror.rekeyed > 0 {
        println!(
            "  {} delivered record(s) kept under new keys (their identifier is still carried)",
            report.mirror.rekeyed
        );
    }
    if let Some(o) = &report.outcomes {
        println!(
            "  outcomes: {} row(s) written to `{}` on destination `{}`",
            o.written, o.object, o.destination
        );
    }
    if let Some(e) = &report.error {
        match &report.stage {
            Some(stage) => println!("  error (at {stage}): {e}"),
            None => println!("  error: {e}"),
        }
    }
    if let Some(id) = report.run_id {
        print_samples(
            &store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .samples(id)?,
        );
    }
    Ok(())
}

fn print_counts(c: &RunCounts) {
    println!(
        "  planned {}  added {}  changed {}  removed {}  unchanged {}  invalid {}",
        c.planned, c.added, c.changed, c.removed, c.unchanged, c.invalid
    );
    println!(
        "  sent {}  ok {}  rejected {}  retried {}  write calls {}  HTTP requests {}",
        c.sent, c.ok, c.rejected, c.retried, c.write_calls, c.requests
    );
    if c.throttled_waits + c.paced_waits > 0 {
        println!(
            "  waits: {} asked by the API (throttled), {} by Sluice's own rate limit (paced)",
            c.throttled_waits, c.paced_waits
        );
    }
    if c.outcome_unknown > 0 {
        println!(
            "  outcome unknown: {} request(s) sent got no response; their rows were re-sent with the same idempotency key where the destination has one",
            c.outcome_unknown
        );
    }
}

fn print_timings(t: &sluice_state::StageTimings) {
    println!(
        "  stages: load {} ms  discover {} ms  mappings {} ms  run {} ms  deletes {} ms",
        t.load_ms, t.discover_ms, t.mappings_ms, t.run_ms, t.deletes_ms
    );
    println!(
        "  busy within run: read {} ms  diff/map/transform {} ms  write {} ms  commit {} ms",
        t.read_ms, t.transform_ms, t.write_ms, t.commit_ms
    );
    // Runs recorded before instantiation was measured have no instances.
    if t.instances > 0 {
        println!(
            "  within load: instantiating {} instance(s) {:.3} ms",
            t.instances,
            t.instantiate_us as f64 / 1000.0
        );
    }
}

fn print_samples(samples: &[sluice_state::Sample]) {
    if samples.is_empty() {
        return;
    }
    println!("  rejected and invalid rows (sample):");
    for s in samples.iter().take(20) {
        let key = s
            .key
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "-".into());
        println!("    {:?} {key}: {}", s.kind, s.message);
    }
}

/// The folder of a project whose history is read: it must hold a
/// sluice.yaml, but the file is not interpolated, so reading history needs
/// none of the secrets a run needs.
fn history_dir(dir: &Path) -> Result<PathBuf> {
    let yaml = dir.join("sluice.yaml");
    if !yaml.is_file() {
        bail!("{} is not a Sluice project: no sluice.yaml", dir.display());
    }
    Ok(dir.to_path_buf())
}

pub fn runs(project: &ProjectArg, args: RunsArgs) -> Result<()> {
    let dir = history_dir(&project.project)?;
    let mut store = sluice_state::open_state(&dir, project.state.as_deref())?;
    if let Some(RunsCommand::Unlock { sync }) = &args.show {
        let cleared = store
            .unlock(sync)
            .with_context(|| format!("unlocking sync `{sync}`"))?;
        if cleared.is_empty() {
            println!("sync `{sync}` is not running and had no stale run");
        } else {
            let ids: Vec<String> = cleared.iter().map(|i| format!("run {i}")).collect();
            println!(
                "sync `{sync}` unlocked: {} marked killed (no process held its lock)",
                ids.join(", ")
            );
        }
        return Ok(());
    }
    // Runs whose process is gone (their sync's lock is free) show as killed.
    store.mark_interrupted_runs()?;
    if let Some(RunsCommand::Show { run, json }) = args.show {
        let record = store
            .run(run)?
            .ok_or_else(|| anyhow!("no run {run} in {}", store.location()))?;
        let samples = store.samples(run)?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"run": record, "samples": samples})
                )?
            );
        } else {
            print_record(&record);
            print_counts(&record.counts);
            if let Some(t) = &record.timings {
                print_timings(t);
            }
            if let Some(e) = &record.error {
                match &record.stage {
                    Some(stage) => println!("  error (at {stage}): {e}"),
                    None => println!("  error: {e}"),
                }
            }
            print_samples(&samples);
        }
        return Ok(());
    }
    let records = store.runs(args.sync.as_deref(), args.limit)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    if records.is_empty() {
        println!("no runs yet");
    }
    for r in &records {
        print_record(r);
    }
    Ok(())
}

fn print_record(r: &RunRecord) {
    let secs = r
        .finished_at
        .map(|f| format!("{:.1}s", (f - r.started_at) as f64 / 1e6))
        .unwrap_or_else(|| "-".into());
    println!(
        "run {:<5} {:<24} {:<10} {:>7}  sent {} ok {} rejected {}{}",
        r.id,
        r.sync,
        r.status.to_string(),
        secs,
        r.counts.sent,
        r.counts.ok,
        r.counts.rejected,
        if r.full_resync { "  (full resync)" } else { "" }
    );
    if let Some(e) = &r.error {
        // The first line, cut: `runs show` has the whole error.
        let line = e.lines().next().unwrap_or_default();
        let mut short: String = line.chars().take(160).collect();
        if short.len() < line.len() {
            short.push('…');
        }
        match &r.stage {
            Some(stage) => println!("          at {stage}: {short}"),
            None => println!("          {short}"),
        }
    }
}

/// `sluice rejected SYNC`: the ledger, read without the project's secrets.
pub fn rejected(project: &ProjectArg, args: RejectedArgs) -> Result<()> {
    let dir = history_dir(&project.project)?;
    let store = sluice_state::open_state(&dir, project.state.as_deref())?;
    let ledger = store
        .ledger(&args.sync)
        .with_context(|| format!("reading the rejected rows of sync `{}`", args.sync))?;
    let shown = &ledger[..ledger.len().min(args.limit)];
    if args.json {
        let rows: Vec<serde_json::Value> = shown
            .iter()
            .map(|e| {
                serde_json::json!({
                    "key": e.key.to_string(),
                    "message": e.message,
                    "attempts": e.attempts,
                    "first_run": e.first_run,
                    "last_run": e.last_run,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"sync": args.sync, "total": ledger.len(), "rows": rows})
            )?
        );
        return Ok(());
    }
    if ledger.is_empty() {
        println!("sync `{}` has no rejected rows", args.sync);
        return Ok(());
    }
    println!(
        "sync `{}`: {} rejected row(s){}",
        args.sync,
        ledger.len(),
        if shown.len() < ledger.len() {
            format!(", the first {} by key (--limit)", shown.len())
        } else {
            String::new()
        }
    );
    for e in shown {
        println!(
            "  {}  attempts {} (runs {}..{}): {}",
            escape(&e.key.to_string()),
            e.attempts,
            e.first_run,
            e.last_run,
            escape(&e.message)
        );
    }
    println!("`sluice retry {}` re-sends them now.", args.sync);
    Ok(())
}

/// `sluice retry SYNC`: a run that sends only the rows in the ledger.
pub async fn retry(project: &ProjectArg, args: RetryArgs) -> Result<()> {
    let state = project.state.as_deref();
    let project = load_project(&project.project)?;
    let store = open_store(&project.dir, state)?;
    let waiting = lock_store(&store).ledger(&args.sync)?.len();
    if waiting == 0 {
        if args.json {
            println!("{}", serde_json::json!({"sync": args.sync, "retried": 0}));
        } else {
            println!("sync `{}` has no rejected rows to retry", args.sync);
        }
        return Ok(());
    }
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let options = RunOptions {
        retry_rejected: true,
        ..Default::default()
    };
    let report = run_one(&project, &runtime, &store, &args.sync, options, args.json).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &store)?;
    }
    match &report.error {
        Some(e) => bail!(
            "retrying the rejected rows of sync `{}` failed: {e}",
            args.sync
        ),
        None => Ok(()),
    }
}

/// The shared rate budgets at `url`, if one is given; a Redis that does
/// not answer leaves the lookups on the sync's own limit, with a warning.
async fn verify_budgets(
    url: Option<&str>,
) -> Result<Option<std::sync::Arc<dyn sluice_engine::budget::SharedBudgets>>> {
    let Some(url) = url else {
        return Ok(None);
    };
    let budgets = sluice_server::budgets::RedisBudgets::open(url)?;
    if let Err(e) = budgets.check().await {
        eprintln!(
            "warning: the shared rate budgets cannot be reached ({e}); the lookups keep the sync's own limit"
        );
    }
    Ok(Some(std::sync::Arc::new(budgets)))
}

pub async fn verify(project: &ProjectArg, args: VerifyArgs) -> Result<()> {
    let state = project.state.as_deref();
    let project = load_project(&project.project)?;
    let store = open_store(&project.dir, state)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let engine = SyncEngine {
        project: &project,
        runtime: &runtime,
        store: &store,
    };
    let options = VerifyOptions {
        dry_run: args.dry_run,
        budgets: verify_budgets(args.rate_budgets.as_deref()).await?,
    };
    let report = engine.verify(&args.sync, options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "sync `{}`: {} delivered record(s) looked up in {} HTTP request(s), {} missing",
        report.sync, report.checked, report.requests, report.missing
    );
    if report.without_identifier > 0 {
        println!(
            "  {} delivered row(s) have no identifier on record and were not looked up",
            report.without_identifier
        );
    }
    for key in &report.missing_keys {
        println!("    missing: {key}");
    }
    if report.missing as usize > report.missing_keys.len() {
        println!(
            "    … and {} more",
            report.missing as usize - report.missing_keys.len()
        );
    }
    if args.dry_run {
        if report.missing > 0 {
            println!(
                "dry run: nothing forgotten; `sluice verify {}` marks them for re-send",
                report.sync
            );
        }
    } else if report.forgotten > 0 {
        println!(
            "{} row(s) will be sent again by the next run (`sluice run {}`)",
            report.forgotten, report.sync
        );
    }
    Ok(())
}

fn lock_store(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a plan's (and its runs') diff happens, for `sluice plan`.
fn diff_line(diff: &str) -> &'static str {
    match diff {
        "warehouse" => {
            "diff: warehouse (the source compares the model with the snapshot it keeps in \
             schema `sluice`; only changed rows leave the database)"
        }
        _ => "diff: host (every row of the model is read and compared here)",
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn scanned_bytes_read_in_decimal_units() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(1_234_567), "1.2 MB (1234567 bytes)");
        assert_eq!(human_bytes(10_000_000_000), "10.0 GB (10000000000 bytes)");
    }
}
