//! A plugin's requests against the project's grants.
//!
//! A plugin's spec lists the capabilities it **requests** (`${config.url}`,
//! `dir:${config.path}`, made concrete by
//! [`resolve_requests`](crate::sandbox::requests::resolve_requests)).
//! The project **grants** each plugin instance network patterns and
//! directories. A plugin runs with the intersection, defined precisely:
//!
//! - A requested network pattern `R` is *covered* by a grant `G` when every
//!   connection `R` allows, `G` allows too: `G`'s scheme is `*` or equals
//!   `R`'s (`R = *` needs `G = *`); `R`'s ports lie inside `G`'s (`R = :*`
//!   needs `G = :*`); and `R`'s host is inside `G`'s: `*` covers every name
//!   and every unrestricted IP, `*.example.com` covers its subdomains and
//!   narrower suffixes, a name covers itself, a CIDR covers the addresses
//!   and blocks inside it, an IP covers itself, `localhost` covers loopback
//!   addresses. A request that names a restricted address (or `localhost`)
//!   is covered only by a grant that names it too, so the intersection never
//!   reaches a private address the grant did not name.
//! - A requested directory `dir:GUEST[:rw]` is covered by a directory grant
//!   mounted at `GUEST` or at one of its ancestors; `:rw` also needs a
//!   writable grant.
//! - The plugin gets, for each covered request, **the request itself** (it
//!   lies inside the grant, so it is the intersection of the two): a
//!   directory request is the covering grant's host directory narrowed to the
//!   requested subdirectory, writable only when both say `:rw` (and opened,
//!   like every granted directory, without following a symbolic link in any
//!   component: [`dirs`](crate::sandbox::dirs)). Grants that
//!   no request needs are not given to the plugin; requests no grant covers
//!   are not given either, and `sluice validate` refuses them, naming the
//!   request and the grants.
//! - A spec that requests nothing at all states no needs (first-party
//!   `postgres`, whose host comes from its URL, is one): such a plugin runs
//!   with the project's grants as written, which is still deny-by-default.

use crate::sandbox::policy::{
    canonical, restriction, DirGrant, Grants, HostPattern, NetGrant, NetPolicy, PortPattern,
};
use crate::sandbox::requests::resolve_requests;
use crate::PluginSpec;
use std::path::Path;

/// The outcome of comparing a plugin's requests with its grants.
#[derive(Debug, Clone)]
pub struct Intersection {
    /// What the plugin runs with.
    pub grants: Grants,
    /// Resolved requests no grant covers.
    pub uncovered: Vec<String>,
    /// Requests that could not be made concrete (e.g. a config key is missing).
    pub unresolved: Vec<String>,
    /// The spec requested nothing, so the grants were given as written.
    pub undeclared: bool,
}

impl Intersection {
    pub fn is_refused(&self) -> bool {
        !self.uncovered.is_empty() || !self.unresolved.is_empty()
    }
}

/// Intersect what `spec` requests (with `config_json` filling
/// `${config.x}`) and what is granted.
pub fn intersect(spec: &PluginSpec, config_json: &str, granted: &Grants) -> Intersection {
    if spec.capabilities.is_empty() {
        return Intersection {
            grants: granted.clone(),
            uncovered: Vec::new(),
            unresolved: Vec::new(),
            undeclared: true,
        };
    }
    let config: serde_json::Value = serde_json::from_str(config_json).unwrap_or_default();
    let schema: serde_json::Value = serde_json::from_str(&spec.config_schema).unwrap_or_default();
    let mut out = Intersection {
        grants: Grants::default(),
        uncovered: Vec::new(),
        unresolved: Vec::new(),
        undeclared: false,
    };
    let mut net = Vec::new();
    for request in resolve_requests(&spec.capabilities, &config, &schema) {
        let request = match request {
            Ok(r) => r,
            Err(why) => {
                out.unresolved.push(why);
                continue;
            }
        };
        if let Some(dir) = request.strip_prefix("dir:") {
            match cover_dir(dir, &granted.dirs) {
                Some(d) => out.grants.dirs.push(d),
                None => out.uncovered.push(request),
            }
            continue;
        }
        match NetGrant::parse(&request) {
            Ok(r) if granted.net.grants().iter().any(|g| covers(g, &r)) => net.push(r),
            _ => out.uncovered.push(request),
        }
    }
    out.grants.net = NetPolicy::new(net);
    out
}

/// Whether grant `g` allows everything request `r` allows.
pub fn covers(g: &NetGrant, r: &NetGrant) -> bool {
    let scheme = match (&g.scheme, &r.scheme) {
        (None, _) => true,
        (Some(gs), Some(rs)) => gs == rs,
        (Some(_), None) => false,
    };
    let ports = match (g.ports, r.ports) {
        (PortPattern::Any, _) => true,
        (PortPattern::Range(glo, ghi), PortPattern::Range(rlo, rhi)) => glo <= rlo && rhi <= ghi,
        (PortPattern::Range(..), PortPattern::Any) => false,
    };
    scheme && ports && covers_host(&g.host, &r.host)
}

