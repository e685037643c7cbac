//! Grant grammar and network policy, with no wasmtime in sight so it can be
//! read and tested on its own.
//!
//! A network grant is `scheme://host[:port]`, after Spin's allowed-hosts
//! grammar:
//! - scheme: `*` or one scheme (`https`, `http`, `postgres`, `tcp`, ...);
//! - host: `*`, `*.suffix`, a name, an IP literal (`[::1]` for IPv6) or a
//!   CIDR block (`10.0.0.0/8`);
//! - port: `*`, a number or a range `8000-8999`; when absent, the scheme's
//!   well-known port (a scheme without one needs an explicit port).
//!
//! Paths are refused: a grant is about where a plugin may connect, not what
//! it may ask for there.
//!
//! Restricted addresses (loopback, private, link-local and cloud metadata,
//! CGNAT, unspecified, multicast, and IPv6 forms that embed such an IPv4
//! address) are reachable only when a grant names them: an IP literal or CIDR
//! that contains them, or `localhost` for loopback. A public name that
//! resolves to one of them is refused, so DNS cannot smuggle a plugin into
//! the private network.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// One parsed `scheme://host:port` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetGrant {
    /// `None` means any scheme.
    pub scheme: Option<String>,
    pub host: HostPattern,
    pub ports: PortPattern,
    /// The text the operator wrote, for messages.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    /// `*.example.com`: any name ending in `.example.com` (not the apex).
    Suffix(String),
    Name(String),
    Ip(IpAddr),
    Cidr(IpNet),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPattern {
    Any,
    Range(u16, u16),
}

/// Why a pattern did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid grant `{pattern}`: {reason}")]
pub struct GrantError {
    pub pattern: String,
    pub reason: String,
}

/// The well-known port of a scheme, used when a grant or URL gives none.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        "redis" => 6379,
        "amqp" => 5672,
        "nats" => 4222,
        "mqtt" => 1883,
        _ => return None,
    })
}

impl NetGrant {
    pub fn parse(pattern: &str) -> Result<Self, GrantError> {
        let err = |reason: &str| GrantError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = pattern.split_once("://").ok_or_else(|| {
            err("expected scheme://host[:port], e.g. https://api.example.com or *://localhost:*")
        })?;
        if scheme.is_empty() {
            return Err(err("empty scheme; use * for any scheme"));
        }
        let scheme = scheme.to_ascii_lowercase();
        if rest.contains('/') && !rest.contains(['[', ']']) && IpNet::from_str_opt(rest).is_none() {
            // A path, unless the slash belongs to a CIDR block (checked below).
            let (host_port, _) = rest.split_once('/').unwrap_or((rest, ""));
            if split_host_port(host_port).is_ok_and(|(h, _)| h.parse::<IpAddr>().is_err()) {
                return Err(err(
                    "paths are not allowed in grants; grant the host and port",
                ));
            }
        }
        let (host, port) = split_host_port(rest).map_err(|r| err(&r))?;
        let host = parse_host(host).map_err(|r| err(&r))?;
        let ports = match port {
            Some("*") => PortPattern::Any,
            Some(p) => parse_ports(p).map_err(|r| err(&r))?,
            None if scheme == "*" => {
                return Err(err(
                    "a grant for any scheme needs a port (`*` for any), e.g. *://localhost:*",
                ))
            }
            None => {
                let p = default_port(&scheme).ok_or_else(|| {
                    err(&format!("scheme `{scheme}` has no default port; add :PORT"))
                })?;
                PortPattern::Range(p, p)
            }
        };
        Ok(NetGrant {
            scheme: (scheme != "*").then_some(scheme),
            host,
            ports,
            source: pattern.to_string(),
        })
    }

    fn allows_scheme(&self, scheme: &str) -> bool {
        self.scheme.as_deref().is_none_or(|s| s == scheme)
    }

    fn allows_port(&self, port: u16) -> bool {
        match self.ports {
            PortPattern::Any => true,
            PortPattern::Range(lo, hi) => (lo..=hi).contains(&port),
        }
    }

