//! Outbound HTTP for plugins: every `wasi:http` request is checked against
//! the plugin's grant, its host name is resolved here (not by the guest),
//! every resolved address is checked, and the connection is made to an
//! address that passed, so a DNS answer can never widen a grant.
//!
//! [`HttpMode`] adds recording to and replaying from a cassette
//! ([`crate::sandbox::cassette`]) behind the same checks.

use super::policy::{default_port, NetDenial, NetPolicy};
use super::resolver::Resolve;
use super::Denials;
use crate::sandbox::cassette::{
    Body, Interaction, RecordedRequest, RecordedResponse, Recorder, Replayer,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
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
    /// Live, recording to a cassette, or replaying one.
    pub mode: HttpMode,
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
        Box::new(async move {
            let target = Target::from_uri(request.uri())?;
            if let HttpMode::Replay(replayer) = &mode {
                if let Err((denial, code)) = authorize_offline(&policy, &target) {
                    denials.record("network (http)", denial);
                    return Err(code);
                }
                return replay(replayer, request, max_response_bytes).await;
            }
            let addrs = match authorize(&policy, &*resolver, &target).await {
                Ok(addrs) => addrs,
                Err((denial, code)) => {
                    denials.record("network (http)", denial);
                    return Err(code);
                }
            };
            match &mode {
                HttpMode::Record(recorder) => {
                    record(
                        recorder,
                        request,
                        options,
                        &target,
                        &addrs,
                        max_response_bytes,
                    )
                    .await
                }
                _ => send_pinned(request, options, &target, &addrs, max_response_bytes).await,
            }
        })
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

/// Read a request's whole body, leaving an equivalent request behind.
async fn buffer_request(
    request: http::Request<WasiBody>,
) -> Result<(http::Request<WasiBody>, Bytes), HttpError> {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok((
        http::Request::from_parts(parts, full_body(bytes.clone())),
        bytes,
    ))
}

async fn record(
    recorder: &Recorder,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    target: &Target,
    addrs: &[IpAddr],
    max_response_bytes: usize,
) -> SendResult {
    let (request, request_body) = buffer_request(request).await?;
    let redactor = &recorder.redactor;
    let recorded_request = RecordedRequest {
        method: request.method().to_string(),
        url: redactor.url(&request.uri().to_string()),
        headers: redactor.headers(request.headers()),
        body: redactor.body(&request_body),
    };
    let (response, done) = send_pinned(request, options, target, addrs, max_response_bytes).await?;
    let (parts, body) = response.into_parts();
    let response_body = body.collect().await?.to_bytes();
    recorder.push(Interaction {
        request: recorded_request,
        response: RecordedResponse {
            status: parts.status.as_u16(),
            headers: redactor.headers(&parts.headers),
            body: Body::from_bytes(&response_body),
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
) -> SendResult {
    let (request, body) = buffer_request(request).await?;
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

async fn connect_any(
    addrs: &[IpAddr],
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, HttpError> {
    let mut last = HttpError::ConnectionRefused;
    for ip in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(SocketAddr::new(*ip, port))).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = HttpError::Connect(e),
            Err(_) => last = HttpError::ConnectionTimeout,
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

async fn send_pinned(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    target: &Target,
    addrs: &[IpAddr],
    max_response_bytes: usize,
) -> SendResult {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(Duration::from_secs(30));
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(Duration::from_secs(120));
    let stream = connect_any(addrs, target.port, connect_timeout).await?;
    let _ = stream.set_nodelay(true);
    let io: Box<dyn Io> = if target.scheme == "https" {
        tls(stream, target.bare_host()).await?
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(HttpError::from)?;
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
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)?
        .map_err(HttpError::from)?;
    let response = response.map(|body| {
        http_body_util::Limited::new(body, max_response_bytes)
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => HttpError::from(*e),
                Err(_) => HttpError::HttpResponseBodySize(None),
            })
            .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}
