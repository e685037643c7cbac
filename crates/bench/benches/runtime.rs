//! Plugin runtime benchmarks (issue 2, "Measure"):
//!
//! 1. instantiate a transform from its `InstancePre` and make a trivial call;
//! 2. field-map over 1,000,000 rows in batches of 1,000, as a component and
//!    as the same Rust code compiled natively, side by side;
//! 3. load a component already in the compile cache (and a cold compile).
//!
//! Run with `cargo bench -p sluice --bench runtime`. A hand-written harness:
//! warm-up, then many timed iterations, reported as percentiles (latency) or
//! mean ± standard deviation over rounds (throughput). Nothing here asserts a
//! timing; the only assertions are correctness checks (the Wasm and native
//! mappings agree, a cached load really is a cache hit).
//!
//! `SLUICE_BENCH_QUICK=1` shrinks every iteration count (for a smoke run).

#[path = "common/fieldmap_input.rs"]
mod fieldmap_input;
#[path = "common/format.rs"]
mod format;
#[path = "common/machine.rs"]
mod machine;
use fieldmap_input::{generate, EMPTY, PASSTHROUGH, REALISTIC};
use format::{fmt_dur, fmt_rate};
use machine::print_machine;

use sluice_runtime::cache::CacheOutcome;
use sluice_runtime::columns;
use sluice_runtime::{Plugin, Runtime, RuntimeOptions, Sandbox};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROWS: usize = 1_000_000;
const BATCH: usize = 1_000;

fn main() {
    let quick = std::env::var_os("SLUICE_BENCH_QUICK").is_some();
    let scale = if quick { 10 } else { 1 };
    print_machine();

    // `SLUICE_BENCH_ONLY=instantiate|fieldmap|load` runs one part (for
    // profiling); `SLUICE_BENCH_CACHE_DIR` keeps the compile cache (so a
    // profiler can still read the mapped code afterwards).
    let only = std::env::var("SLUICE_BENCH_ONLY").ok();
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);

    let temp = tempfile::tempdir().expect("temp cache dir");
    let cache = std::env::var_os("SLUICE_BENCH_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let runtime = new_runtime(Some(cache.clone()));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    if run("instantiate") {
        println!("1a. instances allocated on demand (the CLI)");
        instantiate_bench(&tokio, &runtime, 5_000 / scale);
        // What `sluice worker` uses: the pooling allocator's slots, reset
        // (copy-on-write memory images) instead of mapped afresh.
        let pooled = new_runtime_with(
            Some(cache.clone()),
            Some(sluice_runtime::Pooling::default()),
        );
        assert!(
            pooled.is_pooled(),
            "the pooling allocator reserved its slots"
        );
        println!("1b. instances from the pooling allocator (`sluice worker`)");
        instantiate_bench(&tokio, &pooled, 5_000 / scale);
    }
    if run("fieldmap") {
        field_map_bench(
            &tokio,
            &runtime,
            if quick { 1 } else { 10 },
            if quick { 50 } else { ROWS / BATCH },
        );
    }
    if only.as_deref() == Some("wasm-loop") {
        wasm_loop(&tokio, &runtime);
    }
    if run("load") {
        cached_load_bench(&cache, 200 / scale, if quick { 1 } else { 3 });
    }
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

fn new_runtime(cache_dir: Option<PathBuf>) -> Runtime {
    new_runtime_with(cache_dir, None)
}

fn new_runtime_with(
    cache_dir: Option<PathBuf>,
    pooling: Option<sluice_runtime::Pooling>,
) -> Runtime {
    // Plugin log lines go nowhere: the benchmarked plugins print nothing.
    let log: sluice_runtime::log::LogSink = Arc::new(|_| {});
    Runtime::new(RuntimeOptions {
        cache_dir,
        log,
        pooling,
        ..Default::default()
    })
    .expect("runtime")
}

/// Latency samples.
struct Samples(Vec<Duration>);

