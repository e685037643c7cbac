//! One connection to MySQL or MariaDB: socket, handshake, authentication
//! and the command/packet loop. Packets, framing and the auth plugins'
//! challenge/response steps come from `mysql_common`; this file only moves
//! bytes. Blocking I/O over the `net` crate's socket: on wasm32-wasip2
//! wasi:sockets, filtered by the plugin's grant, upgraded in place through
//! wasi:tls after the SSLRequest packet when `ssl_mode` asks for TLS.

use crate::config::{Config, SslMode};
use crate::error::{codec_error, connect_error, io_error, unexpected, DbError};
use mysql_common::auth::plugins::{AuthProc, ChallengeResponsePlugin, Context};
use mysql_common::constants::{CapabilityFlags, Command};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, AuthSwitchRequest, Column, ErrPacket, HandshakePacket, HandshakeResponse,
    SslRequest,
};
use mysql_common::proto::sync_framed::MySyncFramed;
use mysql_common::proto::MySerialize;
use net::{Socket, TlsError, TlsSettings};
use sluice_sdk::PluginError;

/// The largest packet accepted: MySQL's own ceiling for max_allowed_packet.
const MAX_PACKET: usize = 1024 * 1024 * 1024;

/// The rows of a small text-protocol query (catalog lookups).
pub type TextRows = Vec<Vec<Option<String>>>;

pub struct Connection {
    framed: MySyncFramed<Socket>,
    caps: CapabilityFlags,
    /// The last packet read; rows are decoded from it in place.
    packet: Vec<u8>,
    /// `host:port`, for error messages.
    target: String,
    /// The server's version string, e.g. `5.5.5-10.11.6-MariaDB-0+deb12u1`.
    pub server_version: String,
}

/// What [`Connection::next_row`] found.
pub enum Next {
    /// A row, available through [`Connection::row`].
    Row,
    /// The end of the result.
    Done,
}

