//! The sandbox: what a plugin instance may reach. Deny by default; a grant
//! names each network destination and directory.
//!
//! - `policy`: the grant grammar and address rules (pure, no wasmtime).
//! - `http`: the `wasi:http` hook that enforces them on every request.
//! - `sockets`: the `wasi:sockets` address check for raw TCP.
//! - `resolver`: host-side DNS, so the guest never chooses the address.
//! - `dirs`: granted directories, opened without following symbolic links.
//! - `protected`: Sluice's own files, which no directory grant may reach.
//! - `stdio`: captured, size-capped stdout and stderr.
//! - `tls`: what a `wasi:tls` handshake verifies (pure, no wasmtime); the
//!   TCP connection under it was checked by `sockets`.

pub mod cassette;
pub mod dirs;
pub mod http;
pub mod intersect;
pub mod policy;
pub mod protected;
pub mod requests;
pub mod resolver;
pub mod scrub;
pub mod sockets;
pub mod stdio;
pub mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A capability a plugin tried to use and was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `network (http)`, `network (tcp)`, `filesystem`...
    pub capability: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} denied: {}", self.capability, self.detail)
    }
}

/// Denials recorded during the current call of one instance.
#[derive(Debug, Clone, Default)]
pub struct Denials(Arc<Mutex<Vec<Denial>>>);

impl Denials {
    pub fn record(&self, capability: &'static str, detail: impl std::fmt::Display) {
        let denial = Denial {
            capability,
            detail: detail.to_string(),
        };
        tracing::warn!(capability, detail = %denial.detail, "sandbox denied a plugin request");
        if let Ok(mut list) = self.0.lock() {
            list.push(denial);
        }
    }

    /// Record a denial unless this call already has one of `capability`:
    /// for refusals a plugin can repeat thousands of times a call (a request
    /// flood), where one says all and more would flood the log.
    pub fn record_once(&self, capability: &'static str, detail: impl std::fmt::Display) {
        let seen = self
            .0
            .lock()
            .map(|l| l.iter().any(|d| d.capability == capability))
            .unwrap_or(false);
        if !seen {
            self.record(capability, detail);
        }
    }

    /// Take the denials recorded so far.
    pub fn take(&self) -> Vec<Denial> {
        self.0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// A host timeout a plugin's request ran into: a server that did not
/// connect, answer or keep sending in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// `HTTP connect`, `HTTP first-byte`, `HTTP between-bytes`.
    pub timeout: &'static str,
    pub limit: Duration,
    /// Whether `limit` is the host's maximum (rather than a shorter timeout
    /// the plugin asked for).
    pub host_maximum: bool,
    /// `scheme://host:port`.
    pub target: String,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} timeout of {} ms ({}) reached waiting on {}",
            self.timeout,
            self.limit.as_millis(),
            if self.host_maximum {
                "the host's maximum"
            } else {
                "as the plugin asked"
            },
            self.target
        )
    }
}

/// Stalls recorded during the current call of one instance.
#[derive(Debug, Clone, Default)]
pub struct Stalls(Arc<Mutex<Vec<Stall>>>);

impl Stalls {
    pub fn record(&self, stall: Stall) {
        tracing::warn!("a plugin request stalled: {stall}");
        if let Ok(mut list) = self.0.lock() {
            list.push(stall);
        }
    }

    /// Take the stalls recorded so far.
    pub fn take(&self) -> Vec<Stall> {
        self.0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}
