//! `mysql`: a Sluice source that streams tables and SQL queries out of
//! MySQL and MariaDB. Packets, framing, scrambles and the auth plugins
//! come from `mysql_common`; this crate drives them over the `net` crate's
//! socket: wasi:sockets filtered by the plugin's grant, upgraded to TLS
//! through the host's wasi:tls as `ssl_mode` says.
//!
//! - Auth: mysql_native_password, caching_sha2_password (fast auth, and
//!   full auth with the RSA key exchange), sha256_password, MariaDB's
//!   client_ed25519, auth switch requests; caching_sha2 full auth sends
//!   the password inside TLS, or RSA-encrypted without it.
//! - Reads run in one `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ
//!   ONLY` and stream the text protocol a batch per `next` (see [`reader`]).
//! - Types map as documented on [`types::Kind`] and in the README.

pub mod config;
pub mod conn;
pub mod discover;
pub mod error;
pub mod reader;
pub mod types;

use config::Config;
use conn::Connection;
use reader::MyReader;
use sluice_sdk::prelude::*;

pub struct MySql;

impl Source for MySql {
    type Reader = MyReader;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "mysql",
            env!("CARGO_PKG_VERSION"),
            "Streams tables and SQL queries out of MySQL and MariaDB (TLS by ssl_mode)",
        )
        .capability("mysql://${config.host}:${config.port}")
        .batch_size(5000)
        .config_schema(Config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        let config = Config::parse(config)?;
        let mut conn = Connection::connect(&config)?;
        let rows = conn.query_rows("SELECT 1");
        conn.terminate();
        let rows = rows?;
        match rows.as_slice() {
            [row] if row.first().and_then(|v| v.as_deref()) == Some("1") => Ok(()),
            _ => Err(PluginError::Permanent(format!(
                "`SELECT 1` on {} returned {rows:?} instead of one row with 1",
                config.target()
            ))),
        }
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let config = Config::parse(config)?;
        let mut conn = Connection::connect(&config)?;
        let objects = discover::discover(&mut conn);
        conn.terminate();
        objects
    }

    fn read(config: &str, request: ReadRequest) -> Result<MyReader, PluginError> {
        let config = Config::parse(config)?;
        let sql = match request {
            ReadRequest::Query(sql) => sql,
            ReadRequest::Object(name) => reader::object_query(&name)?,
        };
        MyReader::open(&config, &sql)
    }
}

// The `mysql-destination` component links this crate for its connection
// code without the feature, so it exports only its own world.
#[cfg(feature = "component")]
sluice_sdk::export_source!(MySql);