impl Connection {
    /// Connect, authenticate and prepare the session (UTC time zone, the
    /// configured net_write_timeout).
    pub fn connect(config: &Config) -> Result<Connection, PluginError> {
        let mut stream = open_socket(config)?;
        // Until the server has spoken, wait no longer than the connect
        // timeout: a port that accepts but never answers must not hang us.
        let _ = stream.set_read_timeout(Some(config.connect_timeout()));
        let mut framed = MySyncFramed::new(stream);
        framed.codec_mut().max_allowed_packet = MAX_PACKET;
        let conn = Connection {
            framed,
            caps: CapabilityFlags::empty(),
            packet: Vec::new(),
            target: config.target(),
            server_version: String::new(),
        };
        let doing = format!(
            "connecting to {} as user `{}`, database `{}`",
            conn.target, config.user, config.database
        );
        let mut conn = conn.handshake(config, &doing)?;
        let _ = conn
            .framed
            .get_mut()
            .set_read_timeout(Some(config.read_timeout()));
        // TIMESTAMP columns render in the session time zone: UTC makes them
        // instants. The server waits net_write_timeout for us to take more
        // rows while a batch is being delivered.
        conn.execute(&format!(
            "SET time_zone = '+00:00', net_write_timeout = {}",
            config.net_write_timeout_s
        ))?;
        Ok(conn)
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the connection is encrypted (`ssl_mode` and the server's
    /// capabilities).
    pub fn is_tls(&self) -> bool {
        self.framed.get_ref().is_tls()
    }

    pub fn is_mariadb(&self) -> bool {
        self.server_version.contains("MariaDB")
    }

    /// Read the next packet into `self.packet`; an ERR packet becomes `Err`.
    fn read_packet(&mut self, doing: &str) -> Result<(), PluginError> {
        self.packet.clear();
        let more = self
            .framed
            .next_packet(&mut self.packet)
            .map_err(|e| codec_error(&self.target, doing, e))?;
        if !more {
            return Err(PluginError::Retryable(format!(
                "connection to {} closed by the server while {doing}",
                self.target
            )));
        }
        if self.packet.first() == Some(&0xFF) {
            return Err(self.server_error(doing));
        }
        Ok(())
    }

    /// The ERR packet in `self.packet` as a `PluginError`.
    fn server_error(&self, context: &str) -> PluginError {
        match ParseBuf(&self.packet).parse::<ErrPacket<'_>>(self.caps) {
            Ok(ErrPacket::Error(error)) => DbError::from_server(&error).into_plugin_error(context),
            Ok(ErrPacket::Progress(_)) | Err(_) => unexpected(&self.target, context, &self.packet),
        }
    }

    fn write_packet(&mut self, data: &[u8], doing: &str) -> Result<(), PluginError> {
        self.framed
            .send(&mut &*data)
            .map_err(|e| codec_error(&self.target, doing, e))
    }

    /// Send a command packet: a new exchange, so sequence ids restart at 0.
    fn command(&mut self, command: Command, body: &[u8], doing: &str) -> Result<(), PluginError> {
        self.framed.codec_mut().reset_seq_id();
        let mut packet = Vec::with_capacity(body.len() + 1);
        packet.push(command as u8);
        packet.extend_from_slice(body);
        self.write_packet(&packet, doing)
    }

    /// Run a statement that returns no rows (SET, START TRANSACTION...).
    pub fn execute(&mut self, sql: &str) -> Result<(), PluginError> {
        let columns = self.start_query(sql)?;
        if !columns.is_empty() {
            // Drain the unexpected rows so the connection stays in step.
            while let Next::Row = self.next_row(sql)? {}
            return Err(PluginError::Permanent(format!(
                "`{}` returned rows on {}",
                abbreviate(sql),
                self.target
            )));
        }
        Ok(())
    }

    /// Run a statement that returns no rows; a server error comes back as
    /// the inner `Err` with its number and SQLSTATE, so a caller can tell
    /// a row's fault (a duplicate key, a bad value) from the statement's.
    /// The connection stays usable after a server error.
    pub fn execute_checked(&mut self, sql: &str) -> Result<Result<(), DbError>, PluginError> {
        let context = format!("query: {}", abbreviate(sql));
        let doing = format!("running {context}");
        self.command(Command::COM_QUERY, sql.as_bytes(), &doing)?;
        self.packet.clear();
        let more = self
            .framed
            .next_packet(&mut self.packet)
            .map_err(|e| codec_error(&self.target, &doing, e))?;
        if !more {
            return Err(PluginError::Retryable(format!(
                "connection to {} closed by the server while {doing}",
                self.target
            )));
        }
        match self.packet.first() {
            Some(0x00) => Ok(Ok(())),
            Some(0xFF) => match ParseBuf(&self.packet).parse::<ErrPacket<'_>>(self.caps) {
                Ok(ErrPacket::Error(error)) => Ok(Err(DbError::from_server(&error))),
                Ok(ErrPacket::Progress(_)) | Err(_) => {
                    Err(unexpected(&self.target, &doing, &self.packet))
                }
            },
            _ => Err(unexpected(&self.target, &doing, &self.packet)),
        }
    }

