//! Small helpers: URL encoding, error context, message truncation.

use sluice_sdk::PluginError;

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `application/x-www-form-urlencoded` (spaces as %20, which servers accept).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Prefix an error's message with what was being done, keeping its kind.
pub fn with_context(error: PluginError, context: &str) -> PluginError {
    error.context(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        assert_eq!(percent_encode("a b'c/é"), "a%20b%27c%2F%C3%A9");
        assert_eq!(form_encode(&[("k", "v=1")]), "k=v%3D1");
        assert_eq!(truncate("héllo", 2), "h…");
    }
}
