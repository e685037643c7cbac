//! Databricks' own Python SDK (databricks-sdk, pinned in
//! tests/vendor-clients/requirements.txt) against the Databricks emulator:
//! `WorkspaceClient(host, token).statement_execution` — execute_statement,
//! get_statement, get_statement_result_chunk_n, cancel_execution, OAuth M2M —
//! gets the documented shapes, states, chunks, links and errors; every check
//! in tests/vendor-clients/databricks.py must pass.
//!
//! The client runs from the venv that scripts/vendor-clients.sh installs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sluice_emulators::{
    start_databricks, DatabricksSettings, EmulatorConfig, DEFAULT_DATABRICKS_CLIENT_ID,
    DEFAULT_DATABRICKS_CLIENT_SECRET, DEFAULT_DATABRICKS_TOKEN, DEFAULT_DATABRICKS_WAREHOUSE,
};

/// Every check the script makes.
const CHECKS: usize = 14;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vendor_python() -> PathBuf {
    let python = workspace().join("target/vendor-clients-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/vendor-clients.sh` to install the vendor clients",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databricks_sdk_statement_execution_gets_the_documented_shapes() {
    let python = vendor_python();
    let database = format!("sluice_dbx_vendor_{}", std::process::id());
    let config = EmulatorConfig {
        databricks: DatabricksSettings {
            postgres_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
            // Several chunks from five rows.
            chunk_rows: 2,
            // Long enough that a `wait_timeout: 0s` answer is PENDING and a
            // cancel wins the race.
            execution_delay: std::time::Duration::from_millis(300),
            ..DatabricksSettings::default()
        },
        ..EmulatorConfig::default()
    };
    let emulator = start_databricks("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("starting the Databricks emulator");
    let script = workspace().join("tests/vendor-clients/databricks.py");
    let base = emulator.base_url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([
                base.as_str(),
                DEFAULT_DATABRICKS_TOKEN,
                DEFAULT_DATABRICKS_WAREHOUSE,
                DEFAULT_DATABRICKS_CLIENT_ID,
                DEFAULT_DATABRICKS_CLIENT_SECRET,
            ])
            // No ~/.databrickscfg profile or DATABRICKS_* variable may leak in.
            .env("DATABRICKS_CONFIG_FILE", "/nonexistent/databrickscfg")
            .env_remove("DATABRICKS_HOST")
            .env_remove("DATABRICKS_TOKEN")
            .output()
    })
    .await
    .unwrap()
    .expect("running tests/vendor-clients/databricks.py");
    emulator.shutdown().await.unwrap();
    sluice_tests::psql(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ));
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
    assert_eq!(
        summary["failed"],
        Value::Array(Vec::new()),
        "every check passes:\n{stderr}"
    );
    let passed = summary["passed"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(passed, CHECKS, "{summary}");
}
