"""google-cloud-bigquery (Google's own Python client) against `sluice emulator bigquery`.

Usage: python bigquery.py BASE_URL PROJECT

The emulator holds `vendor.numbers (n INT64)` with 25 rows (1..25) and
`vendor.types`, one row of every type (see tests/tests/vendor_bigquery.rs).
Runs the calls users make most with a custom api_endpoint and
AnonymousCredentials, each asserting what BigQuery documents, and prints one
JSON line: {"passed": [...], "failed": [{"call": ..., "error": ...}]}. The
exit status is 0 whatever failed (the Rust test judges the summary).
"""

import base64
import datetime
import decimal
import json
import sys
import traceback

from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

BASE, PROJECT = sys.argv[1], sys.argv[2]
client = bigquery.Client(
    project=PROJECT,
    client_options=ClientOptions(api_endpoint=BASE),
    credentials=AnonymousCredentials(),
)
passed, failed = [], []


def check(call):
    """Registers `fn` as the proof of `call`: it passes unless it raises."""

    def register(fn):
        try:
            fn()
            passed.append(call)
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            failed.append({"call": call, "error": detail[:800]})
        return fn

    return register


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


@check("query_and_wait with page_size pages through getQueryResults")
def _():
    rows = client.query_and_wait("SELECT n FROM vendor.numbers ORDER BY n", page_size=7)
    pages = [[row["n"] for row in page] for page in rows.pages]
    expect(rows.total_rows == 25, f"total_rows {rows.total_rows}")
    expect([len(p) for p in pages] == [7, 7, 7, 4], f"page sizes {[len(p) for p in pages]}")
    expect(sum(pages, []) == list(range(1, 26)), f"rows {pages}")


@check("query (jobs.insert) then result(page_size) pages by pageToken")
def _():
    job = client.query("SELECT n, n * 2 AS twice FROM `vendor.numbers` WHERE n > 5 ORDER BY n")
    result = job.result(page_size=6)
    values = [(row.n, row.twice) for row in result]
    expect(job.state == "DONE", f"state {job.state}")
    expect(values == [(n, 2 * n) for n in range(6, 26)], f"rows {values}")
    expect([f.name for f in result.schema] == ["n", "twice"], f"schema {result.schema}")


@check("typed values decode as the client documents")
def _():
    row = list(client.query_and_wait("SELECT * FROM vendor.types"))[0]
    expect(row["i"] == -9223372036854775808, f"INT64 {row['i']!r}")
    expect(row["f"] == 1.5, f"FLOAT64 {row['f']!r}")
    expect(row["n"] == decimal.Decimal("12345678901234567890123456789.123456789"), f"NUMERIC {row['n']!r}")
    expect(
        row["bn"] == decimal.Decimal("-1234567890123456789012345678901234567.12345678901234567890123456789012345678"),
        f"BIGNUMERIC {row['bn']!r}",
    )
    expect(row["b"] is True, f"BOOL {row['b']!r}")
    expect(row["s"] == "Zürich ✓ 🚀", f"STRING {row['s']!r}")
    expect(row["bts"] == b"\x00\xff", f"BYTES {row['bts']!r}")
    expect(row["d"] == datetime.date(1969, 12, 31), f"DATE {row['d']!r}")
    expect(row["dt"] == datetime.datetime(2021, 5, 4, 18, 8, 13, 299000), f"DATETIME {row['dt']!r}")
    expect(row["t"] == datetime.time(23, 59, 59, 999999), f"TIME {row['t']!r}")
    expect(
        row["ts"] == datetime.datetime(2021, 5, 4, 18, 8, 13, 299000, tzinfo=datetime.timezone.utc),
        f"TIMESTAMP {row['ts']!r}",
    )
    expect(row["j"] == {"k": [1, "ü"]}, f"JSON {row['j']!r}")
    expect(row["tags"] == ["a", "é"], f"REPEATED {row['tags']!r}")
    expect(row["addr"] == {"zip": "94110", "scores": [1, 2]}, f"RECORD {row['addr']!r}")


@check("NULLs decode as None and a NULL array as []")
def _():
    row = list(client.query_and_wait("SELECT * FROM vendor.types WHERE i IS NULL"))[0]
    expect(row["tags"] == [], f"REPEATED {row['tags']!r}")
    others = [row[k] for k in row.keys() if k != "tags"]
    expect(all(v is None for v in others), f"values {others}")


@check("dry run reports totalBytesProcessed without running")
def _():
    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
    job = client.query("SELECT n FROM vendor.numbers", job_config=config)
    expect(job.state == "DONE", f"state {job.state}")
    expect(job.total_bytes_processed and job.total_bytes_processed > 0, f"bytes {job.total_bytes_processed}")
    expect([f.name for f in job.schema] == ["n"], f"schema {job.schema}")


@check("an unknown column is BadRequest invalidQuery with its position")
def _():
    try:
        client.query_and_wait("SELECT nope FROM vendor.numbers")
    except exceptions.BadRequest as e:
        expect("Unrecognized name: nope at [1:8]" in str(e), str(e))
        expect(e.errors and e.errors[0]["reason"] == "invalidQuery", f"errors {e.errors}")
        return
    raise AssertionError("no error")


@check("a missing dataset is NotFound")
def _():
    try:
        client.query("SELECT 1 FROM nowhere.t").result()
    except exceptions.NotFound as e:
        expect(f"Not found: Dataset {PROJECT}:nowhere" in str(e), str(e))
        return
    raise AssertionError("no error")


@check("maximum_bytes_billed is enforced")
def _():
    config = bigquery.QueryJobConfig(maximum_bytes_billed=10)
    try:
        client.query_and_wait("SELECT n FROM vendor.numbers", job_config=config)
    except exceptions.BadRequest as e:
        expect(e.errors and e.errors[0]["reason"] == "bytesBilledLimitExceeded", f"errors {e.errors}")
        return
    raise AssertionError("no error")


@check("get_job finds a finished job")
def _():
    job = client.query("SELECT 1 AS one")
    job.result()
    again = client.get_job(job.job_id, location=job.location)
    expect(again.state == "DONE", f"state {again.state}")
    expect(again.query == "SELECT 1 AS one", f"query {again.query}")


print(json.dumps({"passed": passed, "failed": failed}))
