"""`py-field-map`: the first-party `field-map` transform
(plugins/field-map/src/lib.rs), ported to Python.

Each output row is built from a list of field rules: copy a column under a
new name, coerce its type, clean text (trim, lowercase, uppercase), or set a
constant. A value that cannot be coerced rejects its row with a message
naming the field; the other rows go on. The config grammar, the coercions
and the reject messages are the Rust plugin's, so the three ports (Rust,
Python, JavaScript) can be compared row for row (tests/tests/polyglot.rs)
and benchmarked side by side (crates/bench/benches/polyglot.rs).

Config:

    {"fields": [
        {"from": "email", "to": "Email", "clean": ["trim", "lowercase"]},
        {"from": "ltv", "to": "LifetimeValue", "type": "float"},
        {"to": "Source", "constant": "sluice"}
    ]}

`type` is one of text, integer, float, boolean, json; `clean` applies to
text values, in order, after the coercion. A column named by two rules is
read by both.
"""

import json
import re

import sluice_sdk as sdk
from sluice_sdk import t

COERCE = {"text": "Text", "integer": "Integer", "float": "Float", "boolean": "Boolean", "json": "Json"}
CLEAN = ("trim", "lowercase", "uppercase")
RULE_KEYS = ("from", "to", "type", "clean", "constant")

# Rust's `char::is_whitespace` (Unicode White_Space), what `str::trim` strips.
# Python's own `str.strip()` also strips U+001C..U+001F, so name the set.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u2028\u2029\u202f\u205f\u3000"

# The grammars of Rust's `i64::from_str` and `f64::from_str`.
INTEGER = re.compile(r"[+-]?[0-9]+")
FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)
TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0"}

I64_MIN, I64_MAX, U64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1


class Reject(Exception):
    """A value that cannot be coerced: its row is rejected with this message."""


# ----------------------------------------------------- JSON as serde_json


def _int_hook(s):
    # serde_json keeps integers that fit u64 or i64; `-0` and anything
    # larger become floats.
    n = int(s)
    if n == 0 and s.startswith("-"):
        return -0.0
    if I64_MIN <= n <= U64_MAX:
        return n
    return float(n)


def _float_hook(s):
    f = float(s)
    if f in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return f


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def loads(text):
    """Parse JSON the way serde_json does (no NaN/Infinity, numbers typed)."""
    return json.loads(text, parse_int=_int_hook, parse_float=_float_hook, parse_constant=_no_constant)


def _digits(f):
    """The shortest round-trip digits of a finite, non-zero |f| and the
    exponent: |f| == int(digits) * 10**exp."""
    mantissa, _, exp = repr(abs(f)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    exp = int(exp or 0) - len(frac)
    stripped = digits.rstrip("0")
    return stripped, exp + len(digits) - len(stripped)


def ryu(f):
    """A finite float as serde_json writes it (ryu): 1.0, 0.001, 1e16, 1.5e-7."""
    if f == 0:
        return "-0.0" if str(f).startswith("-") else "0.0"
    sign = "-" if f < 0 else ""
    d, k = _digits(f)
    kk = len(d) + k
    if 0 <= k and kk <= 16:
        return f"{sign}{d}{'0' * k}.0"
    if 0 < kk <= 16:
        return f"{sign}{d[:kk]}.{d[kk:]}"
    if -5 < kk <= 0:
        return f"{sign}0.{'0' * -kk}{d}"
    mantissa = d if len(d) == 1 else f"{d[0]}.{d[1:]}"
    return f"{sign}{mantissa}e{kk - 1}"


def dumps(doc):
    """Compact JSON as serde_json writes it: keys sorted, floats by ryu."""
    if doc is None:
        return "null"
    if doc is True:
        return "true"
    if doc is False:
        return "false"
    if isinstance(doc, int):
        return str(doc)
    if isinstance(doc, float):
        return ryu(doc) if doc == doc and doc not in (float("inf"), float("-inf")) else "null"
    if isinstance(doc, str):
        return json.dumps(doc, ensure_ascii=False)
    if isinstance(doc, list):
        return "[" + ",".join(dumps(v) for v in doc) + "]"
    return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{dumps(doc[k])}" for k in sorted(doc)) + "}"


def to_json(v):
    """`Value::to_json` of the Rust SDK, as a document for `dumps`."""
    if isinstance(v, t.Value_Decimal):
        try:
            n = loads(v.value)
        except ValueError:
            return v.value
        return n if isinstance(n, (int, float)) and not isinstance(n, bool) else v.value
    if isinstance(v, t.Value_Json):
        try:
            return loads(v.value)
        except (ValueError, RecursionError):
            return v.value
    if isinstance(v, t.Value_Integer):
        return v.value
    return sdk.to_json(v)


# -------------------------------------------- Rust's text forms of values


