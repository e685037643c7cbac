//! google-cloud-bigquery, Google's own Python client, against the BigQuery
//! emulator with a custom `api_endpoint` and `AnonymousCredentials`: paging
//! with `page_size` (jobs.query and jobs.insert + getQueryResults), a dry
//! run, errors (invalidQuery with its position, notFound,
//! bytesBilledLimitExceeded), jobs.get, and every type decoded as the client
//! documents. Every check must pass.
//!
//! The client runs from the venv that scripts/vendor-clients.sh installs
//! (pinned in tests/vendor-clients/requirements.txt); scripts/test runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sluice_emulators::{
    start_bigquery, BigQuerySettings, EmulatorConfig, DEFAULT_BIGQUERY_PROJECT,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn venv_python() -> PathBuf {
    let python = repo_root().join("target/vendor-clients-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/vendor-clients.sh` (scripts/test runs it) to install the vendors' Python clients",
        python.display()
    );
    python
}

const SETUP: &[&str] = &[
    "create schema vendor",
    "create table vendor.numbers (n INT64)",
    "insert into vendor.numbers select generate_series(1, 25)",
    "create table vendor.types (i INT64, f FLOAT64, n NUMERIC, bn BIGNUMERIC, b BOOL, s STRING, \
     bts BYTES, d DATE, dt DATETIME, t TIME, ts TIMESTAMP, j JSON, tags ARRAY<STRING>, \
     addr STRUCT<zip STRING, scores ARRAY<INT64>>)",
    "insert into vendor.types values (-9223372036854775808, 1.5, 12345678901234567890123456789.123456789, \
     -1234567890123456789012345678901234567.12345678901234567890123456789012345678, true, 'Zürich ✓ 🚀', \
     from_base64('AP8='), '1969-12-31', '2021-05-04 18:08:13.299', '23:59:59.999999', \
     TIMESTAMP '2021-05-04 20:08:13.299+02:00', JSON '{\"k\": [1, \"ü\"]}', ['a', 'é'], \
     STRUCT('94110', [1, 2])), \
     (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_cloud_bigquery_runs_against_the_emulator() {
    let python = venv_python();
    let database = format!("sluice_bq_vendor_{}", std::process::id());
    let emulator = start_bigquery(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig {
            bigquery: BigQuerySettings {
                postgres_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
                allow_anonymous: true,
                ..BigQuerySettings::default()
            },
            ..EmulatorConfig::default()
        },
    )
    .await
    .expect("starting the BigQuery emulator");
    for statement in SETUP {
        emulator
            .handle()
            .bigquery_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"));
    }

    let script = repo_root().join("tests/vendor-clients/bigquery.py");
    let base = emulator.base_url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([&base, DEFAULT_BIGQUERY_PROJECT])
            .output()
    })
    .await
    .unwrap()
    .expect("running tests/vendor-clients/bigquery.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!("the script's last line is not JSON ({e}):\n{stdout}\n{stderr}")
        });
    println!("google-cloud-bigquery: {summary}");
    let passed = summary["passed"].as_array().map_or(0, Vec::len);
    assert!(passed >= 9, "only {passed} checks passed: {summary}");
    assert_eq!(summary["failed"], serde_json::json!([]), "{summary}");
    // The client paged: more than one getQueryResults call carried rows.
    let pages = emulator
        .handle()
        .stats()
        .endpoint("GET", "/bigquery/v2/projects/{project}/queries/{job}");
    assert!(pages >= 4, "getQueryResults calls: {pages}");
    emulator.shutdown().await.unwrap();
    sluice_tests::psql(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ));
}
