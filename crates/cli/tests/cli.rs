//! The `sluice` binary as a user runs it.

use sluice_tests as common;

use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_CACHE_DIR", common::shared_cache_dir())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn demo_syncs_customers_then_only_the_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("demo");
    let out = sluice(&["demo", "--dir", project.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("planned 250  added 250"), "{text}");
    assert!(text.contains("ok 250  rejected 0"), "{text}");
    assert!(text.contains("250 Contact records in Salesforce"), "{text}");
    assert!(
        text.contains("Only 3 row(s) were sent; 247 unchanged"),
        "{text}"
    );
    // A healthy demo warns about nothing.
    assert!(!stderr(&out).contains("WARN"), "{}", stderr(&out));
    // The project stays behind and validates.
    assert!(project.join("sluice.yaml").exists() && project.join("data/customers.csv").exists());
    let validate = sluice(&["validate", "--project", project.to_str().unwrap()]);
    assert!(
        validate.status.success(),
        "{}\n{}",
        stdout(&validate),
        stderr(&validate)
    );
    let runs = sluice(&["runs", "--json", "--project", project.to_str().unwrap()]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["counts"]["sent"], 3);
    // Run again, it resets its own project: the same two runs, not four.
    let again = sluice(&["demo", "--dir", project.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
    let runs = sluice(&["runs", "--json", "--project", project.to_str().unwrap()]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
}

#[test]
fn demo_serve_reaches_a_run_page_with_rejected_rows_in_one_command() {
    use std::io::BufRead;
    // A database that does not exist yet: the demo creates it.
    let db = common::PgDatabase::create("demo_serve");
    assert!(common::psql_on(
        "postgres",
        &format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name)
    ));
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "demo",
            "--dir",
            project.to_str().unwrap(),
            "--serve",
            &db.url(),
        ])
        .args(["--listen", "127.0.0.1:0"])
        .env("SLUICE_CACHE_DIR", common::shared_cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let (lines, read) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut printed = Vec::new();
    let page = loop {
        match read.recv_timeout(std::time::Duration::from_secs(300)) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("Open the console at ") {
                    break url.to_owned();
                }
                printed.push(line);
            }
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "no console address ({e}): {}\n{}",
                    printed.join("\n"),
                    std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
                );
            }
        }
    };
    let text = printed.join("\n");
    assert!(text.contains("rejected 2"), "{text}");
    // The token went to a file, never to the terminal.
    let token = std::fs::read_to_string(project.join(".sluice/demo.token")).unwrap();
    let token = token.trim();
    assert!(token.starts_with("slk_") && !text.contains(token), "{text}");
    let (base, run) = page.split_once("/#/runs/").expect("a run page's address");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (html, rejected) = rt.block_on(async {
        let http = reqwest::Client::new();
        let html = http.get(format!("{base}/")).send().await.unwrap();
        let html = (html.status(), html.text().await.unwrap());
        let rejected: serde_json::Value = http
            .get(format!(
                "{base}/api/v1/runs/{run}/rejected/search?q=invalid%20email"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (html, rejected)
    });
    assert_eq!(html.0, reqwest::StatusCode::OK);
    assert!(html.1.contains("Sluice"), "{}", html.1);
    assert_eq!(rejected["total"], 2, "{rejected}");
    // Ctrl-C stops it cleanly.
    let stopped = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop on Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
    );
}

