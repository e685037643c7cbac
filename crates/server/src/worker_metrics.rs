//! A worker's own Prometheus metrics (`sluice worker --metrics-listen`):
//! what only the process running the plugins sees, live. The server's
//! `/metrics` counts what the shared state records (runs, rows, the queue);
//! this adds each destination request's latency and the API's throttling
//! as they happen, the plugin instances alive and the runs under way.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use sluice_engine::observe::RunObserver;
use sluice_runtime::sandbox::http::RequestSample;

/// Request latency buckets, in seconds: a fast internal API answers in
/// milliseconds, a bulk CRM call can take most of a minute.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub struct WorkerMetrics {
    registry: Registry,
    /// Destination requests that went to the network, by destination
    /// plugin and outcome, from sending to the response head.
    pub request_seconds: HistogramVec,
    /// Responses asking to slow down (429, or any with `Retry-After`), by
    /// destination plugin.
    pub throttled: IntCounterVec,
    /// Runs this worker ended, by status.
    pub runs: IntCounterVec,
    /// Runs under way on this worker.
    pub runs_active: IntGauge,
    /// Plugin instances alive on this worker (set when scraped).
    pub instances: IntGauge,
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sluice_destination_request_duration_seconds",
                "Destination HTTP requests, from sending to the response head, by destination plugin and outcome (2xx, 3xx, 4xx, 5xx, no_response).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["destination", "outcome"],
        )
        .expect("metric names and labels are valid");
        let throttled = IntCounterVec::new(
            Opts::new(
                "sluice_destination_throttled_total",
                "Destination responses asking to slow down (429 or Retry-After), by destination plugin.",
            ),
            &["destination"],
        )
        .expect("metric names and labels are valid");
        let runs = IntCounterVec::new(
            Opts::new(
                "sluice_worker_runs_total",
                "Runs this worker ended, by status.",
            ),
            &["status"],
        )
        .expect("metric names and labels are valid");
        let runs_active = IntGauge::new(
            "sluice_worker_runs_active",
            "Runs under way on this worker.",
        )
        .expect("metric names are valid");
        let instances = IntGauge::new(
            "sluice_instances",
            "Plugin instances alive on this worker, of every tenant.",
        )
        .expect("metric names are valid");
        for metric in [
            Box::new(request_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(throttled.clone()),
            Box::new(runs.clone()),
            Box::new(runs_active.clone()),
            Box::new(instances.clone()),
        ] {
            registry
                .register(metric)
                .expect("each metric is registered once");
        }
        WorkerMetrics {
            registry,
            request_seconds,
            throttled,
            runs,
            runs_active,
            instances,
        }
    }

    /// The text exposition format, with the instance gauge read now.
    pub fn render(&self, live_instances: usize) -> String {
        self.instances
            .set(i64::try_from(live_instances).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding metrics into memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `outcome` label of a request: its status class, or `no_response`.
fn outcome(sample: &RequestSample) -> &'static str {
    match sample.status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(_) => "5xx",
        None => "no_response",
    }
}

impl RunObserver for WorkerMetrics {
    fn destination_request(&self, destination: &str, sample: RequestSample) {
        self.request_seconds
            .with_label_values(&[destination, outcome(&sample)])
            .observe(sample.took.as_secs_f64());
        if sample.throttled {
            self.throttled.with_label_values(&[destination]).inc();
        }
    }
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<WorkerMetrics>,
    runtime: sluice_runtime::Runtime,
) -> tokio::task::JoinHandle<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                metrics.render(runtime.live_instances()),
            )
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the worker's metrics endpoint stopped");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_land_in_their_destinations_histogram_and_throttles_are_counted() {
        let metrics = WorkerMetrics::new();
        let sample = |status, throttled, ms| RequestSample {
            status,
            throttled,
            took: Duration::from_millis(ms),
        };
        metrics.destination_request("hubspot", sample(Some(200), false, 30));
        metrics.destination_request("hubspot", sample(Some(429), true, 4));
        metrics.destination_request("salesforce", sample(None, false, 2000));
        let text = metrics.render(3);
        assert!(
            text.contains(
                "sluice_destination_request_duration_seconds_bucket{destination=\"hubspot\",outcome=\"2xx\",le=\"0.05\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_destination_throttled_total{destination=\"hubspot\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_destination_request_duration_seconds_count{destination=\"salesforce\",outcome=\"no_response\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("sluice_instances 3"), "{text}");
    }
}