fn covers_host(g: &HostPattern, r: &HostPattern) -> bool {
    let under = |name: &str, suffix: &str| name.ends_with(&format!(".{suffix}"));
    match r {
        HostPattern::Any => matches!(g, HostPattern::Any),
        HostPattern::Suffix(s) => match g {
            HostPattern::Any => true,
            HostPattern::Suffix(t) => s == t || under(s, t),
            _ => false,
        },
        HostPattern::Name(n) if n == "localhost" => {
            matches!(g, HostPattern::Name(m) if m == "localhost")
        }
        HostPattern::Name(n) => match g {
            HostPattern::Any => true,
            HostPattern::Suffix(t) => under(n, t),
            HostPattern::Name(m) => m == n,
            _ => false,
        },
        HostPattern::Ip(ip) => {
            let ip = canonical(*ip);
            match g {
                HostPattern::Any => restriction(ip).is_none(),
                HostPattern::Ip(gip) => canonical(*gip) == ip,
                HostPattern::Cidr(net) => net.contains(&ip),
                HostPattern::Name(m) => m == "localhost" && ip.is_loopback(),
                HostPattern::Suffix(_) => false,
            }
        }
        HostPattern::Cidr(net) => matches!(g, HostPattern::Cidr(gnet) if gnet.contains(net)),
    }
}

/// The part of a directory grant that a `dir:GUEST[:rw]` request needs.
fn cover_dir(request: &str, granted: &[DirGrant]) -> Option<DirGrant> {
    let (path, wants_write) = match request.rsplit_once(':') {
        Some((p, "rw")) => (p, true),
        Some((p, "ro")) => (p, false),
        _ => (request, false),
    };
    if !path.starts_with('/') {
        return None;
    }
    let path = Path::new(path);
    granted
        .iter()
        .filter(|g| g.writable || !wants_write)
        .find_map(|g| {
            let rel = path.strip_prefix(&g.guest).ok()?;
            if rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return None;
            }
            Some(DirGrant {
                host: g.host.join(rel),
                guest: path.to_string_lossy().into_owned(),
                writable: wants_write,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> NetGrant {
        NetGrant::parse(p).unwrap()
    }

    #[test]
    fn network_coverage() {
        assert!(covers(
            &g("https://*.example.com"),
            &g("https://api.example.com")
        ));
        assert!(covers(
            &g("https://*.example.com"),
            &g("https://*.eu.example.com")
        ));
        assert!(!covers(
            &g("https://*.example.com"),
            &g("https://example.com")
        ));
        assert!(!covers(
            &g("https://api.example.com"),
            &g("http://api.example.com")
        ));
        assert!(covers(
            &g("*://api.example.com:*"),
            &g("http://api.example.com:8080")
        ));
        assert!(!covers(
            &g("https://api.example.com:443"),
            &g("https://api.example.com:*")
        ));
        assert!(covers(&g("http://h:8000-8999"), &g("http://h:8080")));
        assert!(!covers(&g("http://h:8000-8999"), &g("http://h:7999-8001")));
        // `*` does not name restricted addresses, so it covers no request for one.
        assert!(!covers(&g("*://*:*"), &g("http://127.0.0.1:8080")));
        assert!(!covers(&g("*://*:*"), &g("http://localhost:8080")));
        assert!(covers(&g("*://*:*"), &g("http://93.184.216.34:80")));
        assert!(covers(&g("*://localhost:*"), &g("http://127.0.0.1:8080")));
        assert!(covers(
            &g("http://10.0.0.0/8:*"),
            &g("http://10.1.0.0/16:80")
        ));
        assert!(!covers(
            &g("http://10.1.0.0/16:*"),
            &g("http://10.0.0.0/8:80")
        ));
    }

    #[test]
    fn directories_narrow_to_the_request() {
        let grants = [DirGrant {
            host: "/proj/data".into(),
            guest: "/data".into(),
            writable: true,
        }];
        let d = cover_dir("/data/in", &grants).unwrap();
        assert_eq!(
            (d.host.to_str().unwrap(), d.guest.as_str(), d.writable),
            ("/proj/data/in", "/data/in", false)
        );
        assert!(cover_dir("/data:rw", &grants).unwrap().writable);
        assert!(cover_dir("/database", &grants).is_none());
        assert!(cover_dir("/data/../etc", &grants).is_none());
        assert!(cover_dir("data", &grants).is_none());
        let ro = [DirGrant {
            writable: false,
            ..grants[0].clone()
        }];
        assert!(cover_dir("/data:rw", &ro).is_none());
    }

    #[test]
    fn intersection_gives_requests_not_grants() {
        let spec = PluginSpec {
            name: "hook".into(),
            version: "0.1.0".into(),
            description: String::new(),
            capabilities: vec!["${config.url}".into()],
            config_schema: "{}".into(),
            rate_limit: None,
            batch_size: 100,
        };
        let granted = Grants::parse(
            &["https://*.example.com".into(), "dir:/tmp".into()],
            Path::new("/"),
        )
        .unwrap();
        let i = intersect(&spec, r#"{"url":"https://in.example.com/x"}"#, &granted);
        assert!(!i.is_refused());
        let sources: Vec<&str> = i
            .grants
            .net
            .grants()
            .iter()
            .map(|g| g.source.as_str())
            .collect();
        assert_eq!(sources, ["https://in.example.com:443"]);
        assert!(i.grants.dirs.is_empty());
        let i = intersect(&spec, r#"{"url":"https://evil.test/x"}"#, &granted);
        assert_eq!(i.uncovered, ["https://evil.test:443"]);
        let i = intersect(&spec, "{}", &granted);
        assert_eq!(i.unresolved.len(), 1);
        let none = PluginSpec {
            capabilities: vec![],
            ..spec
        };
        let i = intersect(&none, "{}", &granted);
        assert!(i.undeclared && i.grants.dirs.len() == 1);
    }
}
