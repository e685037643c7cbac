//! One connection to PostgreSQL: socket, TLS negotiation (`sslmode`),
//! startup, authentication and the message loop. Blocking I/O over the
//! `net` crate's socket: on wasm32-wasip2 wasi:sockets, filtered by the
//! plugin's grant, upgraded in place through wasi:tls after SSLRequest.

use crate::config::{Config, SslMode};
use crate::error::{connect_error, io_error, unexpected, DbError};
use crate::types::{Kind, Oid};
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use net::{Socket, TlsError};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend::{self, BindError};
use postgres_protocol::IsNull;
use sluice_sdk::PluginError;
use std::collections::HashMap;
use std::io::{self, Read, Write};

/// How much the read buffer grows by when a message is incomplete.
const READ_CHUNK: usize = 64 * 1024;

/// The rows of a simple (text protocol) query, for small catalog queries.
pub type TextRows = Vec<Vec<Option<String>>>;

pub struct Connection {
    stream: Socket,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// `host:port`, for error messages.
    target: String,
    /// Column kinds of type OIDs looked up in pg_type on this connection.
    pub(crate) type_cache: HashMap<Oid, Kind>,
    /// The server is Amazon Redshift (`redshift: true`): catalog queries
    /// and statements keep to what Redshift has.
    pub(crate) redshift: bool,
}

