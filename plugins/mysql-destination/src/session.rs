//! A connection set up for writing.

use mysql::config::Config;
use mysql::conn::Connection;
use sluice_sdk::PluginError;

/// Connect and prepare the session: utf8mb4 literals; strict mode, so a
/// value a column cannot hold fails its row instead of being truncated
/// with a warning; `NO_BACKSLASH_ESCAPES`, so [`crate::literal`] quotes a
/// string by doubling its quotes and nothing else. The source's connect
/// already set the time zone to UTC, in which timestamps are written.
pub fn connect(config: &Config) -> Result<Connection, PluginError> {
    let mut conn = Connection::connect(config)?;
    let setup = conn.execute("SET NAMES utf8mb4").and_then(|()| {
        conn.execute(
            "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), \
             'STRICT_ALL_TABLES', 'NO_BACKSLASH_ESCAPES')",
        )
    });
    match setup {
        Ok(()) => Ok(conn),
        Err(error) => {
            conn.terminate();
            Err(error)
        }
    }
}
