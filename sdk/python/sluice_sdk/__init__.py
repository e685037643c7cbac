"""Helpers for Sluice plugins written in Python.

A Sluice plugin is a WebAssembly component that exports one world of
`wit/plugin.wit` (`transform`, `destination` or `source`). componentize-py
generates the bindings (the `wit_world` package) when it builds the
component; this module wraps them so a plugin reads like the Rust SDK:

- values: `text("a")`, `integer(1)`, `null()`, ... and `as_str(v)`,
  `as_int(v)`, `to_json(v)`;
- batches: `column(batch, "email")`, `row_dict(batch, i)`, `Batch`;
- errors: raise `ConfigError`, `AuthError`, `RateLimitedError`,
  `RetryableError` or `PermanentError` from any call;
- row results: `accepted()`, `rejected(msg)`, `retryable(msg)`,
  `rate_limited(ms)`, ...;
- the plugin itself: subclass `Transform` or `Destination` and export it
  with `export_transform(MyTransform)` / `export_destination(MyDest)`;
- logging through the host: `log.info("...")`;
- an API's remaining quota passed up to the host: `report_quota(...)`.

Outbound HTTP (destinations) lives in `sluice_sdk.http`.
"""

from __future__ import annotations

import json
import traceback
from typing import Any, Dict, Iterable, List, Optional, Sequence

from componentize_py_types import Err
from wit_world.imports import host as _host
from wit_world.imports import types as t

__all__ = [
    "t", "Batch", "Transformed", "RowError", "PluginSpec", "RateLimit", "ObjectInfo", "Field",
    "FieldType", "WriteMode", "WriteTarget",
    "null", "boolean", "integer", "float_", "decimal", "text", "bytes_", "timestamp", "date", "json_",
    "value", "is_null", "as_str", "as_int", "as_float", "as_bool", "type_name", "to_json",
    "column", "require_column", "row_dict", "batch_json",
    "PluginError", "ConfigError", "AuthError", "RateLimitedError", "RetryableError", "PermanentError",
    "created", "updated", "deleted", "accepted", "rejected", "retryable", "rate_limited", "is_ok",
    "spec", "parse_config", "log", "Transform", "Destination", "Writer", "export_transform",
    "export_destination", "mode_name", "report_quota",
]

# The contract's records and enums, re-exported under their WIT names.
Batch = t.Batch
Transformed = t.Transformed
RowError = t.RowError
PluginSpec = t.PluginSpec
RateLimit = t.RateLimit
ObjectInfo = t.ObjectInfo
Field = t.Field
FieldType = t.FieldType
WriteMode = t.WriteMode
WriteTarget = t.WriteTarget

# ---------------------------------------------------------------- values


def null() -> t.Value:
    return t.Value_Null()


def boolean(b: bool) -> t.Value:
    return t.Value_Boolean(bool(b))


def integer(i: int) -> t.Value:
    return t.Value_Integer(int(i))


def float_(f: float) -> t.Value:
    return t.Value_Float(float(f))


def decimal(s: str) -> t.Value:
    """An exact decimal in plain notation, e.g. "-12.50"."""
    return t.Value_Decimal(str(s))


def text(s: str) -> t.Value:
    return t.Value_Text(str(s))


def bytes_(b: bytes) -> t.Value:
    return t.Value_Bytes(bytes(b))


def timestamp(micros: int) -> t.Value:
    """An instant in microseconds since 1970-01-01T00:00:00Z."""
    return t.Value_Timestamp(int(micros))


def date(days: int) -> t.Value:
    """A calendar date in days since 1970-01-01."""
    return t.Value_Date(int(days))


def json_(doc: Any) -> t.Value:
    """A JSON document; a `str` is taken as already serialised."""
    return t.Value_Json(doc if isinstance(doc, str) else json.dumps(doc, separators=(",", ":")))


