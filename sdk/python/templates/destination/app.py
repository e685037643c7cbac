"""A Sluice destination in Python: start here.

Copy this folder, rename the plugin in spec(), then edit open (config) and
write (the rows). Build it with

    sdk/python/build.sh path/to/your-plugin destination your-plugin.wasm

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
            response = http.post_json(self.url, sdk.batch_json(batch))
        except http.HttpTransportError as e:
            return [sdk.retryable(str(e))] * len(batch.rows)
        if response.ok:
            return [sdk.accepted()] * len(batch.rows)
        if response.status == 429:
            return [sdk.rate_limited(http.retry_after_ms(response))] * len(batch.rows)
        message = f"HTTP {response.status}: {response.text()[:300]}"
        if response.status >= 500:
            return [sdk.retryable(message)] * len(batch.rows)
        return [sdk.rejected(message)] * len(batch.rows)


# componentize-py looks for this name.
DestinationApi = sdk.export_destination(MyDestination)