#[test]
fn demo_never_replaces_a_project_it_did_not_write_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "sources: {}\n";
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    std::fs::create_dir_all(dir.path().join(".sluice")).unwrap();
    std::fs::write(dir.path().join(".sluice/state.db"), "precious").unwrap();
    let out = sluice(&["demo", "--dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sluice.yaml")).unwrap(),
        yaml
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".sluice/state.db")).unwrap(),
        "precious"
    );
    let forced = sluice(&["demo", "--dir", dir.path().to_str().unwrap(), "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
}

#[test]
fn validate_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        "sources:\n  s: { plugin: files, confg: {} }\nsyncs:\n  x: { model: nope, destination: d, object: o, mode: upsert, identifier: id }\n",
    )
    .unwrap();
    let out = sluice(&["validate", "--project", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("sluice.yaml:2:") && err.contains("confg") && err.contains("config"),
        "{err}"
    );
    assert!(
        err.contains("sluice.yaml:4:") && err.contains("nope"),
        "{err}"
    );
    let json = sluice(&[
        "validate",
        "--json",
        "--project",
        dir.path().to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["problems"].as_array().unwrap().len() >= 2);
}

#[test]
fn plugin_inspect_describes_a_plugin_as_json() {
    let out = sluice(&["plugin", "inspect", "webhook", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["world"], "destination");
    assert_eq!(v["wit"], "sluice:plugin@0.1.0");
    // A destination that also exports lookup-api says so.
    let out = sluice(&["plugin", "inspect", "hubspot", "--json"]);
    let hubspot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hubspot["world"], "verifiable-destination");
    assert_eq!(v["capabilities"], serde_json::json!(["${config.url}"]));
    assert_eq!(v["config_schema"]["required"], serde_json::json!(["url"]));
}

#[test]
fn plugin_check_names_the_missing_grant() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pg.json");
    std::fs::write(
        &config,
        r#"{"host":"127.0.0.1","user":"postgres","database":"test"}"#,
    )
    .unwrap();
    let denied = sluice(&[
        "plugin",
        "check",
        "postgres",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(!denied.status.success());
    let err = stderr(&denied);
    assert!(
        err.contains(
            "network (tcp) denied: creating a TCP socket: the plugin has no grant that reaches raw TCP"
        ),
        "{err}"
    );
    assert!(
        err.contains("the plugin requests: postgres://127.0.0.1:5432"),
        "{err}"
    );
    let ok = sluice(&[
        "plugin",
        "check",
        "postgres",
        "--config",
        config.to_str().unwrap(),
        "--allow",
        "postgres://127.0.0.1:5432",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("check passed"));
}

#[test]
fn unknown_plugins_and_bad_grants_are_explained() {
    let out = sluice(&["plugin", "inspect", "salesfarce"]);
    assert!(
        stderr(&out).contains("unknown plugin `salesfarce`"),
        "{}",
        stderr(&out)
    );
    let out = sluice(&[
        "plugin",
        "check",
        "webhook",
        "--allow",
        "https://example.com/path",
    ]);
    assert!(
        stderr(&out).contains("paths are not allowed in grants"),
        "{}",
        stderr(&out)
    );
}

/// Two syncs: `a_broken` writes to a Salesforce nobody listens for (its
/// discovery fails before anything is read), `b_good` to a live receiver.
fn two_syncs(dir: &std::path::Path, rx: &common::Receiver) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/people.csv"),
        "id,email\n1,a@x.com\n2,b@x.com\n",
    )
    .unwrap();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  sf:
    plugin: salesforce
    config:
      login_url: "http://127.0.0.1:1"
      auth: {{ flow: client_credentials, client_id: id, client_secret: secret }}
      objects: [Contact]
    grants: ["http://127.0.0.1:1"]
  hook: {{ plugin: webhook, config: {{ url: "{url}", max_retries: 0 }}, grants: ["{grant}"] }}
models:
  people: {{ source: files, object: people.csv, primary_key: id }}
syncs:
  a_broken:
    model: people
    destination: sf
    object: Contact
    mode: upsert
    identifier: External_Id__c
    mappings:
      - {{ from: id, to: External_Id__c }}
      - {{ from: email, to: Email }}
  b_good:
    model: people
    destination: hook
    object: people
    mode: upsert
    identifier: id
    mappings:
      - {{ from: id, to: id }}
      - {{ from: email, to: email }}
"#,
        url = rx.url,
        grant = rx.grant()
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

async fn sluice_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sluice(&args)
    })
    .await
    .unwrap()
}

fn args(list: &[&str], dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.extend(["--project".into(), dir.to_str().unwrap().into()]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_runs_every_sync_and_records_a_failure_before_the_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let rx = common::receiver().await;
    two_syncs(dir.path(), &rx);

    let out = sluice_async(args(&["run", "--all"], dir.path())).await;
    assert!(!out.status.success(), "one sync failed: the command fails");
    let text = stdout(&out);
    assert!(text.contains("sync `a_broken`: failed"), "{text}");
    assert!(
        text.contains("error (at discover): sync `a_broken`"),
        "{text}"
    );
    assert!(
        text.contains("sync `b_good`: succeeded"),
        "the next sync still runs: {text}"
    );
    let err = stderr(&out);
    assert!(err.contains("1 of 2 sync run(s) failed: a_broken"), "{err}");
    assert_eq!(rx.rows().len(), 2);

    // The failed attempt is on the record, with its stage.
    let runs = sluice_async(args(&["runs", "--json"], dir.path())).await;
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let broken = runs.iter().find(|r| r["sync"] == "a_broken").unwrap();
    assert_eq!(broken["status"], "failed");
    assert_eq!(broken["stage"], "discover");
    let error = broken["error"].as_str().unwrap();
    assert!(
        error.contains("sync `a_broken`") && error.contains("plugin `sf` failed in `discover`"),
        "{error}"
    );
    let listed = sluice_async(args(&["runs"], dir.path())).await;
    let listed = stdout(&listed);
    assert!(
        listed.contains("a_broken") && listed.contains("at discover: sync `a_broken`"),
        "{listed}"
    );

    // A mapping change: the plan says every row will be re-sent, and why.
    let yaml = std::fs::read_to_string(dir.path().join("sluice.yaml")).unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        yaml.replace("{ from: email, to: email }", "{ from: email, to: mail }"),
    )
    .unwrap();
    let plan = sluice_async(args(&["plan", "b_good"], dir.path())).await;
    let text = stdout(&plan);
    assert!(plan.status.success(), "{text}{}", stderr(&plan));
    assert!(
        text.contains("config changed since the last run: 2 row(s) will be re-sent"),
        "{text}"
    );
}