impl Samples {
    fn percentile(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i]
    }

    fn mean(&self) -> Duration {
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }
}

fn print_latency_header() {
    println!(
        "  {:<52} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "case", "iters", "p50", "p90", "p99", "mean"
    );
}

fn print_latency(name: &str, s: &Samples) {
    println!(
        "  {:<52} {:>7} {:>10} {:>10} {:>10} {:>10}",
        name,
        s.0.len(),
        fmt_dur(s.percentile(0.50)),
        fmt_dur(s.percentile(0.90)),
        fmt_dur(s.percentile(0.99)),
        fmt_dur(s.mean())
    );
}

// ---------------------------------------------------------------------------
// 1. Instantiate + trivial call
// ---------------------------------------------------------------------------

const ONE_RULE: &str = r#"{"fields":[{"from":"email","to":"Email","clean":["trim","lowercase"]}]}"#;

fn one_row() -> sluice_runtime::Batch {
    sluice_runtime::Batch {
        columns: vec!["id".into(), "email".into()],
        rows: vec![vec![
            sluice_runtime::Value::Integer(1),
            sluice_runtime::Value::Text(" Ada@Example.COM ".into()),
        ]],
    }
}

fn instantiate_bench(tokio: &tokio::runtime::Runtime, runtime: &Runtime, iters: usize) {
    let plugin = Plugin::from_bytes(runtime, "field-map", sluice_registry::builtin::FIELD_MAP)
        .expect("load field-map");
    let sandbox = Sandbox::default();
    let batch = one_row();
    let warmup = (iters / 10).max(50);
    println!("1. instantiate from InstancePre + trivial call (field-map; target p50 <= 50 µs)");
    print_latency_header();

    tokio.block_on(async {
        // Sanity: the trivial call does what it says.
        let mut instance = plugin.instantiate(&sandbox).await.unwrap();
        let t = instance.open_transformer(ONE_RULE).await.unwrap();
        let out = instance.transform(&t, &batch).await.unwrap();
        assert_eq!(
            out.batch.rows,
            vec![vec![sluice_runtime::Value::Text("ada@example.com".into())]]
        );
        drop(instance);

        // instantiate alone (the drop of the instance timed separately).
        let mut inst = Vec::with_capacity(iters);
        let mut drops = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            let start = Instant::now();
            let instance = plugin.instantiate(&sandbox).await.unwrap();
            let mid = Instant::now();
            drop(black_box(instance));
            let end = Instant::now();
            if i >= warmup {
                inst.push(mid - start);
                drops.push(end - mid);
            }
        }
        print_latency("instantiate", &Samples(inst));
        print_latency("drop instance (store teardown)", &Samples(drops));

        let mut spec = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            let start = Instant::now();
            let mut instance = plugin.instantiate(&sandbox).await.unwrap();
            black_box(instance.spec().await.unwrap());
            let elapsed = start.elapsed();
            drop(instance);
            if i >= warmup {
                spec.push(elapsed);
            }
        }
        print_latency("instantiate + spec()", &Samples(spec));

        let mut full = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            let start = Instant::now();
            let mut instance = plugin.instantiate(&sandbox).await.unwrap();
            let t = instance.open_transformer(ONE_RULE).await.unwrap();
            black_box(instance.transform(&t, &batch).await.unwrap());
            let elapsed = start.elapsed();
            drop(instance);
            if i >= warmup {
                full.push(elapsed);
            }
        }
        print_latency(
            "instantiate + open(1 rule) + transform(1 row)",
            &Samples(full),
        );

        // The calls alone, on one warm instance.
        let mut instance = plugin.instantiate(&sandbox).await.unwrap();
        let t = instance.open_transformer(ONE_RULE).await.unwrap();
        let mut calls = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            let start = Instant::now();
            black_box(instance.transform(&t, &batch).await.unwrap());
            if i >= warmup {
                calls.push(start.elapsed());
            }
        }
        print_latency("transform(1 row) on a warm instance", &Samples(calls));
    });
    println!();
}

