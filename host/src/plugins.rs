//! The first-party plugins, compiled to components by build.rs and embedded
//! in the binary, so `sluice demo` and a first run need no other files.
//! build.rs generates `embedded(name)`, `EMBEDDED` and a `NAME` / `NAME_PATH`
//! constant per plugin from its one list of plugins.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
