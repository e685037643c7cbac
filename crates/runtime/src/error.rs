//! Why a call into a plugin failed, named precisely: which plugin, which
//! call, and which limit or capability.

use super::bindings::types::PluginError;
use super::log::escape;
use super::sandbox::{Denial, Stall};
use std::fmt;

/// A failed call into a plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin `{plugin}` failed in `{call}`: {kind}")]
pub struct PluginFailure {
    pub plugin: String,
    pub call: String,
    pub kind: FailureKind,
}

#[derive(Debug, Clone)]
pub enum FailureKind {
    /// The call used more than its CPU time and was interrupted.
    Deadline { limit_ms: u128 },
    /// The call, waiting included, ran past its wall-clock deadline and was
    /// stopped.
    WallDeadline { limit_ms: u128 },
    /// The plugin tried to grow its memory past the ceiling.
    Memory { limit_bytes: usize },
    /// The plugin asked for something its grant does not allow, and failed.
    Denied(Denial),
    /// A request of the plugin ran into a host timeout (a server that did not
    /// answer), and the plugin then returned this error.
    Stalled {
        stall: Box<Stall>,
        error: PluginError,
    },
    /// The plugin trapped (a panic, an unreachable, a stack overflow).
    Trap(String),
    /// The plugin broke the contract (e.g. the wrong number of row results).
    Contract(String),
    /// The plugin returned one of the contract's typed errors.
    Plugin(PluginError),
    /// The instance trapped earlier and cannot be called again.
    Poisoned,
    /// Too many live instances for this tenant.
    InstanceLimit { limit: usize },
    /// Creating the instance failed.
    Instantiate(String),
    /// The plugin handed the host more than a size limit allows of
    /// something the host would keep (its spec); refused unparsed.
    TooLarge {
        /// What was too large, e.g. `spec (config schema included)`.
        what: &'static str,
        bytes: usize,
        limit: usize,
        /// The `limits` key that sets it.
        setting: &'static str,
    },
    /// The plugin or its API asked the host to wait longer than the sync
    /// allows (`max_wait`); the sync stopped, paused until the time given.
    Paused {
        asked_ms: u128,
        max_ms: u128,
        /// When the wait would end, in milliseconds since the Unix epoch.
        until_unix_ms: u128,
    },
    /// The destination's daily cap (`rate_limit.daily`, requests per UTC
    /// day for its credentials) is used up, and the next day begins later
    /// than the sync may wait (`max_wait`); the sync stopped, paused until
    /// then.
    DailyCapUsedUp {
        /// The destination's name in the project.
        destination: String,
        cap: u32,
        /// How long until the allowance comes back (the next UTC midnight).
        /// (u64 milliseconds: a day fits, and the failure stays small.)
        asked_ms: u64,
        max_ms: u64,
        /// When it comes back, in milliseconds since the Unix epoch.
        until_unix_ms: u64,
    },
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Deadline { limit_ms } => {
                write!(
                    f,
                    "exceeded its CPU deadline of {limit_ms} ms and was interrupted"
                )
            }
            FailureKind::WallDeadline { limit_ms } => {
                write!(
                    f,
                    "ran past its wall-clock deadline of {limit_ms} ms (waiting included) and was stopped"
                )
            }
            FailureKind::Memory { limit_bytes } => {
                write!(
                    f,
                    "exceeded its memory ceiling of {} MiB",
                    limit_bytes >> 20
                )
            }
            FailureKind::Denied(d) => write!(f, "{d}"),
            FailureKind::Stalled { stall, error } => {
                write!(f, "{stall}, then failed: {}", describe_plugin_error(error))
            }
            FailureKind::Trap(m) => write!(f, "trapped: {m}"),
            FailureKind::Contract(m) => write!(f, "broke the plugin contract: {m}"),
            FailureKind::Plugin(e) => write!(f, "{}", describe_plugin_error(e)),
            FailureKind::Poisoned => {
                f.write_str("the instance trapped earlier and cannot be used again")
            }
            FailureKind::InstanceLimit { limit } => {
                write!(f, "the tenant already has {limit} live plugin instances")
            }
            FailureKind::Instantiate(m) => write!(f, "could not be instantiated: {m}"),
            FailureKind::TooLarge {
                what,
                bytes,
                limit,
                setting,
            } => write!(
                f,
                "returned a {what} of {bytes} bytes, over the limit of {limit} bytes \
                 (`limits.{setting}`); it was refused before the host parsed it"
            ),
            FailureKind::Paused {
                asked_ms,
                max_ms,
                until_unix_ms,
            } => {
                let until = timestamp(*until_unix_ms);
                write!(
                    f,
                    "asked to wait {} s, longer than the longest wait allowed ({} s, max_wait); \
                     the sync is paused until {until}: what was delivered is committed, run it again then",
                    asked_ms / 1000,
                    max_ms / 1000
                )
            }
            FailureKind::DailyCapUsedUp {
                destination,
                cap,
                asked_ms,
                max_ms,
                until_unix_ms,
            } => {
                let until = timestamp(u128::from(*until_unix_ms));
                write!(
                    f,
                    "destination `{destination}` used up its daily cap of {cap} requests \
                     (rate_limit.daily: per UTC day, for every run writing with its credentials); \
                     it resets at {until}, in {} s, longer than the longest wait allowed ({} s, max_wait); \
                     the sync is paused until {until}: what was delivered is committed, run it again then",
                    asked_ms / 1000,
                    max_ms / 1000
                )
            }
        }
    }
}

/// RFC 3339 of milliseconds since the Unix epoch.
fn timestamp(unix_ms: u128) -> String {
    i64::try_from(unix_ms.saturating_mul(1000))
        .map(crate::values::format_timestamp)
        .unwrap_or_else(|_| "the end of time".into())
}

/// A one-line description of a contract error. The plugin's message is
/// escaped ([`escape`]): it is printed to terminals and logs.
pub fn describe_plugin_error(e: &PluginError) -> String {
    match e {
        PluginError::Config(m) => format!("configuration error: {}", escape(m)),
        PluginError::Auth(m) => format!("authentication failed: {}", escape(m)),
        PluginError::RateLimited(r) => format!(
            "rate limited (retry after {} ms): {}",
            r.retry_after_ms,
            escape(&r.message)
        ),
        PluginError::Retryable(m) => format!("transient error: {}", escape(m)),
        PluginError::Permanent(m) => format!("error: {}", escape(m)),
    }
}

impl PluginFailure {
    /// The contract error, if the plugin returned one.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match &self.kind {
            FailureKind::Plugin(e) | FailureKind::Stalled { error: e, .. } => Some(e),
            _ => None,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.plugin_error(),
            Some(PluginError::Retryable(_) | PluginError::RateLimited(_))
        ) || matches!(&self.kind, FailureKind::InstanceLimit { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_message_prints_on_one_line_without_escapes() {
        let failure = PluginFailure {
            plugin: "p".into(),
            call: "write".into(),
            kind: FailureKind::Plugin(PluginError::Permanent("bad\nERROR forged\u{1b}[2J".into())),
        };
        assert_eq!(
            failure.to_string(),
            "plugin `p` failed in `write`: error: bad\\nERROR forged\\u{1b}[2J"
        );
        // The value itself is kept as the plugin sent it.
        assert!(
            matches!(failure.plugin_error(), Some(PluginError::Permanent(m)) if m.contains('\n'))
        );
    }
}