impl Connection {
    /// Connect, authenticate and wait until the server is ready for queries.
    pub fn connect(config: &Config) -> Result<Connection, PluginError> {
        let stream = negotiate_tls(open_socket(config)?, config)?;
        let mut conn = Connection {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(1024),
            target: config.target(),
            type_cache: if config.redshift {
                crate::types::redshift_type_cache()
            } else {
                HashMap::new()
            },
            redshift: config.redshift,
        };
        conn.startup(config)?;
        let doing = format!(
            "connecting to {} as user `{}`, database `{}`",
            conn.target, config.user, config.database
        );
        conn.authenticate(config, &doing)?;
        conn.wait_ready(&doing)?;
        Ok(conn)
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the connection is encrypted (`sslmode` and the server's answer).
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// The buffer the next message(s) are encoded into; [`send`] sends it.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.write_buf
    }

    /// Write out everything encoded into [`buf`].
    pub fn send(&mut self, doing: &str) -> Result<(), PluginError> {
        let result = self
            .stream
            .write_all(&self.write_buf)
            .and_then(|()| self.stream.flush());
        self.write_buf.clear();
        result.map_err(|e| io_error(&self.target, doing, &e))
    }

    /// The next message that matters to the caller. Notices, parameter
    /// changes and notifications are asynchronous and skipped here. A FATAL
    /// error is returned as `Err`: the server closes the connection after
    /// it, so no ReadyForQuery will follow.
    pub fn recv(&mut self, doing: &str) -> Result<Message, PluginError> {
        loop {
            match Message::parse(&mut self.read_buf)
                .map_err(|e| io_error(&self.target, doing, &e))?
            {
                Some(
                    Message::NoticeResponse(_)
                    | Message::ParameterStatus(_)
                    | Message::NotificationResponse(_),
                ) => {}
                Some(Message::ErrorResponse(body)) => {
                    let error = DbError::parse(&body);
                    if error.is_fatal() {
                        return Err(error.into_plugin_error(doing));
                    }
                    return Ok(Message::ErrorResponse(body));
                }
                Some(message) => return Ok(message),
                None => self.fill(doing)?,
            }
        }
    }

    /// Read more bytes from the socket into the read buffer.
    fn fill(&mut self, doing: &str) -> Result<(), PluginError> {
        let len = self.read_buf.len();
        // Reuse the buffer's spare capacity: `Message::parse` splits whole
        // messages off the front, so the tail is usually free already.
        self.read_buf.resize(len + READ_CHUNK, 0);
        let read = loop {
            match self.stream.read(&mut self.read_buf[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.read_buf.truncate(len + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => Err(PluginError::Retryable(format!(
                "connection to {} closed by the server while {doing}",
                self.target
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(io_error(&self.target, doing, &e)),
        }
    }

    /// Skip messages up to and including ReadyForQuery; the first server
    /// error on the way is returned once the connection is ready again.
    pub fn wait_ready(&mut self, doing: &str) -> Result<(), PluginError> {
        let mut error = None;
        loop {
            match self.recv(doing)? {
                Message::ReadyForQuery(_) => return error.map_or(Ok(()), Err),
                Message::ErrorResponse(body) if error.is_none() => {
                    error = Some(DbError::parse(&body).into_plugin_error(doing));
                }
                _ => {}
            }
        }
    }

    /// Run `sql` with the simple query protocol and return the text rows
    /// of its (last) result. Only for small results (catalog queries).
    pub fn simple_query(&mut self, sql: &str) -> Result<TextRows, PluginError> {
        let doing = format!("running query: {}", abbreviate(sql));
        frontend::query(sql, &mut self.write_buf)
            .map_err(|e| io_error(&self.target, &doing, &e))?;
        self.send(&doing)?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.recv(&doing)? {
                Message::RowDescription(_) => rows.clear(),
                Message::DataRow(row) => rows.push(text_row(&row, &self.target, &doing)?),
                Message::ErrorResponse(body) if error.is_none() => {
                    error = Some(
                        DbError::parse(&body)
                            .into_plugin_error(&format!("query: {}", abbreviate(sql))),
                    );
                }
                Message::ReadyForQuery(_) => return error.map_or(Ok(rows), Err),
                Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                    return Err(unexpected(&self.target, &doing, "COPY (not supported)"));
                }
                _ => {}
            }
        }
    }

    /// Run one statement with text-format parameters through the extended
    /// protocol (unnamed statement and portal, then Sync) and return its
    /// text rows. `types` are the parameters' type OIDs (0 lets the server
    /// infer one); a `None` parameter is NULL. A server error comes back as
    /// the inner `Err` with all its fields, so a caller can tell a row's
    /// fault (a constraint, a bad value) from the statement's; the
    /// connection is ready for the next statement either way.
    pub fn query_params(
        &mut self,
        sql: &str,
        types: &[Oid],
        params: &[Option<&str>],
    ) -> Result<Result<TextRows, DbError>, PluginError> {
        let doing = format!("running query: {}", abbreviate(sql));
        self.encode_params(sql, types, params, &doing)?;
        self.send(&doing)?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.recv(&doing)? {
                Message::DataRow(row) => rows.push(text_row(&row, &self.target, &doing)?),
                Message::ErrorResponse(body) if error.is_none() => {
                    error = Some(DbError::parse(&body));
                }
                Message::ReadyForQuery(_) => return Ok(error.map_or(Ok(rows), Err)),
                Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                    return Err(unexpected(&self.target, &doing, "COPY (not supported)"));
                }
                _ => {}
            }
        }
    }

    /// Parse, Bind, Execute and Sync for [`query_params`] into the buffer.
    fn encode_params(
        &mut self,
        sql: &str,
        types: &[Oid],
        params: &[Option<&str>],
        doing: &str,
    ) -> Result<(), PluginError> {
        frontend::parse("", sql, types.iter().copied(), &mut self.write_buf)
            .map_err(|e| io_error(&self.target, doing, &e))?;
        frontend::bind(
            "",
            "",
            None::<i16>,
            params.iter().copied(),
            |param, buf| match param {
                Some(text) => {
                    buf.extend_from_slice(text.as_bytes());
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            None::<i16>,
            &mut self.write_buf,
        )
        .map_err(|e| {
            let why = match e {
                BindError::Conversion(e) => e.to_string(),
                BindError::Serialization(e) => e.to_string(),
            };
            PluginError::Permanent(format!("cannot encode Bind while {doing}: {why}"))
        })?;
        frontend::execute("", 0, &mut self.write_buf)
            .map_err(|e| io_error(&self.target, doing, &e))?;
        frontend::sync(&mut self.write_buf);
        Ok(())
    }

    /// Say goodbye; errors do not matter any more.
    pub fn terminate(mut self) {
        frontend::terminate(&mut self.write_buf);
        let _ = self.stream.write_all(&self.write_buf);
    }

    fn startup(&mut self, config: &Config) -> Result<(), PluginError> {
        frontend::startup_message(startup_params(config), &mut self.write_buf)
            .map_err(|e| PluginError::Config(format!("cannot encode the startup message: {e}")))?;
        self.send("sending the startup message")
    }

    fn authenticate(&mut self, config: &Config, doing: &str) -> Result<(), PluginError> {
        self.refuse_redshift_only_auth(config, doing)?;
        match self.recv(doing)? {
            Message::AuthenticationOk => Ok(()),
            Message::AuthenticationCleartextPassword => {
                let password = self.password(config, "cleartext")?;
                self.send_password(password.as_bytes())?;
                self.expect_auth_ok(doing)
            }
            Message::AuthenticationMd5Password(body) => {
                let password = self.password(config, "MD5")?;
                let hash = md5_hash(config.user.as_bytes(), password.as_bytes(), body.salt());
                self.send_password(hash.as_bytes())?;
                self.expect_auth_ok(doing)
            }
            Message::AuthenticationSasl(body) => {
                let mechanisms: Vec<String> = body
                    .mechanisms()
                    .map(|m| Ok(m.to_owned()))
                    .collect()
                    .map_err(|e| io_error(&self.target, doing, &e))?;
                self.scram(config, &mechanisms, doing)
            }
            Message::ErrorResponse(body) => Err(DbError::parse(&body).into_plugin_error(doing)),
            Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationGss
            | Message::AuthenticationSspi => Err(PluginError::Auth(format!(
                "{} asks for Kerberos/GSSAPI/SSPI authentication, which this plugin does not support \
                 (use password, MD5 or SCRAM-SHA-256 auth for user `{}`)",
                self.target, config.user
            ))),
            _ => Err(unexpected(&self.target, doing, "message")),
        }
    }

    /// Redshift's own login requests, which `postgres-protocol` cannot
    /// parse (it would say "unknown authentication tag"): code 13, the
    /// SHA-256 "extensible digest" of users whose password Redshift stores
    /// as SHA-256, and code 14, an identity-provider token. Peeked from the
    /// raw first message so the error can say what to do instead.
    fn refuse_redshift_only_auth(
        &mut self,
        config: &Config,
        doing: &str,
    ) -> Result<(), PluginError> {
        while self.read_buf.is_empty() {
            self.fill(doing)?;
        }
        // An AuthenticationRequest is at least tag, length and code.
        if self.read_buf[0] != b'R' {
            return Ok(());
        }
        while self.read_buf.len() < 9 {
            self.fill(doing)?;
        }
        let code = i32::from_be_bytes([
            self.read_buf[5],
            self.read_buf[6],
            self.read_buf[7],
            self.read_buf[8],
        ]);
        let method = match code {
            13 => "Redshift's SHA-256 digest login (auth code 13)",
            14 => "an identity-provider token login (auth code 14, Redshift IdP/IdC)",
            _ => return Ok(()),
        };
        Err(PluginError::Auth(format!(
            "{} asks for {method} for user `{}`, which this plugin does not support; \
             use a user with an MD5 or SCRAM-SHA-256 password",
            self.target, config.user
        )))
    }

    fn password<'c>(&self, config: &'c Config, method: &str) -> Result<&'c str, PluginError> {
        config.password.as_deref().ok_or_else(|| {
            PluginError::Auth(format!(
                "{} asks for {method} password authentication for user `{}` but the config has no `password`",
                self.target, config.user
            ))
        })
    }

    fn send_password(&mut self, password: &[u8]) -> Result<(), PluginError> {
        frontend::password_message(password, &mut self.write_buf)
            .map_err(|e| PluginError::Config(format!("cannot encode the password: {e}")))?;
        self.send("sending the password")
    }

    /// SCRAM-SHA-256 without channel binding: wasi:tls does not expose the
    /// server's certificate, which SCRAM-SHA-256-PLUS would hash, so only
    /// the plain mechanism is offered (over verified TLS it is as safe).
    fn scram(
        &mut self,
        config: &Config,
        mechanisms: &[String],
        doing: &str,
    ) -> Result<(), PluginError> {
        if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
            return Err(PluginError::Auth(format!(
                "{} offers only SASL mechanisms {mechanisms:?}; this plugin supports {SCRAM_SHA_256} (without channel binding)",
                self.target
            )));
        }
        let password = self.password(config, SCRAM_SHA_256)?;
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), &mut self.write_buf)
            .map_err(|e| io_error(&self.target, doing, &e))?;
        self.send(doing)?;
        let body = match self.recv(doing)? {
            Message::AuthenticationSaslContinue(body) => body,
            Message::ErrorResponse(body) => {
                return Err(DbError::parse(&body).into_plugin_error(doing))
            }
            _ => return Err(unexpected(&self.target, doing, "message")),
        };
        scram.update(body.data()).map_err(|e| {
            PluginError::Auth(format!("SCRAM exchange with {} failed: {e}", self.target))
        })?;
        frontend::sasl_response(scram.message(), &mut self.write_buf)
            .map_err(|e| io_error(&self.target, doing, &e))?;
        self.send(doing)?;
        let body = match self.recv(doing)? {
            Message::AuthenticationSaslFinal(body) => body,
            Message::ErrorResponse(body) => {
                return Err(DbError::parse(&body).into_plugin_error(doing))
            }
            _ => return Err(unexpected(&self.target, doing, "message")),
        };
        // Verifies the server's signature: it proves the server knows the password too.
        scram.finish(body.data()).map_err(|e| {
            PluginError::Auth(format!(
                "{} failed SCRAM server verification: {e}",
                self.target
            ))
        })?;
        self.expect_auth_ok(doing)
    }