// ---------------------------------------------------------------------------
// 2. Field mapping, Wasm vs native
// ---------------------------------------------------------------------------

fn native_batches(host: &[sluice_runtime::Batch]) -> Vec<sluice_sdk::Batch> {
    host.iter()
        .map(|b| sluice_sdk::Batch {
            columns: b.columns.clone(),
            rows: b
                .rows
                .iter()
                .map(|r| r.iter().map(to_sdk).collect())
                .collect(),
        })
        .collect()
}

/// A host value as the SDK's, to compare the two paths' outputs.
fn to_sdk(v: &sluice_runtime::Value) -> sluice_sdk::Value {
    use sluice_runtime::Value as H;
    use sluice_sdk::Value as S;
    match v {
        H::Null => S::Null,
        H::Boolean(b) => S::Boolean(*b),
        H::Integer(i) => S::Integer(*i),
        H::Float(f) => S::Float(*f),
        H::Decimal(s) => S::Decimal(s.clone()),
        H::Text(s) => S::Text(s.clone()),
        H::Bytes(b) => S::Bytes(b.clone()),
        H::Timestamp(t) => S::Timestamp(*t),
        H::Date(d) => S::Date(*d),
        H::Json(s) => S::Json(s.clone()),
    }
}

fn native_map(config: &str) -> field_map::FieldMap {
    let json: serde_json::Value = serde_json::from_str(config).unwrap();
    let rules: Vec<field_map::Rule> = serde_json::from_value(json["fields"].clone()).unwrap();
    field_map::FieldMap::new(rules).unwrap_or_else(|_| panic!("bad rules"))
}

/// Per-round throughput in rows per second.
#[derive(Default)]
struct Rounds(Vec<f64>);

impl Rounds {
    fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }

    fn stddev(&self) -> f64 {
        let m = self.mean();
        (self.0.iter().map(|x| (x - m).powi(2)).sum::<f64>()
            / self.0.len().max(2).saturating_sub(1) as f64)
            .sqrt()
    }

    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

