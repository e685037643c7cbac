//! Outbound HTTP for plugins: every `wasi:http` request is checked against
//! the plugin's grant, its host name is resolved here (not by the guest),
//! every resolved address is checked, and the connection is made to an
//! address that passed, so a DNS answer can never widen a grant.
//!
//! Every wait is bounded by the host: the DNS lookup and the connection
//! (TCP and TLS) by the connect timeout, the response head by the
//! first-byte timeout, each chunk of the body by the between-bytes timeout.
//! A plugin may ask for shorter ones in its request options; longer ones are
//! clamped to the host's maximum ([`HttpTimeouts`], from the limits). A
//! timeout that fires is recorded as a [`Stall`] so the failure can name it.
//!
//! [`HttpMode`] adds recording to and replaying from a cassette
//! ([`crate::sandbox::cassette`]) behind the same checks.

use super::policy::{default_port, NetDenial, NetPolicy};
use super::resolver::Resolve;
use super::{Denials, Stall, Stalls};
use crate::limits::Limits;
use crate::sandbox::cassette::{
    Interaction, RecordedRequest, RecordedResponse, Recorder, Replayer, MAX_RECORDED_BODY,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The `WasiHttpHooks` of one plugin instance.
pub struct SandboxedHttp {
    pub policy: Arc<NetPolicy>,
    pub resolver: Arc<dyn Resolve>,
    pub denials: Denials,
    /// Largest response body a plugin may receive.
    pub max_response_bytes: usize,
    /// The longest each wait of a request may take.
    pub timeouts: HttpTimeouts,
    /// Where timeouts that fired are recorded.
    pub stalls: Stalls,
    /// Live, recording to a cassette, or replaying one.
    pub mode: HttpMode,
    /// Awaited before every request that reaches the network, after its
    /// grant check: the engine paces a destination's requests here, so a
    /// plugin's own retries and follow-up calls count against the API's
    /// limit like its first request.
    pub gate: Option<RequestGate>,
    /// Told how each request that went to the network ended and how long
    /// it took (the worker's latency and throttle metrics).
    pub observer: Option<RequestObserver>,
    /// One permit per request in flight (`limits.requests_in_flight`).
    pub in_flight: InFlight,
    /// Requests sent whose response never came back, see [`UnknownOutcomes`].
    pub unknown: UnknownOutcomes,
}

/// Requests whose outcome is unknown: the connection was made and the
/// request handed to it, then no response head came back (the connection
/// dropped, or the first-byte timeout fired). The destination may have
/// applied such a request, so a re-send relies on its idempotency key; the
/// engine counts these apart (`outcome_unknown`) rather than as failures
/// that certainly did nothing.
#[derive(Clone, Default, Debug)]
pub struct UnknownOutcomes(Arc<std::sync::atomic::AtomicU64>);

impl UnknownOutcomes {
    fn record(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The requests counted since the last take.
    pub fn take(&self) -> u64 {
        self.0.swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}

/// What every outgoing request of an instance waits for first (the
/// destination's pace), see [`SandboxedHttp::gate`]. `Err` refuses the
/// request unsent (a daily cap used up), with why: the plugin sees a
/// failed request carrying that message.
pub type RequestGate =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How one request that went to the network ended: its response status,
/// or none (no response head: refused, timed out, connection lost), and
/// the time from sending (after the gate) to the response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSample {
    pub status: Option<u16>,
    /// The response carried `Retry-After` or was a 429: the API asked to
    /// slow down.
    pub throttled: bool,
    pub took: Duration,
}

/// Called once per request that went to the network, see
/// [`SandboxedHttp::observer`].
pub type RequestObserver = Arc<dyn Fn(RequestSample) + Send + Sync>;

/// The cap on an instance's outgoing requests in flight. A request holds
/// its permit from `handle` until its response body is read to the end or
/// dropped, so a plugin cannot start thousands of requests and collect the
/// answers later.
#[derive(Debug, Clone)]
pub struct InFlight {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

impl InFlight {
    pub fn new(limit: usize) -> Self {
        InFlight {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    /// A permit for one more request, or the denial naming the limit.
    fn admit(&self, request: &http::Request<WasiBody>) -> Result<OwnedPermit, String> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            format!(
                "{} {}: {} requests already in flight, the limit of \
                 `limits.requests_in_flight` per instance; the request was not sent",
                request.method(),
                request.uri(),
                self.limit
            )
        })
    }
}

type OwnedPermit = tokio::sync::OwnedSemaphorePermit;

/// The host's maximum for each wait of an outgoing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

impl HttpTimeouts {
    pub fn from_limits(limits: &Limits) -> Self {
        HttpTimeouts {
            connect: limits.http_connect_timeout,
            first_byte: limits.http_first_byte_timeout,
            between_bytes: limits.http_between_bytes_timeout,
        }
    }

    /// The waits of one request: what the plugin asked for, clamped to the
    /// host's maximum.
    fn clamp(&self, asked: Option<RequestOptions>) -> Waits {
        let asked = asked.unwrap_or_default();
        Waits {
            connect: Wait::clamp("HTTP connect", asked.connect_timeout, self.connect),
            first_byte: Wait::clamp("HTTP first-byte", asked.first_byte_timeout, self.first_byte),
            between_bytes: Wait::clamp(
                "HTTP between-bytes",
                asked.between_bytes_timeout,
                self.between_bytes,
            ),
        }
    }
}

/// One bounded wait of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wait {
    name: &'static str,
    limit: Duration,
    host_maximum: bool,
}

impl Wait {
    fn clamp(name: &'static str, asked: Option<Duration>, maximum: Duration) -> Self {
        match asked {
            // Tokio treats a zero timeout as already expired; a millisecond
            // is the shortest wait worth asking for.
            Some(a) if a < maximum => Wait {
                name,
                limit: a.max(Duration::from_millis(1)),
                host_maximum: false,
            },
            _ => Wait {
                name,
                limit: maximum,
                host_maximum: true,
            },
        }
    }

    fn stall(&self, target: &Target) -> Stall {
        Stall {
            timeout: self.name,
            limit: self.limit,
            host_maximum: self.host_maximum,
            target: target.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Waits {
    connect: Wait,
    first_byte: Wait,
    between_bytes: Wait,
}

/// Where a plugin's HTTP requests go. The grant check runs first in every
/// mode: a request the grants refuse is refused while recording and while
/// replaying too.
#[derive(Debug, Clone, Default)]
pub enum HttpMode {
    /// To the network (after the grant and address checks).
    #[default]
    Live,
    /// To the network, and every exchange is recorded (secrets redacted).
    Record(Arc<Recorder>),
    /// Never to the network: responses come from a cassette, in order. Host
    /// names are not resolved (replay is offline); IP literals still get the
    /// restricted-address check.
    Replay(Arc<Replayer>),
}

impl HttpMode {
    /// The frozen wall clock (since the Unix epoch) that recording and
    /// replay give the plugin, so time-stamped bodies replay byte for byte.
    pub fn fixed_wall_clock(&self) -> Option<Duration> {
        match self {
            HttpMode::Live => None,
            HttpMode::Record(r) => Some(r.clock()),
            HttpMode::Replay(r) => Some(r.clock()),
        }
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for SandboxedHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let policy = self.policy.clone();
        let resolver = self.resolver.clone();
        let denials = self.denials.clone();
        let max_response_bytes = self.max_response_bytes;
        let mode = self.mode.clone();
        let waits = self.timeouts.clamp(options);
        let stalls = self.stalls.clone();
        let permit = match self.in_flight.admit(&request) {
            Ok(permit) => permit,
            Err(why) => {
                denials.record_once("requests in flight", why);
                return Box::new(async { Err(HttpError::ConnectionLimitReached) });
            }
        };
        let gate = self.gate.clone();
        let observer = self.observer.clone();
        let unknown = self.unknown.clone();
        let sending = async move {
            let target = Target::from_uri(request.uri())?;
            if let HttpMode::Replay(replayer) = &mode {
                if let Err((denial, code)) = authorize_offline(&policy, &target) {
                    denials.record("network (http)", denial);
                    return Err(code);
                }
                return replay(replayer, request, max_response_bytes, &denials).await;
            }
            let lookup =
                tokio::time::timeout(waits.connect.limit, authorize(&policy, &*resolver, &target));
            let addrs = match lookup.await {
                Ok(Ok(addrs)) => addrs,
                Ok(Err((denial, code))) => {
                    denials.record("network (http)", denial);
                    return Err(code);
                }
                Err(_) => {
                    stalls.record(Stall {
                        timeout: "DNS lookup (HTTP connect)",
                        ..waits.connect.stall(&target)
                    });
                    return Err(HttpError::DnsTimeout);
                }
            };
            if let Some(gate) = gate {
                gate()
                    .await
                    .map_err(|why| HttpError::InternalError(Some(why)))?;
            }
            let send = Outgoing {
                target: &target,
                addrs: &addrs,
                max_response_bytes,
                waits,
                stalls: &stalls,
                unknown: &unknown,
            };
            let started = std::time::Instant::now();
            let sent = match &mode {
                HttpMode::Record(recorder) => record(recorder, request, send, &denials).await,
                _ => send.send(request).await,
            };
            if let Some(observe) = observer {
                observe(sample_of(&sent, started.elapsed()));
            }
            sent
        };
        Box::new(async move {
            let (response, done) = sending.await?;
            Ok((response.map(|body| PermitBody::hold(body, permit)), done))
        })
    }
}

/// What [`RequestObserver`]s are told of a request that went out.
fn sample_of(sent: &SendResult, took: Duration) -> RequestSample {
    match sent {
        Ok((response, _)) => RequestSample {
            status: Some(response.status().as_u16()),
            throttled: response.status() == http::StatusCode::TOO_MANY_REQUESTS
                || response.headers().contains_key(http::header::RETRY_AFTER),
            took,
        },
        Err(_) => RequestSample {
            status: None,
            throttled: false,
            took,
        },
    }
}

/// A response body that keeps its request's in-flight permit until it is
/// read to the end or dropped.
struct PermitBody {
    inner: WasiBody,
    permit: Option<OwnedPermit>,
}

impl PermitBody {
    fn hold(inner: WasiBody, permit: OwnedPermit) -> WasiBody {
        PermitBody {
            inner,
            permit: Some(permit),
        }
        .boxed_unsync()
    }
}

impl hyper::body::Body for PermitBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The grant check without DNS, for replay: the URL must be granted, and an
/// IP literal must pass the restricted-address rules.
fn authorize_offline(policy: &NetPolicy, target: &Target) -> Result<(), (NetDenial, HttpError)> {
    policy
        .check_url(&target.scheme, &target.host, target.port)
        .map_err(|d| (d, HttpError::HttpRequestDenied))?;
    if let Ok(ip) = target.bare_host().parse::<IpAddr>() {
        policy
            .filter_resolved(&target.host, target.port, &[ip])
            .map_err(|d| (d, HttpError::DestinationIpProhibited))?;
    }
    Ok(())
}

fn full_body(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Read a request's whole body for a cassette, leaving an equivalent
/// request behind. A body over [`MAX_RECORDED_BODY`] (a streamed upload) is
/// refused once that much has arrived, not buffered whole.
async fn buffer_request(
    request: http::Request<WasiBody>,
    denials: &Denials,
) -> Result<(http::Request<WasiBody>, Bytes), HttpError> {
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_RECORDED_BODY);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            denials.record(
                "cassette",
                format!(
                    "{} {}: a request body over {} MiB cannot be recorded or replayed; \
                     the request was not sent",
                    parts.method,
                    parts.uri,
                    MAX_RECORDED_BODY >> 20
                ),
            );
            return Err(HttpError::HttpRequestBodySize(None));
        }
        Err(e) => {
            return Err(match e.downcast::<HttpError>() {
                Ok(http) => *http,
                Err(other) => HttpError::InternalError(Some(other.to_string())),
            })
        }
    };
    Ok((
        http::Request::from_parts(parts, full_body(bytes.clone())),
        bytes,
    ))
}

async fn record(
    recorder: &Recorder,
    request: http::Request<WasiBody>,
    send: Outgoing<'_>,
    denials: &Denials,
) -> SendResult {
    let (request, request_body) = buffer_request(request, denials).await?;
    let redactor = &recorder.redactor;
    let recorded_request = RecordedRequest {
        method: request.method().to_string(),
        url: redactor.url(&request.uri().to_string()),
        headers: redactor.headers(request.headers()),
        body: redactor.body(&request_body),
    };
    let (response, done) = send.send(request).await?;
    let (parts, body) = response.into_parts();
    let response_body = body.collect().await?.to_bytes();
    recorder.push(Interaction {
        request: recorded_request,
        response: RecordedResponse {
            status: parts.status.as_u16(),
            headers: redactor.headers(&parts.headers),
            body: redactor.response_body(&response_body),
        },
    });
    Ok((
        http::Response::from_parts(parts, full_body(response_body)),
        done,
    ))
}

async fn replay(
    replayer: &Replayer,
    request: http::Request<WasiBody>,
    max_response_bytes: usize,
    denials: &Denials,
) -> SendResult {
    let (request, body) = buffer_request(request, denials).await?;
    let redactor = &replayer.redactor;
    let recorded = replayer
        .next(
            request.method().as_str(),
            &redactor.url(&request.uri().to_string()),
            &redactor.body(&body),
        )
        .map_err(|why| HttpError::InternalError(Some(why)))?;
    let bytes = recorded
        .body
        .to_bytes()
        .map_err(|e| HttpError::InternalError(Some(format!("{e:#}"))))?;
    if bytes.len() > max_response_bytes {
        return Err(HttpError::HttpResponseBodySize(Some(bytes.len() as u64)));
    }
    let mut response = http::Response::builder().status(recorded.status);
    for (name, value) in &recorded.headers {
        response = response.header(name, value);
    }
    let response = response.body(full_body(Bytes::from(bytes))).map_err(|e| {
        HttpError::InternalError(Some(format!("a recorded response is invalid: {e}")))
    })?;
    Ok((response, Box::new(async { Ok(()) })))
}

/// Scheme, host and port of a request.
struct Target {
    scheme: String,
    host: String,
    port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl Target {
    fn from_uri(uri: &http::Uri) -> Result<Self, HttpError> {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri
            .host()
            .ok_or(HttpError::HttpRequestUriInvalid)?
            .to_ascii_lowercase();
        let port = uri
            .port_u16()
            .or_else(|| default_port(&scheme))
            .ok_or(HttpError::HttpRequestUriInvalid)?;
        Ok(Target { scheme, host, port })
    }

    fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

async fn authorize(
    policy: &NetPolicy,
    resolver: &dyn Resolve,
    target: &Target,
) -> Result<Vec<IpAddr>, (NetDenial, HttpError)> {
    policy
        .check_url(&target.scheme, &target.host, target.port)
        .map_err(|d| (d, HttpError::HttpRequestDenied))?;
    let resolved = resolver.resolve(target.bare_host()).await.map_err(|e| {
        (
            NetDenial {
                target: format!("{}:{}", target.host, target.port),
                reason: format!("DNS lookup failed: {e}"),
            },
            HttpError::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            },
        )
    })?;
    policy
        .filter_resolved(&target.host, target.port, &resolved)
        .map_err(|d| (d, HttpError::DestinationIpProhibited))
}

async fn connect_any(addrs: &[IpAddr], port: u16) -> Result<TcpStream, HttpError> {
    let mut last = HttpError::ConnectionRefused;
    for ip in addrs {
        match TcpStream::connect(SocketAddr::new(*ip, port)).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = HttpError::Connect(e),
        }
    }
    Err(last)
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

async fn tls(stream: TcpStream, host: &str) -> Result<Box<dyn Io>, HttpError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| HttpError::InternalError(Some(e.to_string())))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(HttpError::InvalidDnsNameError)?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(HttpError::Tls)?;
    Ok(Box::new(stream))
}

/// One request on its way to checked addresses.
struct Outgoing<'a> {
    target: &'a Target,
    addrs: &'a [IpAddr],
    max_response_bytes: usize,
    waits: Waits,
    stalls: &'a Stalls,
    unknown: &'a UnknownOutcomes,
}

