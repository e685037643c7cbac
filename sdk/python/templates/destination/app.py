"""A Sluice destination in Python: start here.

`sluice plugin new NAME --lang python --kind destination` writes this file
into a new project. Edit open (config) and write (the rows), then

    sluice plugin build      # -> dist/NAME.wasm
    sluice plugin test .     # runs fixtures/*.json against it

As written it POSTs each batch as a JSON array of row objects to the `url`
of its config, `{"url": "https://example.com/hook"}`. The operator must grant
that host (the spec asks for `${config.url}`).
"""

import sluice_sdk as sdk
from sluice_sdk import http


class MyDestination(sdk.Destination):
    @staticmethod
    def spec():
        return sdk.spec(
            "my-destination",
            "0.1.0",
            "POSTs rows as JSON",
            config_schema={
                "type": "object",
                "required": ["url"],
                "additionalProperties": False,
                "properties": {"url": {"type": "string", "format": "uri"}},
            },
            capabilities=["${config.url}"],
            batch_size=100,
        )

    @classmethod
    def check(cls, config):
        sdk.parse_config(config, required=["url"], allowed=["url"])

    @classmethod
    def discover(cls, config):
        # One object that takes any field, under whatever name a sync gives
        # it. List only the modes your API supports: `sluice validate` and
        # `run` refuse a sync whose mode is not here.
        anything = sdk.Field("*", sdk.FieldType.ANY, True, False, True)
        modes = [sdk.WriteMode.UPSERT, sdk.WriteMode.INSERT, sdk.WriteMode.UPDATE, sdk.WriteMode.APPEND]
        return [sdk.ObjectInfo("events", [anything], modes)]

    @classmethod
    def open(cls, config, target):
        doc = sdk.parse_config(config, required=["url"], allowed=["url"])
        return MyWriter(doc["url"])


class MyWriter(sdk.Writer):
    def __init__(self, url):
        self.url = url

    def write(self, batch):
        # Exactly one result per row, in order.
        try:
            response = http.post_json(self.url, sdk.batch_json(batch), timeout_ms=30_000)
        except http.HttpTransportError as e:
            # A timeout or a failed connection: the rows may go through later.
            return [sdk.retryable(str(e))] * len(batch.rows)
        # 2xx accepted; 429 (and 503 with Retry-After) rate-limited for the
        # time the API asked; other 5xx retryable; 401/403 fail the call as
        # an auth error; anything else rejected with the API's message.
        return [response.row_result()] * len(batch.rows)


# componentize-py looks for this name.
DestinationApi = sdk.export_destination(MyDestination)