def value(v: Any) -> t.Value:
    """A value from a plain Python object: None, bool, int, float, str, bytes,
    or a dict/list (as JSON). Values of the contract pass through."""
    if v is None:
        return null()
    if isinstance(v, _VALUE_TYPES):
        return v
    if isinstance(v, bool):
        return boolean(v)
    if isinstance(v, int):
        return integer(v)
    if isinstance(v, float):
        return float_(v)
    if isinstance(v, str):
        return text(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes_(bytes(v))
    if isinstance(v, (dict, list)):
        return json_(v)
    raise TypeError(f"cannot turn a {type(v).__name__} into a Sluice value")


_VALUE_TYPES = (
    t.Value_Null, t.Value_Boolean, t.Value_Integer, t.Value_Float, t.Value_Decimal,
    t.Value_Text, t.Value_Bytes, t.Value_Timestamp, t.Value_Date, t.Value_Json,
)

_TYPE_NAMES = {
    t.Value_Null: "null", t.Value_Boolean: "boolean", t.Value_Integer: "integer",
    t.Value_Float: "float", t.Value_Decimal: "decimal", t.Value_Text: "text",
    t.Value_Bytes: "bytes", t.Value_Timestamp: "timestamp", t.Value_Date: "date",
    t.Value_Json: "json",
}


def type_name(v: t.Value) -> str:
    """The WIT case name of a value: "text", "integer", "null", ..."""
    return _TYPE_NAMES.get(type(v), type(v).__name__)


def is_null(v: t.Value) -> bool:
    return isinstance(v, t.Value_Null)


def as_str(v: t.Value) -> Optional[str]:
    """The text of a `text`, `decimal` or `json` value, else None."""
    if isinstance(v, (t.Value_Text, t.Value_Decimal, t.Value_Json)):
        return v.value
    return None


def as_int(v: t.Value) -> Optional[int]:
    """An integer (or a whole float, or numeric text/decimal), else None."""
    if isinstance(v, t.Value_Integer):
        return v.value
    if isinstance(v, t.Value_Float) and float(v.value).is_integer():
        return int(v.value)
    if isinstance(v, (t.Value_Decimal, t.Value_Text)):
        try:
            return int(v.value.strip())
        except ValueError:
            return None
    return None


def as_float(v: t.Value) -> Optional[float]:
    if isinstance(v, (t.Value_Integer, t.Value_Float)):
        return float(v.value)
    if isinstance(v, (t.Value_Decimal, t.Value_Text)):
        try:
            return float(v.value.strip())
        except ValueError:
            return None
    return None


def as_bool(v: t.Value) -> Optional[bool]:
    return v.value if isinstance(v, t.Value_Boolean) else None


def _civil_from_days(days: int):
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def format_date(days: int) -> str:
    y, m, d = _civil_from_days(days)
    return f"{y:04d}-{m:02d}-{d:02d}"


def format_timestamp(micros: int) -> str:
    secs, frac = divmod(micros, 1_000_000)
    days, sod = divmod(secs, 86_400)
    y, m, d = _civil_from_days(days)
    hh, rem = divmod(sod, 3600)
    mm, ss = divmod(rem, 60)
    base = f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}"
    return f"{base}Z" if frac == 0 else f"{base}.{frac:06d}Z"


def to_json(v: t.Value) -> Any:
    """The value as a JSON-ready Python object, like the Rust SDK's
    `Value::to_json`: timestamps as RFC 3339 UTC, dates as YYYY-MM-DD, bytes
    as lowercase hex, decimals as numbers, JSON documents inline."""
    if isinstance(v, t.Value_Null):
        return None
    if isinstance(v, (t.Value_Boolean, t.Value_Integer, t.Value_Text)):
        return v.value
    if isinstance(v, t.Value_Float):
        f = v.value
        return f if f == f and f not in (float("inf"), float("-inf")) else None
    if isinstance(v, t.Value_Decimal):
        try:
            n = json.loads(v.value)
            return n if isinstance(n, (int, float)) else v.value
        except ValueError:
            return v.value
    if isinstance(v, t.Value_Bytes):
        return v.value.hex()
    if isinstance(v, t.Value_Timestamp):
        return format_timestamp(v.value)
    if isinstance(v, t.Value_Date):
        return format_date(v.value)
    if isinstance(v, t.Value_Json):
        try:
            return json.loads(v.value)
        except ValueError:
            return v.value
    raise TypeError(f"not a Sluice value: {v!r}")


# --------------------------------------------------------------- batches


def column(batch: t.Batch, name: str) -> Optional[int]:
    """The position of a column, by name, or None."""
    try:
        return batch.columns.index(name)
    except ValueError:
        return None


def require_column(batch: t.Batch, name: str) -> int:
    """The position of a column; a missing column is a config error."""
    i = column(batch, name)
    if i is None:
        raise ConfigError(f"column `{name}` is not in the batch (columns: {', '.join(batch.columns)})")
    return i


def row_dict(batch: t.Batch, i: int) -> Dict[str, Any]:
    """Row `i` as a JSON-ready dict keyed by column name."""
    return {c: to_json(v) for c, v in zip(batch.columns, batch.rows[i])}


def batch_json(batch: t.Batch) -> List[Dict[str, Any]]:
    return [row_dict(batch, i) for i in range(len(batch.rows))]


# ---------------------------------------------------------------- errors


class PluginError(Exception):
    """A failure of a whole call. Raise a subclass; the SDK turns it into
    the contract's `plugin-error`."""

    def to_wit(self) -> t.PluginError:
        return t.PluginError_Permanent(str(self))


