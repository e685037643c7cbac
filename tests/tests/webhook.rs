//! What the built-in webhook promises its receivers (README, "The webhook
//! destination"), seen by a receiver that reads requests the way Python's
//! `http.server` handlers usually do: the body is exactly `Content-Length`
//! bytes, and no `Content-Length` means no body.

use sluice_tests as common;

use common::*;
use sluice_engine::run::{RunOptions, RunReport};
use sluice_state::RunStatus;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One request as the plain receiver read it.
#[derive(Debug, Clone)]
struct Plain {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    status: u16,
}

impl Plain {
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.headers))
    }

    /// (email, idempotency key) of every row.
    fn keys(&self) -> Vec<(String, String)> {
        let json = self.json();
        let rows = json["data"]["rows"].as_array().unwrap();
        let keys = json["data"]["idempotency_keys"].as_array().unwrap();
        assert_eq!(rows.len(), keys.len(), "one key per row");
        rows.iter()
            .zip(keys)
            .map(|(r, k)| {
                (
                    r["Email"].as_str().unwrap().to_string(),
                    k.as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// A receiver without chunked decoding: it answers each request with the
/// next scripted status (200 when none is left; `Retry-After: 0` with any
/// other) and closes the connection.
struct PlainReceiver {
    url: String,
    requests: Arc<Mutex<Vec<Plain>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl PlainReceiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let (r, s) = (requests.clone(), statuses.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (r, s) = (r.clone(), s.clone());
                tokio::spawn(async move {
                    // A request cut short is simply not recorded.
                    let _ = serve_one(socket, r, s).await;
                });
            }
        });
        PlainReceiver {
            url,
            requests,
            statuses,
        }
    }

    fn grant(&self) -> String {
        sluice_runtime::sandbox::policy::Grants::pattern_for_url(&self.url).unwrap()
    }

    fn take(&self) -> Vec<Plain> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

async fn serve_one(
    socket: tokio::net::TcpStream,
    requests: Arc<Mutex<Vec<Plain>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    // `self.rfile.read(int(self.headers.get("Content-Length", 0)))`
    let length: usize = headers
        .get("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        // Not decoded (the handler saw no body), only drained, so closing
        // the connection cannot reset it before the client reads the answer.
        let mut rest = Vec::new();
        while !rest.ends_with(b"0\r\n\r\n") {
            if reader.read_until(b'\n', &mut rest).await? == 0 {
                break;
            }
        }
    }
    let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
    requests.lock().unwrap().push(Plain {
        headers,
        body,
        status,
    });
    let retry_after = if status == 200 {
        ""
    } else {
        "Retry-After: 0\r\n"
    };
    let answer = format!(
        "HTTP/1.1 {status} Scripted\r\n{retry_after}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    reader.get_mut().write_all(answer.as_bytes()).await?;
    reader.get_mut().shutdown().await
}

fn project(dir: &Path, rx: &PlainReceiver, hook_config: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let yaml = format!(
        r#"
sources:
  files: {{ plugin: files, config: {{ path: /data }}, grants: ["dir:data:/data"] }}
destinations:
  hook:
    plugin: webhook
    config: {{ url: "{url}"{hook_config} }}
    grants: ["{grant}"]
models:
  customers: {{ source: files, object: customers.csv, primary_key: email }}
syncs:
  customers:
    model: customers
    destination: hook
    object: contacts
    mode: upsert
    identifier: Email
    batch_size: 2
    mappings:
      - {{ from: email, to: Email }}
      - {{ from: plan, to: Plan }}
"#,
        url = rx.url,
        grant = rx.grant()
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

fn csv(dir: &Path, rows: &[(&str, &str)]) {
    let mut text = String::from("email,plan\n");
    for (e, p) in rows {
        text.push_str(&format!("{e},{p}\n"));
    }
    std::fs::write(dir.join("data/customers.csv"), text).unwrap();
}

async fn run(dir: &Path, full_resync: bool) -> RunReport {
    let loaded = Loaded::open(dir);
    let engine = loaded.engine();
    let options = RunOptions {
        full_resync,
        retry: sluice_engine::retry::RetryPolicy {
            base_delay: Duration::from_millis(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let report = engine.run("customers", &options).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    report
}

/// Every request carried its whole body with `Content-Length`.
fn assert_plain(requests: &[Plain]) {
    for r in requests {
        assert_eq!(
            r.headers.get("content-length").map(String::as_str),
            Some(r.body.len().to_string().as_str()),
            "{:?}",
            r.headers
        );
        assert!(
            !r.headers.contains_key("transfer-encoding"),
            "{:?}",
            r.headers
        );
        assert!(!r.body.is_empty());
    }
}

/// Keys of the rows the receiver accepted, by email.
fn accepted_keys(requests: &[Plain]) -> BTreeMap<String, String> {
    requests
        .iter()
        .filter(|r| r.status == 200)
        .flat_map(Plain::keys)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_keep_the_message_id_runs_never_reuse_one_and_row_keys_follow_content() {
    let dir = tempfile::tempdir().unwrap();
    let rx = PlainReceiver::start().await;
    // No retries inside the call: the 500 goes back to the host, which
    // sends the same rows again in a new call.
    project(dir.path(), &rx, ", max_retries: 0");
    let rows = [("a@x.com", "1"), ("b@x.com", "2"), ("c@x.com", "3")];
    csv(dir.path(), &rows);
    rx.statuses.lock().unwrap().push_back(500);

    let first = run(dir.path(), false).await;
    assert_eq!((first.counts.sent, first.counts.ok), (3, 3));
    let one = rx.take();
    assert_plain(&one);
    let statuses: Vec<u16> = one.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 200, 200]);
    assert_eq!(one[0].id(), one[1].id(), "a retry is the same message");
    // The same event; only its timestamp says when this attempt was sent.
    assert_eq!(one[0].json()["data"], one[1].json()["data"]);
    assert_ne!(one[1].id(), one[2].id(), "other rows, another message");
    let keys = accepted_keys(&one);
    assert_eq!(keys.len(), 3);

    // A full resync sends the same rows as new messages, under the same
    // row keys.
    let resync = run(dir.path(), true).await;
    assert_eq!(resync.counts.sent, 3);
    let two = rx.take();
    assert_plain(&two);
    for r in &two {
        assert!(one.iter().all(|o| o.id() != r.id()), "{} reused", r.id());
    }
    assert_eq!(accepted_keys(&two), keys);

    // A change gets a new key; going back to the earlier value gets the
    // earlier key back, so a receiver comparing with the last key it
    // applied for that row applies both.
    csv(dir.path(), &[("a@x.com", "9"), rows[1], rows[2]]);
    run(dir.path(), false).await;
    let changed = accepted_keys(&rx.take());
    assert_ne!(changed["a@x.com"], keys["a@x.com"]);
    csv(dir.path(), &rows);
    run(dir.path(), false).await;
    let reverted = rx.take();
    assert_eq!(accepted_keys(&reverted)["a@x.com"], keys["a@x.com"]);
    assert!(one.iter().chain(&two).all(|o| o.id() != reverted[0].id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_inside_the_call_keeps_the_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let rx = PlainReceiver::start().await;
    project(dir.path(), &rx, ", max_retries: 2");
    csv(dir.path(), &[("a@x.com", "1")]);
    rx.statuses.lock().unwrap().extend([503, 500]);
    let report = run(dir.path(), false).await;
    // Retried inside one call: the host saw one write.
    assert_eq!((report.counts.write_calls, report.counts.retried), (1, 0));
    let got = rx.take();
    assert_plain(&got);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.id() == got[0].id()), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let rx = PlainReceiver::start().await;
    project(dir.path(), &rx, ", chunked_above_bytes: 0");
    csv(dir.path(), &[("a@x.com", "1")]);
    run(dir.path(), false).await;
    let got = rx.take();
    assert_eq!(got.len(), 1);
    // Chunked, as asked: no length, and a receiver that reads only
    // Content-Length bodies sees none, which is why it is not the default.
    assert_eq!(
        got[0].headers.get("transfer-encoding").map(String::as_str),
        Some("chunked")
    );
    assert!(!got[0].headers.contains_key("content-length"));
    assert!(got[0].body.is_empty());
}