#[test]
fn history_reads_without_the_secrets_a_run_needs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.yaml"),
        "destinations:\n  hook: { plugin: webhook, config: { url: \"https://h.example.com\", secret: \"${SLUICE_TEST_UNSET_SECRET}\" } }\n",
    )
    .unwrap();
    let project = dir.path().to_str().unwrap();
    let validate = sluice(&["validate", "--project", project]);
    assert!(
        stderr(&validate).contains("SLUICE_TEST_UNSET_SECRET"),
        "a run needs the secret: {}",
        stderr(&validate)
    );
    let runs = sluice(&["runs", "--project", project]);
    assert!(runs.status.success(), "{}", stderr(&runs));
    assert!(stdout(&runs).contains("no runs yet"), "{}", stdout(&runs));
    let json = sluice(&["runs", "--json", "--project", project]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json.stdout).unwrap(),
        serde_json::json!([])
    );
    let unlock = sluice(&["runs", "unlock", "anything", "--project", project]);
    assert!(unlock.status.success(), "{}", stderr(&unlock));
}

/// Issue 10 item 10: the ledger is visible (`sluice rejected`) and
/// `sluice retry` re-sends exactly the rejected rows, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_lists_the_ledger_and_retry_resends_only_those_rows() {
    let dir = tempfile::tempdir().unwrap();
    let rx = common::receiver().await;
    two_syncs(dir.path(), &rx);
    // The receiver refuses the first request: both rows are rejected.
    rx.script.lock().unwrap().push_back((422, None));
    let out = sluice_async(args(&["run", "b_good"], dir.path())).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rx.rows().is_empty());

    let listed = sluice_async(args(&["rejected", "b_good"], dir.path())).await;
    let text = stdout(&listed);
    assert!(
        text.contains("2 rejected row(s)") && text.contains("attempts 1") && text.contains("422"),
        "{text}"
    );
    let json = sluice_async(args(&["rejected", "b_good", "--json"], dir.path())).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["total"], 2, "{json}");
    assert_eq!(json["rows"][0]["attempts"], 1, "{json}");

    // A new row arrives meanwhile: the retry sends only the two rejected.
    std::fs::write(
        dir.path().join("data/people.csv"),
        "id,email\n1,a@x.com\n2,b@x.com\n3,c@x.com\n",
    )
    .unwrap();
    let retry = sluice_async(args(&["retry", "b_good", "--json"], dir.path())).await;
    assert!(retry.status.success(), "{}", stderr(&retry));
    let report: serde_json::Value = serde_json::from_slice(&retry.stdout).unwrap();
    assert_eq!(report["counts"]["ok"], 2, "{report}");
    let mut sent: Vec<String> = rx.rows().iter().map(|r| r["email"].to_string()).collect();
    sent.sort();
    assert_eq!(sent, ["\"a@x.com\"", "\"b@x.com\""]);
    let empty = sluice_async(args(&["rejected", "b_good"], dir.path())).await;
    assert!(
        stdout(&empty).contains("has no rejected rows"),
        "{}",
        stdout(&empty)
    );
    let nothing = sluice_async(args(&["retry", "b_good"], dir.path())).await;
    assert!(stdout(&nothing).contains("no rejected rows to retry"));

    // The next run sends the new row, and only it.
    let run = sluice_async(args(&["run", "b_good", "--json"], dir.path())).await;
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report[0]["counts"]["sent"], 1, "{report}");
    assert_eq!(rx.rows().len(), 3);
}

