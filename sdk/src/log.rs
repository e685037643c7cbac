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

/// Report a panic to the host before the instance traps, as one error line
/// `panicked at FILE:LINE:COL: MESSAGE`: the host puts that line into the
/// call's error, so the author sees where their code failed rather than
/// `wasm unreachable instruction executed`. Installed once per instance by
/// every exported call (the SDK's adapters).
pub(crate) fn report_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL
        .call_once(|| std::panic::set_hook(Box::new(|info| log(Level::Error, &panic_line(info)))));
}

fn panic_line(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)");
    match info.location() {
        Some(at) => format!(
            "panicked at {}:{}:{}: {message}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("panicked: {message}"),
    }
}