fn field_map_bench(
    tokio: &tokio::runtime::Runtime,
    runtime: &Runtime,
    rounds: usize,
    batches: usize,
) {
    let rows = batches * BATCH;
    println!("2. field-map over {rows} rows in batches of {BATCH}, Wasm vs native (target Wasm/native <= 1.5)");
    let start = Instant::now();
    let host = fieldmap_input::host_batches(&generate(rows), BATCH);
    let host_columns: Vec<_> = host.iter().map(columns::to_columns).collect();
    let native: Vec<_> = native_batches(&host)
        .into_iter()
        .map(sluice_sdk::ColumnBatch::from_batch)
        .collect();
    println!("  input generated in {} (outside the timed region); {rounds} timed rounds after 1 warm-up round", fmt_dur(start.elapsed()));
    println!("  field-map is a columnar transform: batches cross the boundary by column");
    println!(
        "  wasm:         one instance, one transformer, {batches} `transform` calls per round (the host's column batch lowered into the guest, the result lifted back)"
    );
    println!("  native:       `FieldMap::apply`, the same code, on owned column batches built from the same generator (outside the timer)");
    println!("  native+clone: the same, cloning each input batch inside the timer (one input copy, like the guest's)");
    println!("  wasm rows:    what a sync pays: row batches in and out, converted by the host around the call");
    println!(
        "  native rows:  the same conversions natively (rows to columns, apply, columns to rows)"
    );
    println!();
    println!(
        "  {:<12} {:<13} {:>18} {:>10} {:>10} {:>12} {:>12}",
        "mapping", "path", "rows/s (mean±sd)", "min", "max", "per batch", "Wasm/native"
    );

    let plugin = Plugin::from_bytes(runtime, "field-map", sluice_registry::builtin::FIELD_MAP)
        .expect("load field-map");
    for (name, config) in [
        ("realistic", REALISTIC),
        ("passthrough", PASSTHROUGH),
        ("no columns", EMPTY),
    ] {
        let map = native_map(config);
        let paths = tokio.block_on(async {
            let mut instance = plugin.instantiate(&Sandbox::default()).await.unwrap();
            let t = instance.open_transformer(config).await.unwrap();

            // Correctness: every path produces the same output.
            for i in [0, host.len() / 2, host.len() - 1] {
                let w = instance
                    .transform_columns(&t, &host_columns[i])
                    .await
                    .unwrap();
                let w = columns::to_rows(w.batch).unwrap();
                let r = instance.transform(&t, &host[i]).await.unwrap().batch;
                let n = map
                    .apply(native[i].clone())
                    .unwrap_or_else(|_| panic!("native apply"));
                assert!(n.errors.is_empty(), "every generated row maps cleanly");
                let n = n.batch.into_batch();
                assert_eq!(w, r, "Wasm by columns and by rows differ ({name})");
                assert_eq!(w.columns, n.columns);
                let w_rows: Vec<Vec<sluice_sdk::Value>> = w
                    .rows
                    .iter()
                    .map(|r| r.iter().map(to_sdk).collect())
                    .collect();
                assert_eq!(
                    w_rows, n.rows,
                    "Wasm and native outputs differ ({name}, batch {i})"
                );
                assert_eq!(n.rows.len(), BATCH);
            }

            let mut r: [Rounds; 5] = Default::default();
            for round in 0..=rounds {
                // Interleaved, so drift on a shared machine hits every path.
                let start = Instant::now();
                for batch in &host_columns {
                    black_box(
                        instance
                            .transform_columns(&t, black_box(batch))
                            .await
                            .unwrap(),
                    );
                }
                let wasm = start.elapsed();

                let inputs = native.clone();
                let start = Instant::now();
                for batch in inputs {
                    black_box(
                        map.apply(black_box(batch))
                            .unwrap_or_else(|_| panic!("native apply")),
                    );
                }
                let owned = start.elapsed();

                let start = Instant::now();
                for batch in &native {
                    black_box(
                        map.apply(black_box(batch.clone()))
                            .unwrap_or_else(|_| panic!("native apply")),
                    );
                }
                let cloned = start.elapsed();

                let start = Instant::now();
                for batch in &host {
                    black_box(instance.transform(&t, black_box(batch)).await.unwrap());
                }
                let wasm_rows = start.elapsed();

                let inputs = native_row_batches(&native);
                let start = Instant::now();
                for batch in inputs {
                    let columns = sluice_sdk::ColumnBatch::from_batch(black_box(batch));
                    let out = map
                        .apply(columns)
                        .unwrap_or_else(|_| panic!("native apply"));
                    black_box(out.batch.into_batch());
                }
                let native_rows = start.elapsed();

                if round > 0 {
                    for (i, d) in [wasm, owned, cloned, wasm_rows, native_rows]
                        .into_iter()
                        .enumerate()
                    {
                        r[i].0.push(rows as f64 / d.as_secs_f64());
                    }
                }
            }
            r
        });
        let [wasm, native_owned, native_clone, wasm_rows, native_rows] = &paths;
        for (path, r, base) in [
            ("wasm", wasm, native_owned),
            ("native", native_owned, native_owned),
            ("native+clone", native_clone, native_owned),
            ("wasm rows", wasm_rows, native_rows),
            ("native rows", native_rows, native_rows),
        ] {
            let ratio = base.median() / r.median();
            println!(
                "  {:<12} {:<13} {:>18} {:>10} {:>10} {:>12} {:>12}",
                name,
                path,
                format!("{} ± {}", fmt_rate(r.mean()), fmt_rate(r.stddev())),
                fmt_rate(r.0.iter().copied().fold(f64::INFINITY, f64::min)),
                fmt_rate(r.0.iter().copied().fold(0.0, f64::max)),
                fmt_dur(Duration::from_secs_f64(BATCH as f64 / r.median())),
                format!("{ratio:.2}x"),
            );
        }
        println!(
            "  {:<12} {:<13} Wasm/(native+clone) = {:.2}x; wasm rows/native rows = {:.2}x (medians)",
            name,
            "",
            native_clone.median() / wasm.median(),
            native_rows.median() / wasm_rows.median()
        );
    }
    println!();
}

