"""A Sluice transform in Python: start here.

`sluice plugin new NAME --lang python --kind transform` writes this file
into a new project. Edit __init__ (config) and transform (the rows), then

    sluice plugin build      # -> dist/NAME.wasm
    sluice plugin test .     # runs fixtures/*.json against it

As written it lower-cases one text column named in the config,
`{"column": "email"}`, and reports a row error for a value that is not text.
"""

import sluice_sdk as sdk


class MyTransform(sdk.Transform):
    @staticmethod
    def spec():
        return sdk.spec(
            "my-transform",
            "0.1.0",
            "A transform of one column (scaffolded: it lower-cases it)",
            config_schema={
                "type": "object",
                "required": ["column"],
                "additionalProperties": False,
                "properties": {"column": {"type": "string"}},
            },
        )

    def __init__(self, config):
        # Config errors name the key; the host shows them before any row moves.
        doc = sdk.parse_config(config, required=["column"], allowed=["column"])
        if not isinstance(doc["column"], str):
            raise sdk.ConfigError("`column` must be a column name")
        self.column = doc["column"]

    def transform(self, batch):
        col = sdk.require_column(batch, self.column)
        out = self.output(batch.columns)
        for index, row in enumerate(batch.rows):
            value = row[col]
            if sdk.is_null(value):
                out.batch.rows.append(row)
            elif isinstance(value, sdk.t.Value_Text):
                out.batch.rows.append(row[:col] + [sdk.text(value.value.lower())] + row[col + 1:])
            else:
                # A bad row is reported by its index and left out of the output.
                out.errors.append(sdk.RowError(index, f"`{self.column}` must be text, got {sdk.type_name(value)}"))
        return out


# componentize-py looks for this name.
TransformApi = sdk.export_transform(MyTransform)