    /// Send `sql` with COM_QUERY and read its result set header: the
    /// columns, or none for a statement without a result. Rows follow with
    /// [`next_row`].
    pub fn start_query(&mut self, sql: &str) -> Result<Vec<Column>, PluginError> {
        let context = format!("query: {}", abbreviate(sql));
        let doing = format!("running {context}");
        self.command(Command::COM_QUERY, sql.as_bytes(), &doing)?;
        self.read_packet(&context)?;
        match self.packet.first() {
            // OK: a statement without a result set.
            Some(0x00) => return Ok(Vec::new()),
            // LOCAL INFILE request: never honoured (CLIENT_LOCAL_FILES is off).
            Some(0xFB) => return Err(unexpected(&self.target, &doing, &self.packet)),
            _ => {}
        }
        let count = ParseBuf(&self.packet)
            .checked_eat_lenenc_int()
            .ok_or_else(|| unexpected(&self.target, &doing, &self.packet))?;
        let mut columns = Vec::with_capacity(count.min(4096) as usize);
        for _ in 0..count {
            self.read_packet(&context)?;
            let column = ParseBuf(&self.packet)
                .parse::<Column>(())
                .map_err(|e| io_error(&self.target, &doing, &e))?;
            columns.push(column);
        }
        // Without CLIENT_DEPRECATE_EOF the definitions end with an EOF packet.
        self.read_packet(&context)?;
        if !self.is_eof() {
            return Err(unexpected(&self.target, &doing, &self.packet));
        }
        Ok(columns)
    }

    /// Read the next row of the current result; `context` names the query
    /// for errors. A server error mid-result (a killed query, a failing
    /// expression) is returned as `Err`.
    pub fn next_row(&mut self, context: &str) -> Result<Next, PluginError> {
        self.read_packet(context)?;
        Ok(if self.is_eof() { Next::Done } else { Next::Row })
    }

    /// The current row's packet: one length-encoded string (or 0xFB for
    /// NULL) per column.
    pub fn row(&self) -> &[u8] {
        &self.packet
    }

    /// An EOF packet is 0xFE and shorter than 9 bytes; a row can start with
    /// 0xFE only as the 8-byte length prefix of a value, so it is longer.
    fn is_eof(&self) -> bool {
        self.packet.first() == Some(&0xFE) && self.packet.len() < 9
    }

