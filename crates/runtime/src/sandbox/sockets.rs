//! Raw TCP for plugins (database wire protocols). `wasi:sockets` only shows
//! the host an IP and port, so names in grants are resolved by the host when
//! the instance starts, and a connect is allowed only to an address that is
//! named by a grant or that a granted name resolved to. Listening, binding
//! and UDP are never allowed.
//!
//! wasmtime-wasi creates the OS socket in `create-tcp-socket`, before any
//! address is known, so the address check alone cannot stop a plugin from
//! holding thousands of idle sockets. The host therefore answers
//! `create-tcp-socket` itself ([`GatedSockets`]): without a grant that may
//! reach raw TCP no OS socket is ever created, and with one the instance may
//! hold at most `limits.sockets` at a time. It answers `ip-name-lookup` too:
//! a name is resolved only if a grant covers it, so the resolver cannot
//! carry data out.

use super::policy::NetPolicy;
use super::resolver::Resolve;
use super::Denials;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    self, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily, Network};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::p2::{DynPollable, SocketError, SocketResult, TcpSocket};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};
use wasmtime_wasi::WasiCtxBuilder;

/// Resolve every name in the grant that a socket may reach.
pub async fn resolve_granted_names(
    policy: &NetPolicy,
    resolver: &dyn Resolve,
) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    for (name, _) in policy.socket_names() {
        match tokio::time::timeout(std::time::Duration::from_secs(5), resolver.resolve(&name)).await
        {
            Ok(Ok(ips)) => out.extend(ips.into_iter().map(|ip| (name.clone(), ip))),
            Ok(Err(e)) => tracing::warn!(host = %name, "granted name did not resolve: {e}"),
            Err(_) => tracing::warn!(host = %name, "granted name took too long to resolve"),
        }
    }
    out
}

/// Install the address check on a WASI context.
pub fn install(
    builder: &mut WasiCtxBuilder,
    policy: Arc<NetPolicy>,
    resolved: Vec<(String, IpAddr)>,
    denials: Denials,
) {
    // Socket creation is gated by `GatedSockets` (no OS socket without a
    // raw-TCP grant); every address then reaches the check below.
    let resolved = Arc::new(resolved);
    builder.allow_tcp(policy.allows_raw_tcp());
    builder.allow_udp(false);
    // Lookups are gated name by name in `GatedSockets`.
    builder.allow_ip_name_lookup(!policy.is_empty());
    builder.socket_addr_check(move |addr: SocketAddr, usage: SocketAddrUse| {
        let verdict = check(&policy, &resolved, addr, usage);
        if let Err(reason) = &verdict {
            denials.record("network (tcp)", reason);
        }
        Box::pin(std::future::ready(verdict.is_ok()))
    });
}

fn check(
    policy: &NetPolicy,
    resolved: &[(String, IpAddr)],
    addr: SocketAddr,
    usage: SocketAddrUse,
) -> Result<(), String> {
    match usage {
        SocketAddrUse::TcpConnect => policy
            .check_socket(addr.ip(), addr.port(), resolved)
            .map_err(|d| d.to_string()),
        // An implicit bind before connect uses the unspecified address.
        SocketAddrUse::TcpBind if addr.ip().is_unspecified() && addr.port() == 0 => Ok(()),
        other => Err(format!(
            "{other:?} on {addr}: plugins may only open outbound TCP connections"
        )),
    }
}

/// What one instance may do with `wasi:sockets` beyond the address check:
/// create TCP sockets (only with a raw-TCP grant, at most `max_open` at a
/// time) and look names up (only names a grant covers).
pub struct SocketGate {
    policy: Arc<NetPolicy>,
    max_open: usize,
    /// Table handles of the TCP sockets this instance created and may still
    /// hold; pruned of dropped ones before each creation.
    open: BTreeSet<u32>,
    denials: Denials,
}

impl SocketGate {
    pub fn new(policy: Arc<NetPolicy>, max_open: usize, denials: Denials) -> Self {
        SocketGate {
            policy,
            max_open,
            open: BTreeSet::new(),
            denials,
        }
    }

    /// Forget sockets the plugin has dropped. A freed handle can be reused
    /// by another resource, so a handle counts only while it still names a
    /// TCP socket.
    fn prune(&mut self, table: &ResourceTable) {
        self.open
            .retain(|rep| table.get::<TcpSocket>(&Resource::new_borrow(*rep)).is_ok());
    }
}

/// `wasi:sockets` as a plugin sees it: wasmtime-wasi's implementation behind
/// the instance's [`SocketGate`].
pub struct GatedSockets<'a> {
    pub inner: WasiSocketsCtxView<'a>,
    pub gate: &'a mut SocketGate,
}

impl HasData for GatedSockets<'static> {
    type Data<'a> = GatedSockets<'a>;
}

impl tcp_create_socket::Host for GatedSockets<'_> {
    fn create_tcp_socket(
        &mut self,
        address_family: IpAddressFamily,
    ) -> SocketResult<Resource<TcpSocket>> {
        let gate = &mut *self.gate;
        if !gate.policy.allows_raw_tcp() {
            gate.denials.record(
                "network (tcp)",
                "creating a TCP socket: the plugin has no grant that reaches raw TCP \
                 (a `tcp://`, database or `*://` grant); no socket was created",
            );
            return Err(ErrorCode::AccessDenied.into());
        }
        gate.prune(self.inner.table);
        if gate.open.len() >= gate.max_open {
            gate.denials.record(
                "network (tcp)",
                format!(
                    "creating a TCP socket: the instance already holds {} open sockets, \
                     the limit of `limits.sockets` ({})",
                    gate.open.len(),
                    gate.max_open
                ),
            );
            return Err(ErrorCode::NewSocketLimit.into());
        }
        let socket = self.inner.create_tcp_socket(address_family)?;
        gate.open.insert(socket.rep());
        Ok(socket)
    }
}

impl ip_name_lookup::Host for GatedSockets<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        if !self.gate.policy.may_resolve(&name) {
            self.gate.denials.record(
                "network (dns)",
                format!(
                    "looking up `{}`: no grant covers that name; nothing was resolved",
                    name.escape_debug()
                ),
            );
            return Err(ErrorCode::AccessDenied.into());
        }
        ip_name_lookup::Host::resolve_addresses(&mut self.inner, network, name)
    }
}

impl HostResolveAddressStream for GatedSockets<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<wasmtime_wasi::p2::bindings::sockets::network::IpAddress>, SocketError> {
        self.inner.resolve_next_address(stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.inner.subscribe(stream)
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        HostResolveAddressStream::drop(&mut self.inner, stream)
    }
}

// `network` is the interface the two gated ones share their types with;
// its functions pass straight through.
impl network::Host for GatedSockets<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.inner, error)
    }

    fn network_error_code(
        &mut self,
        error: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.inner.network_error_code(error)
    }
}

impl network::HostNetwork for GatedSockets<'_> {
    fn drop(&mut self, network: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, network)
    }
}