    fn expect_auth_ok(&mut self, doing: &str) -> Result<(), PluginError> {
        match self.recv(doing)? {
            Message::AuthenticationOk => Ok(()),
            Message::ErrorResponse(body) => Err(DbError::parse(&body).into_plugin_error(doing)),
            _ => Err(unexpected(&self.target, doing, "message")),
        }
    }
}

/// Resolve `host:port` and connect to the first address that answers.
fn open_socket(config: &Config) -> Result<Socket, PluginError> {
    Socket::connect(&config.host, config.port, config.connect_timeout())
        .map_err(|e| connect_error(&config.target(), &e))
}

/// The SSLRequest exchange of `sslmode` (protocol-flow.html#PROTOCOL-FLOW-SSL):
/// `S` starts TLS on the same socket, `N` means plaintext, which only
/// `prefer` accepts. The answer is read as one byte straight off the
/// socket, so nothing the server sends after `S` is taken as plaintext
/// protocol data (CVE-2021-23222): it goes to the TLS handshake, which
/// refuses it.
fn negotiate_tls(mut socket: Socket, config: &Config) -> Result<Socket, PluginError> {
    let Some(settings) = config.tls_settings() else {
        return Ok(socket);
    };
    let target = config.target();
    let doing = "asking for TLS (SSLRequest)";
    let mut request = BytesMut::with_capacity(8);
    frontend::ssl_request(&mut request);
    let mut answer = [0u8; 1];
    socket
        .set_read_timeout(Some(config.connect_timeout()))
        .and_then(|()| socket.write_all(&request))
        .and_then(|()| socket.flush())
        .and_then(|()| socket.read_exact(&mut answer))
        .and_then(|()| socket.set_read_timeout(None))
        .map_err(|e| io_error(&target, doing, &e))?;
    match answer[0] {
        b'S' => match socket.upgrade(&config.host, &settings, config.connect_timeout()) {
            Ok(socket) => Ok(socket),
            // libpq's `prefer`: when TLS fails, try again without it.
            Err(TlsError::Handshake(_) | TlsError::Unsupported(_))
                if config.sslmode == SslMode::Prefer =>
            {
                open_socket(config)
            }
            Err(e) => Err(tls_error(&target, config, e)),
        },
        b'N' if config.sslmode == SslMode::Prefer => Ok(socket),
        b'N' => Err(PluginError::Permanent(format!(
            "{target} does not accept TLS (it answered the SSLRequest with `N`), \
             and `sslmode: {}` allows no plaintext; enable `ssl` on the server or set `sslmode: prefer`",
            config.sslmode.name()
        ))),
        other => Err(unexpected(
            &target,
            doing,
            &format!("answer {:?} (expected `S` or `N`)", char::from(other)),
        )),
    }
}

