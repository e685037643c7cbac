//! Turning server errors and socket failures into `PluginError`s.

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorResponseBody;
use sluice_sdk::PluginError;
use std::fmt;
use std::io;

/// The fields of a server `ErrorResponse` that a user needs to act on.
#[derive(Debug, Default, Clone)]
pub struct DbError {
    /// `ERROR`, `FATAL`, `PANIC` (the non-localized `V` field when present).
    pub severity: String,
    /// The SQLSTATE, e.g. `42P01`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character offset into the query.
    pub position: Option<String>,
}

impl DbError {
    pub fn parse(body: &ErrorResponseBody) -> DbError {
        let mut error = DbError::default();
        let mut fields = body.fields();
        // A malformed field list still leaves whatever was read before it.
        while let Ok(Some(field)) = fields.next() {
            // Messages are UTF-8 once client_encoding applies; before that
            // (startup failures) a server may use its own locale's encoding.
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => error.severity = value,
                b'S' if error.severity.is_empty() => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                b'P' => error.position = Some(value),
                _ => {}
            }
        }
        error
    }

    /// FATAL and PANIC end the session; the server hangs up after them.
    pub fn is_fatal(&self) -> bool {
        matches!(self.severity.as_str(), "FATAL" | "PANIC")
    }

    /// The `PluginError` this server error becomes. `context` says what was
    /// being done (e.g. the query) and is appended to the message.
    pub fn into_plugin_error(self, context: &str) -> PluginError {
        let class = self.code.get(..2).unwrap_or("");
        let text = if context.is_empty() {
            self.to_string()
        } else {
            format!("{self} ({context})")
        };
        match (class, self.code.as_str()) {
            // invalid_authorization_specification, invalid_password
            ("28", _) => PluginError::Auth(text),
            // invalid_catalog_name: the `database` key names no database
            (_, "3D000") => PluginError::Config(format!("`database`: {text}")),
            // connection exceptions, insufficient resources, shutdowns,
            // serialization failures and deadlocks: a later attempt may work
            ("08" | "53" | "40", _) | (_, "57P01" | "57P02" | "57P03") => {
                PluginError::Retryable(text)
            }
            _ => PluginError::Permanent(text),
        }
    }
}

impl fmt::Display for DbError {
    /// `ERROR 42P01: relation "nope" does not exist at position 15; DETAIL: ...; HINT: ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = if self.severity.is_empty() {
            "ERROR"
        } else {
            &self.severity
        };
        write!(f, "{severity} {}: {}", self.code, self.message)?;
        if let Some(position) = &self.position {
            write!(f, " at position {position}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, "; DETAIL: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; HINT: {hint}")?;
        }
        Ok(())
    }
}

/// A socket failure while connecting to `target` (`host:port`).
pub fn connect_error(target: &str, error: &io::Error) -> PluginError {
    match error.kind() {
        // On wasm32-wasip2 a connection outside the plugin's grant fails
        // here; retrying cannot fix a missing grant.
        io::ErrorKind::PermissionDenied => PluginError::Permanent(format!(
            "connection to {target} denied: {error} (is `postgres://{target}` granted to this plugin?)"
        )),
        io::ErrorKind::ConnectionRefused => {
            PluginError::Retryable(format!("connection to {target} refused: {error} (is PostgreSQL listening there?)"))
        }
        io::ErrorKind::TimedOut => PluginError::Retryable(format!("connection to {target} timed out: {error}")),
        _ => PluginError::Retryable(format!("cannot connect to {target}: {error}")),
    }
}

/// A socket failure on an open connection; `doing` says what was under way.
pub fn io_error(target: &str, doing: &str, error: &io::Error) -> PluginError {
    match error.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => PluginError::Permanent(
            format!("malformed message from {target} while {doing}: {error}"),
        ),
        _ => PluginError::Retryable(format!(
            "connection to {target} failed while {doing}: {error}"
        )),
    }
}

/// The server answered with a message the protocol does not allow here.
pub fn unexpected(target: &str, doing: &str, what: &str) -> PluginError {
    PluginError::Permanent(format!("unexpected {what} from {target} while {doing}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str) -> DbError {
        DbError {
            severity: "ERROR".into(),
            code: code.into(),
            message: "m".into(),
            ..Default::default()
        }
    }

    #[test]
    fn classifies_by_sqlstate() {
        assert!(matches!(
            error("28P01").into_plugin_error(""),
            PluginError::Auth(_)
        ));
        assert!(matches!(
            error("3D000").into_plugin_error(""),
            PluginError::Config(_)
        ));
        assert!(matches!(
            error("40001").into_plugin_error(""),
            PluginError::Retryable(_)
        ));
        assert!(matches!(
            error("57P01").into_plugin_error(""),
            PluginError::Retryable(_)
        ));
        assert!(matches!(
            error("42P01").into_plugin_error(""),
            PluginError::Permanent(_)
        ));
    }

    #[test]
    fn renders_every_field() {
        let e = DbError {
            position: Some("15".into()),
            detail: Some("d".into()),
            hint: Some("h".into()),
            ..error("42P01")
        };
        assert_eq!(
            e.to_string(),
            "ERROR 42P01: m at position 15; DETAIL: d; HINT: h"
        );
        let PluginError::Permanent(m) = e.into_plugin_error("query: SELECT 1") else {
            panic!()
        };
        assert_eq!(
            m,
            "ERROR 42P01: m at position 15; DETAIL: d; HINT: h (query: SELECT 1)"
        );
    }
}
