"""A small blocking HTTP client over `wasi:http`, for destinations.

Every request goes through the host, which checks it against the plugin's
network grant. A refused request raises `HttpDenied`; let it escape the call
(or turn it into a `PermanentError`) so the host reports which capability
was missing. Connection failures raise `HttpTransportError`.

Use it from a plugin built for the `destination` world of
`sdk/python/wit` (it imports `wasi:http/outgoing-handler`).

    from sluice_sdk import http
    response = http.post_json(url, {"rows": rows}, timeout_ms=10_000)
    response.status, response.header("retry-after"), response.json()
    response.raise_for_status()     # non-2xx: the contract's error, raised
    result = response.row_result()  # or: the row result that status stands for

Statuses map to the contract as in the Rust and JavaScript SDKs: 429 (and
503 with `Retry-After`) are rate-limited after `Retry-After` (1 s when
absent), other 5xx and 408 retryable, 401/403 auth, other statuses
permanent. A timeout or a connection failure raises `HttpTransportError`, a
`RetryableError`.
"""

from __future__ import annotations

import json as _json
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import http_types as ht
from wit_world.imports import monotonic_clock, outgoing_handler
from wit_world.imports import streams

from . import (AuthError, PermanentError, RateLimitedError, RetryableError, accepted, rate_limited, rejected,
               retryable)

__all__ = ["Response", "HttpError", "HttpDenied", "HttpTransportError", "request", "get", "post_json", "sleep_ms",
           "retry_after_ms"]

_CHUNK = 4096
_READ = 64 * 1024


class HttpError(Exception):
    """A request produced no response."""


class HttpDenied(HttpError, PermanentError):
    """The sandbox refused the request: the plugin's grant does not cover it.
    It is a `PermanentError`, so letting it escape fails the call and the host
    names the missing grant."""


class HttpTransportError(HttpError, RetryableError):
    """Connecting, sending or receiving failed (refused, reset, timeout, DNS)."""


