//! Operator grants: `scheme://host[:port]` network patterns and
//! `dir:HOST_PATH[:GUEST_PATH][:rw|:ro]` directories.
//!
//! This module only parses and normalises what the operator wrote; the
//! runtime's sandbox enforces it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Str;

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
    Network(NetworkGrant),
    Dir(DirGrant),
}

/// `scheme://host[:port]`. `host` may be `*` or start with `*.` (any
/// subdomain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkGrant {
    /// Lowercase, e.g. `https`, `postgres`.
    pub scheme: String,
    /// Lowercase host name, IP address or wildcard pattern.
    pub host: String,
    pub port: PortSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSpec {
    /// No port written: the scheme's default port.
    Default,
    /// `:*`
    Any,
    Exact(u16),
}

/// A host directory the plugin may use, mounted at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Absolute (relative paths are resolved against the project dir).
    pub host: PathBuf,
    /// Absolute path inside the sandbox; defaults to the host path.
    pub guest: String,
    /// `:rw`; read-only otherwise.
    pub writable: bool,
}

/// Parses one grant string; the error says what was expected.
pub fn parse_grant(text: &str, project_dir: &Path) -> Result<GrantKind, String> {
    if let Some(spec) = text.strip_prefix("dir:") {
        return parse_dir(spec, project_dir).map(GrantKind::Dir);
    }
    parse_network(text).map(GrantKind::Network)
}

fn parse_network(text: &str) -> Result<NetworkGrant, String> {
    let expected = "a network grant `scheme://host[:port]` or a directory grant `dir:HOST_PATH[:GUEST_PATH][:rw]`";
    let (scheme, rest) = text.split_once("://").ok_or(expected)?;
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Err(format!("`{scheme}` is not a URL scheme; {expected}"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') || rest.contains('?') {
        return Err(
            "a network grant names a host and port only, without path, user or query".into(),
        );
    }
    let (host, port) = split_port(rest)?;
    check_host(host)?;
    Ok(NetworkGrant {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        port,
    })
}

fn split_port(rest: &str) -> Result<(&str, PortSpec), String> {
    // A bracketed IPv6 literal may contain colons.
    let colon = match rest.rfind(']') {
        Some(end) => rest[end..].find(':').map(|i| end + i),
        None => rest.rfind(':'),
    };
    let Some(colon) = colon else {
        return Ok((rest, PortSpec::Default));
    };
    let (host, port) = (&rest[..colon], &rest[colon + 1..]);
    let port = match port {
        "*" => PortSpec::Any,
        p => PortSpec::Exact(
            p.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("`{p}` is not a port (1-65535 or `*`)"))?,
        ),
    };
    Ok((host, port))
}

fn check_host(host: &str) -> Result<(), String> {
    if host == "*" || (host.starts_with('[') && host.ends_with(']')) {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let ok = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a host name, IP address, `*` or `*.domain` pattern"
        ))
    }
}

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

    fn net(s: &str) -> NetworkGrant {
        match parse_grant(s, Path::new("/p")).unwrap() {
            GrantKind::Network(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn network_patterns() {
        let g = net("https://*.Salesforce.com");
        assert_eq!(
            (g.scheme.as_str(), g.host.as_str(), g.port),
            ("https", "*.salesforce.com", PortSpec::Default)
        );
        assert_eq!(net("postgres://127.0.0.1:5432").port, PortSpec::Exact(5432));
        assert_eq!(net("http://[::1]:8080").host, "[::1]");
        assert_eq!(net("tcp://db:*").port, PortSpec::Any);
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
