//! TLS through the host (`wasi:tls`, verification in
//! `crates/runtime/src/sandbox/tls.rs`) for the postgres and mysql plugins
//! and their destinations, against real servers with TLS that each test
//! starts (`tls_servers`): every sslmode / ssl_mode, SCRAM-SHA-256, MD5,
//! native and ed25519 logins inside TLS, caching_sha2 full auth inside TLS
//! (a scripted MySQL 8 server: MariaDB has no caching_sha2), a sync
//! through each source and destination over verified TLS, and the grant
//! check on the TCP socket under the TLS connection.

use sluice_tests as common;

use common::tls_servers::{TlsMariadb, TlsPostgres};
use common::*;
use sluice_engine::run::RunOptions;
use sluice_registry::builtin as plugins;
use sluice_runtime::plugin::Plugin;
use sluice_state::RunStatus;
use std::path::Path;

/// `check` of a built-in plugin in a sandbox with `grants`: Ok, or the
/// failure as the user reads it.
async fn check(
    name: &str,
    bytes: &[u8],
    grants: &[String],
    config: serde_json::Value,
) -> Result<(), String> {
    let test = runtime();
    let plugin = Plugin::from_bytes(&test.runtime, name, bytes).unwrap();
    let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
    let mut instance = plugin.instantiate(&sandbox(&grants)).await.unwrap();
    instance
        .check(&config.to_string())
        .await
        .map_err(|e| e.to_string())
}

fn assert_fails_with(result: Result<(), String>, expected: &[&str]) {
    let error = result.expect_err("the connection must fail");
    for part in expected {
        assert!(error.contains(part), "expected `{part}` in: {error}");
    }
}

/// The network grants for a server on `port` by name and by address, and
/// the CA folder's.
fn grants(port: u16, ca_grant: &str) -> Vec<String> {
    vec![
        format!("postgres://localhost:{port}"),
        format!("postgres://127.0.0.1:{port}"),
        format!("mysql://localhost:{port}"),
        format!("mysql://127.0.0.1:{port}"),
        ca_grant.to_string(),
    ]
}