class Response:
    def __init__(self, status: int, headers: List[Tuple[str, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        """The first value of a header (case-insensitive), or None."""
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v.decode("utf-8", "replace")
        return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; a body that is not JSON is a `PermanentError`."""
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise PermanentError(f"HTTP {self.status}: the response is not JSON ({e}): {self.text()[:200]}") from None

    def retry_after_ms(self) -> Optional[int]:
        """`Retry-After` in milliseconds (delay-seconds form), or None when
        absent or an HTTP date."""
        value = self.header("retry-after")
        if value is None:
            return None
        try:
            return max(0, int(float(value.strip()) * 1000))
        except ValueError:
            return None

    def to_error(self) -> Exception:
        """The contract error this (non-2xx) response stands for."""
        message = f"HTTP {self.status}: {self.text()[:500]}"
        wait = self.retry_after_ms()
        if self.status == 429 or (self.status == 503 and wait is not None):
            return RateLimitedError(1000 if wait is None else wait, message)
        if self.status in (401, 403):
            return AuthError(message)
        if self.status == 408 or 500 <= self.status <= 599:
            return RetryableError(message)
        return PermanentError(message)

    def raise_for_status(self) -> "Response":
        """This response if it is 2xx, else raise `to_error()`."""
        if self.ok:
            return self
        raise self.to_error()

    def row_result(self) -> Any:
        """The row result this response stands for, for a destination that
        sends rows one request each (or a batch all-or-nothing): 2xx
        accepted, rate-limited and retryable statuses as such, other
        statuses rejected with the API's message. 401/403 raise `AuthError`:
        no row can succeed with refused credentials."""
        if self.ok:
            return accepted()
        error = self.to_error()
        if isinstance(error, RateLimitedError):
            return rate_limited(error.retry_after_ms)
        if isinstance(error, RetryableError):
            return retryable(str(error))
        if isinstance(error, AuthError):
            raise error
        return rejected(str(error))

    def __repr__(self) -> str:
        return f"Response(status={self.status}, body={self.body[:80]!r})"


_METHODS = {
    "GET": ht.Method_Get, "HEAD": ht.Method_Head, "POST": ht.Method_Post, "PUT": ht.Method_Put,
    "DELETE": ht.Method_Delete, "PATCH": ht.Method_Patch, "OPTIONS": ht.Method_Options,
}

# Error codes that mean the sandbox (not the network) refused the request.
_DENIED = (ht.ErrorCode_HttpRequestDenied, ht.ErrorCode_DestinationIpProhibited)


def _describe(code: Any) -> str:
    name = type(code).__name__.removeprefix("ErrorCode_")
    payload = getattr(code, "value", None)
    return f"{name}({payload})" if payload is not None else name


def _raise_for(code: Any, url: str) -> None:
    if isinstance(code, _DENIED):
        raise HttpDenied(f"request to {url} denied by the sandbox ({_describe(code)}); grant its host to the plugin")
    raise HttpTransportError(f"request to {url} failed: {_describe(code)}")


def request(method: str, url: str, *, headers: Optional[Mapping[str, str]] = None, body: Optional[bytes] = None,
            json: Any = None, timeout_ms: int = 30_000) -> Response:
    """Send a request and read the whole response. `json` (instead of
    `body`) sends a JSON document with `content-type: application/json`.
    `timeout_ms` bounds connecting, the first byte and each gap between
    bytes; running out raises `HttpTransportError`."""
    if json is not None:
        if body is not None:
            raise PermanentError("request: pass `body` or `json`, not both")
        headers = {"content-type": "application/json", **(headers or {})}
        body = _json.dumps(json, separators=(",", ":")).encode()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PermanentError(f"invalid URL `{url}`: expected http(s)://host/...")
    entries = [(k.lower(), str(v).encode()) for k, v in (headers or {}).items()]
    if body:
        entries.append(("content-length", str(len(body)).encode()))
    try:
        fields = ht.Fields.from_list(entries)
    except Err as e:
        raise PermanentError(f"invalid request header: {type(e.value).__name__}") from None
    req = ht.OutgoingRequest(fields)
    m = method.upper()
    req.set_method(_METHODS[m]() if m in _METHODS else ht.Method_Other(m))
    req.set_scheme(ht.Scheme_Https() if parts.scheme == "https" else ht.Scheme_Http())
    req.set_authority(parts.netloc)
    req.set_path_with_query(parts.path + ("?" + parts.query if parts.query else "") or "/")

    options = ht.RequestOptions()
    nanos = int(timeout_ms) * 1_000_000
    options.set_connect_timeout(nanos)
    options.set_first_byte_timeout(nanos)
    options.set_between_bytes_timeout(nanos)

    out_body = req.body()
    try:
        future = outgoing_handler.handle(req, options)
    except Err as e:
        _raise_for(e.value, url)
    # The body is streamed after the request is handed over.
    data = body or b""
    with out_body.write() as stream:
        for i in range(0, len(data), _CHUNK):
            try:
                stream.blocking_write_and_flush(data[i:i + _CHUNK])
            except Err:
                # The host closed the stream: the response (or its error)
                # says why.
                break
    try:
        ht.OutgoingBody.finish(out_body, None)
    except Err:
        pass  # the response (or its error) below says what went wrong

    with future:
        with future.subscribe() as ready:
            ready.block()
        outcome = future.get()
    if outcome is None:
        raise HttpTransportError(f"request to {url}: no response")
    if isinstance(outcome, Err):
        raise HttpTransportError(f"request to {url}: response already taken")
    inner = outcome.value
    if isinstance(inner, Err):
        _raise_for(inner.value, url)
    response = inner.value if isinstance(inner, Ok) else inner

    with response:
        status = response.status()
        with response.headers() as h:
            header_list = h.entries()
        incoming = response.consume()
        chunks = []
        with incoming.stream() as stream:
            while True:
                try:
                    chunk = stream.blocking_read(_READ)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise HttpTransportError(f"reading the response from {url} failed") from None
                chunks.append(chunk)
        ht.IncomingBody.finish(incoming)
    return Response(status, header_list, b"".join(chunks))


def get(url: str, *, headers: Optional[Mapping[str, str]] = None, timeout_ms: int = 30_000) -> Response:
    """GET a URL."""
    return request("GET", url, headers=headers, timeout_ms=timeout_ms)


def post_json(url: str, doc: Any, *, headers: Optional[Mapping[str, str]] = None, timeout_ms: int = 30_000) -> Response:
    """POST a JSON document."""
    return request("POST", url, headers=headers, json=doc, timeout_ms=timeout_ms)


def sleep_ms(ms: int) -> None:
    """Block for `ms` milliseconds (through the host's monotonic clock)."""
    with monotonic_clock.subscribe_duration(int(ms) * 1_000_000) as p:
        p.block()


def retry_after_ms(response: Response, default_ms: int = 1000) -> int:
    """`Retry-After` in milliseconds (delay-seconds form), or `default_ms`."""
    wait = response.retry_after_ms()
    return default_ms if wait is None else wait
