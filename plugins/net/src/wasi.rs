//! The socket on wasm32-wasip2: `wasi:sockets` TCP, its streams, and the
//! `wasi:tls` upgrade of those streams.

use crate::{TlsError, TlsSettings, Verification};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;
use wasip2::clocks::monotonic_clock;
use wasip2::io::poll::{poll, Pollable};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};
use wasip2::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::{instance_network, tcp_create_socket};

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/tls",
        world: "sluice:tls/client",
        features: ["tls"],
        generate_all,
        with: {
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/error@0.2.12": wasip2::io::error,
        },
    });
}

use bindings::sluice::tls::policy;
use bindings::wasi::tls::types::{ClientConnection, ClientHandshake};

/// An open connection. Fields drop in declaration order, and a resource
/// must outlive the ones made from it: the streams first, then the TLS
/// connection, then the socket.
pub struct Stream {
    input: InputStream,
    output: OutputStream,
    _tls: Option<ClientConnection>,
    _socket: TcpSocket,
}

impl Stream {
    pub fn connect(addr: &SocketAddr, timeout: Duration) -> io::Result<Stream> {
        let family = match addr {
            SocketAddr::V4(_) => IpAddressFamily::Ipv4,
            SocketAddr::V6(_) => IpAddressFamily::Ipv6,
        };
        let socket = tcp_create_socket::create_tcp_socket(family).map_err(socket_error)?;
        let network = instance_network::instance_network();
        socket
            .start_connect(&network, wasi_address(addr))
            .map_err(socket_error)?;
        let connected = socket.subscribe();
        let deadline = monotonic_clock::subscribe_duration(nanos(timeout));
        let (input, output) = loop {
            match socket.finish_connect() {
                Ok(streams) => break streams,
                Err(ErrorCode::WouldBlock) if deadline.ready() => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no connection within {} ms", timeout.as_millis()),
                    ))
                }
                Err(ErrorCode::WouldBlock) => {
                    poll(&[&connected, &deadline]);
                }
                Err(e) => return Err(socket_error(e)),
            }
        };
        drop(connected);
        Ok(Stream {
            input,
            output,
            _tls: None,
            _socket: socket,
        })
    }

    /// Read what is there, waiting at most `timeout` for the first byte.
    pub fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.input.read(buf.len() as u64) {
                Ok(chunk) if chunk.is_empty() => wait(&self.input.subscribe(), timeout)?,
                Ok(chunk) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(StreamError::Closed) => return Ok(0),
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(io::Error::other(e.to_debug_string()))
                }
            }
        }
    }

    // The inherent `write`/`flush` of `OutputStream` do not wait; the
    // `std::io::Write` impl of `wasip2` does.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(&mut self.output, buf)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        Write::flush(&mut self.output)
    }

    /// Tell the host how to verify, then hand the streams to its TLS
    /// handshake and wait for it at most `timeout`.
    pub fn upgrade(
        self,
        server_name: &str,
        settings: &TlsSettings,
        timeout: Duration,
    ) -> Result<Stream, TlsError> {
        let verification = match settings.verification {
            Verification::Full => policy::Verification::Full,
            Verification::Chain => policy::Verification::Chain,
            Verification::None => policy::Verification::None,
        };
        policy::set(verification, settings.ca_file.as_deref()).map_err(TlsError::Settings)?;
        let Stream {
            input,
            output,
            _tls,
            _socket: socket,
        } = self;
        let handshake = ClientHandshake::new(server_name, input, output);
        let future = ClientHandshake::finish(handshake);
        let ready = future.subscribe();
        let deadline = monotonic_clock::subscribe_duration(nanos(timeout));
        let (connection, input, output) = loop {
            match future.get() {
                Some(Ok(Ok(streams))) => break streams,
                Some(Ok(Err(e))) => return Err(TlsError::Handshake(e.to_debug_string())),
                Some(Err(())) => {
                    return Err(TlsError::Handshake(
                        "the host had already handed out this handshake's result".into(),
                    ))
                }
                None if deadline.ready() => return Err(TlsError::TimedOut(timeout)),
                None => {
                    poll(&[&ready, &deadline]);
                }
            }
        };
        Ok(Stream {
            input,
            output,
            _tls: Some(connection),
            _socket: socket,
        })
    }
}

/// Block until `ready` fires or `timeout` passes (`TimedOut`).
fn wait(ready: &Pollable, timeout: Option<Duration>) -> io::Result<()> {
    let Some(timeout) = timeout else {
        ready.block();
        return Ok(());
    };
    let deadline = monotonic_clock::subscribe_duration(nanos(timeout));
    poll(&[ready, &deadline]);
    if ready.ready() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("nothing received within {} ms", timeout.as_millis()),
        ))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn wasi_address(addr: &SocketAddr) -> IpSocketAddress {
    match addr {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            IpSocketAddress::Ipv4(Ipv4SocketAddress {
                port: v4.port(),
                address: (a, b, c, d),
            })
        }
        SocketAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.ip().segments();
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port: v6.port(),
                flow_info: v6.flowinfo(),
                address: (a, b, c, d, e, f, g, h),
                scope_id: v6.scope_id(),
            })
        }
    }
}

/// A `wasi:sockets` error as the `io::Error` kind `std::net` would give,
/// so callers keep one error mapping (a refused grant is `AccessDenied`:
/// `PermissionDenied`).
fn socket_error(code: ErrorCode) -> io::Error {
    let kind = match code {
        ErrorCode::AccessDenied => io::ErrorKind::PermissionDenied,
        ErrorCode::ConnectionRefused => io::ErrorKind::ConnectionRefused,
        ErrorCode::ConnectionReset => io::ErrorKind::ConnectionReset,
        ErrorCode::ConnectionAborted => io::ErrorKind::ConnectionAborted,
        ErrorCode::Timeout => io::ErrorKind::TimedOut,
        ErrorCode::RemoteUnreachable => io::ErrorKind::HostUnreachable,
        ErrorCode::NotSupported => io::ErrorKind::Unsupported,
        ErrorCode::InvalidArgument => io::ErrorKind::InvalidInput,
        ErrorCode::NewSocketLimit => io::ErrorKind::QuotaExceeded,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, code.message())
}
