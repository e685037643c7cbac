//! Raw TCP for plugins (database wire protocols). `wasi:sockets` only shows
//! the host an IP and port, so names in grants are resolved by the host when
//! the instance starts, and a connect is allowed only to an address that is
//! named by a grant or that a granted name resolved to. Listening, binding
//! and UDP are never allowed.

use super::policy::NetPolicy;
use super::resolver::Resolve;
use super::Denials;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use wasmtime_wasi::sockets::SocketAddrUse;
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
    // TCP stays on even without grants so that every attempt reaches the
    // check below and is recorded as a denial naming the address.
    let resolved = Arc::new(resolved);
    builder.allow_tcp(true);
    builder.allow_udp(false);
    // Guests may look names up (std::net does) but the answer does not
    // matter: the check below only admits granted addresses.
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
