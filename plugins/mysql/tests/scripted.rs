//! Auth methods MariaDB does not have (caching_sha2_password, with its fast
//! path, its full path over the RSA key exchange and the auth switch into
//! it), against a small scripted server that checks each byte the plugin
//! sends the way MySQL 8 documents it. The expected answers are computed
//! here independently of `mysql_common` (sha2 for the scramble, the `rsa`
//! crate to decrypt), so the plugin is not checked against itself.

use mysql::MySql;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Oaep, RsaPrivateKey};
use sha2::{Digest, Sha256};
use sluice_sdk::{PluginError, Source};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;

const PASSWORD: &str = "s3cret-✓";
const PUBLIC_KEY: &str = include_str!("fixtures/test_rsa_public.pem");
const PRIVATE_KEY: &str = include_str!("fixtures/test_rsa_private.pem");

// Capability bits (MySQL's include/mysql_com.h).
const LONG_PASSWORD: u32 = 0x1;
const LONG_FLAG: u32 = 0x4;
const CONNECT_WITH_DB: u32 = 0x8;
const LOCAL_FILES: u32 = 0x80;
const PROTOCOL_41: u32 = 0x200;
const TRANSACTIONS: u32 = 0x2000;
const SECURE_CONNECTION: u32 = 0x8000;
const MULTI_STATEMENTS: u32 = 0x1_0000;
const PLUGIN_AUTH: u32 = 0x8_0000;
const PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
const SERVER_CAPS: u32 = LONG_PASSWORD
    | LONG_FLAG
    | CONNECT_WITH_DB
    | LOCAL_FILES
    | PROTOCOL_41
    | TRANSACTIONS
    | SECURE_CONNECTION
    | MULTI_STATEMENTS
    | PLUGIN_AUTH
    | PLUGIN_AUTH_LENENC;

/// What the scripted server does after the handshake response.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// caching_sha2 from the greeting; the password is cached (01 03).
    FastAuth,
    /// caching_sha2 from the greeting; not cached (01 04): the client must
    /// fetch the key (02) and send the RSA-encrypted password.
    FullAuthFetchingKey,
    /// Like FullAuthFetchingKey, but the client already has the key.
    FullAuthWithKnownKey,
    /// Greets with mysql_native_password, then switches to caching_sha2.
    SwitchToCachingSha2,
    /// Switches to a plugin the client does not have.
    SwitchToUnknownPlugin,
}

/// The server side of one connection, speaking packets with sequence ids.
struct Wire {
    stream: TcpStream,
    seq: u8,
}

impl Wire {
    fn send(&mut self, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut packet = len.to_le_bytes()[..3].to_vec();
        packet.push(self.seq);
        packet.extend_from_slice(payload);
        self.stream.write_all(&packet).unwrap();
        self.seq = self.seq.wrapping_add(1);
    }

    /// The next packet, or `None` when the client hung up.
    fn recv(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).ok()?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        assert_eq!(header[3], self.seq, "client packet out of sequence");
        self.seq = self.seq.wrapping_add(1);
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload).unwrap();
        Some(payload)
    }

    fn ok(&mut self) {
        self.send(&[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]);
    }

    fn access_denied(&mut self) {
        let mut err = vec![0xFF];
        err.extend_from_slice(&1045u16.to_le_bytes());
        err.extend_from_slice(b"#28000Access denied for user 'app'");
        self.send(&err);
    }
}

/// XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) || nonce)), as MySQL's
/// sha2_password.cc computes the fast-auth scramble.
fn expected_scramble(nonce: &[u8]) -> Vec<u8> {
    let p1 = Sha256::digest(PASSWORD.as_bytes());
    let p2 = Sha256::digest(p1);
    let mut h = Sha256::new();
    h.update(p2);
    h.update(nonce);
    let p3 = h.finalize();
    p1.iter().zip(p3.iter()).map(|(a, b)| a ^ b).collect()
}