    /// Whether the grant covers a host name (or IP literal) in a URL.
    fn allows_host(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        match (&self.host, host.parse::<IpAddr>()) {
            (HostPattern::Any, _) => true,
            (HostPattern::Suffix(s), Err(_)) => host.ends_with(&format!(".{s}")),
            (HostPattern::Name(n), Err(_)) => *n == host,
            (HostPattern::Ip(ip), Ok(h)) => canonical(*ip) == canonical(h),
            (HostPattern::Cidr(net), Ok(h)) => net.contains(&canonical(h)),
            _ => false,
        }
    }

    /// Whether this grant explicitly names `ip` (so a restricted address is
    /// allowed): an IP literal, a CIDR block, or `localhost` for loopback.
    pub fn names_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match &self.host {
            HostPattern::Ip(g) => canonical(*g) == ip,
            HostPattern::Cidr(net) => net.contains(&ip),
            HostPattern::Name(n) => n == "localhost" && ip.is_loopback(),
            HostPattern::Any | HostPattern::Suffix(_) => false,
        }
    }
}

trait FromStrOpt: Sized {
    fn from_str_opt(s: &str) -> Option<Self>;
}
impl FromStrOpt for IpNet {
    fn from_str_opt(s: &str) -> Option<Self> {
        let (h, _) = split_host_port(s).ok()?;
        h.parse().ok()
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if s.is_empty() {
        return Err("missing host".into());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in IPv6 host")?;
        return match after {
            "" => Ok((host, None)),
            p if p.starts_with(':') => Ok((host, Some(&p[1..]))),
            _ => Err("unexpected text after ]".into()),
        };
    }
    match s.rsplit_once(':') {
        // A bare IPv6 literal or CIDR without brackets has several colons.
        Some((h, _)) if h.contains(':') => Ok((s, None)),
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((s, None)),
    }
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    let host = host.to_ascii_lowercase();
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return Err("a wildcard host must look like *.example.com".into());
        }
        return Ok(HostPattern::Suffix(suffix.to_string()));
    }
    if host.contains('*') {
        return Err("`*` is only allowed as the whole host or as a leading `*.`".into());
    }
    if host.contains('/') {
        return host
            .parse::<IpNet>()
            .map(HostPattern::Cidr)
            .map_err(|e| format!("bad CIDR block: {e}"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostPattern::Ip(ip));
    }
    let valid = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if !valid {
        return Err(format!("`{host}` is not a valid host name"));
    }
    Ok(HostPattern::Name(host))
}

fn parse_ports(p: &str) -> Result<PortPattern, String> {
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("`{s}` is not a port number"))
    };
    match p.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (port(lo)?, port(hi)?);
            if lo > hi {
                return Err(format!("port range {lo}-{hi} is empty"));
            }
            Ok(PortPattern::Range(lo, hi))
        }
        None => port(p).map(|n| PortPattern::Range(n, n)),
    }
}

/// Treat IPv4-mapped and IPv4-compatible IPv6 addresses as their IPv4 form.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Why an address is restricted, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restricted {
    Loopback,
    Private,
    LinkLocal,
    CloudMetadata,
    SharedAddressSpace,
    Unspecified,
    Multicast,
    Reserved,
}

impl fmt::Display for Restricted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restricted::Loopback => "loopback",
            Restricted::Private => "private network",
            Restricted::LinkLocal => "link-local",
            Restricted::CloudMetadata => "cloud metadata service",
            Restricted::SharedAddressSpace => "carrier-grade NAT",
            Restricted::Unspecified => "unspecified",
            Restricted::Multicast => "multicast",
            Restricted::Reserved => "reserved",
        })
    }
}

/// Classify an address; `None` means an ordinary public address.
pub fn restriction(ip: IpAddr) -> Option<Restricted> {
    match canonical(ip) {
        IpAddr::V4(v4) => restriction_v4(v4),
        IpAddr::V6(v6) => restriction_v6(v6),
    }
}