/// The native column batches as rows again (the input of the row paths).
fn native_row_batches(native: &[sluice_sdk::ColumnBatch]) -> Vec<sluice_sdk::Batch> {
    native.iter().map(|b| b.clone().into_batch()).collect()
}

/// Only the realistic mapping through the component, for a profiler
/// (`SLUICE_BENCH_ONLY=wasm-loop perf record ...`).
fn wasm_loop(tokio: &tokio::runtime::Runtime, runtime: &Runtime) {
    let host: Vec<_> = fieldmap_input::host_batches(&generate(ROWS), BATCH)
        .iter()
        .map(columns::to_columns)
        .collect();
    let plugin = Plugin::from_bytes(runtime, "field-map", sluice_registry::builtin::FIELD_MAP)
        .expect("load field-map");
    tokio.block_on(async {
        let mut instance = plugin.instantiate(&Sandbox::default()).await.unwrap();
        let t = instance.open_transformer(REALISTIC).await.unwrap();
        let start = Instant::now();
        for _ in 0..10 {
            for batch in &host {
                black_box(
                    instance
                        .transform_columns(&t, black_box(batch))
                        .await
                        .unwrap(),
                );
            }
        }
        println!(
            "wasm-loop: {} rows/s",
            fmt_rate(10.0 * ROWS as f64 / start.elapsed().as_secs_f64())
        );
    });
}

// ---------------------------------------------------------------------------
// 3. Cached load
// ---------------------------------------------------------------------------

fn cached_load_bench(cache_dir: &std::path::Path, iters: usize, cold_iters: usize) {
    println!("3. Plugin::from_bytes: cached component (target <= 20 ms) vs cold compile");
    print_latency_header();
    let cached = new_runtime(Some(cache_dir.to_path_buf()));
    let uncached = new_runtime(None);
    let warmup = (iters / 10).max(5);
    for (name, bytes) in [
        ("field-map", sluice_registry::builtin::FIELD_MAP),
        ("webhook", sluice_registry::builtin::WEBHOOK),
        ("postgres", sluice_registry::builtin::POSTGRES),
    ] {
        // Make sure it is in the cache (field-map already is, from part 1).
        drop(Plugin::from_bytes(&cached, name, bytes).unwrap());
        let mut samples = Vec::with_capacity(iters);
        for i in 0..warmup + iters {
            let start = Instant::now();
            let plugin = Plugin::from_bytes(&cached, name, bytes).unwrap();
            let elapsed = start.elapsed();
            // A correctness check, not a timing check: no recompile happened.
            assert_eq!(
                plugin.cache_outcome(),
                CacheOutcome::Hit,
                "{name} was recompiled"
            );
            drop(plugin);
            if i >= warmup {
                samples.push(elapsed);
            }
        }
        print_latency(
            &format!("{name} ({} KiB): cached load", bytes.len() / 1024),
            &Samples(samples),
        );

        let mut cold = Vec::with_capacity(cold_iters);
        for _ in 0..cold_iters {
            let start = Instant::now();
            let plugin = Plugin::from_bytes(&uncached, name, bytes).unwrap();
            cold.push(start.elapsed());
            assert_eq!(plugin.cache_outcome(), CacheOutcome::Disabled);
        }
        print_latency(
            &format!(
                "{name} ({} KiB): cold compile (no cache)",
                bytes.len() / 1024
            ),
            &Samples(cold),
        );
    }
    println!();
}
