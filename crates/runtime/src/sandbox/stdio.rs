//! A plugin's stdout and stderr: captured line by line into the host log
//! through the instance's [`LogGate`] (escaped, tagged with the plugin's
//! name, within the output budgets), so a flood can fill neither memory nor
//! the log. A line without a newline is passed on once it reaches
//! [`MAX_LINE_BYTES`].

use super::super::log::{LogGate, LogSource, MAX_LINE_BYTES};
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// One of a plugin's output streams.
#[derive(Clone)]
pub struct CapturedOutput {
    inner: Arc<Mutex<Capture>>,
}

struct Capture {
    source: LogSource,
    gate: LogGate,
    partial: Vec<u8>,
}

impl CapturedOutput {
    pub fn new(source: LogSource, gate: LogGate) -> Self {
        CapturedOutput {
            inner: Arc::new(Mutex::new(Capture {
                source,
                gate,
                partial: Vec::new(),
            })),
        }
    }

    fn accept(&self, bytes: &[u8]) {
        if let Ok(mut c) = self.inner.lock() {
            c.accept(bytes);
        }
    }
}

impl Capture {
    fn accept(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = MAX_LINE_BYTES - self.partial.len();
            match rest.iter().take(room).position(|&b| b == b'\n') {
                Some(pos) => {
                    self.partial.extend_from_slice(&rest[..pos]);
                    self.emit_partial();
                    rest = &rest[pos + 1..];
                }
                None => {
                    let take = rest.len().min(room);
                    self.partial.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if self.partial.len() >= MAX_LINE_BYTES {
                        self.emit_partial();
                    }
                }
            }
        }
    }

    fn emit_partial(&mut self) {
        if self.partial.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        self.gate.emit(self.source, &line);
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.emit_partial();
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::log::{LogLine, LogSink};

    #[test]
    fn lines_are_split_escaped_and_bounded() {
        let lines = Arc::new(Mutex::new(Vec::<LogLine>::new()));
        let sink_lines = lines.clone();
        let sink: LogSink = Arc::new(move |l| sink_lines.lock().unwrap().push(l));
        let gate = LogGate::new("p".into(), sink, &Limits::default(), Default::default());
        let out = CapturedOutput::new(LogSource::Stdout, gate);
        out.accept(b"one\ntw");
        out.accept(b"o\x1b[31m\r\nthree");
        out.accept(&vec![b'z'; MAX_LINE_BYTES * 2 + 10]);
        drop(out);
        let lines = lines.lock().unwrap();
        let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages[0], "one");
        assert_eq!(messages[1], "two\\u{1b}[31m\\r");
        assert!(messages[2].starts_with("threezz"));
        assert!(lines.iter().all(|l| l.message.len() <= MAX_LINE_BYTES));
        assert_eq!(lines.len(), 5, "{messages:?}");
        let total: usize = lines.iter().map(|l| l.message.len()).sum();
        assert_eq!(
            total,
            3 + "two\\u{1b}[31m\\r".len() + 5 + MAX_LINE_BYTES * 2 + 10
        );
    }
}