    /// Run `sql` and return its rows as text. Only for small results.
    pub fn query_rows(&mut self, sql: &str) -> Result<TextRows, PluginError> {
        let context = format!("query: {}", abbreviate(sql));
        let columns = self.start_query(sql)?;
        let mut rows = Vec::new();
        while let Next::Row = self.next_row(&context)? {
            let mut buf = ParseBuf(&self.packet);
            let mut row = Vec::with_capacity(columns.len());
            for _ in 0..columns.len() {
                row.push(match next_value(&mut buf) {
                    Some(value) => value.map(|v| String::from_utf8_lossy(v).into_owned()),
                    None => return Err(unexpected(&self.target, &context, &self.packet)),
                });
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Say goodbye (COM_QUIT); errors do not matter any more.
    pub fn terminate(mut self) {
        let _ = self.command(Command::COM_QUIT, &[], "closing the connection");
    }

    /// Read the server's greeting, switch to TLS if `ssl_mode` says so,
    /// answer the greeting and authenticate.
    fn handshake(mut self, config: &Config, doing: &str) -> Result<Connection, PluginError> {
        self.read_packet(doing)?;
        let greeting = self.packet.clone();
        let handshake = ParseBuf(&greeting)
            .parse::<HandshakePacket<'_>>(())
            .map_err(|e| io_error(&self.target, doing, &e))?;
        if handshake.protocol_version() != 10 {
            return Err(PluginError::Permanent(format!(
                "{} speaks protocol version {}, not MySQL's 10",
                self.target,
                handshake.protocol_version()
            )));
        }
        if !handshake
            .capabilities()
            .contains(CapabilityFlags::CLIENT_PROTOCOL_41)
        {
            return Err(PluginError::Permanent(format!(
                "{} is older than MySQL 4.1 (no CLIENT_PROTOCOL_41)",
                self.target
            )));
        }
        self.server_version = handshake.server_version_str().into_owned();
        self.caps = handshake.capabilities() & client_flags();
        let tls = self.tls_to_use(config, handshake.capabilities())?;
        if tls.is_some() {
            self.caps |= CapabilityFlags::CLIENT_SSL;
        }
        let nonce = initial_nonce(&handshake);
        // The server names its default plugin; anything we cannot start
        // with gets a native answer, and the server switches us if needed.
        let plugin = match handshake.auth_plugin() {
            Some(p @ (AuthPlugin::CachingSha2Password | AuthPlugin::Ed25519)) => p.into_owned(),
            _ => AuthPlugin::MysqlNativePassword,
        };
        let target = self.target.clone();
        let mut auth = Auth::new(config, &target, nonce);
        let first = auth.start(&plugin)?;
        let response = HandshakeResponse::new(
            Some(first.as_slice()),
            handshake.server_version_parsed().unwrap_or((0, 0, 0)),
            Some(config.user.as_bytes()),
            Some(config.database.as_bytes()),
            Some(plugin),
            self.caps,
            None,
            MAX_PACKET as u32,
        );
        if let Some(settings) = &tls {
            self = self.start_tls(config, settings, response.collation(), doing)?;
            auth.tls = true;
        }
        let mut buf = Vec::new();
        response.serialize(&mut buf);
        self.write_packet(&buf, doing)?;
        self.continue_auth(&mut auth, doing)?;
        Ok(self)
    }

    /// The TLS to ask for, if any: what `ssl_mode` wants against what the
    /// greeting offers (CLIENT_SSL). Only PREFERRED settles for plaintext.
    fn tls_to_use(
        &self,
        config: &Config,
        offered: CapabilityFlags,
    ) -> Result<Option<TlsSettings>, PluginError> {
        let Some(settings) = config.tls_settings()? else {
            return Ok(None);
        };
        match config.ssl_mode()? {
            _ if offered.contains(CapabilityFlags::CLIENT_SSL) => Ok(Some(settings)),
            SslMode::Disabled | SslMode::Preferred => Ok(None),
            mode => Err(PluginError::Permanent(format!(
                "{} does not offer TLS (no CLIENT_SSL in its greeting), and `ssl_mode: {}` \
                 allows no plaintext; enable TLS on the server (ssl_cert/ssl_key) or set `ssl_mode: PREFERRED`",
                self.target,
                mode.name()
            ))),
        }
    }

    /// Send the SSLRequest packet (the handshake response's first 32
    /// bytes, CLIENT_SSL set) and upgrade the socket in place; packet
    /// sequence numbers carry on inside TLS. Bytes the server sent before
    /// the handshake would be taken for protocol data, so any is an error.
    fn start_tls(
        self,
        config: &Config,
        settings: &TlsSettings,
        collation: u8,
        doing: &str,
    ) -> Result<Connection, PluginError> {
        let Connection {
            mut framed,
            caps,
            packet,
            target,
            server_version,
        } = self;
        let mut request = Vec::new();
        SslRequest::new(caps, MAX_PACKET as u32, collation).serialize(&mut request);
        framed
            .send(&mut &*request)
            .map_err(|e| codec_error(&target, doing, e))?;
        let (in_buf, out_buf, codec, socket) = framed.destruct();
        if !in_buf.is_empty() {
            return Err(unexpected(&target, "asking for TLS (SSLRequest)", &in_buf));
        }
        let socket = socket
            .upgrade(&config.host, settings, config.connect_timeout())
            .map_err(|e| tls_error(&target, config, e))?;
        Ok(Connection {
            framed: MySyncFramed::construct(in_buf, out_buf, codec, socket),
            caps,
            packet,
            target,
            server_version,
        })
    }

    /// The server's answers after the handshake response: OK, an auth
    /// switch, or more data for the current plugin.
    fn continue_auth(&mut self, auth: &mut Auth<'_>, doing: &str) -> Result<(), PluginError> {
        loop {
            self.read_packet(doing)?;
            match self.packet.first() {
                Some(0x00) => return Ok(()),
                Some(0xFE) if self.packet.len() > 1 => {
                    let switch = ParseBuf(&self.packet)
                        .parse::<AuthSwitchRequest<'_>>(())
                        .map_err(|e| io_error(&self.target, doing, &e))?
                        .into_owned();
                    let data = auth.switch(&switch)?;
                    self.write_packet(&data, doing)?;
                }
                Some(0xFE) => {
                    return Err(PluginError::Auth(format!(
                        "{} asks for the pre-4.1 mysql_old_password method, which is insecure and not supported",
                        self.target
                    )))
                }
                Some(0x01) => {
                    let challenge = self.packet[1..].to_vec();
                    if let Some(data) = auth.more(&challenge)? {
                        self.write_packet(&data, doing)?;
                    }
                }
                _ => return Err(unexpected(&self.target, doing, &self.packet)),
            }
        }
    }
}

/// The capabilities Sluice asks for. No CLIENT_LOCAL_FILES (the server may
/// never read our files), no multi-statements (one query is one statement),
/// no DEPRECATE_EOF (result sets end with the classic EOF packet).
fn client_flags() -> CapabilityFlags {
    CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
}

/// The 20-byte scramble of the greeting (its parts, NUL terminator dropped).
fn initial_nonce(handshake: &HandshakePacket<'_>) -> Vec<u8> {
    let mut nonce = handshake.scramble_1_ref().to_vec();
    nonce.extend_from_slice(handshake.scramble_2_ref().unwrap_or(&[]));
    nonce.resize(20, 0);
    nonce
}

/// One authentication exchange: the current plugin's state and what it
/// needs (password, scramble, the server's RSA key).
struct Auth<'c> {
    config: &'c Config,
    target: &'c str,
    scramble: Vec<u8>,
    plugin: String,
    proc: Option<AuthProc>,
    /// The connection is TLS: caching_sha2 full auth may send the password
    /// in clear inside it.
    tls: bool,
}

impl<'c> Auth<'c> {
    fn new(config: &'c Config, target: &'c str, scramble: Vec<u8>) -> Self {
        Auth {
            config,
            target,
            scramble,
            plugin: String::new(),
            proc: None,
            tls: false,
        }
    }

    /// Begin `plugin` on the current scramble; returns the first answer.
    fn start(&mut self, plugin: &AuthPlugin<'_>) -> Result<Vec<u8>, PluginError> {
        self.plugin = String::from_utf8_lossy(plugin_name(plugin)).into_owned();
        if matches!(plugin, AuthPlugin::MysqlClearPassword) {
            return Err(PluginError::Auth(format!(
                "{} asks for mysql_clear_password for user `{}`, which would send the password \
                 in cleartext over a connection without TLS; refused",
                self.target, self.config.user
            )));
        }
        let mut proc = AuthProc::init(plugin).map_err(|_| self.unsupported())?;
        let scramble = self.scramble.clone();
        let response = proc
            .run(self.context(), &scramble)
            .map_err(|e| self.failed(&e))?;
        self.proc = Some(proc);
        Ok(response.data().unwrap_or_default().to_vec())
    }

    /// An auth switch request: a new plugin and a new scramble.
    fn switch(&mut self, request: &AuthSwitchRequest<'_>) -> Result<Vec<u8>, PluginError> {
        self.scramble = request.plugin_data().to_vec();
        self.start(&request.auth_plugin())
    }

    /// More data for the current plugin (the 0x01 prefix removed). `None`
    /// means nothing is to be sent (e.g. caching_sha2's fast-auth success).
    fn more(&mut self, challenge: &[u8]) -> Result<Option<Vec<u8>>, PluginError> {
        let Some(mut proc) = self.proc.take() else {
            return Err(PluginError::Permanent(format!(
                "{} sent auth data before any auth method was chosen",
                self.target
            )));
        };
        if matches!(proc, AuthProc::CachingSha2Password(_)) && challenge == [0x04] {
            self.check_full_auth_possible()?;
        }
        let response = proc
            .run(self.context(), challenge)
            .map_err(|e| self.failed(&e))?;
        self.proc = Some(proc);
        Ok(response.data().map(<[u8]>::to_vec))
    }

    /// caching_sha2_password full authentication without TLS sends the
    /// password RSA-encrypted: with a configured key, or one fetched from
    /// the server when the config allows it.
    fn check_full_auth_possible(&self) -> Result<(), PluginError> {
        if self.tls || self.config.server_public_key.is_some() || self.config.get_server_public_key
        {
            return Ok(());
        }
        Err(PluginError::Auth(format!(
            "{} needs caching_sha2_password full authentication for user `{}` (the password is \
             not in its cache, e.g. after a restart). Without TLS the password must travel \
             RSA-encrypted: use TLS (`ssl_mode`), set `server_public_key` to the server's \
             public key (PEM) or `get_server_public_key: true` to fetch it from the server",
            self.target, self.config.user
        )))
    }

    fn context(&self) -> AuthContext<'_> {
        AuthContext {
            pass: self.config.password.as_deref().unwrap_or("").as_bytes(),
            scramble: &self.scramble,
            server_key: self.config.server_public_key.as_deref().map(str::as_bytes),
            tls: self.tls,
        }
    }

    fn unsupported(&self) -> PluginError {
        PluginError::Auth(format!(
            "{} asks for auth method `{}` for user `{}`, which the mysql plugin does not support \
             (supported: mysql_native_password, caching_sha2_password, sha256_password, client_ed25519)",
            self.target, self.plugin, self.config.user
        ))
    }

    fn failed(&self, error: &mysql_common::auth::plugins::Error) -> PluginError {
        PluginError::Auth(format!(
            "{} authentication with {} for user `{}` failed: {error}",
            self.plugin, self.target, self.config.user
        ))
    }
}

fn plugin_name<'a>(plugin: &'a AuthPlugin<'_>) -> &'a [u8] {
    plugin.as_bytes()
}

/// What the auth plugins may ask about the connection.
struct AuthContext<'a> {
    pass: &'a [u8],
    scramble: &'a [u8],
    server_key: Option<&'a [u8]>,
    tls: bool,
}