fn restriction_v4(ip: Ipv4Addr) -> Option<Restricted> {
    let o = ip.octets();
    Some(if o == [169, 254, 169, 254] || o == [100, 100, 100, 200] {
        Restricted::CloudMetadata
    } else if ip.is_loopback() {
        Restricted::Loopback
    } else if ip.is_private() {
        Restricted::Private
    } else if ip.is_link_local() {
        Restricted::LinkLocal
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Restricted::SharedAddressSpace
    } else if ip.is_unspecified() || o[0] == 0 {
        Restricted::Unspecified
    } else if ip.is_multicast() || ip.is_broadcast() {
        Restricted::Multicast
    } else if o[0] >= 240 {
        Restricted::Reserved
    } else {
        return None;
    })
}

fn restriction_v6(ip: Ipv6Addr) -> Option<Restricted> {
    let s = ip.segments();
    // Forms that embed an IPv4 address: NAT64 (64:ff9b::/96), 6to4
    // (2002::/16) and the deprecated IPv4-compatible ::a.b.c.d.
    let embedded = if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        Some(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else if s[0..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        Some(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else {
        None
    };
    if let Some(v4) = embedded {
        return restriction_v4(v4);
    }
    Some(
        if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
            Restricted::CloudMetadata
        } else if ip.is_loopback() {
            Restricted::Loopback
        } else if ip.is_unspecified() {
            Restricted::Unspecified
        } else if (s[0] & 0xfe00) == 0xfc00 {
            Restricted::Private
        } else if (s[0] & 0xffc0) == 0xfe80 {
            Restricted::LinkLocal
        } else if ip.is_multicast() {
            Restricted::Multicast
        } else {
            return None;
        },
    )
}

/// The network part of a plugin's grant.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    grants: Vec<NetGrant>,
}

/// A refused network access, with enough detail for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDenial {
    /// What was attempted, e.g. `https://evil.example:443` or `tcp 127.0.0.1:5432`.
    pub target: String,
    pub reason: String,
}

impl fmt::Display for NetDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.reason)
    }
}

impl NetPolicy {
    pub fn new(grants: Vec<NetGrant>) -> Self {
        NetPolicy { grants }
    }

    pub fn parse(patterns: &[String]) -> Result<Self, GrantError> {
        patterns
            .iter()
            .map(|p| NetGrant::parse(p))
            .collect::<Result<_, _>>()
            .map(NetPolicy::new)
    }

    pub fn grants(&self) -> &[NetGrant] {
        &self.grants
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Step 1 for a URL: some grant covers its scheme, host and port.
    pub fn check_url(&self, scheme: &str, host: &str, port: u16) -> Result<&NetGrant, NetDenial> {
        self.grants
            .iter()
            .find(|g| g.allows_scheme(scheme) && g.allows_host(host) && g.allows_port(port))
            .ok_or_else(|| NetDenial {
                target: format!("{scheme}://{host}:{port}"),
                reason: self.no_grant_reason(),
            })
    }

    fn no_grant_reason(&self) -> String {
        if self.grants.is_empty() {
            "the plugin has no network grant".into()
        } else {
            let list: Vec<&str> = self.grants.iter().map(|g| g.source.as_str()).collect();
            format!("no grant covers it (granted: {})", list.join(", "))
        }
    }

    /// Step 2 for a URL: of the addresses `host` resolved to, keep those the
    /// plugin may reach. A restricted address is kept only when a grant that
    /// covers the port names it.
    pub fn filter_resolved(
        &self,
        host: &str,
        port: u16,
        addrs: &[IpAddr],
    ) -> Result<Vec<IpAddr>, NetDenial> {
        let kept: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|ip| self.may_reach(*ip, port))
            .collect();
        if kept.is_empty() {
            let described: Vec<String> = addrs
                .iter()
                .map(|ip| match restriction(*ip) {
                    Some(r) => format!("{ip} ({r})"),
                    None => ip.to_string(),
                })
                .collect();
            return Err(NetDenial {
                target: format!("{host}:{port}"),
                reason: if addrs.is_empty() {
                    "the name did not resolve".into()
                } else {
                    format!("resolved to {}, which no grant names", described.join(", "))
                },
            });
        }
        Ok(kept)
    }

    fn may_reach(&self, ip: IpAddr, port: u16) -> bool {
        match restriction(ip) {
            None => true,
            Some(_) => self
                .grants
                .iter()
                .any(|g| g.allows_port(port) && g.names_ip(ip)),
        }
    }

