//! Where plugins come from: the first-party components built into the
//! binary ([`builtin`]), components installed into a project and pinned by
//! digest in `sluice.lock` ([`store`]), and resolving a project's plugin
//! reference to one of them with the sandbox the project grants it
//! ([`resolve`]).
//!
//! The run loads plugins through this crate, which is why installing and
//! pinning live here rather than with the plugin-author tooling: a digest
//! check at load time is part of running a sync.

pub mod builtin;
pub mod resolve;
pub mod store;

pub use resolve::{load_plugin, protected_paths, refused_grants, sandbox_for};
