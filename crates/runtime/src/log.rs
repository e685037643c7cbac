//! Where a plugin's words go: its `host.log` calls and its captured stdout
//! and stderr, each tagged with the plugin's name. The default sink is the
//! host's `tracing` log; tests and servers can install their own.
//!
//! Everything a plugin says passes one [`LogGate`] per instance before it
//! reaches a sink:
//! - control characters are escaped ([`escape`]): a newline cannot forge a
//!   log line of its own, and ANSI or OSC escape sequences (and bidi
//!   overrides) never reach a terminal or a log viewer;
//! - a line is at most [`MAX_LINE_BYTES`];
//! - the instance has a byte budget per call ([`Limits::log_bytes_per_call`])
//!   and in all ([`Limits::output_bytes`]), shared by `host.log`, stdout
//!   and stderr. Past either, lines are dropped and one line from the host
//!   says so.

use crate::limits::Limits;
use crate::sandbox::scrub::Scrubber;
use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Which channel a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    Stdout,
    Stderr,
    /// `host.log` at this level.
    Log(super::bindings::host::Level),
    /// The host, about the plugin's output (a budget reached).
    Host,
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogSource::Stdout => f.write_str("stdout"),
            LogSource::Stderr => f.write_str("stderr"),
            LogSource::Log(_) => f.write_str("log"),
            LogSource::Host => f.write_str("host"),
        }
    }
}

/// One line a plugin wrote.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub plugin: Arc<str>,
    pub source: LogSource,
    pub message: String,
}

/// Receives plugin log lines.
pub type LogSink = Arc<dyn Fn(LogLine) + Send + Sync>;

/// Forward plugin lines to `tracing`, with the plugin's name as a field.
pub fn tracing_sink() -> LogSink {
    use super::bindings::host::Level;
    Arc::new(|line: LogLine| {
        let plugin = &*line.plugin;
        let source = line.source;
        let message = line.message;
        match line.source {
            LogSource::Log(Level::Error) => tracing::error!(plugin, %source, "{message}"),
            LogSource::Log(Level::Warn) | LogSource::Stderr | LogSource::Host => {
                tracing::warn!(plugin, %source, "{message}")
            }
            LogSource::Log(Level::Info) | LogSource::Stdout => {
                tracing::info!(plugin, %source, "{message}")
            }
            LogSource::Log(Level::Debug) => tracing::debug!(plugin, %source, "{message}"),
            LogSource::Log(Level::Trace) => tracing::trace!(plugin, %source, "{message}"),
        }
    })
}

/// The longest line a plugin can write; longer ones are cut, saying so.
pub const MAX_LINE_BYTES: usize = 8192;

/// Characters that must not reach a log or a terminal as they are: control
/// characters (C0 including newline and ESC, DEL, C1), bidirectional
/// overrides and isolates, and the Unicode line and paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `text` with every character of [`needs_escape`] written out:
/// `\n`, `\r`, `\t`, or `\u{1b}` and the like.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `line` cut to [`MAX_LINE_BYTES`] at a character boundary, saying how
/// much was cut.
fn cap_line(line: Cow<'_, str>) -> Cow<'_, str> {
    if line.len() <= MAX_LINE_BYTES {
        return line;
    }
    let mut end = MAX_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… ({} bytes truncated)",
        &line[..end],
        line.len() - end
    ))
}

/// The gate every line of one instance passes: escaping, line length and
/// the per-call and per-instance byte budgets. Cheap to clone (shared).
#[derive(Clone)]
pub struct LogGate(Arc<Mutex<Gate>>);

struct Gate {
    plugin: Arc<str>,
    sink: LogSink,
    secrets: Scrubber,
    per_call: usize,
    per_instance: usize,
    call: String,
    call_bytes: usize,
    instance_bytes: usize,
    call_over: bool,
    instance_over: bool,
    dropped_bytes: usize,
    dropped_lines: usize,
    /// What the plugin said about a panic in the call under way.
    panic: PanicNote,
}

/// A Rust panic, as the plugin reported it before trapping: the SDK's
/// panic hook logs `panicked at FILE:LINE:COL: MESSAGE` at error level;
/// std's default hook writes `thread '…' panicked at FILE:LINE:COL:` and
/// then the message to stderr. Kept (escaped and scrubbed) so the trap's
/// error can say where the author's code failed.
#[derive(Default)]
enum PanicNote {
    #[default]
    None,
    /// std's first stderr line, waiting for its message line.
    Located(String),
    Complete(String),
}

/// The panic line prefix the SDK's hook writes.
pub const PANIC_PREFIX: &str = "panicked at ";

