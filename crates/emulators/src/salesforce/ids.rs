//! Salesforce record ids: 3-character key prefix + 12 characters, plus the 3-character
//! case-safe suffix that makes the 18-character form. Both forms are accepted.

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 18-character id for sequence number `seq` under `prefix` ("001", "a00", "750").
pub(crate) fn make_id(prefix: &str, seq: u64) -> String {
    let mut body = [b'0'; 10];
    let mut n = seq;
    for slot in body.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let short = format!("{prefix}EM{}", String::from_utf8_lossy(&body));
    to_18(&short)
}

/// Appends the case-safe checksum to a 15-character id.
fn to_18(id15: &str) -> String {
    let bytes = id15.as_bytes();
    let mut out = String::with_capacity(18);
    out.push_str(id15);
    for chunk in bytes.chunks(5) {
        let flags = chunk
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_uppercase())
            .fold(0usize, |acc, (i, _)| acc | (1 << i));
        out.push(char::from(SUFFIX[flags]));
    }
    out
}

/// The canonical 18-character form of a 15- or 18-character id, or `None` if the
/// text cannot be a Salesforce id.
pub(crate) fn normalize(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match id.len() {
        15 => Some(to_18(id)),
        18 => {
            let canonical = to_18(&id[..15]);
            canonical[15..]
                .eq_ignore_ascii_case(&id[15..])
                .then_some(canonical)
        }
        _ => None,
    }
}

/// A 3-character key prefix for the `n`th custom object: a00, a01, … a0z, a10 …
pub(crate) fn custom_prefix(n: usize) -> String {
    format!(
        "a{}{}",
        char::from(BASE62[(n / 62) % 62]),
        char::from(BASE62[n % 62])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_between_15_and_18() {
        let id = make_id("001", 12345);
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("001"));
        assert_eq!(normalize(&id[..15]).as_deref(), Some(id.as_str()));
        assert_eq!(normalize(&id).as_deref(), Some(id.as_str()));
        assert_eq!(normalize("not-an-id"), None);
        assert_ne!(make_id("001", 1), make_id("001", 2));
    }

    #[test]
    fn checksum_matches_salesforce_algorithm() {
        // Known pair from Salesforce documentation examples.
        assert_eq!(to_18("001D000000IRFma"), "001D000000IRFmaIAH");
    }
}
