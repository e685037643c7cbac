//! Turning server errors and socket failures into `PluginError`s.

use mysql_common::packets::ServerError;
use mysql_common::proto::codec::error::PacketCodecError;
use sluice_sdk::PluginError;
use std::fmt;
use std::io;

/// A server's ERR packet, kept as the user needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// MySQL's error number, e.g. 1064.
    pub code: u16,
    /// The SQLSTATE, e.g. `42000` (absent in pre-4.1 style errors).
    pub state: Option<String>,
    pub message: String,
}

impl DbError {
    pub fn from_server(error: &ServerError<'_>) -> DbError {
        DbError {
            code: error.error_code(),
            state: error
                .sql_state_ref()
                .map(|s| s.as_str().into_owned())
                .filter(|s| !s.is_empty()),
            message: error.message_str().into_owned(),
        }
    }

    /// The `PluginError` this server error becomes; `context` (the query,
    /// or what was being done) is appended.
    pub fn into_plugin_error(self, context: &str) -> PluginError {
        let text = if context.is_empty() {
            self.to_string()
        } else {
            format!("{self} ({context})")
        };
        match self.code {
            // ER_DBACCESS_DENIED, ER_ACCESS_DENIED, ER_NOT_SUPPORTED_AUTH_MODE,
            // ER_ACCESS_DENIED_NO_PASSWORD, ER_ACCOUNT_HAS_BEEN_LOCKED
            1044 | 1045 | 1251 | 1698 | 3118 | 4151 => PluginError::Auth(text),
            // ER_BAD_DB: the `database` key names no database
            1049 => PluginError::Config(format!("`database`: {text}")),
            // too many connections, out of memory, server shutdown, lock
            // wait timeout, deadlock, query interrupted by a restart: a
            // later attempt may work
            1040 | 1041 | 1053 | 1205 | 1213 | 1226 | 1317 | 2013 => PluginError::Retryable(text),
            _ => PluginError::Permanent(text),
        }
    }
}

impl fmt::Display for DbError {
    /// `ERROR 1064 (42000): You have an error in your SQL syntax; ...`, as
    /// the `mysql` and `mariadb` clients print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Some(state) => write!(f, "ERROR {} ({state}): {}", self.code, self.message),
            None => write!(f, "ERROR {}: {}", self.code, self.message),
        }
    }
}

/// A socket failure while connecting to `target` (`host:port`).
pub fn connect_error(target: &str, error: &io::Error) -> PluginError {
    match error.kind() {
        // On wasm32-wasip2 a connection outside the plugin's grant fails
        // here; retrying cannot fix a missing grant.
        io::ErrorKind::PermissionDenied => PluginError::Permanent(format!(
            "connection to {target} denied: {error} (is `mysql://{target}` granted to this plugin?)"
        )),
        io::ErrorKind::ConnectionRefused => PluginError::Retryable(format!(
            "connection to {target} refused: {error} (is MySQL/MariaDB listening there?)"
        )),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            PluginError::Retryable(format!("connection to {target} timed out: {error}"))
        }
        _ => PluginError::Retryable(format!("cannot connect to {target}: {error}")),
    }
}

/// A socket or framing failure on an open connection; `doing` says what
/// was under way.
pub fn io_error(target: &str, doing: &str, error: &io::Error) -> PluginError {
    match error.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            PluginError::Permanent(format!(
                "malformed packet from {target} while {doing}: {error}"
            ))
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => PluginError::Retryable(format!(
            "{target} sent nothing within the read timeout while {doing} ({error})"
        )),
        _ => PluginError::Retryable(format!(
            "connection to {target} failed while {doing}: {error}"
        )),
    }
}

/// The codec's errors: socket failures, or packets out of sequence or too big.
pub fn codec_error(target: &str, doing: &str, error: PacketCodecError) -> PluginError {
    match error {
        PacketCodecError::Io(e) => io_error(target, doing, &e),
        other => PluginError::Permanent(format!(
            "protocol error with {target} while {doing}: {other}"
        )),
    }
}

/// The server answered with a packet the protocol does not allow here.
pub fn unexpected(target: &str, doing: &str, packet: &[u8]) -> PluginError {
    let head: Vec<u8> = packet.iter().copied().take(8).collect();
    PluginError::Permanent(format!(
        "unexpected packet from {target} while {doing} (starts {head:02x?}, {} bytes)",
        packet.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: u16) -> DbError {
        DbError {
            code,
            state: Some("HY000".into()),
            message: "m".into(),
        }
    }

    #[test]
    fn classifies_by_error_number() {
        assert!(matches!(
            error(1045).into_plugin_error(""),
            PluginError::Auth(_)
        ));
        assert!(
            matches!(error(1049).into_plugin_error(""), PluginError::Config(m) if m.starts_with("`database`"))
        );
        assert!(matches!(
            error(1213).into_plugin_error(""),
            PluginError::Retryable(_)
        ));
        assert!(matches!(
            error(1064).into_plugin_error(""),
            PluginError::Permanent(_)
        ));
    }

    #[test]
    fn renders_like_the_mysql_client() {
        let PluginError::Permanent(m) = error(1146).into_plugin_error("query: SELECT 1") else {
            panic!()
        };
        assert_eq!(m, "ERROR 1146 (HY000): m (query: SELECT 1)");
        let e = DbError {
            state: None,
            ..error(1)
        };
        assert_eq!(e.to_string(), "ERROR 1: m");
    }
}
