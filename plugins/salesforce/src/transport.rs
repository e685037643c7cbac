//! HTTP over `wasi:http` that still returns the server's answer when the
//! server answers before it has read the whole request body.
//!
//! Stopgap: `sluice_sdk::http::Request::send` gives up with "stream closed"
//! when writing the body fails, which happens whenever an API refuses a call
//! early (401 expired token, 403/429 throttling) and closes the connection:
//! the very answers this plugin must see. Once the SDK waits for the
//! response after a failed body write, this module can go. (The same file
//! exists in the hubspot plugin.)

use sluice_sdk::http::{HttpError, Response};
use std::time::Duration;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// One request.
pub struct Call<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    pub timeout: Duration,
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_string()),
    }
}

/// `(scheme, authority, path-with-query)`
fn split_url(url: &str) -> Result<(Scheme, &str, &str), HttpError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| HttpError::InvalidUrl(format!("{url}: missing scheme")))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(HttpError::InvalidUrl(format!("{url}: missing host")));
    }
    Ok((scheme, authority, path))
}

fn error_code(e: ErrorCode) -> HttpError {
    match e {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
            HttpError::Denied("the plugin's grant does not allow this request".into())
        }
        other => HttpError::Transport(format!("{other:?}")),
    }
}

fn stream_error(e: StreamError) -> HttpError {
    match e {
        StreamError::Closed => HttpError::Transport("stream closed".into()),
        StreamError::LastOperationFailed(err) => HttpError::Transport(err.to_debug_string()),
    }
}

pub fn send(call: Call) -> Result<Response, HttpError> {
    let (scheme, authority, path) = split_url(call.url)?;
    let headers: Vec<(String, Vec<u8>)> = call
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&headers)
        .map_err(|e| HttpError::InvalidUrl(format!("invalid header: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let _ = request.set_method(&method(call.method));
    let _ = request.set_scheme(Some(&scheme));
    request
        .set_authority(Some(authority))
        .map_err(|_| HttpError::InvalidUrl(format!("{}: invalid authority", call.url)))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|_| HttpError::InvalidUrl(format!("{}: invalid path", call.url)))?;
    let options = RequestOptions::new();
    let nanos = call.timeout.as_nanos() as u64;
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    let body = request
        .body()
        .map_err(|_| HttpError::Transport("request body unavailable".into()))?;
    let future = outgoing_handler::handle(request, Some(options)).map_err(error_code)?;
    // A failed body write is remembered, not returned: the answer that made
    // the server stop reading is more useful than "stream closed".
    let written = write_body(&body, call.body)
        .and_then(|_| OutgoingBody::finish(body, None).map_err(error_code));
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(written.err().unwrap_or_else(|| error_code(e))),
        _ => {
            return Err(written
                .err()
                .unwrap_or_else(|| HttpError::Transport("no response".into())))
        }
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
    stream.blocking_flush().map_err(stream_error)
}

fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, HttpError> {
    let stream = incoming
        .stream()
        .map_err(|_| HttpError::Transport("response stream unavailable".into()))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(out),
            Err(e) => return Err(stream_error(e)),
        }
    }
}
