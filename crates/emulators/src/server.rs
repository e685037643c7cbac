//! The HTTP server under both emulators. It runs hyper directly rather than
//! `axum::serve` because fault injection must be able to close a connection without
//! writing a response, which needs control of each connection's task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::config::EmulatorConfig;
use crate::faults::{self, ConnectionKiller};
use crate::handle::{EmulatorHandle, Shared};
use crate::{bigquery, databricks, hubspot, salesforce, snowflake, EmulatorKind};

/// How long `shutdown` lets in-flight requests finish before closing their sockets.
const GRACE_PERIOD: Duration = Duration::from_secs(5);

/// A running emulator: its address, a handle to its state, and its lifecycle.
/// Dropping it stops the server too (without waiting); prefer [`RunningEmulator::shutdown`].
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    handle: EmulatorHandle,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RunningEmulator {
    /// The address the server is bound to (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, with an unspecified bind address shown as 127.0.0.1.
    /// This is also the Salesforce `instance_url` when a request carries no Host.
    pub fn base_url(&self) -> String {
        self.handle.shared.base_url.clone()
    }

    /// Which API this emulator speaks.
    pub fn kind(&self) -> EmulatorKind {
        self.handle.kind()
    }

    /// Inspection and controls.
    pub fn handle(&self) -> &EmulatorHandle {
        &self.handle
    }

    /// Human-readable connection details (URL and credentials) for CLI output.
    pub fn connection_info(&self) -> String {
        match self.kind() {
            EmulatorKind::Salesforce => salesforce::connection_info(&self.handle.shared),
            EmulatorKind::HubSpot => hubspot::connection_info(&self.handle.shared),
            EmulatorKind::Snowflake => snowflake::connection_info(&self.handle.shared),
            EmulatorKind::BigQuery => bigquery::connection_info(&self.handle.shared),
            EmulatorKind::Databricks => databricks::connection_info(&self.handle.shared),
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to a few seconds), stops
    /// background Bulk job processing, and waits for the server task.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        salesforce::bulk::abort_processing(&self.handle.shared);
        databricks::stop(&self.handle.shared);
        if let Some(task) = self.task.take() {
            task.await.context("emulator server task panicked")?;
        }
        Ok(())
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        salesforce::bulk::abort_processing(&self.handle.shared);
        databricks::stop(&self.handle.shared);
    }
}

/// Binds `addr`, builds the API's router and starts serving in the background.
pub(crate) async fn start(
    kind: EmulatorKind,
    addr: SocketAddr,
    config: EmulatorConfig,
) -> anyhow::Result<RunningEmulator> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {kind} emulator to {addr}"))?;
    let local = listener
        .local_addr()
        .context("reading the emulator's bound address")?;
    let shared = Arc::new(Shared::new(kind, config, base_url_for(local)));
    let api = match kind {
        EmulatorKind::Salesforce => salesforce::setup(&shared)?,
        EmulatorKind::HubSpot => hubspot::setup(&shared)?,
        EmulatorKind::Snowflake => snowflake::setup(&shared).await?,
        EmulatorKind::BigQuery => bigquery::setup(&shared).await?,
        EmulatorKind::Databricks => databricks::setup(&shared, local.ip()).await?,
    };
    let router = api.layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        faults::middleware,
    ));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, router, stop_rx));
    tracing::info!(%kind, addr = %local, "emulator listening");
    Ok(RunningEmulator {
        addr: local,
        handle: EmulatorHandle { shared },
        stop,
        task: Some(task),
    })
}

fn base_url_for(addr: SocketAddr) -> String {
    let mut shown = addr;
    if addr.ip().is_unspecified() {
        shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{shown}")
}

async fn accept_loop(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => serve_connection(stream, router.clone(), &graceful),
                Err(err) => {
                    tracing::warn!(error = %err, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(GRACE_PERIOD) => {
            tracing::warn!("emulator connections still open after the grace period");
        }
    }
}

/// Serves one connection; a fault can kill it through its [`ConnectionKiller`].
fn serve_connection(stream: TcpStream, router: Router, graceful: &GracefulShutdown) {
    let _ = stream.set_nodelay(true);
    let killer = ConnectionKiller::default();
    let request_killer = killer.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(request_killer.clone());
        router.clone().oneshot(request)
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        tokio::select! {
            result = connection => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "emulator connection ended with an error");
                }
            }
            _ = killer.0.notified() => {
                tracing::debug!("emulator dropped a connection (fault injection)");
            }
        }
    });
}