fn pg_config(
    pg: &TlsPostgres,
    host: &str,
    user: &str,
    sslmode: &str,
    ca: bool,
) -> serde_json::Value {
    let password = match user {
        "md5_user" => TlsPostgres::MD5_PASSWORD,
        _ => TlsPostgres::SCRAM_PASSWORD,
    };
    let mut config = serde_json::json!({
        "host": host, "port": pg.port, "user": user, "password": password,
        "database": "test", "sslmode": sslmode,
    });
    if ca {
        config["sslrootcert"] = pg.pki.ca().into();
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sslmodes_against_a_tls_only_server() {
    let pg = TlsPostgres::start();
    let granted = grants(pg.port, &pg.pki.grant());
    let pg_check = |config| check("postgres", plugins::POSTGRES, &granted, config);

    // verify-full with the private CA, SCRAM-SHA-256 and MD5 logins.
    pg_check(pg_config(
        &pg,
        "localhost",
        "scram_user",
        "verify-full",
        true,
    ))
    .await
    .unwrap();
    pg_check(pg_config(&pg, "localhost", "md5_user", "verify-full", true))
        .await
        .unwrap();
    // The certificate names `localhost`, not the address.
    assert_fails_with(
        pg_check(pg_config(
            &pg,
            "127.0.0.1",
            "scram_user",
            "verify-full",
            true,
        ))
        .await,
        &[
            "sslmode verify-full",
            "not valid for name",
            "127.0.0.1",
            "localhost",
        ],
    );
    // verify-ca checks the chain only; require and prefer nothing.
    pg_check(pg_config(&pg, "127.0.0.1", "scram_user", "verify-ca", true))
        .await
        .unwrap();
    pg_check(pg_config(&pg, "127.0.0.1", "scram_user", "require", false))
        .await
        .unwrap();
    pg_check(pg_config(&pg, "127.0.0.1", "md5_user", "prefer", false))
        .await
        .unwrap();
    // The public roots do not know the private CA.
    assert_fails_with(
        pg_check(pg_config(
            &pg,
            "localhost",
            "scram_user",
            "verify-full",
            false,
        ))
        .await,
        &["TLS handshake failed", "invalid peer certificate"],
    );
    assert_fails_with(
        pg_check(pg_config(
            &pg,
            "localhost",
            "scram_user",
            "verify-ca",
            false,
        ))
        .await,
        &["sslmode verify-ca", "invalid peer certificate"],
    );
    // Plaintext reaches the server, which has only hostssl lines.
    assert_fails_with(
        pg_check(pg_config(&pg, "127.0.0.1", "scram_user", "disable", false)).await,
        &["no pg_hba.conf entry", "no encryption"],
    );
    let mut wrong = pg_config(&pg, "localhost", "scram_user", "verify-full", true);
    wrong["password"] = "not-it".into();
    assert_fails_with(pg_check(wrong).await, &["password authentication failed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_keeps_the_grant_check_on_the_socket_and_the_ca_file() {
    let pg = TlsPostgres::start();
    let config = pg_config(&pg, "localhost", "scram_user", "verify-full", true);
    // The CA folder is not granted (another one is): the host does not
    // read the file.
    let elsewhere = tempfile::tempdir().unwrap();
    let no_ca_grant = grants(pg.port, &format!("dir:{}:ro", elsewhere.path().display()));
    assert_fails_with(
        check("postgres", plugins::POSTGRES, &no_ca_grant, config.clone()).await,
        &[
            "`sslrootcert`",
            "is not inside a directory granted to this plugin",
        ],
    );
    // The server's port is not granted: the TCP socket under TLS is refused.
    let other_port = vec!["postgres://localhost:1".to_string(), pg.pki.grant()];
    assert_fails_with(
        check("postgres", plugins::POSTGRES, &other_port, config).await,
        &[
            "network (tcp) denied",
            &format!("tcp 127.0.0.1:{}", pg.port),
            "no grant names it",
        ],
    );
}

/// `sluice.yaml` of a sync from `source` (a `warehouse` source reading
/// `src_customers`) into `destination` (an `app_db` destination writing
/// `object`), both in YAML flow style.
fn sync_project(dir: &Path, source: &str, destination: &str, object: &str) {
    let yaml = format!(
        r#"
sources:
  warehouse: {source}
destinations:
  app_db: {destination}
models:
  customers:
    source: warehouse
    query: select id, email, ltv from src_customers order by id
    primary_key: id
syncs:
  customers:
    model: customers
    destination: app_db
    object: {object}
    mode: upsert
    identifier: id
    mappings:
      - {{ from: id, to: id, type: integer }}
      - {{ from: email, to: email }}
      - {{ from: ltv, to: ltv, type: number }}
"#
    );
    std::fs::write(dir.join("sluice.yaml"), yaml).unwrap();
}

/// A plugin entry in flow style with `config` and the grants of `grants`.
fn entry(plugin: &str, config: &serde_json::Value, grants: &[String]) -> String {
    format!(
        "{{ plugin: {plugin}, config: {config}, grants: {} }}",
        serde_json::to_string(grants).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_source_and_destination_sync_over_verified_tls() {
    let pg = TlsPostgres::start();
    for sql in [
        "CREATE TABLE src_customers (id int PRIMARY KEY, email text, ltv numeric(10,2))",
        "INSERT INTO src_customers VALUES (1, 'a@x.io', 1.5), (2, 'b@x.io', 20), (3, 'ü@x.io', 300.25)",
        "CREATE TABLE dst_customers (id int PRIMARY KEY, email text, ltv numeric(10,2))",
        "GRANT SELECT ON src_customers TO scram_user",
        "GRANT SELECT, INSERT, UPDATE ON dst_customers TO md5_user",
    ] {
        pg.psql(sql).unwrap();
    }
    let granted = grants(pg.port, &pg.pki.grant());
    let destination = entry(
        "postgres-destination",
        &pg_config(&pg, "localhost", "md5_user", "verify-full", true),
        &granted,
    );
    let dir = tempfile::tempdir().unwrap();

    // A name the certificate does not hold: the run fails naming the source.
    let mismatch = entry(
        "postgres",
        &pg_config(&pg, "127.0.0.1", "scram_user", "verify-full", true),
        &granted,
    );
    sync_project(dir.path(), &mismatch, &destination, "public.dst_customers");
    let report = run_sync(dir.path(), "customers", &RunOptions::default()).await;
    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    let error = report.error.unwrap();
    for part in ["plugin `warehouse` failed", "not valid for name"] {
        assert!(error.contains(part), "expected `{part}` in: {error}");
    }
    assert_eq!(pg.psql("SELECT count(*) FROM dst_customers").unwrap(), "0");

    let source = entry(
        "postgres",
        &pg_config(&pg, "localhost", "scram_user", "verify-full", true),
        &granted,
    );
    sync_project(dir.path(), &source, &destination, "public.dst_customers");
    let report = run_sync(dir.path(), "customers", &RunOptions::default()).await;
    assert_eq!(
        (report.status, report.counts.ok),
        (RunStatus::Succeeded, 3),
        "{:?}",
        report.error
    );
    assert_eq!(
        pg.psql("SELECT string_agg(id || ':' || email || ':' || ltv, ',' ORDER BY id) FROM dst_customers")
            .unwrap(),
        "1:a@x.io:1.50,2:b@x.io:20.00,3:ü@x.io:300.25"
    );
}

fn my_config(
    db: &TlsMariadb,
    host: &str,
    user: &str,
    ssl_mode: &str,
    ca: bool,
) -> serde_json::Value {
    let mut config = serde_json::json!({
        "host": host, "port": db.port, "user": user, "password": TlsMariadb::PASSWORD,
        "database": "test", "ssl_mode": ssl_mode,
    });
    if ca {
        config["ssl_ca"] = db.pki.ca().into();
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_ssl_modes_against_a_tls_only_server() {
    let db = TlsMariadb::start();
    let granted = grants(db.port, &db.pki.grant());
    let my_check = |config| check("mysql", plugins::MYSQL, &granted, config);

    my_check(my_config(
        &db,
        "localhost",
        "native_user",
        "VERIFY_IDENTITY",
        true,
    ))
    .await
    .unwrap();
    my_check(my_config(
        &db,
        "localhost",
        "ed_user",
        "VERIFY_IDENTITY",
        true,
    ))
    .await
    .unwrap();
    assert_fails_with(
        my_check(my_config(
            &db,
            "127.0.0.1",
            "native_user",
            "VERIFY_IDENTITY",
            true,
        ))
        .await,
        &[
            "ssl_mode VERIFY_IDENTITY",
            "not valid for name",
            "127.0.0.1",
        ],
    );
    my_check(my_config(
        &db,
        "127.0.0.1",
        "native_user",
        "VERIFY_CA",
        true,
    ))
    .await
    .unwrap();
    my_check(my_config(
        &db,
        "127.0.0.1",
        "native_user",
        "REQUIRED",
        false,
    ))
    .await
    .unwrap();
    my_check(my_config(&db, "127.0.0.1", "ed_user", "PREFERRED", false))
        .await
        .unwrap();
    assert_fails_with(
        my_check(my_config(
            &db,
            "localhost",
            "native_user",
            "VERIFY_CA",
            false,
        ))
        .await,
        &["ssl_mode VERIFY_CA", "invalid peer certificate"],
    );
    // Plaintext reaches the server, which requires secure transport and,
    // as MariaDB does, refuses the login.
    assert_fails_with(
        my_check(my_config(
            &db,
            "127.0.0.1",
            "native_user",
            "DISABLED",
            false,
        ))
        .await,
        &["ERROR 1045 (28000): Access denied for user 'native_user'@'127.0.0.1'"],
    );
    let mut wrong = my_config(&db, "localhost", "native_user", "VERIFY_IDENTITY", true);
    wrong["password"] = "not-it".into();
    assert_fails_with(
        my_check(wrong).await,
        &["Access denied for user 'native_user'"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_source_and_destination_sync_over_verified_tls() {
    let db = TlsMariadb::start();
    for sql in [
        "CREATE TABLE src_customers (id INT PRIMARY KEY, email VARCHAR(100), ltv DECIMAL(10,2))",
        "INSERT INTO src_customers VALUES (1, 'a@x.io', 1.5), (2, 'b@x.io', 20), (3, 'ü@x.io', 300.25)",
        "CREATE TABLE dst_customers (id INT PRIMARY KEY, email VARCHAR(100), ltv DECIMAL(10,2))",
    ] {
        db.sql(sql).unwrap();
    }
    let granted = grants(db.port, &db.pki.grant());
    let dir = tempfile::tempdir().unwrap();
    sync_project(
        dir.path(),
        &entry(
            "mysql",
            &my_config(&db, "localhost", "ed_user", "VERIFY_IDENTITY", true),
            &granted,
        ),
        &entry(
            "mysql-destination",
            &my_config(&db, "localhost", "native_user", "VERIFY_IDENTITY", true),
            &granted,
        ),
        "dst_customers",
    );
    let report = run_sync(dir.path(), "customers", &RunOptions::default()).await;
    assert_eq!(
        (report.status, report.counts.ok),
        (RunStatus::Succeeded, 3),
        "{:?}",
        report.error
    );
    assert_eq!(
        db.sql("SELECT GROUP_CONCAT(id, ':', email, ':', ltv ORDER BY id) FROM dst_customers")
            .unwrap(),
        "1:a@x.io:1.50,2:b@x.io:20.00,3:ü@x.io:300.25"
    );
}

/// A scripted MySQL 8 server for what MariaDB lacks: caching_sha2_password
/// full authentication, which inside TLS sends the password in clear. It
/// greets with CLIENT_SSL and caching_sha2, takes the SSLRequest, accepts
/// TLS with the [`TestPki`](common::tls_servers::TestPki) certificate, asks
/// for full auth (`01 04`), records the password, answers OK, and refuses
/// the session's first statement with a marker error, so the plugin's
/// `check` fails at a point only an authenticated client reaches.
mod scripted_mysql {
    use common::tls_servers::TestPki;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    use super::common;

    const CAPS: u32 = 0x1 // LONG_PASSWORD
        | 0x4 // LONG_FLAG
        | 0x8 // CONNECT_WITH_DB
        | 0x200 // PROTOCOL_41
        | 0x800 // SSL
        | 0x2000 // TRANSACTIONS
        | 0x8000 // SECURE_CONNECTION
        | 0x8_0000 // PLUGIN_AUTH
        | 0x20_0000; // PLUGIN_AUTH_LENENC_CLIENT_DATA
    pub const MARKER: &str = "scripted server: authenticated";

    fn greeting() -> Vec<u8> {
        let nonce = *b"abcdefghijklmnopqrst";
        let mut p = vec![10];
        p.extend_from_slice(b"8.4.3-scripted\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(&nonce[..8]);
        p.push(0);
        p.extend_from_slice(&(CAPS as u16).to_le_bytes());
        p.push(255);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((CAPS >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(&nonce[8..]);
        p.push(0);
        p.extend_from_slice(b"caching_sha2_password\0");
        p
    }

    fn send(stream: &mut impl Write, seq: u8, payload: &[u8]) {
        let len = (payload.len() as u32).to_le_bytes();
        stream.write_all(&[len[0], len[1], len[2], seq]).unwrap();
        stream.write_all(payload).unwrap();
        stream.flush().unwrap();
    }

    fn receive(stream: &mut impl Read) -> (u8, Vec<u8>) {
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).unwrap();
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).unwrap();
        (header[3], payload)
    }

    /// Serve one client on a free port; the thread returns the password
    /// the client sent inside TLS.
    pub fn serve(pki: &TestPki) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let certs = vec![CertificateDer::from_pem_file(&pki.cert_file).unwrap()];
        let key = PrivateKeyDer::from_pem_file(&pki.key_file).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                .unwrap();
            send(&mut tcp, 0, &greeting());
            let (seq, ssl_request) = receive(&mut tcp);
            assert_eq!((seq, ssl_request.len()), (1, 32), "an SSLRequest");
            let caps = u32::from_le_bytes(ssl_request[..4].try_into().unwrap());
            assert!(caps & 0x800 != 0, "CLIENT_SSL in the SSLRequest");
            let connection = rustls::ServerConnection::new(Arc::new(config)).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, tcp);
            let (seq, _response) = receive(&mut tls);
            assert_eq!(seq, 2, "the handshake response follows inside TLS");
            send(&mut tls, 3, &[0x01, 0x04]);
            let (seq, password) = receive(&mut tls);
            assert_eq!(seq, 4);
            send(&mut tls, 5, &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]);
            let (_, statement) = receive(&mut tls);
            assert_eq!(statement[0], 0x03, "COM_QUERY");
            let mut error = vec![0xFF];
            error.extend_from_slice(&1105u16.to_le_bytes());
            error.extend_from_slice(b"#HY000");
            error.extend_from_slice(MARKER.as_bytes());
            send(&mut tls, 1, &error);
            password
        });
        (port, handle)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_full_auth_sends_the_password_only_inside_tls() {
    let pki = common::tls_servers::TestPki::new();
    let (port, server) = scripted_mysql::serve(&pki);
    let config = serde_json::json!({
        "host": "localhost", "port": port, "user": "app", "password": "full-auth-secret",
        "database": "test", "ssl_mode": "VERIFY_IDENTITY", "ssl_ca": pki.ca(),
    });
    assert_fails_with(
        check("mysql", plugins::MYSQL, &grants(port, &pki.grant()), config).await,
        &[&format!("ERROR 1105 (HY000): {}", scripted_mysql::MARKER)],
    );
    // NUL-terminated, in clear, inside TLS: what MySQL's client sends.
    assert_eq!(server.join().unwrap(), b"full-auth-secret\0");
}
