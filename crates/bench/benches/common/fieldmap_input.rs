//! The field-map benchmarks' input and mappings, shared by the runtime
//! (issue 2) and polyglot (issue 5) benchmarks so both measure the same rows.

#![allow(dead_code)] // each benchmark uses part of it

/// The realistic mapping: rename, trim + lowercase, text decimal to float,
/// uppercase, pass a timestamp through under a new name, add a constant.
pub const REALISTIC: &str = r#"{"fields":[
    {"from":"id","to":"external_id"},
    {"from":"email","to":"Email","clean":["trim","lowercase"]},
    {"from":"first_name","to":"FirstName","clean":["trim"]},
    {"from":"last_name","to":"LastName","clean":["uppercase"]},
    {"from":"ltv","to":"LifetimeValue","type":"float"},
    {"from":"signed_up","to":"SignedUpAt"},
    {"to":"Source","constant":"sluice"}
]}"#;

/// Breakdown: every column copied unchanged (the data crosses in and out,
/// the guest does almost nothing).
pub const PASSTHROUGH: &str = r#"{"fields":[
    {"from":"id"},{"from":"email"},{"from":"first_name"},
    {"from":"last_name"},{"from":"ltv"},{"from":"signed_up"}
]}"#;

/// Breakdown: no output columns (the data crosses in only).
pub const EMPTY: &str = r#"{"fields":[]}"#;

pub const COLUMNS: [&str; 6] = ["id", "email", "first_name", "last_name", "ltv", "signed_up"];

/// One generated row, independent of the host's and the guest's value types.
pub struct RawRow {
    pub id: i64,
    pub email: String,
    pub first: &'static str,
    pub last: &'static str,
    pub ltv: String,
    pub signed_up: i64,
}

/// A small deterministic generator (xorshift64*), so both sides see the very
/// same data on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Niklaus", " Ken", "Radia",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Wirth", "Thompson",
    "Perlman",
];
const DOMAINS: &[&str] = &[
    "Example.COM",
    "mail.example.org",
    "Corp.Example.net",
    "example.io",
];

pub fn generate(rows: usize) -> Vec<RawRow> {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    (0..rows)
        .map(|i| {
            let first = rng.pick(FIRST);
            let last = rng.pick(LAST);
            let pad = if rng.next().is_multiple_of(4) {
                "  "
            } else {
                ""
            };
            let email = format!(
                "{pad}{}.{}{}@{}{pad}",
                first.trim(),
                last,
                rng.next() % 1000,
                rng.pick(DOMAINS)
            );
            RawRow {
                id: i as i64 + 1,
                email,
                first,
                last,
                ltv: format!("{}.{:02}", rng.next() % 100_000, rng.next() % 100),
                signed_up: 1_600_000_000_000_000 + (rng.next() % 150_000_000_000_000) as i64,
            }
        })
        .collect()
}

pub fn host_batches(raw: &[RawRow], batch: usize) -> Vec<sluice_runtime::Batch> {
    use sluice_runtime::Value as V;
    raw.chunks(batch)
        .map(|chunk| sluice_runtime::Batch {
            columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
            rows: chunk
                .iter()
                .map(|r| {
                    vec![
                        V::Integer(r.id),
                        V::Text(r.email.clone()),
                        V::Text(r.first.to_string()),
                        V::Text(r.last.to_string()),
                        V::Decimal(r.ltv.clone()),
                        V::Timestamp(r.signed_up),
                    ]
                })
                .collect(),
        })
        .collect()
}