impl Context for AuthContext<'_> {
    fn pass(&self) -> &[u8] {
        self.pass
    }
    fn is_ipc_transport(&self) -> bool {
        false
    }
    /// Over TLS caching_sha2 full auth sends the password in clear inside
    /// it (as the MySQL client does); otherwise RSA-encrypted.
    fn is_tls_transport(&self) -> bool {
        self.tls
    }
    fn scramble(&self) -> &[u8] {
        self.scramble
    }
    fn server_key_pem(&self) -> Option<&[u8]> {
        self.server_key
    }
}

/// The next value of a text row: `Some(None)` for NULL, `None` when the
/// packet ends early.
pub fn next_value<'a>(buf: &mut ParseBuf<'a>) -> Option<Option<&'a [u8]>> {
    if buf.0.first() == Some(&0xFB) {
        buf.skip(1);
        return Some(None);
    }
    buf.checked_eat_lenenc_str().map(Some)
}

/// Resolve `host:port` and connect to the first address that answers.
fn open_socket(config: &Config) -> Result<Socket, PluginError> {
    Socket::connect(&config.host, config.port, config.connect_timeout())
        .map_err(|e| connect_error(&config.target(), &e))
}

/// A failed TLS upgrade, naming the server, the mode and the host's reason.
fn tls_error(target: &str, config: &Config, error: TlsError) -> PluginError {
    let mode = config.ssl_mode.to_ascii_uppercase();
    match error {
        TlsError::Settings(why) => PluginError::Config(format!("`ssl_ca`: {why}")),
        TlsError::TimedOut(_) => {
            PluginError::Retryable(format!("TLS with {target} (ssl_mode {mode}): {error}"))
        }
        TlsError::Handshake(_) | TlsError::Unsupported(_) => {
            PluginError::Permanent(format!("TLS with {target} (ssl_mode {mode}): {error}"))
        }
    }
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
