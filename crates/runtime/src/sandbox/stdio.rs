//! A plugin's stdout and stderr: captured line by line into the host log,
//! tagged with the plugin's name, and capped so a flood cannot fill memory or
//! the log.

use super::super::log::{LogLine, LogSink, LogSource};
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
    plugin: Arc<str>,
    source: LogSource,
    sink: LogSink,
    partial: Vec<u8>,
    captured: usize,
    cap: usize,
    dropped: usize,
}

impl CapturedOutput {
    pub fn new(plugin: Arc<str>, source: LogSource, sink: LogSink, cap: usize) -> Self {
        CapturedOutput {
            inner: Arc::new(Mutex::new(Capture {
                plugin,
                source,
                sink,
                partial: Vec::new(),
                captured: 0,
                cap,
                dropped: 0,
            })),
        }
    }

    /// Bytes thrown away after the cap was reached.
    pub fn dropped(&self) -> usize {
        self.inner.lock().map(|c| c.dropped).unwrap_or(0)
    }

    fn accept(&self, bytes: &[u8]) {
        if let Ok(mut c) = self.inner.lock() {
            c.accept(bytes);
        }
    }
}

impl Capture {
    fn accept(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.captured);
        let (kept, over) = bytes.split_at(bytes.len().min(room));
        self.captured += kept.len();
        if !over.is_empty() {
            if self.dropped == 0 {
                self.emit_partial();
                let message = format!(
                    "output capped at {} bytes; further output is discarded",
                    self.cap
                );
                self.emit(message);
            }
            self.dropped += over.len();
        }
        let mut rest = kept;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..pos]);
            self.emit_partial();
            rest = &rest[pos + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    fn emit_partial(&mut self) {
        if self.partial.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        self.emit(line);
    }

    fn emit(&self, message: String) {
        (self.sink)(LogLine {
            plugin: self.plugin.clone(),
            source: self.source,
            message,
        });
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
