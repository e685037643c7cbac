//! The network a tenant's plugins may ever be granted: a per-tenant ceiling
//! the operator sets, which no grant in the tenant's project may exceed.
//!
//! Pure policy, apart from the runtime (after Spin's
//! `factor-outbound-networking`): a ceiling is a list of grant patterns in
//! the sandbox's own grammar, and a project's network grant is allowed when
//! one pattern covers it, by the same relation that decides which plugin
//! requests a grant covers ([`sluice_runtime::sandbox::intersect::covers`]).
//! So `*://*:*`, the default, covers every public name and address on any
//! port but no loopback, private, link-local or metadata address: a tenant
//! cannot point a plugin at the server's state database, the host's other
//! services or the cloud metadata endpoint unless the operator names them.

use sluice_runtime::sandbox::intersect::covers;
use sluice_runtime::sandbox::policy::{NetGrant, NetPolicy};

/// Every public host, any scheme and port; no restricted address.
pub const DEFAULT: &str = "*://*:*";

/// Patterns in one ceiling at most (it is read on every run).
pub const MAX_PATTERNS: usize = 100;

/// A tenant's network ceiling, as written and as parsed.
#[derive(Debug, Clone)]
pub struct Ceiling {
    patterns: Vec<String>,
    grants: Vec<NetGrant>,
}

impl Ceiling {
    /// Parses the operator's patterns; the error names the one at fault.
    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        if patterns.len() > MAX_PATTERNS {
            return Err(format!(
                "{} patterns; a ceiling has at most {MAX_PATTERNS}",
                patterns.len()
            ));
        }
        let grants = patterns
            .iter()
            .map(|p| NetGrant::parse(p).map_err(|e| format!("`{p}`: {}", e.reason)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            patterns: patterns.to_vec(),
            grants,
        })
    }

    pub fn default_patterns() -> Vec<String> {
        vec![DEFAULT.to_string()]
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether a project may grant `grant`.
    pub fn allows(&self, grant: &NetGrant) -> bool {
        self.grants.iter().any(|c| covers(c, grant))
    }

    /// The ceiling as the sandbox's network policy: what the host's own
    /// requests for the tenant (notifications, dbt Cloud) may reach, by
    /// resolved address ([`sluice_engine::outbound`]).
    pub fn policy(&self) -> NetPolicy {
        NetPolicy::new(self.grants.clone())
    }

    /// For messages: the patterns, or that nothing is allowed.
    pub fn describe(&self) -> String {
        if self.patterns.is_empty() {
            "no network at all".into()
        } else {
            self.patterns.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceiling(patterns: &[&str]) -> Ceiling {
        Ceiling::parse(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn allows(c: &Ceiling, grant: &str) -> bool {
        c.allows(&NetGrant::parse(grant).unwrap())
    }

    #[test]
    fn the_default_allows_public_hosts_and_no_restricted_address() {
        let c = ceiling(&[DEFAULT]);
        assert!(allows(&c, "https://*.salesforce.com"));
        assert!(allows(&c, "postgres://db.example.com:5432"));
        assert!(allows(&c, "https://203.0.113.7"));
        // A wildcard grant reaches no restricted address either (the
        // sandbox needs them named), so the ceiling lets it through.
        assert!(allows(&c, "*://*:*"));
        // The server's own state database, the host, the private network
        // and the metadata endpoint.
        for denied in [
            "postgres://127.0.0.1:5432",
            "http://localhost:8080",
            "tcp://10.0.0.5:6379",
            "http://169.254.169.254",
            "http://[::1]:80",
            "https://10.0.0.0/8",
        ] {
            assert!(!allows(&c, denied), "{denied}");
        }
    }

    #[test]
    fn an_operator_widens_a_ceiling_by_naming_what_it_adds() {
        let c = ceiling(&[DEFAULT, "http://127.0.0.1:9000-9100"]);
        assert!(allows(&c, "http://127.0.0.1:9001"));
        assert!(!allows(&c, "http://127.0.0.1:5432"));
        assert!(!allows(&c, "postgres://127.0.0.1:9001"));
        let narrow = ceiling(&["https://*.hubapi.com"]);
        assert!(allows(&narrow, "https://api.hubapi.com"));
        assert!(!allows(&narrow, "https://example.com"));
        assert!(!allows(&ceiling(&[]), "https://example.com"));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = Ceiling::parse(&["https://ok.example.com".into(), "ftp//x".into()]).unwrap_err();
        assert!(err.contains("`ftp//x`"), "{err}");
    }
}
