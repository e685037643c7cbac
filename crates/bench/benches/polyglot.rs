//! The cost of a plugin's language (issue 5): the same field-map transform
//! written in Rust (the embedded `field-map` plugin), Python
//! (`sdk/python/examples/field-map`, componentize-py) and JavaScript
//! (`sdk/js/examples/field-map`, componentize-js), run by the same host over
//! the same 100,000 rows in batches of 1,000.
//!
//! Reported per language: rows/s (median of several repetitions, with the
//! slowest and fastest), time per batch, the ratio to Rust, the component's
//! size, its compile time, instantiation time, and memory per instance (the
//! instance's linear memory right after instantiation and after the run).
//!
//! Run with `cargo bench -p sluice --bench polyglot`. The Python and
//! JavaScript components come from `bash scripts/build-polyglot.sh`; without
//! them the benchmark says so and exits non-zero. A hand-written harness (no
//! criterion); the only assertions are correctness checks (the three ports
//! produce the same rows), never a timing. `SLUICE_BENCH_QUICK=1` runs 10,000
//! rows once (a smoke run); `SLUICE_BENCH_ROWS=N` sets the number of rows.

#[path = "common/fieldmap_input.rs"]
mod fieldmap_input;
#[path = "common/format.rs"]
mod format;
#[path = "common/machine.rs"]
mod machine;
use fieldmap_input::{generate, EMPTY, PASSTHROUGH, REALISTIC};
use format::{fmt_dur, fmt_rate};
use machine::print_machine;

use sluice_runtime::Batch;
use sluice_runtime::{Plugin, Runtime, RuntimeOptions, Sandbox};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROWS: usize = 100_000;
const BATCH: usize = 1_000;
const REPETITIONS: usize = 7;

/// Repetitions of each breakdown mapping.
const BREAKDOWN_REPETITIONS: usize = 3;

struct Language {
    name: &'static str,
    /// Where the component comes from (for the table).
    source: &'static str,
    bytes: Vec<u8>,
}

