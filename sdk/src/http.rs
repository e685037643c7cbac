//! A small blocking HTTP client for plugins, over `wasi:http`.
//!
//! Every request goes through the host, which checks it against the
//! plugin's network grant; a denied request fails with
//! [`HttpError::Denied`]. Responses can be turned into the contract's errors
//! with [`Response::error_for_status`]: 429 (and 503 with `Retry-After`) become
//! `rate-limited`, other 5xx `retryable`, 401/403 `auth`, other 4xx
//! `permanent`.

use crate::{PluginError, RateLimitedInfo};
use std::time::Duration;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// Why a request produced no response.
#[derive(Debug, Clone)]
pub enum HttpError {
    /// The host refused the request: the plugin's grant does not cover it.
    Denied(String),
    /// The URL could not be parsed.
    InvalidUrl(String),
    /// Connecting, sending or receiving failed (DNS, refused, reset, timeout).
    Transport(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "request denied by the sandbox: {m}"),
            HttpError::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            HttpError::Transport(m) => write!(f, "transport error: {m}"),
        }
    }
}

impl From<HttpError> for PluginError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied(_) | HttpError::InvalidUrl(_) => {
                PluginError::Permanent(e.to_string())
            }
            HttpError::Transport(_) => PluginError::Retryable(e.to_string()),
        }
    }
}

/// An HTTP request under construction.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Duration,
    chunked: bool,
}

impl Request {
    pub fn new(method: &str, url: &str) -> Self {
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            other => Method::Other(other.to_string()),
        };
        Request {
            method,
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: Duration::from_secs(30),
            chunked: false,
        }
    }

    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// A JSON body (sets `content-type: application/json`).
    pub fn json(self, body: &serde_json::Value) -> Self {
        self.body_bytes(
            "application/json",
            serde_json::to_vec(body).unwrap_or_default(),
        )
    }

    /// A body with its content type.
    pub fn body_bytes(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers.retain(|(n, _)| n != "content-type");
        self.headers
            .push(("content-type".into(), content_type.as_bytes().to_vec()));
        self.body = body;
        self
    }

    /// Connect and first-byte timeout (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send the body with `Transfer-Encoding: chunked` instead of a
    /// `Content-Length` (the default: every body is in memory, so its length
    /// is known, and some receivers read only `Content-Length` bodies).
    pub fn chunked(mut self, chunked: bool) -> Self {
        self.chunked = chunked;
        self
    }

    /// The body that will be sent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Send the request and read the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        send(self)
    }
}

/// A request described by its parts, for clients that assemble headers
/// themselves.
pub struct Call<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    pub timeout: Duration,
}

/// Send a [`Call`].
pub fn send_call(call: Call<'_>) -> Result<Response, HttpError> {
    let mut req = Request::new(call.method, call.url).timeout(call.timeout);
    for (name, value) in &call.headers {
        req = req.header(name, value);
    }
    req.body = call.body.to_vec();
    req.send()
}

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PluginError::Permanent(format!(
                "invalid JSON in HTTP {} response: {e}",
                self.status
            ))
        })
    }

    /// `Retry-After` in milliseconds (seconds form only; HTTP dates are
    /// treated as absent).
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| (s.max(0.0) * 1000.0) as u64)
    }

    /// Map a non-2xx response to the contract's error kinds.
    pub fn error_for_status(self) -> Result<Response, PluginError> {
        if self.is_success() {
            return Ok(self);
        }
        Err(self.to_error())
    }

    /// The contract error this response stands for.
    pub fn to_error(&self) -> PluginError {
        let message = format!("HTTP {}: {}", self.status, truncate(&self.text(), 500));
        match self.status {
            429 => PluginError::RateLimited(RateLimitedInfo {
                retry_after_ms: self.retry_after_ms().unwrap_or(1000),
                message,
            }),
            503 if self.retry_after_ms().is_some() => PluginError::RateLimited(RateLimitedInfo {
                retry_after_ms: self.retry_after_ms().unwrap_or(1000),
                message,
            }),
            401 | 403 => PluginError::Auth(message),
            500..=599 | 408 => PluginError::Retryable(message),
            _ => PluginError::Permanent(message),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct ParsedUrl<'a> {
    scheme: Scheme,
    authority: &'a str,
    path_and_query: &'a str,
}

fn parse_url(url: &str) -> Result<ParsedUrl<'_>, HttpError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| HttpError::InvalidUrl(format!("{url}: missing scheme")))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let (authority, path_and_query) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(HttpError::InvalidUrl(format!("{url}: missing host")));
    }
    Ok(ParsedUrl {
        scheme,
        authority,
        path_and_query,
    })
}