    /// Host names named by grants that raw sockets may reach once resolved
    /// by the host (wildcards cannot be resolved, so they never match a raw
    /// socket).
    pub fn socket_names(&self) -> Vec<(String, u16)> {
        // `https://` grants are resolved per request by the HTTP hook; only
        // raw-TCP grants need their names resolved ahead (and an offline
        // API host must not warn on every instance).
        self.grants
            .iter()
            .filter(|g| reaches_raw_tcp(g.scheme.as_deref()))
            .filter_map(|g| match (&g.host, g.ports) {
                (HostPattern::Name(n), PortPattern::Range(lo, _)) => Some((n.clone(), lo)),
                _ => None,
            })
            .collect()
    }

    /// Whether some grant may reach raw TCP: one whose scheme is not a web
    /// scheme (`https://` grants are for `wasi:http`, which the host
    /// performs). Without one, a plugin cannot even create a TCP socket.
    pub fn allows_raw_tcp(&self) -> bool {
        self.grants
            .iter()
            .any(|g| reaches_raw_tcp(g.scheme.as_deref()))
    }

    /// Whether a plugin may look `name` up through `wasi:sockets`: an IP
    /// literal (answered without any query), or a name some grant covers.
    /// Any other lookup would carry data out through the resolver.
    pub fn may_resolve(&self, name: &str) -> bool {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = bare.strip_suffix('.').unwrap_or(bare);
        !name.is_empty() && self.grants.iter().any(|g| g.allows_host(name))
    }

    /// A raw TCP connect to `ip:port`. `resolved` holds, for each granted
    /// name, the addresses the host itself resolved it to.
    pub fn check_socket(
        &self,
        ip: IpAddr,
        port: u16,
        resolved: &[(String, IpAddr)],
    ) -> Result<(), NetDenial> {
        let ip = canonical(ip);
        let allowed = self.grants.iter().any(|g| {
            g.allows_port(port)
                && match &g.host {
                    HostPattern::Ip(_) | HostPattern::Cidr(_) => g.names_ip(ip),
                    HostPattern::Name(n) => {
                        g.names_ip(ip)
                            || resolved
                                .iter()
                                .any(|(name, addr)| name == n && canonical(*addr) == ip)
                    }
                    HostPattern::Any => restriction(ip).is_none(),
                    HostPattern::Suffix(_) => false,
                }
        });
        let restricted_ok = restriction(ip).is_none() || self.may_reach(ip, port);
        if allowed && restricted_ok {
            return Ok(());
        }
        let reason = match restriction(ip) {
            _ if self.grants.is_empty() => self.no_grant_reason(),
            Some(r) if !self.may_reach(ip, port) => format!("{r} address, and no grant names it"),
            _ => self.no_grant_reason(),
        };
        Err(NetDenial {
            target: format!("tcp {}", std::net::SocketAddr::new(ip, port)),
            reason,
        })
    }
}

/// A directory grant: `dir:HOST_PATH[:GUEST_PATH][:rw|:ro]`. The host path
/// resolves against a base folder (the project's, or the working directory
/// for `--allow`); the guest path, where the plugin sees it, defaults to the
/// resolved host path, so `dir:./data` means the same folder to the
/// operator and to the plugin whether it is written in `sluice.yaml` or on
/// the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: std::path::PathBuf,
    pub guest: String,
    pub writable: bool,
}

const DIR_SYNTAX: &str = "expected `dir:HOST_PATH[:GUEST_PATH][:rw|:ro]`";

