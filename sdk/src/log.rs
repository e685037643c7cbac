//! Logging to the host: lines appear in Sluice's log tagged with the plugin's
//! name. Never log secrets.

pub use crate::bindings::source::sluice::plugin::host::Level;

/// Write one line to the host log.
pub fn log(level: Level, message: &str) {
    crate::bindings::source::sluice::plugin::host::log(level, message);
}

/// `info!("sent {} rows", n)`
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($arg)*)) };
}

/// `warn!("retrying: {}", e)`
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// `debug!("request {}", url)`
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &format!($($arg)*)) };
}