fn error_code(e: ErrorCode) -> HttpError {
    match e {
        ErrorCode::HttpRequestDenied => {
            HttpError::Denied("the plugin's grant does not allow this request".into())
        }
        ErrorCode::DestinationIpProhibited => {
            HttpError::Denied("the destination address is not allowed by the plugin's grant".into())
        }
        other => HttpError::Transport(format!("{other:?}")),
    }
}

/// The headers as sent: with `content-length` for a body sent whole (the
/// host then sends no chunked encoding), unless the caller set one or asked
/// for chunks. A bodiless GET, HEAD or DELETE gets none.
fn wire_headers(req: &Request) -> Vec<(String, Vec<u8>)> {
    let mut headers = req.headers.clone();
    let has_length = headers.iter().any(|(n, _)| n == "content-length");
    let bodiless =
        req.body.is_empty() && matches!(req.method, Method::Get | Method::Head | Method::Delete);
    if req.chunked {
        headers.retain(|(n, _)| n != "content-length");
    } else if !has_length && !bodiless {
        headers.push((
            "content-length".into(),
            req.body.len().to_string().into_bytes(),
        ));
    }
    headers
}

fn send(req: Request) -> Result<Response, HttpError> {
    let url = parse_url(&req.url)?;
    let headers = Fields::from_list(&wire_headers(&req))
        .map_err(|e| HttpError::InvalidUrl(format!("invalid header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let _ = outgoing.set_method(&req.method);
    let _ = outgoing.set_scheme(Some(&url.scheme));
    outgoing
        .set_authority(Some(url.authority))
        .map_err(|_| HttpError::InvalidUrl(format!("{}: invalid authority", req.url)))?;
    outgoing
        .set_path_with_query(Some(url.path_and_query))
        .map_err(|_| HttpError::InvalidUrl(format!("{}: invalid path", req.url)))?;
    let options = RequestOptions::new();
    let nanos = req.timeout.as_nanos() as u64;
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));

    let body = outgoing
        .body()
        .map_err(|_| HttpError::Transport("request body unavailable".into()))?;
    let future = outgoing_handler::handle(outgoing, Some(options)).map_err(error_code)?;
    // An API that refuses a call early (expired token, throttling) answers
    // and closes before reading the whole body. Writing then fails, but the
    // answer is what the caller needs: keep the write error only for when
    // no response arrives.
    let sent = write_body(&body, &req.body)
        .and_then(|()| OutgoingBody::finish(body, None).map_err(error_code));

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(sent.err().unwrap_or_else(|| error_code(code))),
        Some(Err(())) => return Err(HttpError::Transport("response already taken".into())),
        None => return Err(HttpError::Transport("response not ready".into())),
    };

    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|_| HttpError::Transport("response body unavailable".into()))?;
    let body = read_body(&incoming)?;
    drop(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body
        .write()
        .map_err(|_| HttpError::Transport("request stream unavailable".into()))?;
    let mut rest = bytes;
    while !rest.is_empty() {
        let permit = stream.check_write().map_err(stream_error)? as usize;
        if permit == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = permit.min(rest.len());
        stream.write(&rest[..n]).map_err(stream_error)?;
        rest = &rest[n..];
    }
    stream.blocking_flush().map_err(stream_error)?;
    Ok(())
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, HttpError> {
    let stream = incoming
        .stream()
        .map_err(|_| HttpError::Transport("response stream unavailable".into()))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(stream_error(e)),
        }
    }
    Ok(out)
}

