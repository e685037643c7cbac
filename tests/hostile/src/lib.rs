//! A destination plugin that attacks its sandbox. Its config names the
//! attack; `write` carries it out. Whatever it manages to read it sends back
//! in its row results, so a test can prove nothing leaked.

use serde::Deserialize;
use sluice_sdk::http::{sleep, Request};
use sluice_sdk::prelude::*;
use std::time::Duration;

/// An hour: longer than any test waits.
const AN_HOUR: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct Config {
    attack: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    path: String,
    /// A secret from the operator's environment, for `echo-secret`.
    #[serde(default)]
    secret: String,
    /// Discover the catch-all object whatever the attack, so the attack
    /// runs inside a sync (the server's resource-ceiling tests).
    #[serde(default)]
    in_sync: bool,
}

pub struct Hostile;

pub struct Attack(Config);

impl Destination for Hostile {
    type Writer = Attack;

    fn spec() -> PluginSpec {
        // `spec` has no config: a granted directory holding `slow-spec`
        // makes it hang instead.
        if std::fs::metadata("/hostile/slow-spec").is_ok() {
            sleep(AN_HOUR);
        }
        let spec = PluginSpec::new("hostile", "0.1.0", "Attacks its sandbox (tests only)")
            .capability("dir:${config.dir}");
        // ... and one holding `huge-spec` returns a 100 MB config schema.
        if std::fs::metadata("/hostile/huge-spec").is_ok() {
            let mut schema = String::with_capacity(100 << 20);
            schema.push_str("{\"description\":\"");
            while schema.len() < (100 << 20) - 2 {
                schema.push_str("aaaaaaaaaaaaaaaa");
            }
            schema.push_str("\"}");
            let mut spec = spec;
            spec.config_schema = schema;
            return spec;
        }
        spec
    }

    fn check(_config: &str) -> Result<(), PluginError> {
        Ok(())
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let config: Config = parse_config(config)?;
        if config.attack != "echo-secret" && !config.in_sync {
            return Ok(Vec::new());
        }
        // Runs in a sync: one object that takes any field.
        Ok(vec![ObjectInfo {
            name: "events".into(),
            fields: vec![Field {
                name: "*".into(),
                type_: FieldType::Any,
                nullable: true,
                required: false,
                identifier: true,
            }],
            modes: vec![WriteMode::Upsert],
        }])
    }

    fn open(config: &str, _target: WriteTarget) -> Result<Attack, PluginError> {
        Ok(Attack(parse_config(config)?))
    }
}

fn leak(rows: usize, what: String) -> Vec<RowResult> {
    vec![RowResult::Rejected(what); rows]
}

impl Writer for Attack {
    fn write(&mut self, batch: Batch) -> Result<Vec<RowResult>, PluginError> {
        let rows = batch.len();
        match self.0.attack.as_str() {
            "infinite-loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "http" => {
                let response = Request::get(&self.0.url).send()?;
                Ok(leak(
                    rows,
                    format!("fetched {} bytes: {}", response.body.len(), response.text()),
                ))
            }
            "tcp" => {
                use std::io::Read;
                let mut stream = std::net::TcpStream::connect("127.0.0.1:5432")
                    .map_err(|e| PluginError::Permanent(format!("connect failed: {e}")))?;
                let mut buf = [0u8; 16];
                let n = stream.read(&mut buf).unwrap_or(0);
                Ok(leak(rows, format!("connected to postgres, read {n} bytes")))
            }
            "read-file" => {
                let text = std::fs::read_to_string("/etc/passwd").map_err(|e| {
                    PluginError::Permanent(format!("reading /etc/passwd failed: {e}"))
                })?;
                Ok(leak(rows, text))
            }
            "read-path" => {
                let text = std::fs::read_to_string(&self.0.path).map_err(|e| {
                    PluginError::Permanent(format!("reading {} failed: {e}", self.0.path))
                })?;
                Ok(leak(rows, text))
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                Ok(leak(rows, format!("env: [{}]", vars.join(", "))))
            }
            "stdout-flood" => {
                let line = "flood ".repeat(100);
                for i in 0..20_000 {
                    println!("{i} {line}");
                }
                Ok(vec![RowResult::Accepted; rows])
            }
            "sleep-an-hour" => {
                sleep(AN_HOUR);
                Ok(vec![RowResult::Accepted; rows])
            }
            "sleep-a-second" => {
                sleep(Duration::from_secs(1));
                Ok(vec![RowResult::Accepted; rows])
            }
            "http-patient" => {
                // Asks to wait a day for the answer; the host clamps it.
                let response = Request::get(&self.0.url)
                    .timeout(Duration::from_secs(86_400))
                    .send()?;
                Ok(leak(rows, format!("fetched {} bytes", response.body.len())))
            }
            // The attack happens when the writer is dropped.
            "slow-drop" => Ok(vec![RowResult::Accepted; rows]),
            "log-injection" => {
                use sluice_sdk::log::{log, Level};
                // A forged log line and terminal escapes (clear screen, set
                // the window title, a hyperlink), through each channel.
                log(
                    Level::Error,
                    "ok\n2026-01-01T00:00:00Z ERROR sluice: forged\u{1b}[2J\u{1b}]0;pwned\u{7}",
                );
                println!("stdout \u{1b}[31mred\u{1b}[0m\r\u{1b}]8;;http://evil.test\u{7}link");
                eprintln!("stderr \u{9b}2J\u{202e}desrever");
                for i in 0..10_000 {
                    log(Level::Info, &format!("{i:05} {}", "log flood ".repeat(9)));
                }
                Ok(vec![RowResult::Accepted; rows])
            }
            "echo-secret" => {
                // Everything a plugin can say, carrying its config's secret.
                let secret = &self.0.secret;
                sluice_sdk::log::log(sluice_sdk::log::Level::Warn, &format!("key {secret}"));
                println!("stdout key {secret}");
                eprintln!("stderr key {secret}");
                let mut results = leak(rows, format!("the API refused key {secret}"));
                if let Some(first) = results.first_mut() {
                    *first = RowResult::Accepted;
                }
                Ok(results)
            }
            "socket-flood" => socket_flood(),
            "big-upload" => big_upload(&self.0.url),
            "request-flood" => request_flood(&self.0.url),
            "resolve" => {
                let name = &self.0.path;
                let found = resolve(name)
                    .map_err(|e| PluginError::Permanent(format!("looking up {name}: {e:?}")))?;
                Ok(leak(rows, format!("{name} resolved to {found:?}")))
            }
            "long-rejections" => {
                // 12 MB per rejection: state.db would grow by that per row.
                Ok(leak(rows, "r".repeat(12 << 20)))
            }
            "long-error" => Err(PluginError::Permanent("e".repeat(12 << 20))),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "wrong-results" => Ok(vec![RowResult::Accepted; rows + 1]),
            other => Err(PluginError::Config(format!("unknown attack `{other}`"))),
        }
    }
}