impl DirGrant {
    pub fn parse(pattern: &str, base_dir: &Path) -> Result<Self, GrantError> {
        let err = |reason: &str| GrantError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let rest = pattern
            .strip_prefix("dir:")
            .ok_or_else(|| err(DIR_SYNTAX))?;
        let mut parts: Vec<&str> = rest.split(':').collect();
        let writable = match parts.last() {
            Some(&"rw") => {
                parts.pop();
                true
            }
            Some(&"ro") => {
                parts.pop();
                false
            }
            _ => false,
        };
        let (host, guest) = match parts.as_slice() {
            [host] => (*host, None),
            [host, guest] => (*host, Some(*guest)),
            _ => return Err(err(DIR_SYNTAX)),
        };
        if host.is_empty() {
            return Err(err("the directory grant has an empty host path"));
        }
        let host = base_dir.join(host);
        let guest = match guest {
            Some(g) if g.starts_with('/') => g.to_owned(),
            Some(g) => {
                return Err(err(&format!(
                    "the guest path `{g}` must be absolute, e.g. /data"
                )))
            }
            None => host.to_string_lossy().into_owned(),
        };
        Ok(DirGrant {
            host,
            guest,
            writable,
        })
    }
}

/// One grant: a network pattern or a directory.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantKind {
    Network(NetGrant),
    Dir(DirGrant),
}

impl GrantKind {
    /// The one grant grammar, for `sluice.yaml`, `--allow` and the sandbox
    /// alike: `dir:...` (relative host paths against `base_dir`) or
    /// `scheme://host[:port]`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, GrantError> {
        if text.starts_with("dir:") {
            return DirGrant::parse(text, base_dir).map(GrantKind::Dir);
        }
        NetGrant::parse(text)
            .map(GrantKind::Network)
            .map_err(|e| GrantError {
                reason: format!(
                    "{}; a grant is `scheme://host[:port]` or `dir:HOST_PATH[:GUEST_PATH][:rw]`",
                    e.reason
                ),
                ..e
            })
    }
}

/// Everything an operator granted one plugin.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub net: NetPolicy,
    pub dirs: Vec<DirGrant>,
}

impl FromIterator<GrantKind> for Grants {
    fn from_iter<I: IntoIterator<Item = GrantKind>>(kinds: I) -> Self {
        let mut net = Vec::new();
        let mut dirs = Vec::new();
        for kind in kinds {
            match kind {
                GrantKind::Network(g) => net.push(g),
                GrantKind::Dir(d) => dirs.push(d),
            }
        }
        Grants {
            net: NetPolicy::new(net),
            dirs,
        }
    }
}

impl Grants {
    /// Parse a list of grant strings (see [`GrantKind::parse`]).
    pub fn parse(patterns: &[String], base_dir: &Path) -> Result<Self, GrantError> {
        patterns
            .iter()
            .map(|p| GrantKind::parse(p, base_dir))
            .collect()
    }

    /// The grant a URL implies: `https://api.example.com/v1/x` grants
    /// `https://api.example.com:443`. Used to turn a plugin's request such as
    /// `${config.url}` into a pattern.
    pub fn pattern_for_url(url: &str) -> Option<String> {
        let parsed = url::Url::parse(url).ok()?;
        let host = parsed.host_str()?;
        let port = parsed
            .port_or_known_default()
            .or_else(|| default_port(parsed.scheme()))?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Some(format!("{}://{}:{}", parsed.scheme(), host, port))
    }
}

