//! Outbound HTTP for plugins: every `wasi:http` request is checked against
//! the plugin's grant, its host name is resolved here (not by the guest),
//! every resolved address is checked, and the connection is made to an
//! address that passed, so a DNS answer can never widen a grant.

use super::policy::{default_port, NetDenial, NetPolicy};
use super::resolver::Resolve;
use super::Denials;
use http_body_util::BodyExt;
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
        Box::new(async move {
            let target = Target::from_uri(request.uri())?;
            let addrs = match authorize(&policy, &*resolver, &target).await {
                Ok(addrs) => addrs,
                Err((denial, code)) => {
                    denials.record("network (http)", denial);
                    return Err(code);
                }
            };
            send_pinned(request, options, &target, &addrs, max_response_bytes).await
        })
    }
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