impl Outgoing<'_> {
    /// Connect (within the connect timeout, TLS included), send, and wait
    /// for the response head (within the first-byte timeout); the body
    /// comes through [`ResponseBody`].
    async fn send(&self, mut request: http::Request<WasiBody>) -> SendResult {
        let Waits {
            connect,
            first_byte,
            between_bytes,
        } = self.waits;
        let target = self.target;
        let connecting = async {
            let stream = connect_any(self.addrs, target.port).await?;
            let _ = stream.set_nodelay(true);
            let io: Box<dyn Io> = if target.scheme == "https" {
                tls(stream, target.bare_host()).await?
            } else {
                Box::new(stream)
            };
            hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(io))
                .await
                .map_err(HttpError::from)
        };
        let (mut sender, conn) = match tokio::time::timeout(connect.limit, connecting).await {
            Ok(connected) => connected?,
            Err(_) => {
                self.stalls.record(connect.stall(target));
                return Err(HttpError::ConnectionTimeout);
            }
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        // Origin-form request line: the scheme and authority live in Host.
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
        // From here the request may reach the destination: a failure
        // before the response head leaves its outcome unknown.
        let response =
            match tokio::time::timeout(first_byte.limit, sender.send_request(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    self.unknown.record();
                    return Err(HttpError::from(e));
                }
                Err(_) => {
                    self.unknown.record();
                    self.stalls.record(first_byte.stall(target));
                    return Err(HttpError::ConnectionReadTimeout);
                }
            };
        let stall = between_bytes.stall(target);
        let left = self.max_response_bytes;
        let stalls = self.stalls.clone();
        let response = response.map(|incoming| {
            ResponseBody {
                incoming,
                left,
                gap: Box::pin(tokio::time::sleep(stall.limit)),
                stall,
                stalls,
                stalled: false,
            }
            .boxed_unsync()
        });
        Ok((response, Box::new(async { Ok(()) })))
    }
}

