//! Helpers shared by the host's integration tests.
#![allow(dead_code)]

use sluice::runtime::log::{LogLine, LogSink};
use sluice::runtime::sandbox::policy::Grants;
use sluice::runtime::{Runtime, RuntimeOptions, Sandbox};
use std::sync::{Arc, Mutex};

/// A runtime whose plugin log lines are collected for assertions, with the
/// compile cache in a temporary directory.
pub struct TestRuntime {
    pub runtime: Runtime,
    pub lines: Arc<Mutex<Vec<LogLine>>>,
    pub cache: tempfile::TempDir,
}

pub fn runtime_with(customise: impl FnOnce(&mut RuntimeOptions)) -> TestRuntime {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink_lines = lines.clone();
    let sink: LogSink = Arc::new(move |line| sink_lines.lock().unwrap().push(line));
    let cache = tempfile::tempdir().unwrap();
    let mut options = RuntimeOptions { cache_dir: Some(cache.path().to_path_buf()), log: sink, ..Default::default() };
    customise(&mut options);
    TestRuntime { runtime: Runtime::new(options).unwrap(), lines, cache }
}

pub fn runtime() -> TestRuntime {
    runtime_with(|_| {})
}

pub fn sandbox(grants: &[&str]) -> Sandbox {
    Sandbox::new(Grants::parse(&grants.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap())
}

pub fn text(s: &str) -> sluice::Value {
    sluice::Value::Text(s.to_string())
}