class ConfigError(PluginError):
    """The config document is wrong; say which key."""

    def to_wit(self) -> t.PluginError:
        return t.PluginError_Config(str(self))


class AuthError(PluginError):
    """Credentials were refused."""

    def to_wit(self) -> t.PluginError:
        return t.PluginError_Auth(str(self))


class RateLimitedError(PluginError):
    """The API asked us to slow down; the host retries after `retry_after_ms`."""

    def __init__(self, retry_after_ms: int, message: str = "rate limited"):
        super().__init__(message)
        self.retry_after_ms = int(retry_after_ms)

    def to_wit(self) -> t.PluginError:
        return t.PluginError_RateLimited(t.RateLimitedInfo(self.retry_after_ms, str(self)))


class RetryableError(PluginError):
    """A transient failure; the same call may succeed later."""

    def to_wit(self) -> t.PluginError:
        return t.PluginError_Retryable(str(self))


class PermanentError(PluginError):
    """A failure that retrying will not fix."""


# ----------------------------------------------------------- row results


def created() -> t.RowResult:
    return t.RowResult_Created()


def updated() -> t.RowResult:
    return t.RowResult_Updated()


def deleted() -> t.RowResult:
    return t.RowResult_Deleted()


def accepted() -> t.RowResult:
    """Accepted without saying whether it created or updated (webhooks)."""
    return t.RowResult_Accepted()


def rejected(message: str) -> t.RowResult:
    """Refused for good; pass the API's own message."""
    return t.RowResult_Rejected(str(message))


def retryable(message: str) -> t.RowResult:
    """Failed transiently; the host retries the row with backoff."""
    return t.RowResult_Retryable(str(message))


def rate_limited(retry_after_ms: int) -> t.RowResult:
    """Throttled; the host retries the row after this many milliseconds."""
    return t.RowResult_RateLimited(int(retry_after_ms))


def is_ok(r: t.RowResult) -> bool:
    return isinstance(r, (t.RowResult_Created, t.RowResult_Updated, t.RowResult_Deleted, t.RowResult_Accepted))


_MODE_NAMES = {
    t.WriteMode.UPSERT: "upsert", t.WriteMode.UPDATE: "update", t.WriteMode.INSERT: "insert",
    t.WriteMode.DELETE: "delete", t.WriteMode.APPEND: "append",
}


def mode_name(mode: t.WriteMode) -> str:
    return _MODE_NAMES[mode]


# ------------------------------------------------------- spec and config


def spec(name: str, version: str, description: str, *, config_schema: Any = None,
         capabilities: Sequence[str] = (), rate_limit: Optional[tuple] = None,
         batch_size: int = 1000) -> t.PluginSpec:
    """A plugin spec. `config_schema` is a JSON Schema (dict or text);
    `rate_limit` is `(requests, per_ms, concurrency)`."""
    if config_schema is None:
        config_schema = {"type": "object"}
    schema = config_schema if isinstance(config_schema, str) else json.dumps(config_schema)
    limit = t.RateLimit(*rate_limit) if rate_limit else None
    return t.PluginSpec(name, version, description, schema, list(capabilities), limit, batch_size)