def rust_display(f):
    """`format!("{f}")` of an f64: plain notation, shortest digits."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "inf" if f > 0 else "-inf"
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    sign = "-" if f < 0 else ""
    d, k = _digits(f)
    kk = len(d) + k
    if k >= 0:
        return f"{sign}{d}{'0' * k}"
    if kk > 0:
        return f"{sign}{d[:kk]}.{d[kk:]}"
    return f"{sign}0.{'0' * -kk}{d}"


def _rust_debug_float(f):
    """`format!("{f:?}")` of an f64: plain between 1e-4 and 1e16, else 1.5e-7."""
    if f != f or f in (float("inf"), float("-inf")):
        return rust_display(f)
    if f == 0 or 1e-4 <= abs(f) < 1e16:
        text = rust_display(f)
        return text if "." in text else text + ".0"
    d, k = _digits(f)
    mantissa = d if len(d) == 1 else f"{d[0]}.{d[1:]}"
    return f"{'-' if f < 0 else ''}{mantissa}e{len(d) + k - 1}"


_STR_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def _rust_debug_str(s):
    out = []
    for c in s:
        if c in _STR_ESCAPES:
            out.append(_STR_ESCAPES[c])
        elif c < " " or "\x7f" <= c < "\xa0":
            out.append(f"\\u{{{ord(c):x}}}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def rust_debug(v):
    """The Rust SDK's `{:?}` of a value, as in the reject messages."""
    name = sdk.type_name(v).capitalize()
    if isinstance(v, t.Value_Null):
        return "Value::Null"
    if isinstance(v, t.Value_Boolean):
        inner = "true" if v.value else "false"
    elif isinstance(v, t.Value_Float):
        inner = _rust_debug_float(v.value)
    elif isinstance(v, (t.Value_Text, t.Value_Decimal, t.Value_Json)):
        inner = _rust_debug_str(v.value)
    elif isinstance(v, t.Value_Bytes):
        inner = "[" + ", ".join(str(b) for b in v.value) + "]"
    else:
        inner = str(v.value)
    return f"Value::{name}({inner})"


def write_text(v):
    """`Value::write_text` of the Rust SDK."""
    if isinstance(v, t.Value_Boolean):
        return "true" if v.value else "false"
    if isinstance(v, t.Value_Integer):
        return str(v.value)
    if isinstance(v, t.Value_Float):
        return rust_display(v.value)
    if isinstance(v, (t.Value_Text, t.Value_Decimal, t.Value_Json)):
        return v.value
    if isinstance(v, t.Value_Bytes):
        return bytes(v.value).hex()
    if isinstance(v, t.Value_Timestamp):
        return sdk.format_timestamp(v.value)
    if isinstance(v, t.Value_Date):
        return sdk.format_date(v.value)
    return ""


# ------------------------------------------------------------- coercions


def as_i64(v):
    if isinstance(v, t.Value_Integer):
        return v.value
    if isinstance(v, t.Value_Float):
        f = v.value
        # `f as i64` saturates.
        return max(I64_MIN, min(I64_MAX, int(f))) if f.is_integer() else None
    if isinstance(v, (t.Value_Text, t.Value_Decimal)):
        s = v.value.strip(WHITESPACE)
        if INTEGER.fullmatch(s):
            n = int(s)
            return n if I64_MIN <= n <= I64_MAX else None
    return None


def as_f64(v):
    if isinstance(v, t.Value_Integer):
        return float(v.value)
    if isinstance(v, t.Value_Float):
        return v.value
    if isinstance(v, (t.Value_Text, t.Value_Decimal)):
        s = v.value.strip(WHITESPACE)
        if FLOAT.fullmatch(s):
            return float(s)
    return None


def coercer(target):
    """A function coercing a non-null value to `target`, or raising Reject."""

    def fail(v):
        return Reject(f"cannot convert {rust_debug(v)} to {COERCE[target]}")

    if target == "text":
        def coerce(v):
            return v if isinstance(v, t.Value_Text) else t.Value_Text(write_text(v))
    elif target == "integer":
        def coerce(v):
            if isinstance(v, t.Value_Integer):
                return v
            n = as_i64(v)
            if n is None:
                raise fail(v)
            return t.Value_Integer(n)
    elif target == "float":
        def coerce(v):
            if isinstance(v, t.Value_Float):
                return v
            f = as_f64(v)
            if f is None:
                raise fail(v)
            return t.Value_Float(f)
    elif target == "boolean":
        def coerce(v):
            if isinstance(v, t.Value_Boolean):
                return v
            if isinstance(v, t.Value_Integer):
                return t.Value_Boolean(v.value != 0)
            if isinstance(v, t.Value_Text):
                s = v.value.strip(WHITESPACE)
                # Rust lower-cases ASCII only: other text never matches.
                s = s.lower() if s.isascii() else s
                if s in TRUE:
                    return t.Value_Boolean(True)
                if s in FALSE:
                    return t.Value_Boolean(False)
            raise fail(v)
    else:
        def coerce(v):
            return t.Value_Json(dumps(to_json(v)))
    return coerce


def trim(s):
    return s.strip(WHITESPACE)


CLEANERS = {"trim": trim, "lowercase": str.lower, "uppercase": str.upper}