fn greeting(plugin: &str, nonce: &[u8; 20]) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(b"8.4.3-scripted\0");
    p.extend_from_slice(&7u32.to_le_bytes());
    p.extend_from_slice(&nonce[..8]);
    p.push(0);
    p.extend_from_slice(&(SERVER_CAPS as u16).to_le_bytes());
    p.push(255); // utf8mb4_0900_ai_ci
    p.extend_from_slice(&2u16.to_le_bytes()); // SERVER_STATUS_AUTOCOMMIT
    p.extend_from_slice(&((SERVER_CAPS >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&nonce[8..]);
    p.push(0);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

/// The fields of HandshakeResponse41 the script checks.
struct Response {
    caps: u32,
    user: String,
    auth: Vec<u8>,
    database: String,
    plugin: String,
}

fn parse_response(p: &[u8]) -> Response {
    let caps = u32::from_le_bytes(p[..4].try_into().unwrap());
    let mut rest = &p[32..];
    let nul = |r: &[u8]| r.iter().position(|&b| b == 0).unwrap();
    let end = nul(rest);
    let user = String::from_utf8(rest[..end].to_vec()).unwrap();
    rest = &rest[end + 1..];
    assert_ne!(
        caps & PLUGIN_AUTH_LENENC,
        0,
        "the client sends lenenc auth data"
    );
    let len = rest[0] as usize; // < 251: a one-byte length
    let auth = rest[1..1 + len].to_vec();
    rest = &rest[1 + len..];
    let end = nul(rest);
    let database = String::from_utf8(rest[..end].to_vec()).unwrap();
    rest = &rest[end + 1..];
    let end = nul(rest);
    let plugin = String::from_utf8(rest[..end].to_vec()).unwrap();
    Response {
        caps,
        user,
        auth,
        database,
        plugin,
    }
}

/// Decrypt the RSA-OAEP (SHA-1) password and undo the scramble XOR.
fn decrypt_password(encrypted: &[u8], nonce: &[u8]) -> Vec<u8> {
    let key = RsaPrivateKey::from_pkcs8_pem(PRIVATE_KEY).unwrap();
    let mut plain = key.decrypt(Oaep::new::<sha1::Sha1>(), encrypted).unwrap();
    for (i, b) in plain.iter_mut().enumerate() {
        *b ^= nonce[i % nonce.len()];
    }
    plain
}

/// Answer SET with OK and `SELECT 1` with a one-row result, until COM_QUIT.
fn serve_queries(wire: &mut Wire) {
    while let Some(packet) = {
        wire.seq = 0;
        wire.recv()
    } {
        match packet.first() {
            Some(0x01) => return, // COM_QUIT
            Some(0x03) if packet[1..].starts_with(b"SET ") => wire.ok(),
            Some(0x03) if &packet[1..] == b"SELECT 1" => {
                wire.send(&[1]);
                let mut column = Vec::new();
                for field in ["def", "", "", "", "1", ""] {
                    column.push(field.len() as u8);
                    column.extend_from_slice(field.as_bytes());
                }
                column.push(0x0c);
                column.extend_from_slice(&63u16.to_le_bytes());
                column.extend_from_slice(&1u32.to_le_bytes());
                column.push(8); // LONGLONG
                column.extend_from_slice(&[0x81, 0x00, 0x00, 0x00, 0x00]);
                wire.send(&column);
                wire.send(&[0xFE, 0, 0, 2, 0]);
                wire.send(&[1, b'1']);
                wire.send(&[0xFE, 0, 0, 2, 0]);
            }
            _ => panic!("unexpected command {packet:02x?}"),
        }
    }
}

/// Run one scripted connection; the thread's result says whether the
/// password the client proved or sent was right.
fn server(script: Script) -> (u16, JoinHandle<Result<(), String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut wire = Wire { stream, seq: 0 };
        let nonce: [u8; 20] = *b"abcdefghij0123456789";
        let first_plugin = match script {
            Script::SwitchToCachingSha2 | Script::SwitchToUnknownPlugin => "mysql_native_password",
            _ => "caching_sha2_password",
        };
        wire.send(&greeting(first_plugin, &nonce));
        let response = parse_response(&wire.recv().unwrap());
        if response.caps & (LOCAL_FILES | MULTI_STATEMENTS) != 0 {
            return Err(format!(
                "client asked for LOCAL_FILES or MULTI_STATEMENTS: {:#x}",
                response.caps
            ));
        }
        if (response.user.as_str(), response.database.as_str()) != ("app", "shop") {
            return Err(format!(
                "user/database {}/{}",
                response.user, response.database
            ));
        }
        if response.plugin != first_plugin {
            return Err(format!("client answered with plugin {}", response.plugin));
        }
        let mut nonce = nonce.to_vec();
        match script {
            Script::SwitchToUnknownPlugin => {
                let mut switch = vec![0xFE];
                switch.extend_from_slice(b"auth_gssapi_client\0");
                switch.extend_from_slice(b"service\0");
                wire.send(&switch);
                // The client gives up without answering.
                return match wire.recv() {
                    None => Ok(()),
                    Some(p) => Err(format!("client answered the unknown plugin with {p:02x?}")),
                };
            }
            Script::SwitchToCachingSha2 => {
                nonce = b"ZYXWVUTSRQponmlkjihg".to_vec();
                let mut switch = vec![0xFE];
                switch.extend_from_slice(b"caching_sha2_password\0");
                switch.extend_from_slice(&nonce);
                switch.push(0);
                wire.send(&switch);
                let answer = wire.recv().unwrap();
                if answer != expected_scramble(&nonce) {
                    wire.access_denied();
                    return Err("wrong scramble after the switch".into());
                }
                wire.send(&[0x01, 0x03]);
            }
            Script::FastAuth => {
                if response.auth != expected_scramble(&nonce) {
                    wire.access_denied();
                    return Err("wrong fast-auth scramble".into());
                }
                wire.send(&[0x01, 0x03]);
            }
            Script::FullAuthFetchingKey | Script::FullAuthWithKnownKey => {
                if response.auth != expected_scramble(&nonce) {
                    return Err("wrong first scramble".into());
                }
                wire.send(&[0x01, 0x04]);
                let mut answer = match wire.recv() {
                    Some(answer) => answer,
                    None => return Err("client hung up at full auth".into()),
                };
                if script == Script::FullAuthFetchingKey {
                    if answer != [0x02] {
                        return Err(format!("expected a key request, got {answer:02x?}"));
                    }
                    let mut key = vec![0x01];
                    key.extend_from_slice(PUBLIC_KEY.as_bytes());
                    wire.send(&key);
                    answer = wire.recv().unwrap();
                }
                let mut expected = PASSWORD.as_bytes().to_vec();
                expected.push(0);
                if decrypt_password(&answer, &nonce) != expected {
                    wire.access_denied();
                    return Err("RSA-decrypted password differs".into());
                }
            }
        }
        wire.ok();
        serve_queries(&mut wire);
        Ok(())
    });
    (port, handle)
}

