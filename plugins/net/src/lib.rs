//! A TCP connection for the database plugins, upgradable in place to TLS.
//!
//! On wasm32-wasip2 the socket is opened through `wasi:sockets` directly
//! (not `std::net`, whose streams cannot be handed on), so the host checks
//! the plugin's network grant on the TCP connection as for any socket. The
//! plugin does the protocol's plaintext pre-negotiation itself (PostgreSQL's
//! and MySQL's SSLRequest), then [`Socket::upgrade`] hands the socket's
//! streams to `wasi:tls`, whose handshake runs in the host under the
//! verification the plugin set with [`Verification`] (the host interface
//! `sluice:tls/policy`, `wit/tls/policy.wit`). A TLS connection to a host
//! the sandbox did not grant is impossible: its TCP socket is refused.
//!
//! Natively (the plugins' own unit and live tests) the socket is a
//! `std::net::TcpStream`, and TLS is refused with an error saying it needs
//! the Sluice host.
//!
//! Every wait is bounded: connecting and the handshake by the connect
//! timeout, reads by the read timeout when one is set (and the host's
//! wall-clock deadline on every call in any case).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

#[cfg(target_arch = "wasm32")]
mod wasi;

/// What a TLS handshake checks of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Chain to a trusted root and host name (libpq `verify-full`).
    Full,
    /// Chain to a trusted root only (libpq `verify-ca`).
    Chain,
    /// Nothing (libpq `require`): encryption against a passive listener only.
    None,
}

/// How to verify, and with which roots: the public ones (webpki-roots)
/// unless `ca_file` names a PEM bundle (an absolute path inside a directory
/// granted to the plugin; the host reads it).
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub verification: Verification,
    pub ca_file: Option<String>,
}

/// A connected socket, plaintext or TLS.
pub struct Socket {
    inner: Inner,
    read_timeout: Option<Duration>,
    tls: bool,
}

enum Inner {
    #[cfg(not(target_arch = "wasm32"))]
    Std(std::net::TcpStream),
    #[cfg(target_arch = "wasm32")]
    Wasi(wasi::Stream),
}

impl Socket {
    /// Resolve `host:port` and connect to the first address that answers
    /// within `timeout`. The error is the last address's.
    pub fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<Socket> {
        let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
        let mut last_error = None;
        for addr in &addrs {
            match connect_addr(addr, timeout) {
                Ok(inner) => {
                    return Ok(Socket {
                        inner,
                        read_timeout: None,
                        tls: false,
                    })
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} resolves to no address"),
            )
        }))
    }

    /// Bound every later read: one that waits longer fails with
    /// `TimedOut`. `None` waits as long as the host's call deadline allows.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout = timeout;
        #[cfg(not(target_arch = "wasm32"))]
        {
            let Inner::Std(stream) = &self.inner;
            stream.set_read_timeout(timeout)?;
        }
        Ok(())
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Run a TLS client handshake over this socket (after the protocol's
    /// plaintext pre-negotiation) and continue encrypted. `server_name` is
    /// the host name the certificate must name under
    /// [`Verification::Full`] (a DNS name or an IP literal). The error
    /// carries the host's reason (an unknown issuer, a name mismatch, ...).
    pub fn upgrade(
        self,
        server_name: &str,
        settings: &TlsSettings,
        timeout: Duration,
    ) -> Result<Socket, TlsError> {
        #[cfg(target_arch = "wasm32")]
        {
            let Inner::Wasi(stream) = self.inner;
            let stream = stream.upgrade(server_name, settings, timeout)?;
            Ok(Socket {
                inner: Inner::Wasi(stream),
                read_timeout: self.read_timeout,
                tls: true,
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (server_name, settings, timeout);
            Err(TlsError::Unsupported(
                "TLS runs in the Sluice host (wasi:tls); a natively built plugin has none".into(),
            ))
        }
    }
}

/// Why a TLS upgrade failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The host refused the settings (a CA file not granted, unreadable or
    /// without certificates); the message names what was wrong.
    Settings(String),
    /// The handshake failed: the host's reason (certificate not trusted,
    /// name mismatch, protocol error, connection closed).
    Handshake(String),
    /// The handshake did not finish within the timeout.
    TimedOut(Duration),
    /// This build has no TLS.
    Unsupported(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Settings(m) => write!(f, "TLS settings refused: {m}"),
            TlsError::Handshake(m) => write!(f, "TLS handshake failed: {m}"),
            TlsError::TimedOut(t) => {
                write!(
                    f,
                    "TLS handshake did not finish within {} ms",
                    t.as_millis()
                )
            }
            TlsError::Unsupported(m) => write!(f, "TLS unavailable: {m}"),
        }
    }
}

impl std::error::Error for TlsError {}

#[cfg(not(target_arch = "wasm32"))]
fn connect_addr(addr: &SocketAddr, timeout: Duration) -> io::Result<Inner> {
    let stream = std::net::TcpStream::connect_timeout(addr, timeout)?;
    // We wait for an answer after every write; never let Nagle hold a
    // small message back.
    let _ = stream.set_nodelay(true);
    Ok(Inner::Std(stream))
}

#[cfg(target_arch = "wasm32")]
fn connect_addr(addr: &SocketAddr, timeout: Duration) -> io::Result<Inner> {
    wasi::Stream::connect(addr, timeout).map(Inner::Wasi)
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            #[cfg(not(target_arch = "wasm32"))]
            Inner::Std(stream) => stream.read(buf),
            #[cfg(target_arch = "wasm32")]
            Inner::Wasi(stream) => stream.read(buf, self.read_timeout),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            #[cfg(not(target_arch = "wasm32"))]
            Inner::Std(stream) => stream.write(buf),
            #[cfg(target_arch = "wasm32")]
            Inner::Wasi(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            #[cfg(not(target_arch = "wasm32"))]
            Inner::Std(stream) => stream.flush(),
            #[cfg(target_arch = "wasm32")]
            Inner::Wasi(stream) => stream.flush(),
        }
    }
}
