//! Resource limits for plugin instances, with defaults an operator can
//! override per project, per plugin or per tenant.

use std::time::Duration;

/// Limits applied to every instance of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory ceiling per instance.
    pub memory_bytes: usize,
    /// CPU deadline of one call: the guest's own execution time (epoch
    /// interruption, see `deadline.rs`). Time spent waiting on the host (a
    /// response, a sleep) does not count; `wall_deadline` bounds that.
    pub call_deadline: Duration,
    /// Wall-clock deadline of one call, waiting included. A call that
    /// passes it is stopped and its instance poisoned.
    pub wall_deadline: Duration,
    /// Bytes of plugin output (`host.log` lines, stdout and stderr
    /// together, after escaping) kept per instance; later lines are dropped.
    pub output_bytes: usize,
    /// Bytes of plugin output kept per call, within `output_bytes`.
    pub log_bytes_per_call: usize,
    /// Largest HTTP response body a plugin may receive.
    pub http_response_bytes: usize,
    /// The longest an outgoing HTTP request may take to connect (TCP and
    /// TLS), to receive the response head after sending, and to wait between
    /// two chunks of the response body. What a plugin asks for in its
    /// request options is clamped to these.
    pub http_connect_timeout: Duration,
    pub http_first_byte_timeout: Duration,
    pub http_between_bytes_timeout: Duration,
    /// Live instances per tenant.
    pub instances_per_tenant: usize,
    /// TCP sockets one instance may hold open at a time (only with a grant
    /// that reaches raw TCP; without one none can be created).
    pub sockets: usize,
    /// Outgoing HTTP requests one instance may have in flight (sent, and
    /// the response not yet read to its end or dropped); more are refused
    /// with `connection-limit-reached`.
    pub requests_in_flight: usize,
    /// Bytes the host keeps of one message from a plugin (a row rejection, a
    /// row error, a call's error): longer ones are truncated with a marker.
    pub message_bytes: usize,
    /// Bytes of a plugin's `spec` (name, description, config schema,
    /// capabilities together): a larger spec is refused before the host
    /// parses any of it.
    pub spec_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            call_deadline: Duration::from_secs(60),
            wall_deadline: Duration::from_secs(5 * 60),
            output_bytes: 1 << 20,
            log_bytes_per_call: 64 << 10,
            http_response_bytes: 64 << 20,
            http_connect_timeout: Duration::from_secs(30),
            http_first_byte_timeout: Duration::from_secs(120),
            http_between_bytes_timeout: Duration::from_secs(60),
            instances_per_tenant: 64,
            sockets: 16,
            requests_in_flight: 64,
            message_bytes: 4 << 10,
            spec_bytes: 1 << 20,
        }
    }
}

/// The period of the engine's epoch ticker: deadlines are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Cut a message from a plugin to at most `limit` bytes (at a character
/// boundary) plus a marker saying how much was dropped, so a plugin cannot
/// grow run history or state.db by megabytes per row.
pub fn cap_message(message: &mut String, limit: usize) {
    if message.len() <= limit {
        return;
    }
    let mut cut = limit;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = message.len() - cut;
    message.truncate(cut);
    message.shrink_to_fit();
    message.push_str(&format!(
        "… [truncated: {dropped} more bytes over the limit of {limit} (limits.message_bytes)]"
    ));
}

/// Parse sizes such as `256MiB`, `64k`, `1g` or plain bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try 256MiB)"))?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Parse durations such as `30s`, `500ms`, `2m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 30s)"))?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (use ms, s, m or h)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_durations() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("12 parsecs").unwrap_err().contains("parsecs"));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary_with_a_marker() {
        let mut short = "fine".to_string();
        cap_message(&mut short, 10);
        assert_eq!(short, "fine");
        let mut long = "é".repeat(10); // 20 bytes
        cap_message(&mut long, 5);
        assert_eq!(
            long,
            "éé… [truncated: 16 more bytes over the limit of 5 (limits.message_bytes)]"
        );
    }
}