fn config(port: u16, extra: serde_json::Value) -> String {
    let mut config = serde_json::json!({
        "host": "127.0.0.1", "port": port, "user": "app", "password": PASSWORD,
        "database": "shop", "connect_timeout_ms": 5000, "read_timeout_ms": 5000,
    });
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config.to_string()
}

#[test]
fn caching_sha2_fast_auth() {
    let (port, server) = server(Script::FastAuth);
    MySql::check(&config(port, serde_json::json!({}))).unwrap();
    server.join().unwrap().unwrap();
}

#[test]
fn caching_sha2_full_auth_fetches_the_rsa_key_when_allowed() {
    let (port, server) = server(Script::FullAuthFetchingKey);
    MySql::check(&config(
        port,
        serde_json::json!({"get_server_public_key": true}),
    ))
    .unwrap();
    server.join().unwrap().unwrap();
}

#[test]
fn caching_sha2_full_auth_uses_a_configured_rsa_key() {
    let (port, server) = server(Script::FullAuthWithKnownKey);
    MySql::check(&config(
        port,
        serde_json::json!({"server_public_key": PUBLIC_KEY}),
    ))
    .unwrap();
    server.join().unwrap().unwrap();
}

#[test]
fn caching_sha2_full_auth_without_a_key_is_refused_precisely() {
    let (port, server) = server(Script::FullAuthFetchingKey);
    let err = MySql::check(&config(port, serde_json::json!({}))).unwrap_err();
    let PluginError::Auth(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("full authentication"), "{message}");
    assert!(message.contains("`server_public_key`"), "{message}");
    assert!(
        message.contains("`get_server_public_key: true`"),
        "{message}"
    );
    assert!(!message.contains(PASSWORD), "{message}");
    // The server saw the client hang up rather than send the password.
    assert_eq!(
        server.join().unwrap(),
        Err("client hung up at full auth".to_string())
    );
}

#[test]
fn auth_switch_into_caching_sha2() {
    let (port, server) = server(Script::SwitchToCachingSha2);
    MySql::check(&config(port, serde_json::json!({}))).unwrap();
    server.join().unwrap().unwrap();
}

#[test]
fn auth_switch_to_an_unknown_method_names_it() {
    let (port, server) = server(Script::SwitchToUnknownPlugin);
    let err = MySql::check(&config(port, serde_json::json!({}))).unwrap_err();
    let PluginError::Auth(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("`auth_gssapi_client`"), "{message}");
    assert!(message.contains("user `app`"), "{message}");
    server.join().unwrap().unwrap();
}
