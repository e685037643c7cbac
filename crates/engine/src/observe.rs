//! Watching runs from outside: what a `sluice worker` turns into its
//! Prometheus metrics (crates/server/src/worker_metrics.rs). The engine
//! only calls the trait; a run without an observer pays nothing.

use sluice_runtime::sandbox::http::{RequestObserver, RequestSample};
use sluice_runtime::Instance;
use std::sync::Arc;

/// Told what a run's destination does on the wire.
pub trait RunObserver: Send + Sync {
    /// One HTTP request of a destination whose plugin is named
    /// `destination` went to the network and ended as `sample` says.
    fn destination_request(&self, destination: &str, sample: RequestSample);
}

/// Make `instance`'s requests known to `observer` as `destination`'s.
pub(crate) fn watch_requests(
    instance: &mut Instance,
    observer: &Arc<dyn RunObserver>,
    destination: &str,
) {
    let observer = observer.clone();
    let name: Arc<str> = destination.into();
    let forward: RequestObserver =
        Arc::new(move |sample| observer.destination_request(&name, sample));
    instance.set_request_observer(forward);
}
