//! Rows per second of a native read against the local PostgreSQL:
//! `cargo run --release -p postgres --example throughput [ROWS] [BATCH]`.
//! Generates the rows server-side (no table needed), with the column types
//! a typical model has: bigint key, text, numeric, timestamptz, bool, jsonb.

use postgres::Postgres;
use sluice_sdk::{ReadRequest, Reader, Source};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let batch: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let config = r#"{"host":"127.0.0.1","user":"postgres","database":"test"}"#;
    let sql = format!(
        "SELECT g::int8 AS id, 'user' || g || '@example.com' AS email, (g / 7.0)::numeric(12,2) AS amount,
                timestamptz '2024-01-01' + g * interval '1 second' AS updated_at, g % 2 = 0 AS active,
                jsonb_build_object('plan', 'pro', 'seats', g % 50) AS attrs
         FROM generate_series(1, {rows}) g"
    );
    let start = Instant::now();
    let mut reader = Postgres::read(config, ReadRequest::Query(sql)).expect("read");
    let mut count = 0u64;
    while let Some(b) = reader.next(batch).expect("next") {
        count += b.rows.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{count} rows in {secs:.2}s: {:.0} rows/s (batches of {batch})",
        count as f64 / secs
    );
}
