//! The snapshot's cost per row on a rerun (issue 12): loading what a sync
//! delivered, then observing every row of the model against it, for
//! 1,000,000 integer keys, with the model read in the order the rows were
//! delivered (a table scanned the same way each run) and in a scrambled
//! order. Then the same with the snapshot spilled to disk: a tenth of the
//! keys in memory (`Snapshot::with_memory_keys`), the rest in the spill.
//! Run with `cargo bench --workspace --bench snapshot`;
//! `SLUICE_BENCH_ROWS=N` changes the row count. Reports the median of 5
//! rounds; asserts only that every row is classified as it should be, and
//! prints the snapshot's heap bytes after the load.

#[path = "common/format.rs"]
mod format;
#[path = "common/machine.rs"]
mod machine;

use sluice_runtime::Value;
use sluice_state::snapshot::{Observation, Snapshot};
use sluice_state::{RowHash, RowKey};
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

fn main() {
    machine::print_machine();
    let rows: usize = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let keys: Vec<RowKey> = (0..rows as i64)
        .map(|i| RowKey::from_values(&[Value::Integer(i)]))
        .collect();
    let in_order: Vec<usize> = (0..rows).collect();
    let scrambled = scramble(rows);
    println!("snapshot of {rows} integer keys, median of {ROUNDS} rounds");
    println!("  {:<44} {:>12} {:>12}", "case", "ns/row", "rows/s");
    for (tier, limit) in [("in memory", usize::MAX), ("spilled", (rows / 10).max(1))] {
        for (name, order) in [("in delivery order", &in_order), ("scrambled", &scrambled)] {
            let (load, observe, heap) = median_round(&keys, order, limit);
            report(&format!("{tier}: load ({name} run)"), load, rows);
            report(&format!("{tier}: observe every row, {name}"), observe, rows);
            println!("  {tier}: heap after the load: {:.1} MB", heap as f64 / 1e6);
        }
    }
}

/// A permutation of 0..n that jumps around the whole range.
fn scramble(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

fn median_round(keys: &[RowKey], order: &[usize], limit: usize) -> (Duration, Duration, usize) {
    let mut loads = Vec::new();
    let mut observes = Vec::new();
    let mut heap = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut snapshot = Snapshot::with_memory_keys(keys.len(), 10, limit);
        for (i, k) in keys.iter().enumerate() {
            snapshot
                .insert_delivered(k.as_bytes(), RowHash(i as u128), None)
                .unwrap();
        }
        let loaded = Instant::now();
        heap = snapshot.heap_bytes();
        for &i in order {
            let seen = snapshot
                .observe(keys[i].as_bytes(), RowHash(i as u128))
                .unwrap();
            assert_eq!(seen, Observation::Same);
        }
        observes.push(loaded.elapsed());
        loads.push(loaded - start);
    }
    loads.sort();
    observes.sort();
    (loads[ROUNDS / 2], observes[ROUNDS / 2], heap)
}

fn report(name: &str, took: Duration, rows: usize) {
    let ns = took.as_nanos() as f64 / rows as f64;
    println!(
        "  {:<44} {:>12.1} {:>12}",
        name,
        ns,
        format::fmt_rate(rows as f64 / took.as_secs_f64())
    );
}