def json_to_value(doc):
    """A config constant as a value (field-map's `json_to_value`)."""
    if doc is None:
        return sdk.null()
    if isinstance(doc, bool):
        return sdk.boolean(doc)
    if isinstance(doc, int):
        return sdk.integer(doc) if I64_MIN <= doc <= I64_MAX else sdk.float_(float(doc))
    if isinstance(doc, float):
        return sdk.float_(doc)
    if isinstance(doc, str):
        return sdk.text(doc)
    return t.Value_Json(dumps(doc))


# ----------------------------------------------------------------- rules


def _config_error(where, message):
    return sdk.ConfigError(f"invalid config: {where}: {message}")


class Rule:
    def __init__(self, doc, i):
        where = f"fields[{i}]"
        if not isinstance(doc, dict):
            raise _config_error(where, "expected an object with from, to, type, clean or constant")
        for key in doc:
            if key not in RULE_KEYS:
                raise _config_error(where, f"unknown field `{key}`, expected one of {', '.join(f'`{k}`' for k in RULE_KEYS)}")
        self.source = doc.get("from")
        to = doc.get("to")
        for key, value in (("from", self.source), ("to", to)):
            if value is not None and not isinstance(value, str):
                raise _config_error(where, f"`{key}` must be a string")
        target = doc.get("type")
        if target is not None and target not in COERCE:
            raise _config_error(where, f"unknown variant `{target}`, expected one of {', '.join(f'`{k}`' for k in COERCE)}")
        clean = doc.get("clean", [])
        if not isinstance(clean, list):
            raise _config_error(where, "`clean` must be a list")
        for c in clean:
            if c not in CLEAN:
                raise _config_error(where, f"unknown variant `{c}`, expected one of {', '.join(f'`{k}`' for k in CLEAN)}")
        # A null constant is no constant (as in the Rust plugin).
        constant = doc.get("constant")

        name = to if to is not None else self.source
        if name is None:
            raise sdk.ConfigError(f"{where}: needs `to` (or `from`)")
        if self.source is None and constant is None:
            raise sdk.ConfigError(f"{where} ({name}): needs `from` or `constant`")
        self.name = name
        self.constant = None if self.source is not None else json_to_value(constant)
        self.convert = self._converter(target, [CLEANERS[c] for c in clean])

    def _converter(self, target, cleaners):
        """A function from a value to the output value (or Reject), or None
        when the value passes unchanged."""
        coerce = coercer(target) if target is not None else None
        prefix = f"field `{self.name}`: "
        if coerce is None and not cleaners:
            return None

        def convert(v):
            if coerce is not None and not isinstance(v, t.Value_Null):
                try:
                    v = coerce(v)
                except Reject as r:
                    raise Reject(prefix + str(r)) from None
            if cleaners and isinstance(v, t.Value_Text):
                s = v.value
                for clean in cleaners:
                    s = clean(s)
                if s != v.value:
                    v = t.Value_Text(s)
            return v

        return convert


class FieldMap(sdk.Transform):
    @staticmethod
    def spec():
        return sdk.spec(
            "py-field-map",
            "0.1.0",
            "Renames, coerces, cleans and adds fields (Python)",
            config_schema={
                "type": "object",
                "required": ["fields"],
                "additionalProperties": False,
                "properties": {"fields": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "type": {"enum": list(COERCE)},
                        "clean": {"type": "array", "items": {"enum": list(CLEAN)}},
                        "constant": {},
                    },
                }}},
            },
        )

    def __init__(self, config):
        try:
            doc = loads(config) if config.strip() else {}
        except (ValueError, RecursionError, OverflowError) as e:
            raise sdk.ConfigError(f"invalid config: {e}") from None
        if not isinstance(doc, dict):
            raise sdk.ConfigError("invalid config: expected a JSON object")
        for key in doc:
            if key != "fields":
                raise sdk.ConfigError(f"invalid config: unknown field `{key}`, expected `fields`")
        if "fields" not in doc:
            raise sdk.ConfigError("invalid config: missing field `fields`")
        if not isinstance(doc["fields"], list):
            raise sdk.ConfigError("invalid config: `fields` must be a list")
        self.rules = [Rule(r, i) for i, r in enumerate(doc["fields"])]
        self.columns = [r.name for r in self.rules]

    def transform(self, batch):
        plan = []
        for rule in self.rules:
            if rule.source is not None:
                if rule.source not in batch.columns:
                    raise sdk.ConfigError(f"column `{rule.source}` is not in the batch")
                column, constant = batch.columns.index(rule.source), None
            else:
                column, constant = None, rule.constant
            plan.append((column, constant, rule.convert))
        out = self.output(self.columns)
        rows, errors = out.batch.rows, out.errors
        for index, row in enumerate(batch.rows):
            mapped = []
            try:
                for column, constant, convert in plan:
                    v = row[column] if column is not None else constant
                    mapped.append(convert(v) if convert is not None else v)
            except Reject as r:
                errors.append(sdk.RowError(index, str(r)))
                continue
            rows.append(mapped)
        return out


TransformApi = sdk.export_transform(FieldMap)