def parse_config(config: str, *, required: Iterable[str] = (), allowed: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Parse the JSON config document. Missing `required` keys and keys not in
    `allowed` (when given) are config errors that name the key."""
    try:
        doc = json.loads(config) if config.strip() else {}
    except ValueError as e:
        raise ConfigError(f"invalid config: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError("invalid config: expected a JSON object")
    for key in required:
        if key not in doc:
            raise ConfigError(f"invalid config: missing field `{key}`")
    if allowed is not None:
        allowed = set(allowed)
        for key in doc:
            if key not in allowed:
                raise ConfigError(f"invalid config: unknown field `{key}`, expected one of {sorted(allowed)}")
    return doc


# --------------------------------------------------------------- logging


class _Log:
    """Lines written here reach the host's log, tagged with the plugin name."""

    def trace(self, message: str) -> None:
        _host.log(_host.Level.TRACE, str(message))

    def debug(self, message: str) -> None:
        _host.log(_host.Level.DEBUG, str(message))

    def info(self, message: str) -> None:
        _host.log(_host.Level.INFO, str(message))

    def warn(self, message: str) -> None:
        _host.log(_host.Level.WARN, str(message))

    def error(self, message: str) -> None:
        _host.log(_host.Level.ERROR, str(message))


log = _Log()


# ----------------------------------------------------------------- quota

_U32_MAX = 2**32 - 1


def report_quota(remaining: int, limit: int, window_ms: int) -> None:
    """`remaining` of `limit` calls are left in a rolling window of
    `window_ms`, as the API said in its response headers (HubSpot's
    `X-HubSpot-RateLimit-Remaining`, `-Max` and `-Interval-Milliseconds`).
    The host adopts the API's pace when it is slower than the declared one
    and holds calls while the window is used up, rather than running into a
    429. Report after each response that carries the headers. Daily
    allowances are not windows to pace by: leave them out."""

    def u32(name: str, n: int) -> int:
        n = int(n)
        if n < 0:
            raise PermanentError(f"report_quota: `{name}` must not be negative, got {n}")
        return min(n, _U32_MAX)

    _host.report_quota(u32("remaining", remaining), u32("limit", limit), u32("window_ms", window_ms))


# ---------------------------------------------------------- plugin kinds


class Transform:
    """Subclass this, then `TransformApi = export_transform(MyTransform)`.

    - `spec()` (static) describes the plugin;
    - `__init__(self, config)` parses the config (raise `ConfigError`);
    - `transform(self, batch)` returns a `Transformed`. Build it with
      `self.output(columns)`, `out.batch.rows.append(row)` and
      `out.errors.append(RowError(index, message))`.
    """

    @staticmethod
    def spec() -> t.PluginSpec:
        raise NotImplementedError("a Transform must define spec()")

    @classmethod
    def check(cls, config: str) -> None:
        cls(config)

    def __init__(self, config: str) -> None:
        self.config = config

    def transform(self, batch: t.Batch) -> t.Transformed:
        raise NotImplementedError("a Transform must define transform(batch)")

    @staticmethod
    def output(columns: List[str]) -> t.Transformed:
        """An empty result with these output columns."""
        return t.Transformed(t.Batch(list(columns), []), [])


class Writer:
    """An open write: `write(batch)` returns one row result per row."""

    def write(self, batch: t.Batch) -> List[t.RowResult]:
        raise NotImplementedError("a Writer must define write(batch)")


class Destination:
    """Subclass this, then `DestinationApi = export_destination(MyDestination)`.

    - `spec()` (static) describes the plugin;
    - `check(config)` validates the config (and may test the connection);
    - `discover(config)` lists the writable objects;
    - `open(config, target)` returns a `Writer`.
    """

    @staticmethod
    def spec() -> t.PluginSpec:
        raise NotImplementedError("a Destination must define spec()")

    @classmethod
    def check(cls, config: str) -> None:
        pass

    @classmethod
    def discover(cls, config: str) -> List[t.ObjectInfo]:
        return []

    @classmethod
    def open(cls, config: str, target: t.WriteTarget) -> Writer:
        raise NotImplementedError("a Destination must define open(config, target)")


def _guard(call: str, f, *args):
    """Run a plugin function; turn SDK errors into `Err(plugin-error)` and any
    other exception into a permanent error that names it (after logging the
    traceback), so a Python bug never takes the instance down."""
    try:
        return f(*args)
    except PluginError as e:
        raise Err(e.to_wit())
    except Err:
        raise
    except Exception as e:  # noqa: BLE001 - the boundary of the plugin
        log.error(f"{call}: unexpected {type(e).__name__}: {e}\n{traceback.format_exc()}")
        raise Err(t.PluginError_Permanent(f"{call}: unexpected {type(e).__name__}: {e}"))


class _TransformerResource:
    def __init__(self, inner: Transform) -> None:
        self._inner = inner

    def transform(self, input: t.Batch) -> t.Transformed:
        return _guard("transform", self._inner.transform, input)


class _WriterResource:
    def __init__(self, inner: Writer) -> None:
        self._inner = inner

    def write(self, input: t.Batch) -> List[t.RowResult]:
        return _guard("write", self._inner.write, input)


def export_transform(cls):
    """The class componentize-py looks for (name it `TransformApi` in your
    app module): `TransformApi = export_transform(MyTransform)`."""

    class TransformApi:
        def spec(self) -> t.PluginSpec:
            return cls.spec()

        def check(self, config: str) -> None:
            _guard("check", cls.check, config)

        def open(self, config: str):
            return _TransformerResource(_guard("open", cls, config))

    return TransformApi


def export_destination(cls):
    """The class componentize-py looks for (name it `DestinationApi` in your
    app module): `DestinationApi = export_destination(MyDestination)`."""

    class DestinationApi:
        def spec(self) -> t.PluginSpec:
            return cls.spec()

        def check(self, config: str) -> None:
            _guard("check", cls.check, config)

        def discover(self, config: str) -> List[t.ObjectInfo]:
            return _guard("discover", cls.discover, config)

        def open(self, config: str, target: t.WriteTarget):
            return _WriterResource(_guard("open", cls.open, config, target))

    return DestinationApi