/// Issue 13 item 4: `--state postgres://...` (or `SLUICE_STATE`) keeps the
/// state in PostgreSQL; `runs` reads it there, and a server that cannot be
/// reached is named without its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_flag_keeps_runs_in_postgres() {
    let db = common::PgDatabase::create("sluice_cli_state");
    let dir = tempfile::tempdir().unwrap();
    let rx = common::receiver().await;
    two_syncs(dir.path(), &rx);

    let mut run = args(&["run", "b_good", "--state"], dir.path());
    run.insert(3, db.url());
    let out = sluice_async(run).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(rx.rows().len(), 2);
    assert!(!dir.path().join(".sluice/state.db").exists());

    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let url = db.url();
    let runs = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["runs", "--json", "--project", &dir_arg])
            .env("SLUICE_STATE", &url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["sync"], "b_good");
    assert_eq!(runs[0]["counts"]["sent"], 2);
    // Without the setting, the (empty) SQLite default is read.
    let local = sluice_async(args(&["runs", "--json"], dir.path())).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&local.stdout).unwrap(),
        serde_json::json!([])
    );

    let unreachable = sluice_async(args(
        &[
            "runs",
            "--state",
            "postgres://sluice:hunter22secret@127.0.0.1:1/state",
        ],
        dir.path(),
    ))
    .await;
    assert!(!unreachable.status.success());
    let err = stderr(&unreachable);
    assert!(
        err.contains("postgres://sluice:***@127.0.0.1:1/state"),
        "{err}"
    );
    assert!(!err.contains("hunter22secret"), "{err}");
}

/// Issue 16: `plan` counts as sent only the rows it would send; rows that
/// fail mapping or transforms are counted apart, deletes too.
#[test]
fn the_plan_counts_as_sent_only_rows_that_would_be_sent() {
    use sluice::sync::plan_summary;
    use sluice_state::RunCounts;
    // 5 rows selected, 2 rejected by a mapping: 3 go out.
    let c = RunCounts {
        planned: 5,
        added: 4,
        changed: 1,
        rejected: 2,
        unchanged: 7,
        ..Default::default()
    };
    assert_eq!(
        plan_summary(&c),
        "would send 3 row(s) (5 selected, 2 failing mapping or transforms): \
         4 added, 1 changed; 0 to delete; 7 unchanged; 0 invalid"
    );
    let c = RunCounts {
        planned: 3,
        added: 1,
        removed: 2,
        ..Default::default()
    };
    assert_eq!(
        plan_summary(&c),
        "would send 1 row(s): 1 added, 0 changed; 2 to delete; 0 unchanged; 0 invalid"
    );
}

#[test]
fn emulator_schema_files_declare_objects_and_mistakes_name_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "objects:\n  Customer__c:\n    fields:\n      LTV__c: { type: money }\n",
    )
    .unwrap();
    let out = sluice(&[
        "emulator",
        "salesforce",
        "--port",
        "0",
        "--schema",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("objects.Customer__c.fields.LTV__c"), "{err}");
    assert!(err.contains("unknown variant `money`"), "{err}");

    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"objects": {"Customer__c": {"fields": {"External_Id__c": {"type": "string", "external_id": true}}}}}"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "emulator",
            "salesforce",
            "--port",
            "0",
            "--latency",
            "10ms",
            "--daily-limit",
            "5",
        ])
        .args(["--schema", good.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("press Ctrl-C") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        banner.contains("objects: Account, Contact, Customer, Customer__c"),
        "{banner}"
    );
    assert!(banner.contains("username=user@sluice.emulator"), "{banner}");
}