/// A failed TLS upgrade, naming the server, the mode and the host's reason.
fn tls_error(target: &str, config: &Config, error: TlsError) -> PluginError {
    let mode = config.sslmode.name();
    match error {
        TlsError::Settings(why) => PluginError::Config(format!("`sslrootcert`: {why}")),
        TlsError::TimedOut(_) => {
            PluginError::Retryable(format!("TLS with {target} (sslmode {mode}): {error}"))
        }
        TlsError::Handshake(_) | TlsError::Unsupported(_) => {
            PluginError::Permanent(format!("TLS with {target} (sslmode {mode}): {error}"))
        }
    }
}

/// The settings the startup message asks for.
///
/// PostgreSQL: output formats only (input order such as MDY stays the
/// server's): UTF-8 text whatever the server encoding, ISO dates and
/// intervals, hex bytea, shortest exact floats, all of which appear in
/// text-format values and arrays.
///
/// Redshift (PostgreSQL 8.0-based) has no `IntervalStyle` or
/// `bytea_output` and caps `extra_float_digits` at 2, and an unknown
/// startup setting is a FATAL error. Its databases are always UTF-8 and its
/// DateStyle defaults to ISO, so the Redshift mode sends only what the AWS
/// driver `redshift_connector` sends: user, database, application name.
/// Floats, dates and timestamps arrive in binary either way.
pub fn startup_params(config: &Config) -> Vec<(&str, &str)> {
    let mut params = vec![
        ("user", config.user.as_str()),
        ("database", config.database.as_str()),
        ("application_name", config.application_name.as_str()),
    ];
    if !config.redshift {
        params.extend([
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("IntervalStyle", "iso_8601"),
            ("bytea_output", "hex"),
            ("extra_float_digits", "3"),
        ]);
    }
    params
}

/// A DataRow of a text-format result as strings (lossy: only used for
/// catalog data, where a stray byte must not fail discovery).
fn text_row(
    row: &postgres_protocol::message::backend::DataRowBody,
    target: &str,
    doing: &str,
) -> Result<Vec<Option<String>>, PluginError> {
    let buf = row.buffer();
    row.ranges()
        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned())))
        .collect()
        .map_err(|e| io_error(target, doing, &e))
}

/// A query on one line, cut to 200 characters, for error messages.
pub fn abbreviate(sql: &str) -> String {
    const MAX: usize = 200;
    let mut short = String::with_capacity(MAX);
    for (i, word) in sql.split_whitespace().enumerate() {
        if i > 0 {
            short.push(' ');
        }
        short.push_str(word);
        if short.chars().count() > MAX {
            let cut: String = short.chars().take(MAX).collect();
            return cut + "…";
        }
    }
    short
}