fn main() {
    let quick = std::env::var_os("SLUICE_BENCH_QUICK").is_some();
    let (rows, repetitions) = if quick {
        (10_000, 1)
    } else {
        (ROWS, REPETITIONS)
    };
    let rows = match std::env::var("SLUICE_BENCH_ROWS") {
        Ok(n) => n.parse().expect("SLUICE_BENCH_ROWS is a number of rows"),
        Err(_) => rows,
    };

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/polyglot");
    let mut languages = vec![Language {
        name: "Rust",
        source: "plugins/field-map (embedded)",
        bytes: sluice_registry::builtin::FIELD_MAP.to_vec(),
    }];
    let mut missing = Vec::new();
    for (name, file, source) in [
        (
            "Python",
            "python-field-map.wasm",
            "sdk/python/examples/field-map",
        ),
        (
            "JavaScript",
            "js-field-map.wasm",
            "sdk/js/examples/field-map",
        ),
    ] {
        match std::fs::read(dir.join(file)) {
            Ok(bytes) => languages.push(Language {
                name,
                source,
                bytes,
            }),
            Err(e) => missing.push(format!("{} ({e})", dir.join(file).display())),
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "missing components: {}\nbuild the Python and JavaScript plugins first: \
             `bash scripts/build-polyglot.sh` (from the repository root)",
            missing.join(", ")
        );
        std::process::exit(1);
    }

    print_machine();
    let cache = tempfile::tempdir().expect("temp cache dir");
    let log: sluice_runtime::log::LogSink = Arc::new(|_| {});
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        log,
        ..Default::default()
    })
    .expect("runtime");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    println!(
        "field-map in three languages: {rows} rows in batches of {BATCH}, {repetitions} timed repetitions after 1 warm-up"
    );
    let start = Instant::now();
    let batches = fieldmap_input::host_batches(&generate(rows), BATCH);
    println!(
        "  input generated in {} (outside the timed region)",
        fmt_dur(start.elapsed())
    );

    // Load (compile once into an empty cache).
    let mut plugins = Vec::new();
    for language in &languages {
        let start = Instant::now();
        let plugin =
            Plugin::from_bytes(&runtime, language.name, &language.bytes).unwrap_or_else(|e| {
                panic!(
                    "loading the {} field-map ({}): {e}",
                    language.name, language.source
                )
            });
        plugins.push((plugin, start.elapsed()));
    }

    // Correctness: every port maps the first and last batches exactly as
    // the Rust plugin does.
    tokio.block_on(async {
        for i in [0, batches.len() - 1] {
            let reference = transform_once(&plugins[0].0, &batches[i]).await;
            assert_eq!(reference.batch.rows.len(), BATCH, "every row maps cleanly");
            for (plugin, _) in &plugins[1..] {
                let out = transform_once(plugin, &batches[i]).await;
                assert_eq!(
                    out,
                    reference,
                    "{} and Rust differ on batch {i}",
                    plugin.name()
                );
            }
        }
    });

    // Interleaved repetitions (Rust, Python, JavaScript, Rust, ...), so drift
    // on a shared machine hits every language. Each repetition is a fresh
    // instance: instantiate, open, then every batch through `transform`.
    let interleaved = |config: &str, repetitions: usize| {
        let mut runs: Vec<Vec<Run>> = languages.iter().map(|_| Vec::new()).collect();
        for repetition in 0..=repetitions {
            for (l, (plugin, _)) in plugins.iter().enumerate() {
                let run = tokio.block_on(run_once(plugin, config, &batches));
                if repetition > 0 {
                    runs[l].push(run);
                }
            }
        }
        runs
    };
    let runs = interleaved(REALISTIC, repetitions);

    println!();
    println!(
        "  {:<11} {:>9} {:>9} {:>11} {:>20} {:>10} {:>8} {:>14} {:>14}",
        "language",
        "component",
        "compile",
        "instantiate",
        "rows/s median (min–max)",
        "per batch",
        "vs Rust",
        "memory: start",
        "after run"
    );
    let rust_median = median(runs[0].iter().map(|r| r.rows_per_s).collect());
    for ((language, (_, compile)), runs) in languages.iter().zip(&plugins).zip(&runs) {
        let rates: Vec<f64> = runs.iter().map(|r| r.rows_per_s).collect();
        let rate = median(rates.clone());
        let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rates.iter().copied().fold(0.0, f64::max);
        let instantiate = median(runs.iter().map(|r| r.instantiate.as_secs_f64()).collect());
        // Every repetition does the same work; report the largest, in case
        // one instance grew further than another.
        let start_memory = runs.iter().map(|r| r.memory_start).max().unwrap();
        let end_memory = runs.iter().map(|r| r.memory_end).max().unwrap();
        println!(
            "  {:<11} {:>9} {:>9} {:>11} {:>20} {:>10} {:>8} {:>14} {:>14}",
            language.name,
            fmt_mib(language.bytes.len()),
            fmt_dur(*compile),
            fmt_dur(Duration::from_secs_f64(instantiate)),
            format!("{} ({}–{})", fmt_rate(rate), fmt_rate(min), fmt_rate(max)),
            fmt_dur(Duration::from_secs_f64(BATCH as f64 / rate)),
            format!("{:.1}x", rust_median / rate),
            fmt_mib(start_memory),
            fmt_mib(end_memory),
        );
    }
    println!();
    println!("  component: size of the .wasm; compile: Plugin::from_bytes into an empty cache (once; later loads hit the cache)");
    println!("  instantiate: median, from the InstancePre, default sandbox; rows/s: the transform calls only (host lowering, guest mapping, host lifting)");
    println!("  vs Rust: Rust's median rows/s over this language's; memory: the instance's linear memory (all its core memories) after instantiation and after {rows} rows");
    for (language, runs) in languages.iter().zip(&runs) {
        println!(
            "  {} rows/s per repetition: {}",
            language.name,
            runs.iter()
                .map(|r| fmt_rate(r.rows_per_s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // Where the time goes: the same rows through mappings that do less.
    let breakdown_repetitions = repetitions.min(BREAKDOWN_REPETITIONS);
    println!();
    println!(
        "breakdown: per 1,000-row batch, median of {breakdown_repetitions} (realistic: the runs above)"
    );
    let breakdown = [
        (
            "passthrough (6 columns in, 6 out)",
            interleaved(PASSTHROUGH, breakdown_repetitions),
        ),
        (
            "no columns (6 columns in, 0 out)",
            interleaved(EMPTY, breakdown_repetitions),
        ),
    ];
    print!("  {:<11} {:>14}", "language", "realistic");
    for (name, _) in &breakdown {
        print!(" {:>36}", name);
    }
    println!();
    for (l, language) in languages.iter().enumerate() {
        let per_batch = |runs: &[Run]| {
            let rate = median(runs.iter().map(|r| r.rows_per_s).collect());
            fmt_dur(Duration::from_secs_f64(BATCH as f64 / rate))
        };
        print!("  {:<11} {:>14}", language.name, per_batch(&runs[l]));
        for (_, runs) in &breakdown {
            print!(" {:>36}", per_batch(&runs[l]));
        }
        println!();
    }
}

/// One repetition through one language.
struct Run {
    instantiate: Duration,
    rows_per_s: f64,
    memory_start: usize,
    memory_end: usize,
}

async fn run_once(plugin: &Plugin, config: &str, batches: &[Batch]) -> Run {
    let start = Instant::now();
    let mut instance = plugin.instantiate(&Sandbox::default()).await.unwrap();
    let instantiate = start.elapsed();
    let memory_start = instance.linear_memory_bytes();
    let t = instance.open_transformer(config).await.unwrap();
    let rows: usize = batches.iter().map(|b| b.rows.len()).sum();
    let start = Instant::now();
    for batch in batches {
        black_box(instance.transform(&t, black_box(batch)).await.unwrap());
    }
    let elapsed = start.elapsed();
    Run {
        instantiate,
        rows_per_s: rows as f64 / elapsed.as_secs_f64(),
        memory_start,
        memory_end: instance.linear_memory_bytes(),
    }
}

async fn transform_once(
    plugin: &Plugin,
    batch: &Batch,
) -> sluice_runtime::bindings::types::Transformed {
    let mut instance = plugin.instantiate(&Sandbox::default()).await.unwrap();
    let t = instance.open_transformer(REALISTIC).await.unwrap();
    instance.transform(&t, batch).await.unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

fn fmt_mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
