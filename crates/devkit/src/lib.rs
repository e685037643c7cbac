//! Plugin-author tooling, behind `sluice plugin new|build|test`:
//!
//! - [`scaffold`]: a new plugin project (Rust with the SDK vendored,
//!   Python, JavaScript) and building it into a component;
//! - [`harness`]: fixtures (rows in; rows, row errors or per-row results
//!   out) run against a component, with HTTP record and replay through the
//!   sandbox's cassettes (`sluice_runtime::sandbox::cassette`);
//! - [`toolchain`]: componentize-py and componentize-js, installed once
//!   per pinned version into the user's cache for Python and JavaScript
//!   builds.
//!
//! Installing and pinning plugins is `sluice_registry`'s: a run needs it.

pub mod harness;
pub mod scaffold;
pub mod toolchain;
