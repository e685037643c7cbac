"""`py-http-post`: POSTs each batch as one JSON document to a URL.

The body is `{"object": ..., "mode": ..., "identifier": ..., "rows": [{column: value}, ...]}`.
A row whose identifier column is null is rejected on the spot and not sent.
The receiver's answer decides the other rows' results:

- 2xx: accepted;
- 429 (and 503 with `Retry-After`): rate-limited, after `Retry-After`
  seconds (1 s when absent);
- other 5xx and 408: retryable, with the receiver's message;
- 401/403: the whole call fails with an auth error;
- other 3xx/4xx: rejected with the receiver's message

(the SDK's `response.row_result()`). Headers `x-ratelimit-remaining`,
`-limit` and `-window-ms` in a response are reported to the host as the
receiver's quota.

A timeout or a connection failure makes the rows retryable. A request the sandbox refuses
(the URL's host is not granted) fails the call, and the host names the grant
that is missing.

Config: {"url": "https://...", "headers": {"x-api-key": "..."}, "timeout_ms": 30000}
"""

import sluice_sdk as sdk
from sluice_sdk import http

VERSION = "0.1.0"


def parse(config):
    doc = sdk.parse_config(config, required=["url"], allowed=["url", "headers", "timeout_ms"])
    url = doc["url"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise sdk.ConfigError(f"`url` must be http(s)://..., got `{url}`")
    headers = doc.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise sdk.ConfigError("`headers` must be an object of strings")
    timeout_ms = doc.get("timeout_ms", 30_000)
    if not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise sdk.ConfigError("`timeout_ms` must be a positive integer")
    return url, headers, timeout_ms


class HttpPost(sdk.Destination):
    @staticmethod
    def spec():
        return sdk.spec(
            "py-http-post",
            VERSION,
            "POSTs each batch as JSON to a URL (Python)",
            config_schema={
                "type": "object",
                "required": ["url"],
                "additionalProperties": False,
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "timeout_ms": {"type": "integer", "minimum": 1, "default": 30000},
                },
            },
            capabilities=["${config.url}"],
            rate_limit=(50, 1000, 4),
            batch_size=500,
        )

    @classmethod
    def check(cls, config):
        parse(config)

    @classmethod
    def discover(cls, config):
        parse(config)
        anything = sdk.Field("*", sdk.FieldType.ANY, True, False, True)
        return [sdk.ObjectInfo("rows", [anything], list(sdk.WriteMode))]

    @classmethod
    def open(cls, config, target):
        return PostWriter(*parse(config), target)


class PostWriter(sdk.Writer):
    def __init__(self, url, headers, timeout_ms, target):
        self.url = url
        self.headers = {"user-agent": f"sluice-py-http-post/{VERSION}", **headers}
        self.timeout_ms = timeout_ms
        self.target = target

    def write(self, batch):
        results = [None] * len(batch.rows)
        ident = None
        if self.target.identifier:
            ident = sdk.require_column(batch, self.target.identifier)
        send = []
        for i, row in enumerate(batch.rows):
            if ident is not None and sdk.is_null(row[ident]):
                results[i] = sdk.rejected(f"row has no value for identifier `{self.target.identifier}`")
            else:
                send.append(i)
        if send:
            outcome = self.post([sdk.row_dict(batch, i) for i in send])
            for i in send:
                results[i] = outcome
        return results

    def post(self, rows):
        doc = {
            "object": self.target.object,
            "mode": sdk.mode_name(self.target.mode),
            "identifier": self.target.identifier,
            "rows": rows,
        }
        try:
            response = http.post_json(self.url, doc, headers=self.headers, timeout_ms=self.timeout_ms)
        except http.HttpTransportError as e:
            # A timeout or a failed connection: the rows may go through later.
            sdk.log.warn(str(e))
            return sdk.retryable(str(e))
        # http.HttpDenied escapes: the call fails and the host names the grant.
        self.report_quota(response)
        return response.row_result()

    @staticmethod
    def report_quota(response):
        """A receiver that says how many calls are left in its window lets
        the host pace the sync before it answers 429."""
        remaining = response.header("x-ratelimit-remaining")
        limit = response.header("x-ratelimit-limit")
        window_ms = response.header("x-ratelimit-window-ms")
        if remaining is not None and limit is not None and window_ms is not None:
            sdk.report_quota(int(remaining), int(limit), int(window_ms))


DestinationApi = sdk.export_destination(HttpPost)
