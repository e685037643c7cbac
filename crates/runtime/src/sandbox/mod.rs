//! The sandbox: what a plugin instance may reach. Deny by default; a grant
//! names each network destination and directory.
//!
//! - `policy`: the grant grammar and address rules (pure, no wasmtime).
//! - `http`: the `wasi:http` hook that enforces them on every request.
//! - `sockets`: the `wasi:sockets` address check for raw TCP.
//! - `resolver`: host-side DNS, so the guest never chooses the address.
//! - `stdio`: captured, size-capped stdout and stderr.

pub mod cassette;
pub mod http;
pub mod intersect;
pub mod policy;
pub mod requests;
pub mod resolver;
pub mod sockets;
pub mod stdio;

use std::sync::{Arc, Mutex};

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

    /// Take the denials recorded so far.
    pub fn take(&self) -> Vec<Denial> {
        self.0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}
