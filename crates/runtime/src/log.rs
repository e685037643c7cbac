//! Where a plugin's words go: its `host.log` calls and its captured stdout
//! and stderr, each tagged with the plugin's name. The default sink is the
//! host's `tracing` log; tests and servers can install their own.

use std::fmt;
use std::sync::Arc;

/// Which channel a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    Stdout,
    Stderr,
    /// `host.log` at this level.
    Log(super::bindings::host::Level),
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogSource::Stdout => f.write_str("stdout"),
            LogSource::Stderr => f.write_str("stderr"),
            LogSource::Log(_) => f.write_str("log"),
        }
    }
}

/// One line a plugin wrote.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub plugin: Arc<str>,
    pub source: LogSource,
    pub message: String,
}

/// Receives plugin log lines.
pub type LogSink = Arc<dyn Fn(LogLine) + Send + Sync>;

/// Forward plugin lines to `tracing`, with the plugin's name as a field.
pub fn tracing_sink() -> LogSink {
    use super::bindings::host::Level;
    Arc::new(|line: LogLine| {
        let plugin = &*line.plugin;
        let source = line.source;
        let message = line.message;
        match line.source {
            LogSource::Log(Level::Error) => tracing::error!(plugin, %source, "{message}"),
            LogSource::Log(Level::Warn) | LogSource::Stderr => {
                tracing::warn!(plugin, %source, "{message}")
            }
            LogSource::Log(Level::Info) | LogSource::Stdout => {
                tracing::info!(plugin, %source, "{message}")
            }
            LogSource::Log(Level::Debug) => tracing::debug!(plugin, %source, "{message}"),
            LogSource::Log(Level::Trace) => tracing::trace!(plugin, %source, "{message}"),
        }
    })
}