/// Create 20,000 TCP sockets and hold them all, without connecting: each
/// would be a host file descriptor.
fn socket_flood() -> Result<Vec<RowResult>, PluginError> {
    use wasip2::sockets::network::IpAddressFamily;
    use wasip2::sockets::tcp_create_socket::create_tcp_socket;
    let mut held = Vec::new();
    for _ in 0..20_000 {
        match create_tcp_socket(IpAddressFamily::Ipv4) {
            Ok(socket) => held.push(socket),
            Err(e) => {
                return Err(PluginError::Permanent(format!(
                    "created {} sockets, then: {e:?}",
                    held.len()
                )))
            }
        }
    }
    Err(PluginError::Permanent(format!(
        "created and held all {} sockets",
        held.len()
    )))
}

/// Start 30,000 GET requests to `url` (`http://host:port`) without reading
/// any answer, then report how the last one ended.
fn request_flood(url: &str) -> Result<Vec<RowResult>, PluginError> {
    use wasip2::http::outgoing_handler::handle;
    use wasip2::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut pending = Vec::new();
    for _ in 0..30_000 {
        let request = OutgoingRequest::new(Fields::new());
        let _ = request.set_scheme(Some(&Scheme::Http));
        let _ = request.set_authority(Some(authority));
        let _ = request.set_path_with_query(Some("/"));
        let body = request
            .body()
            .map_err(|_| PluginError::Permanent("no request body".into()))?;
        let future = handle(request, None)
            .map_err(|e| PluginError::Permanent(format!("handle refused: {e:?}")))?;
        let _ = OutgoingBody::finish(body, None);
        pending.push(future);
    }
    let last = pending.last().expect("30,000 requests");
    last.subscribe().block();
    let outcome = match last.get() {
        Some(Ok(Ok(response))) => format!("answered {}", response.status()),
        Some(Ok(Err(code))) => format!("{code:?}"),
        other => format!("{other:?}"),
    };
    Err(PluginError::Permanent(format!(
        "started {} requests; the last: {outcome}",
        pending.len()
    )))
}

/// POST a streamed body of 1.5 GiB to `url` (`http://host:port`), 64 KiB
/// at a time, then report how the request ended.
fn big_upload(url: &str) -> Result<Vec<RowResult>, PluginError> {
    use wasip2::http::outgoing_handler::handle;
    use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Post);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some("/upload"));
    let body = request
        .body()
        .map_err(|_| PluginError::Permanent("no request body".into()))?;
    let future = handle(request, None)
        .map_err(|e| PluginError::Permanent(format!("handle refused: {e:?}")))?;
    let chunk = vec![b'u'; 64 << 10];
    let mut sent: u64 = 0;
    {
        let stream = body
            .write()
            .map_err(|_| PluginError::Permanent("no body stream".into()))?;
        'upload: while sent < 1536 << 20 {
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let ready = match stream.check_write() {
                    Ok(0) => {
                        stream.subscribe().block();
                        continue;
                    }
                    Ok(n) => n as usize,
                    Err(_) => break 'upload,
                };
                let n = ready.min(rest.len());
                if stream.write(&rest[..n]).is_err() {
                    break 'upload;
                }
                rest = &rest[n..];
                sent += n as u64;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
    future.subscribe().block();
    let outcome = match future.get() {
        Some(Ok(Ok(response))) => format!("answered {}", response.status()),
        Some(Ok(Err(code))) => format!("{code:?}"),
        other => format!("{other:?}"),
    };
    Err(PluginError::Permanent(format!(
        "streamed {} MiB; the request: {outcome}",
        sent >> 20
    )))
}

/// Look a name up through `wasi:sockets`, as `std::net` does.
fn resolve(name: &str) -> Result<Vec<String>, wasip2::sockets::network::ErrorCode> {
    use wasip2::sockets::instance_network::instance_network;
    use wasip2::sockets::ip_name_lookup::resolve_addresses;
    use wasip2::sockets::network::ErrorCode;
    let stream = resolve_addresses(&instance_network(), name)?;
    let mut found = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(address)) => found.push(format!("{address:?}")),
            Ok(None) => return Ok(found),
            Err(ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        if self.0.attack == "slow-drop" {
            sleep(AN_HOUR);
        }
    }
}

sluice_sdk::export_destination!(Hostile);
