//! Fault injection: a middleware in front of both APIs that, per request and from a
//! seeded generator, drops the connection, answers 500/503, or delays the response.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::Notify;

use crate::config::FaultConfig;
use crate::handle::Shared;
use crate::EmulatorKind;

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Drop,
    ServerError(u16),
    Slow,
}

/// Fault configuration plus its own generator, so that fault decisions depend only
/// on the seed and the order of requests, not on other random draws.
#[derive(Debug)]
pub(crate) struct FaultState {
    pub config: FaultConfig,
    rng: StdRng,
}

impl FaultState {
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Draws the fault for the next request.
    pub fn decide(&mut self) -> Fault {
        let c = self.config;
        if c.drop_probability > 0.0 && self.rng.random_bool(c.drop_probability.min(1.0)) {
            return Fault::Drop;
        }
        if c.server_error_probability > 0.0
            && self.rng.random_bool(c.server_error_probability.min(1.0))
        {
            let status = if self.rng.random_bool(0.5) { 500 } else { 503 };
            return Fault::ServerError(status);
        }
        if c.slow_probability > 0.0 && self.rng.random_bool(c.slow_probability.min(1.0)) {
            return Fault::Slow;
        }
        Fault::None
    }
}

/// Per-connection switch the server watches: notifying it makes the connection task
/// drop the socket without writing a response.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionKiller(pub Arc<Notify>);

/// Counts a request as being served until dropped (also when the client
/// goes away mid-request).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let mut stats = shared.stats.lock();
        stats.in_flight += 1;
        stats.max_in_flight = stats.max_in_flight.max(stats.in_flight);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.stats.lock().in_flight -= 1;
    }
}

/// The outermost middleware: counts the request and applies the drawn fault.
pub(crate) async fn middleware(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    shared.stats.lock().requests += 1;
    let _serving = InFlight::enter(&shared);
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    let fault = shared.faults.lock().decide();
    match fault {
        Fault::None => next.run(request).await,
        Fault::Slow => {
            shared.stats.lock().slow_injected += 1;
            let delay = shared.faults.lock().config.slow_delay;
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Fault::ServerError(status) => {
            shared.stats.lock().server_errors_injected += 1;
            match shared.kind {
                EmulatorKind::Salesforce => {
                    crate::salesforce::errors::injected_server_error(status)
                }
                EmulatorKind::HubSpot => {
                    crate::hubspot::errors::injected_server_error(&shared, status)
                }
                EmulatorKind::Snowflake => crate::snowflake::injected_server_error(status),
                EmulatorKind::BigQuery => crate::bigquery::injected_server_error(status),
                EmulatorKind::Databricks => crate::databricks::injected_server_error(status),
            }
        }
        Fault::Drop => {
            shared.stats.lock().dropped_injected += 1;
            if let Some(killer) = request.extensions().get::<ConnectionKiller>() {
                killer.0.notify_one();
            }
            // The connection task drops this future together with the socket.
            std::future::pending::<Response>().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults() {
        let config = FaultConfig {
            server_error_probability: 0.3,
            drop_probability: 0.1,
            ..FaultConfig::none()
        };
        let draw = |seed| {
            let mut s = FaultState::new(config, seed);
            (0..200).map(|_| s.decide()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