/// A response body as the plugin reads it: at most `left` more bytes, and
/// no longer than the between-bytes timeout between two chunks.
struct ResponseBody {
    incoming: hyper::body::Incoming,
    left: usize,
    /// Fires when the next chunk is late; reset by every chunk.
    gap: Pin<Box<tokio::time::Sleep>>,
    stall: Stall,
    stalls: Stalls,
    stalled: bool,
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.stalled {
            return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > this.left {
                        return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(None))));
                    }
                    this.left -= data.len();
                }
                let next = tokio::time::Instant::now() + this.stall.limit;
                this.gap.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.gap.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.stalled = true;
                    this.stalls.record(this.stall.clone());
                    Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_plugin_asks_is_clamped_to_the_host_maximum() {
        let host = HttpTimeouts {
            connect: Duration::from_secs(30),
            first_byte: Duration::from_secs(120),
            between_bytes: Duration::from_secs(60),
        };
        let waits = host.clamp(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(5)),
            first_byte_timeout: Some(Duration::from_secs(86_400)),
            between_bytes_timeout: Some(Duration::ZERO),
        }));
        assert_eq!(
            (waits.connect.limit, waits.connect.host_maximum),
            (Duration::from_secs(5), false)
        );
        assert_eq!(
            (waits.first_byte.limit, waits.first_byte.host_maximum),
            (Duration::from_secs(120), true)
        );
        assert_eq!(waits.between_bytes.limit, Duration::from_millis(1));
        let none = host.clamp(None);
        assert_eq!(none.between_bytes.limit, Duration::from_secs(60));
        assert!(none.connect.host_maximum);
    }
}
