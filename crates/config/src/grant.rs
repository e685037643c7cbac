//! Operator grants as written in `sluice.yaml`. The grammar is the
//! sandbox's own ([`GrantKind::parse`]), so what validates is exactly what
//! is enforced; this module keeps the text (which may hold a secret) beside
//! what it parsed to.

use std::fmt;
use std::path::Path;

use super::Str;
pub use sluice_runtime::sandbox::policy::{DirGrant, GrantKind};

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

/// Parses one grant relative to the project folder; the error says what
/// was expected.
pub fn parse_grant(text: &str, project_dir: &Path) -> Result<GrantKind, String> {
    GrantKind::parse(text, project_dir).map_err(|e| e.reason)
}

/// The grants of an instance as the operator wrote them, for messages.
pub fn describe_grants(grants: &[Grant]) -> String {
    if grants.is_empty() {
        return "nothing".into();
    }
    grants
        .iter()
        .map(|g| g.text.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
