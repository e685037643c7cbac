"""`py-normalise`: tidy chosen text fields, row by row.

For each configured field: trim whitespace, change case (lower, upper,
title), then check that a required field is present and that the value
matches an optional regular expression. A row that fails any check is
reported as a row error (with its index and the reason) and left out of
the output; the other rows pass through with their columns unchanged.

Config:

    {"fields": [
        {"name": "email", "case": "lower", "required": true, "pattern": "^[^@ ]+@[^@ ]+$"},
        {"name": "country", "case": "upper", "trim": true}
    ]}
"""

import json
import re

import sluice_sdk as sdk

WORD_START = re.compile(r"(^|[\s-])(\S)")

CASES = {
    "lower": str.lower,
    "upper": str.upper,
    # Upper-case the first letter of each word (words split on spaces and hyphens).
    "title": lambda s: WORD_START.sub(lambda m: m.group(1) + m.group(2).upper(), s.lower()),
    "none": lambda s: s,
}
FIELD_KEYS = {"name", "case", "trim", "required", "pattern"}


class FieldRule:
    def __init__(self, doc, position):
        where = f"`fields[{position}]`"
        if not isinstance(doc, dict):
            raise sdk.ConfigError(f"{where} must be an object like {{\"name\": \"email\", \"case\": \"lower\"}}")
        unknown = set(doc) - FIELD_KEYS
        if unknown:
            raise sdk.ConfigError(f"{where}: unknown key `{sorted(unknown)[0]}` (expected {', '.join(sorted(FIELD_KEYS))})")
        self.name = doc.get("name")
        if not isinstance(self.name, str) or not self.name:
            raise sdk.ConfigError(f"{where}.name must be a column name")
        case = doc.get("case", "none")
        if case not in CASES:
            raise sdk.ConfigError(f"{where}.case must be one of {', '.join(CASES)}, got `{case}`")
        self.case = CASES[case]
        self.trim = bool(doc.get("trim", True))
        self.required = bool(doc.get("required", False))
        pattern = doc.get("pattern")
        try:
            self.pattern = re.compile(pattern) if pattern is not None else None
        except (re.error, TypeError) as e:
            raise sdk.ConfigError(f"{where}.pattern is not a valid regular expression: {e}") from None

    def apply(self, value):
        """The normalised value, or a string saying why the row fails."""
        if sdk.is_null(value):
            return f"`{self.name}` is required but null" if self.required else value
        if not isinstance(value, sdk.t.Value_Text):
            return f"`{self.name}` must be text, got {sdk.type_name(value)}"
        s = value.value.strip() if self.trim else value.value
        s = self.case(s)
        if self.required and not s:
            return f"`{self.name}` is required but empty"
        if self.pattern is not None and not self.pattern.search(s):
            return f"`{self.name}` value {json.dumps(s, ensure_ascii=False)} does not match /{self.pattern.pattern}/"
        return sdk.text(s)


class Normalise(sdk.Transform):
    @staticmethod
    def spec():
        return sdk.spec(
            "py-normalise",
            "0.1.0",
            "Trims, re-cases and validates text fields (Python)",
            config_schema={
                "type": "object",
                "required": ["fields"],
                "additionalProperties": False,
                "properties": {
                    "fields": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "case": {"enum": list(CASES)},
                                "trim": {"type": "boolean", "default": True},
                                "required": {"type": "boolean", "default": False},
                                "pattern": {"type": "string"},
                            },
                        },
                    }
                },
            },
            batch_size=1000,
        )

    def __init__(self, config):
        doc = sdk.parse_config(config, required=["fields"], allowed=["fields"])
        fields = doc["fields"]
        if not isinstance(fields, list) or not fields:
            raise sdk.ConfigError("`fields` must be a non-empty list")
        self.rules = [FieldRule(f, i) for i, f in enumerate(fields)]

    def transform(self, batch):
        plan = [(sdk.require_column(batch, rule.name), rule) for rule in self.rules]
        out = self.output(batch.columns)
        for index, row in enumerate(batch.rows):
            row = list(row)
            problem = None
            for col, rule in plan:
                result = rule.apply(row[col])
                if isinstance(result, str):
                    problem = result
                    break
                row[col] = result
            if problem is None:
                out.batch.rows.append(row)
            else:
                out.errors.append(sdk.RowError(index, problem))
        return out


TransformApi = sdk.export_transform(Normalise)