/// Runs `sluice` on a pseudo-terminal (util-linux `script`), as a user at a
/// shell would: stderr is a terminal, so the progress bar is drawn. Returns
/// everything the terminal showed.
fn sluice_on_a_terminal(args: &[String]) -> (bool, String) {
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_sluice").to_string())
        .chain(args.iter().cloned())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    // A pty made without a terminal around it is 0 columns wide; give it a
    // real width so the bar is not truncated to nothing.
    let command = format!("stty cols 200 rows 40; exec {}", quoted.join(" "));
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("SLUICE_CACHE_DIR", common::shared_cache_dir())
        .output()
        .unwrap();
    (out.status.success(), stdout(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_shows_rows_per_second_then_percent_and_eta_once_the_total_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let rx = common::receiver().await;
    two_syncs(dir.path(), &rx);
    let mut csv = String::from("id,email\n");
    for i in 0..2_000 {
        csv.push_str(&format!("{i},p{i}@x.com\n"));
    }
    std::fs::write(dir.path().join("data/people.csv"), csv).unwrap();
    // Slow enough that the bar is redrawn while rows go out.
    *rx.delay.lock().unwrap() = std::time::Duration::from_millis(250);

    let first = args(&["run", "b_good"], dir.path());
    let (ok, screen) = tokio::task::spawn_blocking(move || sluice_on_a_terminal(&first))
        .await
        .unwrap();
    assert!(ok, "{screen}");
    // No earlier run: rows and rows per second, no guess at a total.
    assert!(screen.contains("b_good"), "{screen}");
    assert!(screen.contains(" rows, "), "{screen}");
    assert!(screen.contains("/s"), "{screen}");
    assert!(!screen.contains("ETA"), "{screen}");

    // The last run scanned 2,000 rows: now a percentage and an ETA.
    let second = args(&["run", "b_good", "--full-resync"], dir.path());
    let (ok, screen) = tokio::task::spawn_blocking(move || sluice_on_a_terminal(&second))
        .await
        .unwrap();
    assert!(ok, "{screen}");
    assert!(screen.contains("ETA"), "{screen}");
    assert!(screen.contains('%'), "{screen}");
    assert!(screen.contains("/s"), "{screen}");

    // Not a terminal (a script, CI): no bar, no control sequences.
    let out = sluice_async(args(&["run", "b_good", "--full-resync"], dir.path())).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("ETA"), "{}", stderr(&out));
    assert!(!stderr(&out).contains('\u{1b}'), "{}", stderr(&out));
}

#[test]
fn the_bigquery_source_is_built_in_and_its_emulator_starts() {
    let list = stdout(&sluice(&["plugin", "list"]));
    assert!(list.contains("bigquery"), "{list}");
    // A source that also exports estimate-api says so.
    let out = sluice(&["plugin", "inspect", "bigquery", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["world"], "estimable-source");
    assert_eq!(
        v["capabilities"],
        serde_json::json!(["${config.api_base}", "${config.token_uri}"])
    );

    let out = sluice(&[
        "emulator",
        "bigquery",
        "--port",
        "0",
        "--service-account",
        "no-equals-sign",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--service-account \"no-equals-sign\""),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sa.pub");
    std::fs::write(
        &key,
        include_str!("../../emulators/tests/fixtures/snowflake_test_key.pub"),
    )
    .unwrap();
    let database = format!("sluice_bq_cli_{}", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["emulator", "bigquery", "--port", "0", "--postgres"])
        .arg(format!("postgres://postgres@127.0.0.1:5432/{database}"))
        .arg("--service-account")
        .arg(format!("sa@p.iam.gserviceaccount.com={}", key.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("press Ctrl-C") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    common::psql(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ));
    assert!(
        banner.contains("BigQuery REST v2 emulator at http://127.0.0.1:"),
        "{banner}"
    );
    assert!(
        banner.contains("service accounts: sa@p.iam.gserviceaccount.com"),
        "{banner}"
    );
    assert!(banner.contains("/token"), "{banner}");
}

#[test]
fn databricks_is_listed_and_its_emulator_banner_says_what_to_grant() {
    let list = sluice(&["plugin", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(
        stdout(&list).lines().any(|l| l.contains("databricks")),
        "{}",
        stdout(&list)
    );

    let database = format!("sluice_dbx_cli_{}", std::process::id());
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["emulator", "databricks", "--port", "0", "--postgres", &url])
        .args(["--chunk-rows", "50"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut banner = String::new();
    for line in lines {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("press Ctrl-C") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    common::psql(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ));
    for expected in [
        "Databricks SQL Statement Execution API emulator at http://127.0.0.1:",
        "personal access token: dapi-sluice-emulator",
        "OAuth M2M client (id / secret): sluice-service-principal / ",
        "warehouse ids: sluice0warehouse",
        "EXTERNAL_LINKS host (grant it too): http://127.0.0.1:",
        "executing on: postgres://postgres@127.0.0.1:5432/sluice_dbx_cli_",
    ] {
        assert!(
            banner.contains(expected),
            "{expected:?} missing from:\n{banner}"
        );
    }
}

#[test]
fn plugin_list_shows_every_source() {
    // Issue 11: every source a project can name is built in and listed.
    let out = sluice(&["plugin", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&out);
    let names: Vec<&str> = list.lines().map(str::trim).collect();
    for source in [
        "files",
        "postgres",
        "mysql",
        "snowflake",
        "bigquery",
        "databricks",
    ] {
        assert!(names.contains(&source), "`{source}` missing from {list}");
        let spec = sluice(&["plugin", "inspect", source, "--json"]);
        assert!(spec.status.success(), "{source}: {}", stderr(&spec));
        let spec: serde_json::Value = serde_json::from_slice(&spec.stdout).unwrap();
        assert!(
            spec["world"]
                .as_str()
                .is_some_and(|world| world.ends_with("source")),
            "{source} is a source: {spec}"
        );
    }
}
