//! simple-salesforce, the vendor's most used Python client, against the
//! Salesforce emulator: at least 95% of the calls its users make most behave
//! as Salesforce documents, and every call that does not is listed under
//! "Not emulated" in crates/emulators/README.md.
//!
//! The client runs from the venv that scripts/vendor-clients.sh installs
//! (pinned in tests/vendor-clients/requirements.txt); scripts/test runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sluice_emulators::salesforce::schema_file;
use sluice_emulators::{start_salesforce, EmulatorConfig, SalesforceSettings};

/// The share of checks that must pass.
const REQUIRED_PASS_RATE: f64 = 0.95;

/// The custom object the script's `custom_object_from_schema` and
/// `describe_object` checks use, declared as `--schema` would.
const SCHEMA: &str = r#"
objects:
  Customer__c:
    label: Customer
    fields:
      External_Id__c: { type: string, external_id: true }
      LTV__c: { type: currency, precision: 16, scale: 2 }
"#;

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

/// The call names listed under the README's "Not emulated" heading.
fn not_emulated_in_readme() -> String {
    let readme = std::fs::read_to_string(repo_root().join("crates/emulators/README.md"))
        .expect("reading crates/emulators/README.md");
    let start = readme
        .find("## Not emulated")
        .expect("crates/emulators/README.md has a `## Not emulated` section");
    let section = &readme[start + 3..];
    let end = section.find("\n## ").unwrap_or(section.len());
    section[..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_salesforce_calls_behave_as_documented() {
    let python = venv_python();
    let schema = schema_file::parse(SCHEMA, false).expect("the test's schema parses");
    let main = start_salesforce(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig {
            salesforce: SalesforceSettings {
                schema,
                ..SalesforceSettings::default()
            },
            ..EmulatorConfig::default()
        },
    )
    .await
    .expect("starting the Salesforce emulator");
    let limited = start_salesforce(
        "127.0.0.1:0".parse().unwrap(),
        EmulatorConfig {
            salesforce: SalesforceSettings {
                daily_api_limit: 15,
                expire_tokens_after: Some(6),
                bulk_failure: Some("InvalidBatch : forced by the test (--fail-bulk-jobs)".into()),
                ..SalesforceSettings::default()
            },
            ..EmulatorConfig::default()
        },
    )
    .await
    .expect("starting the limited Salesforce emulator");

    let script = repo_root().join("tests/vendor-clients/salesforce.py");
    let (main_url, limited_url) = (main.base_url(), limited.base_url());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(["--url", &main_url, "--limited-url", &limited_url])
            .output()
    })
    .await
    .unwrap()
    .expect("running tests/vendor-clients/salesforce.py");
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
    let names = |key: &str| -> Vec<String> {
        summary[key]
            .as_array()
            .unwrap_or_else(|| panic!("no `{key}` list in {summary}"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let (passed, failed) = (names("passed"), names("failed"));
    println!(
        "simple-salesforce: {} passed, failed: {failed:?}",
        passed.len()
    );
    let total = passed.len() + failed.len();
    assert!(total >= 40, "only {total} checks ran: {summary}");
    let rate = passed.len() as f64 / total as f64;
    assert!(
        rate >= REQUIRED_PASS_RATE,
        "{} of {total} simple-salesforce checks passed ({:.0}%), below {:.0}%; failures: {}",
        passed.len(),
        rate * 100.0,
        REQUIRED_PASS_RATE * 100.0,
        summary["errors"]
    );
    let listed = not_emulated_in_readme();
    let unlisted: Vec<&String> = failed
        .iter()
        .filter(|name| !listed.contains(&format!("`{name}`")))
        .collect();
    assert!(
        unlisted.is_empty(),
        "failing checks not listed under \"Not emulated\" in crates/emulators/README.md: {unlisted:?}; errors: {}",
        summary["errors"]
    );
    assert!(
        limited.handle().issued_tokens().len() >= 3,
        "simple-salesforce should have logged in again after its token expired"
    );
    main.shutdown().await.unwrap();
    limited.shutdown().await.unwrap();
}
