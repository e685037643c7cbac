//! HubSpot's own Python client (hubspot-api-client, pinned in
//! tests/vendor-clients/requirements.txt) against the HubSpot emulator:
//! at least 95% of the calls users make most behave as HubSpot documents,
//! and every call that does not is listed in crates/emulators/README.md
//! under "Not emulated" (issue 15).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sluice_emulators::{start_hubspot, EmulatorConfig, DEFAULT_HUBSPOT_TOKEN};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python, or a failure that says how to make it.
fn vendor_python() -> PathBuf {
    let python = workspace().join("target/vendor-clients-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/vendor-clients.sh` to install the vendor clients",
        python.display()
    );
    python
}

/// The `### HubSpot` part of the README's "Not emulated" section.
fn not_emulated_hubspot() -> String {
    let readme = std::fs::read_to_string(workspace().join("crates/emulators/README.md"))
        .expect("reading crates/emulators/README.md");
    let section = readme
        .split_once("## Not emulated")
        .map(|(_, rest)| rest)
        .expect("crates/emulators/README.md has a \"## Not emulated\" section");
    let hubspot = section
        .split_once("### HubSpot")
        .map(|(_, rest)| rest)
        .expect("the \"Not emulated\" section has a \"### HubSpot\" subsection");
    // Up to the next heading of the same or a higher level.
    hubspot.split("\n##").next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_api_client_calls_behave_as_documented() {
    let python = vendor_python();
    let emulator = start_hubspot("127.0.0.1:0".parse().unwrap(), EmulatorConfig::default())
        .await
        .expect("starting the HubSpot emulator");
    let script = workspace().join("tests/vendor-clients/hubspot.py");
    let base = emulator.base_url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(base)
            .arg(DEFAULT_HUBSPOT_TOKEN)
            .output()
            .expect("running tests/vendor-clients/hubspot.py")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "hubspot.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON summary from hubspot.py:\n{stdout}\n{stderr}"));
    let passed = summary["passed"].as_array().expect("passed[]").len();
    let failed = summary["failed"].as_array().expect("failed[]");
    let total = passed + failed.len();
    println!("hubspot-api-client: {passed} of {total} calls behaved as documented");
    assert!(
        total >= 30,
        "the script proves the common calls: {total} ran"
    );
    assert!(
        passed * 100 >= total * 95,
        "{passed} of {total} calls behaved as documented (95% needed); failures: {failed:#?}"
    );
    let listed = not_emulated_hubspot();
    for failure in failed {
        let call = failure["call"].as_str().unwrap_or_default();
        assert!(
            listed.contains(call),
            "{call} failed but is not listed under \"Not emulated\" / \"### HubSpot\" in crates/emulators/README.md: {}",
            failure["error"]
        );
    }
    emulator.shutdown().await.unwrap();
}
