//! Operator grants: `scheme://host[:port]` network patterns and
//! `dir:HOST_PATH[:GUEST_PATH][:rw|:ro]` directories.
//!
//! This module only parses and normalises what the operator wrote; the
//! runtime's sandbox enforces it.

use std::fmt;
use std::path::Path;

use super::Str;
pub use crate::runtime::sandbox::policy::DirGrant;
use crate::runtime::sandbox::policy::NetGrant;

/// One grant, as written (`text`) and as parsed (`kind`).
#[derive(Clone, PartialEq)]
pub struct Grant {
    pub text: Str,
    pub kind: GrantKind,
}

/// Secret-aware: a grant that used `${...}` prints as `<redacted>`.
impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_secret() {
            write!(f, "Grant({})", self.text)
        } else {
            write!(f, "Grant({:?})", self.kind)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum GrantKind {
    Network(NetGrant),
    Dir(DirGrant),
}

/// Parses one grant string; the error says what was expected. Network
/// patterns use the sandbox's own grammar (`policy::NetGrant`), so what
/// validates is exactly what the sandbox enforces.
pub fn parse_grant(text: &str, project_dir: &Path) -> Result<GrantKind, String> {
    if let Some(spec) = text.strip_prefix("dir:") {
        return parse_dir(spec, project_dir).map(GrantKind::Dir);
    }
    NetGrant::parse(text).map(GrantKind::Network).map_err(|e| {
        format!(
            "{}; a grant is `scheme://host[:port]` or `dir:HOST_PATH[:GUEST_PATH][:rw]`",
            e.reason
        )
    })
}

/// A directory grant relative to the project: the host path resolves
/// against the project folder, and the guest path defaults to it.
fn parse_dir(spec: &str, project_dir: &Path) -> Result<DirGrant, String> {
    let mut parts: Vec<&str> = spec.split(':').collect();
    let writable = match parts.last() {
        Some(&"rw") => true,
        Some(&"ro") => false,
        _ => {
            parts.push("ro");
            false
        }
    };
    parts.pop();
    let (host, guest) = match parts.as_slice() {
        [host] => (*host, None),
        [host, guest] => (*host, Some(*guest)),
        _ => return Err("expected `dir:HOST_PATH[:GUEST_PATH][:rw|:ro]`".into()),
    };
    if host.is_empty() {
        return Err("the directory grant has an empty host path".into());
    }
    let host = project_dir.join(host);
    let guest = match guest {
        Some(g) if g.starts_with('/') => g.to_owned(),
        Some(g) => return Err(format!("the guest path `{g}` must be absolute")),
        None => host.to_string_lossy().into_owned(),
    };
    Ok(DirGrant {
        host,
        guest,
        writable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::runtime::sandbox::policy::{HostPattern, PortPattern};

    fn net(s: &str) -> NetGrant {
        match parse_grant(s, Path::new("/p")).unwrap() {
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
        assert!(parse_grant("https://a.com/path", Path::new("/")).is_err());
        assert!(parse_grant("https://a.com:99999", Path::new("/")).is_err());
        assert!(parse_grant("a.com", Path::new("/")).is_err());
        assert!(parse_grant("https://a..com", Path::new("/")).is_err());
    }

    #[test]
    fn dir_grants() {
        let d = |s| match parse_grant(s, Path::new("/proj")).unwrap() {
            GrantKind::Dir(d) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            d("dir:data:/data:rw"),
            DirGrant {
                host: "/proj/data".into(),
                guest: "/data".into(),
                writable: true
            }
        );
        assert_eq!(
            d("dir:/srv/in"),
            DirGrant {
                host: "/srv/in".into(),
                guest: "/srv/in".into(),
                writable: false
            }
        );
        assert!(parse_grant("dir:a:rel", Path::new("/")).is_err());
        assert!(parse_grant("dir:a:/b:/c:rw", Path::new("/")).is_err());
        assert!(parse_grant("dir::rw", Path::new("/")).is_err());
    }
}