impl PanicNote {
    fn observe(&mut self, source: LogSource, line: &str) {
        use super::bindings::host::Level;
        match source {
            LogSource::Log(Level::Error) if line.starts_with(PANIC_PREFIX) => {
                *self = PanicNote::Complete(line.to_string());
            }
            LogSource::Stderr => {
                if let PanicNote::Located(at) = self {
                    *self = PanicNote::Complete(format!("{at} {line}"));
                } else if let Some(at) = std_panic_location(line) {
                    *self = PanicNote::Located(format!("{PANIC_PREFIX}{at}"));
                }
            }
            _ => {}
        }
    }

    fn take(&mut self) -> Option<String> {
        match std::mem::take(self) {
            PanicNote::None => None,
            PanicNote::Located(at) => Some(at),
            PanicNote::Complete(note) => Some(note),
        }
    }
}

/// `src/lib.rs:3:5:` from std's `thread 'main' panicked at src/lib.rs:3:5:`.
fn std_panic_location(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("thread '")?;
    let (_, at) = rest.split_once("' panicked at ")?;
    Some(at)
}

impl LogGate {
    pub fn new(plugin: Arc<str>, sink: LogSink, limits: &Limits, secrets: Scrubber) -> Self {
        LogGate(Arc::new(Mutex::new(Gate {
            plugin,
            sink,
            secrets,
            per_call: limits.log_bytes_per_call,
            per_instance: limits.output_bytes,
            call: "instantiate".into(),
            call_bytes: 0,
            instance_bytes: 0,
            call_over: false,
            instance_over: false,
            dropped_bytes: 0,
            dropped_lines: 0,
            panic: PanicNote::None,
        })))
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new call starts: its budget is whole again.
    pub fn begin_call(&self, call: &str) {
        let mut g = self.gate();
        g.call = call.to_string();
        g.call_bytes = 0;
        g.call_over = false;
        g.panic = PanicNote::None;
    }

    /// The panic the plugin reported during the call under way, if any
    /// (`panicked at FILE:LINE:COL: MESSAGE`), once.
    pub fn take_panic(&self) -> Option<String> {
        self.gate().panic.take()
    }

    /// Bytes (after escaping) of the lines dropped over a budget.
    pub fn dropped_bytes(&self) -> usize {
        self.gate().dropped_bytes
    }

    /// Lines dropped over a budget.
    pub fn dropped_lines(&self) -> usize {
        self.gate().dropped_lines
    }

    /// Pass one line the plugin wrote: escaped, capped, and forwarded if
    /// the budgets allow.
    pub fn emit(&self, source: LogSource, raw: &str) {
        let (sink, plugin, out) = {
            let mut g = self.gate();
            let message = cap_line(escape(&g.secrets.scrub(raw))).into_owned();
            // Before the budgets: a panic's note is kept even when its
            // line is dropped.
            g.panic.observe(source, &message);
            let out = g.admit(source, message);
            (g.sink.clone(), g.plugin.clone(), out)
        };
        // The sink runs outside the lock: it may take its own.
        for (source, message) in out {
            sink(LogLine {
                plugin: plugin.clone(),
                source,
                message,
            });
        }
    }
}

impl Gate {
    /// What to forward for one line: the line, a budget notice, or nothing.
    fn admit(&mut self, source: LogSource, message: String) -> Vec<(LogSource, String)> {
        let cost = message.len();
        let discard = |g: &mut Gate| {
            g.dropped_bytes += cost;
            g.dropped_lines += 1;
        };
        if self.instance_over || self.call_over {
            discard(self);
            return Vec::new();
        }
        if self.instance_bytes + cost > self.per_instance {
            self.instance_over = true;
            discard(self);
            let notice = format!(
                "plugin output reached this instance's budget of {} bytes (limit output_bytes); \
                 further lines are dropped",
                self.per_instance
            );
            return vec![(LogSource::Host, notice)];
        }
        if self.call_bytes + cost > self.per_call {
            self.call_over = true;
            discard(self);
            let notice = format!(
                "plugin output reached the budget of {} bytes for one call (limit \
                 log_bytes_per_call) in `{}`; further lines of this call are dropped",
                self.per_call, self.call
            );
            return vec![(LogSource::Host, notice)];
        }
        self.call_bytes += cost;
        self.instance_bytes += cost;
        vec![(source, message)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(escape("plain text"), Cow::Borrowed(_)));
        assert_eq!(
            escape("ok\nERROR forged line\r\n"),
            "ok\\nERROR forged line\\r\\n"
        );
        assert_eq!(
            escape("\u{1b}[31mred\u{1b}[0m \u{1b}]0;title\u{7}"),
            "\\u{1b}[31mred\\u{1b}[0m \\u{1b}]0;title\\u{7}"
        );
        assert_eq!(escape("\u{9b}2J tab\t"), "\\u{9b}2J tab\\t");
        assert_eq!(escape("a\u{202e}b\u{2028}c"), "a\\u{202e}b\\u{2028}c");
        assert_eq!(escape("naïve ✓"), "naïve ✓");
    }