/// A grant with this scheme reaches raw TCP: any but the web schemes, whose
/// requests the host makes itself (`wasi:http`).
fn reaches_raw_tcp(scheme: Option<&str>) -> bool {
    scheme.is_none_or(|s| !matches!(s, "http" | "https" | "ws" | "wss"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(p: &[&str]) -> NetPolicy {
        NetPolicy::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn parses_the_grammar() {
        let g = NetGrant::parse("https://*.salesforce.com").unwrap();
        assert_eq!(g.host, HostPattern::Suffix("salesforce.com".into()));
        assert_eq!(g.ports, PortPattern::Range(443, 443));
        assert_eq!(NetGrant::parse("*://localhost:*").unwrap().scheme, None);
        assert_eq!(
            NetGrant::parse("tcp://10.0.0.0/8:5432").unwrap().host,
            HostPattern::Cidr("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            NetGrant::parse("http://[::1]:8080").unwrap().host,
            HostPattern::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            NetGrant::parse("postgres://db:5000-5002").unwrap().ports,
            PortPattern::Range(5000, 5002)
        );
    }

    #[test]
    fn refuses_bad_patterns_with_reasons() {
        for (p, why) in [
            ("example.com", "scheme://"),
            ("https://example.com/path", "paths"),
            ("*://localhost", "needs a port"),
            ("tcp://db", "no default port"),
            ("https://ex*ample.com", "`*` is only allowed"),
            ("https://a.com:99999", "not a port"),
            ("https://a.com:9-1", "empty"),
        ] {
            let e = NetGrant::parse(p).unwrap_err();
            assert!(e.to_string().contains(why), "{p}: {e}");
        }
    }

    #[test]
    fn matches_urls() {
        let p = policy(&["https://*.example.com", "http://localhost:8000-8100"]);
        assert!(p.check_url("https", "api.example.com", 443).is_ok());
        assert!(
            p.check_url("https", "example.com", 443).is_err(),
            "suffix does not match the apex"
        );
        assert!(
            p.check_url("http", "api.example.com", 443).is_err(),
            "scheme"
        );
        assert!(
            p.check_url("https", "api.example.com", 8443).is_err(),
            "port"
        );
        assert!(p.check_url("http", "localhost", 8080).is_ok());
        let d = p.check_url("https", "evil.test", 443).unwrap_err();
        assert!(d.reason.contains("https://*.example.com"), "{d}");
    }

    #[test]
    fn classifies_restricted_addresses_including_embedded_ipv4() {
        let r = |s: &str| restriction(s.parse().unwrap());
        assert_eq!(r("169.254.169.254"), Some(Restricted::CloudMetadata));
        assert_eq!(r("::ffff:169.254.169.254"), Some(Restricted::CloudMetadata));
        assert_eq!(r("64:ff9b::a9fe:a9fe"), Some(Restricted::CloudMetadata));
        assert_eq!(r("2002:7f00:1::"), Some(Restricted::Loopback));
        assert_eq!(r("fd00:ec2::254"), Some(Restricted::CloudMetadata));
        assert_eq!(r("127.0.0.1"), Some(Restricted::Loopback));
        assert_eq!(r("10.1.2.3"), Some(Restricted::Private));
        assert_eq!(r("100.64.0.1"), Some(Restricted::SharedAddressSpace));
        assert_eq!(r("fe80::1"), Some(Restricted::LinkLocal));
        assert_eq!(r("0.0.0.0"), Some(Restricted::Unspecified));
        assert_eq!(r("93.184.216.34"), None);
        assert_eq!(r("2606:4700::1111"), None);
    }

    #[test]
    fn a_name_cannot_smuggle_in_a_restricted_address() {
        let p = policy(&["https://metadata.test"]);
        let meta: IpAddr = "169.254.169.254".parse().unwrap();
        let e = p
            .filter_resolved("metadata.test", 443, &[meta])
            .unwrap_err();
        assert!(e.reason.contains("cloud metadata"), "{e}");
        let public: IpAddr = "93.184.216.34".parse().unwrap();
        assert_eq!(
            p.filter_resolved("metadata.test", 443, &[meta, public])
                .unwrap(),
            vec![public]
        );
        // Named explicitly, loopback is fine.
        let p = policy(&["http://localhost:8080", "http://10.0.0.0/8:80"]);
        assert!(p
            .filter_resolved("localhost", 8080, &["127.0.0.1".parse().unwrap()])
            .is_ok());
        assert!(p
            .filter_resolved("internal", 80, &["10.9.9.9".parse().unwrap()])
            .is_ok());
        assert!(p
            .filter_resolved("internal", 81, &["10.9.9.9".parse().unwrap()])
            .is_err());
    }

    #[test]
    fn sockets_reach_only_named_or_resolved_addresses() {
        let p = policy(&[
            "postgres://db.internal:5432",
            "tcp://127.0.0.1:6379",
            "*://*:443",
        ]);
        let resolved = vec![("db.internal".to_string(), "10.0.0.5".parse().unwrap())];
        let ok = |ip: &str, port| p.check_socket(ip.parse().unwrap(), port, &resolved);
        assert!(ok("127.0.0.1", 6379).is_ok());
        assert!(ok("127.0.0.1", 5432).is_err());
        // 10.0.0.5 is private, but it is what the granted name resolved to;
        // it still needs naming to be reachable.
        let e = ok("10.0.0.5", 5432).unwrap_err();
        assert!(e.reason.contains("private"), "{e}");
        assert!(
            ok("93.184.216.34", 443).is_ok(),
            "wildcard host reaches public addresses"
        );
        assert!(ok("169.254.169.254", 443).is_err());
        assert!(
            ok("::ffff:127.0.0.1", 6379).is_ok(),
            "mapped form is the same address"
        );
    }

    #[test]
    fn raw_tcp_and_lookups_need_a_grant_that_covers_them() {
        assert!(!policy(&[]).allows_raw_tcp());
        assert!(!policy(&["https://api.example.com"]).allows_raw_tcp());
        assert!(policy(&["postgres://db.internal:5432"]).allows_raw_tcp());
        assert!(policy(&["*://*:443"]).allows_raw_tcp());
        let p = policy(&["https://api.example.com", "postgres://db.internal:5432"]);
        assert!(p.may_resolve("api.example.com"));
        assert!(p.may_resolve("DB.internal."));
        assert!(p.may_resolve("10.1.2.3"));
        assert!(p.may_resolve("[::1]"));
        assert!(!p.may_resolve("secret-data.attacker.example"));
        assert!(!p.may_resolve("example.com"));
        assert!(!p.may_resolve(""));
        assert!(!policy(&[]).may_resolve("api.example.com"));
        // Only raw-TCP grants are resolved ahead, for the connect check.
        assert_eq!(p.socket_names(), vec![("db.internal".to_string(), 5432)]);
    }

    fn net(s: &str) -> NetGrant {
        match GrantKind::parse(s, Path::new("/p")).unwrap() {
            GrantKind::Network(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn network_patterns() {
        let g = net("https://*.Salesforce.com");
        assert_eq!(
            (g.scheme.as_deref(), g.host, g.ports),
            (
                Some("https"),
                HostPattern::Suffix("salesforce.com".into()),
                PortPattern::Range(443, 443)
            )
        );
        assert_eq!(
            net("postgres://127.0.0.1:5432").ports,
            PortPattern::Range(5432, 5432)
        );
        assert_eq!(
            net("http://[::1]:8080").host,
            HostPattern::Ip("::1".parse().unwrap())
        );
        assert_eq!(net("tcp://db:*").ports, PortPattern::Any);
        assert_eq!(
            net("tcp://10.0.0.0/8:5432").host,
            HostPattern::Cidr("10.0.0.0/8".parse().unwrap())
        );
        assert!(GrantKind::parse("https://a.com/path", Path::new("/")).is_err());
        assert!(GrantKind::parse("https://a.com:99999", Path::new("/")).is_err());
        assert!(GrantKind::parse("a.com", Path::new("/")).is_err());
        assert!(GrantKind::parse("https://a..com", Path::new("/")).is_err());
    }

    #[test]
    fn dir_grants() {
        let base = Path::new("/proj");
        let d = DirGrant::parse("dir:data:/in:rw", base).unwrap();
        assert_eq!(
            d,
            DirGrant {
                host: "/proj/data".into(),
                guest: "/in".into(),
                writable: true
            }
        );
        let d = DirGrant::parse("dir:/srv/in", base).unwrap();
        assert_eq!(
            (d.host.to_str(), d.guest.as_str(), d.writable),
            (Some("/srv/in"), "/srv/in", false)
        );
        assert_eq!(DirGrant::parse("dir:out", base).unwrap().guest, "/proj/out");
        assert!(DirGrant::parse("dir:/srv:rel", base).is_err());
        assert!(DirGrant::parse("dir:a:/b:/c:rw", base).is_err());
        assert!(DirGrant::parse("dir::rw", base).is_err());
    }

    #[test]
    fn url_to_pattern() {
        assert_eq!(
            Grants::pattern_for_url("https://hooks.example.com/x?y").unwrap(),
            "https://hooks.example.com:443"
        );
        assert_eq!(
            Grants::pattern_for_url("http://127.0.0.1:9000/").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            Grants::pattern_for_url("postgres://db:5432").unwrap(),
            "postgres://db:5432"
        );
    }
}