fn stream_error(e: StreamError) -> HttpError {
    match e {
        StreamError::Closed => HttpError::Transport("stream closed".into()),
        StreamError::LastOperationFailed(err) => HttpError::Transport(err.to_debug_string()),
    }
}

/// Bounded retries with exponential backoff, for API clients whose
/// retryable answers are known (429, some 5xx, a vendor's own retryable
/// reasons). The waits are short and bounded; a longer throttle belongs to
/// the host, as a `rate-limited` error.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first wait; each later one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Wait the server's `Retry-After` (capped at `max_backoff`) instead of
    /// the backoff when it gives one.
    pub honour_retry_after: bool,
}

/// How a [`Retry::send`] ended with an answer.
pub enum Retried {
    /// An answer that is not to be retried (a success or a final error).
    Answer(Response),
    /// Still a retryable answer after the last retry.
    Exhausted(Response),
}

impl Retry {
    /// Sends the request `build` makes for each attempt (it gets the attempt
    /// number, from 0) until an answer is not `retryable` or the retries run
    /// out; transport failures are retried too. `what` names the call in the
    /// warning logged before each wait.
    pub fn send(
        &self,
        what: &str,
        mut build: impl FnMut(u32) -> Request,
        retryable: impl Fn(&Response) -> bool,
    ) -> Result<Retried, HttpError> {
        let mut backoff = self.first_backoff;
        let mut attempt = 0;
        loop {
            let outcome = build(attempt).send();
            let retry = match &outcome {
                Ok(response) => retryable(response),
                Err(HttpError::Transport(_)) => true,
                Err(_) => false,
            };
            if !retry || attempt >= self.max_retries {
                return match outcome {
                    Ok(response) if retry => Ok(Retried::Exhausted(response)),
                    Ok(response) => Ok(Retried::Answer(response)),
                    Err(e) => Err(e),
                };
            }
            let wait = self.wait(outcome.as_ref().ok(), backoff);
            crate::log::log(
                crate::log::Level::Warn,
                &format!(
                    "{what}: {} (attempt {}), retrying in {} ms",
                    match &outcome {
                        Ok(r) => format!("HTTP {}", r.status),
                        Err(e) => e.to_string(),
                    },
                    attempt + 1,
                    wait.as_millis()
                ),
            );
            sleep(wait);
            backoff = (backoff * 2).min(self.max_backoff);
            attempt += 1;
        }
    }

    fn wait(&self, answer: Option<&Response>, backoff: Duration) -> Duration {
        answer
            .filter(|_| self.honour_retry_after)
            .and_then(Response::retry_after_ms)
            .map(|ms| Duration::from_millis(ms).min(self.max_backoff))
            .unwrap_or(backoff)
    }
}

/// Sleep inside the plugin (for short, bounded backoffs only: the call's
/// wall-clock deadline keeps counting).
pub fn sleep(duration: Duration) {
    wasip2::clocks::monotonic_clock::subscribe_duration(duration.as_nanos() as u64).block();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn a_body_is_sent_with_its_length_unless_chunks_are_asked_for() {
        let post = Request::post("http://x/hook").body_bytes("application/json", b"{}".to_vec());
        assert_eq!(
            header(&wire_headers(&post), "content-length"),
            Some(&b"2"[..])
        );
        let empty_post = Request::post("http://x/hook");
        assert_eq!(
            header(&wire_headers(&empty_post), "content-length"),
            Some(&b"0"[..])
        );
        assert_eq!(
            header(&wire_headers(&Request::get("http://x/")), "content-length"),
            None
        );
        let chunked = post.clone().chunked(true);
        assert_eq!(header(&wire_headers(&chunked), "content-length"), None);
        // A length the caller set is kept, not doubled.
        let own = post.header("content-length", "2");
        let lengths = wire_headers(&own)
            .iter()
            .filter(|(n, _)| n == "content-length")
            .count();
        assert_eq!(lengths, 1);
    }
}