    #[test]
    fn a_panic_reported_by_the_sdk_or_by_std_is_kept_for_the_call() {
        use crate::bindings::host::Level;
        let (gate, _) = collecting(&Limits::default());
        gate.begin_call("write");
        gate.emit(
            LogSource::Log(Level::Info),
            "panicked at nothing: a plain line",
        );
        assert_eq!(gate.take_panic(), None);
        gate.emit(
            LogSource::Log(Level::Error),
            "panicked at src/lib.rs:3:5: index out of bounds",
        );
        assert_eq!(
            gate.take_panic().as_deref(),
            Some("panicked at src/lib.rs:3:5: index out of bounds")
        );
        // std's hook: the location line, then the message (escaped).
        gate.emit(
            LogSource::Stderr,
            "thread '<unnamed>' panicked at src/lib.rs:9:1:",
        );
        gate.emit(LogSource::Stderr, "boom\u{1b}[2J");
        gate.emit(LogSource::Stderr, "note: run with `RUST_BACKTRACE=1`");
        assert_eq!(
            gate.take_panic().as_deref(),
            Some("panicked at src/lib.rs:9:1: boom\\u{1b}[2J")
        );
        // A new call forgets the last one's.
        gate.emit(LogSource::Log(Level::Error), "panicked at a.rs:1:1: x");
        gate.begin_call("write");
        assert_eq!(gate.take_panic(), None);
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_LINE_BYTES);
        let cut = cap_line(Cow::Borrowed(&long));
        assert!(cut.len() < MAX_LINE_BYTES + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!("… ({} bytes truncated)", MAX_LINE_BYTES)));
    }

    fn collecting(limits: &Limits) -> (LogGate, Arc<Mutex<Vec<LogLine>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink_lines = lines.clone();
        let sink: LogSink = Arc::new(move |l| sink_lines.lock().unwrap().push(l));
        (
            LogGate::new("p".into(), sink, limits, Default::default()),
            lines,
        )
    }

    #[test]
    fn each_call_has_a_budget_and_says_once_when_it_is_spent() {
        let limits = Limits {
            log_bytes_per_call: 100,
            output_bytes: 1000,
            ..Limits::default()
        };
        let (gate, lines) = collecting(&limits);
        gate.begin_call("write");
        for _ in 0..20 {
            gate.emit(LogSource::Stdout, &"x".repeat(30));
        }
        {
            let lines = lines.lock().unwrap();
            assert_eq!(lines.len(), 4, "three lines fit, then one notice");
            assert_eq!(lines[3].source, LogSource::Host);
            assert!(
                lines[3]
                    .message
                    .contains("budget of 100 bytes for one call")
                    && lines[3].message.contains("`write`"),
                "{}",
                lines[3].message
            );
        }
        assert_eq!(gate.dropped_lines(), 17);
        assert_eq!(gate.dropped_bytes(), 17 * 30);
        // The next call starts afresh.
        gate.begin_call("write");
        gate.emit(LogSource::Log(crate::bindings::host::Level::Info), "again");
        assert_eq!(lines.lock().unwrap().last().unwrap().message, "again");
    }

    #[test]
    fn the_instance_budget_holds_across_calls() {
        let limits = Limits {
            log_bytes_per_call: 100,
            output_bytes: 150,
            ..Limits::default()
        };
        let (gate, lines) = collecting(&limits);
        for call in 0..5 {
            gate.begin_call("transform");
            for _ in 0..3 {
                gate.emit(
                    LogSource::Stderr,
                    &format!("call {call} {}", "y".repeat(20)),
                );
            }
        }
        let lines = lines.lock().unwrap();
        let host: Vec<_> = lines
            .iter()
            .filter(|l| l.source == LogSource::Host)
            .collect();
        assert_eq!(host.len(), 1, "one notice: {host:?}");
        assert!(host[0]
            .message
            .contains("this instance's budget of 150 bytes"));
        let kept: usize = lines
            .iter()
            .filter(|l| l.source != LogSource::Host)
            .map(|l| l.message.len())
            .sum();
        assert!(kept <= 150, "{kept}");
    }

    #[test]
    fn a_forged_line_arrives_as_one_escaped_line() {
        let (gate, lines) = collecting(&Limits::default());
        gate.emit(
            LogSource::Stdout,
            "done\n2026-01-01T00:00:00Z ERROR sluice: run failed\u{1b}[2J",
        );
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0].message,
            "done\\n2026-01-01T00:00:00Z ERROR sluice: run failed\\u{1b}[2J"
        );
    }
}
