//! The plugin runtime: a wasmtime engine, compiled-component cache, and
//! sandboxed instances of source, transform and destination plugins.

pub mod bindings;
