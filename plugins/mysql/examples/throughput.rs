//! Rows per second of a native read against the local MariaDB:
//! `cargo run --release -p mysql --example throughput [ROWS] [BATCH]`.
//! Generates the rows server-side with MariaDB's sequence engine (no table
//! needed), with the column types a typical model has: bigint key, text,
//! decimal, datetime(6), boolean, JSON text.

use mysql::MySql;
use sluice_sdk::{ReadRequest, Reader, Source};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let batch: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let config =
        r#"{"host":"127.0.0.1","user":"root","database":"mysql","json_columns":["attrs"]}"#;
    let sql = format!(
        "SELECT CAST(seq AS SIGNED) AS id, CONCAT('user', seq, '@example.com') AS email,
                CAST(seq / 7 AS DECIMAL(12,2)) AS amount,
                TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND AS updated_at,
                seq % 2 = 0 AS active, JSON_OBJECT('plan', 'pro', 'seats', seq % 50) AS attrs
         FROM seq_1_to_{rows}"
    );
    let start = Instant::now();
    let mut reader = MySql::read(config, ReadRequest::Query(sql)).expect("read");
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
