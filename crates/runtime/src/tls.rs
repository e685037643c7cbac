//! `wasi:tls` for plugins: wasmtime-wasi-tls linked with a provider per
//! instance that verifies as the instance's policy says
//! (`sandbox/tls.rs`), and `sluice:tls/policy` (`wit/tls/policy.wit`),
//! through which a plugin sets that policy. The default, before any `set`,
//! is full verification against the public roots.

use crate::sandbox::tls::{ca_file_host_path, read_ca_file, TlsPolicy, Verification};
use crate::state::PluginState;
use anyhow::Result;
use rustls::pki_types::ServerName;
use std::sync::{Arc, Mutex};
use wasmtime::component::Linker;
use wasmtime_wasi_tls::{WasiTlsCtx, WasiTlsCtxBuilder, WasiTlsCtxView, WasiTlsView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/tls",
        world: "sluice:tls/host",
        imports: { default: trappable },
    });
}

use bindings::sluice::tls::policy;

/// The instance's policy, shared by its `sluice:tls/policy.set` (which
/// replaces it) and its [`PolicyProvider`] (which reads it when a
/// handshake starts).
pub type SharedPolicy = Arc<Mutex<TlsPolicy>>;

/// The `wasi:tls` context of a new instance and the policy cell it reads.
pub fn instance_tls() -> (WasiTlsCtx, SharedPolicy) {
    let policy = SharedPolicy::default();
    let ctx = WasiTlsCtxBuilder::new()
        .provider(Box::new(PolicyProvider {
            policy: policy.clone(),
        }))
        .build();
    (ctx, policy)
}

/// Link `wasi:tls` (an unstable interface, hence `tls(true)`) and
/// `sluice:tls/policy`.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> Result<()> {
    let mut options = wasmtime_wasi_tls::p2::LinkOptions::default();
    options.tls(true);
    wasmtime_wasi_tls::p2::add_to_linker(linker, &options).map_err(anyhow::Error::from)?;
    policy::add_to_linker::<PluginState, wasmtime::component::HasSelf<PluginState>>(linker, |s| s)
        .map_err(anyhow::Error::from)?;
    Ok(())
}

impl WasiTlsView for PluginState {
    fn tls(&mut self) -> WasiTlsCtxView<'_> {
        WasiTlsCtxView {
            ctx: &mut self.tls,
            table: &mut self.table,
        }
    }
}

impl policy::Host for PluginState {
    fn set(
        &mut self,
        verification: policy::Verification,
        ca_file: Option<String>,
    ) -> wasmtime::Result<Result<(), String>> {
        let verification = match verification {
            policy::Verification::Full => Verification::Full,
            policy::Verification::Chain => Verification::Chain,
            policy::Verification::None => Verification::None,
        };
        let ca_pem = match ca_file {
            None => None,
            Some(guest) => match ca_file_host_path(&guest, &self.tls_ca_dirs)
                .and_then(|host| read_ca_file(&guest, &host))
            {
                Ok(pem) => Some(pem),
                Err(e) => return Ok(Err(e)),
            },
        };
        Ok(
            TlsPolicy::new(verification, ca_pem.as_deref()).map(|policy| {
                *self
                    .tls_policy
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = policy;
            }),
        )
    }
}

/// The `wasmtime-wasi-tls` provider of one instance: each handshake uses
/// the policy current when it starts.
struct PolicyProvider {
    policy: SharedPolicy,
}

impl wasmtime_wasi_tls::TlsProvider for PolicyProvider {
    fn connect(
        &self,
        server_name: String,
        transport: Box<dyn wasmtime_wasi_tls::TlsTransport>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<
                        Box<dyn wasmtime_wasi_tls::TlsStream>,
                        wasmtime_wasi_tls::Error,
                    >,
                > + Send,
        >,
    > {
        let policy = self
            .policy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        Box::pin(async move {
            let config = policy
                .client_config()
                .map_err(wasmtime_wasi_tls::Error::msg)?;
            let name = ServerName::try_from(server_name.clone()).map_err(|_| {
                wasmtime_wasi_tls::Error::msg(format!(
                    "`{server_name}` is neither a DNS name nor an IP address"
                ))
            })?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, transport)
                .await
                .map_err(|e| wasmtime_wasi_tls::Error::msg(handshake_error(&server_name, e)))?;
            Ok(Box::new(stream) as Box<dyn wasmtime_wasi_tls::TlsStream>)
        })
    }
}

/// A failed handshake in words: rustls's reason (an unknown issuer, a name
/// mismatch with the names the certificate holds) and the server name.
fn handshake_error(server_name: &str, error: std::io::Error) -> String {
    match error.downcast::<rustls::Error>() {
        Ok(tls) => format!("with server name `{server_name}`: {tls}"),
        Err(io) => format!("with server name `{server_name}`: {io}"),
    }
}
