"""Baseline (b): dlt with the pyarrow backend and a custom destination.

sql_table(backend="pyarrow") reads the table into Arrow tables, dlt
normalizes them to parquet load files, and a custom @dlt.destination gets
them back in batches of 1000 rows and POSTs each batch as one JSON event
with the same envelope the Sluice webhook plugin sends.
dlt keeps no per-row delivery state here: every run re-sends every row.
Usage: dlt_webhook.py PIPELINES_DIR DSN SCHEMA TABLE URL
Prints one JSON line: {"rows": N, "requests": R, "seconds": S}.
"""
import datetime
import decimal
import json
import os
import sys
import threading
import time

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt  # noqa: E402
import requests  # noqa: E402
from dlt.sources.sql_database import sql_table  # noqa: E402

PIPELINES_DIR, DSN, SCHEMA, TABLE, URL = sys.argv[1:6]
BATCH = 1000

_local = threading.local()
_lock = threading.Lock()
_stats = {"rows": 0, "requests": 0}


def _session():
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
    return s


def _default(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    raise TypeError(type(v))


def _rows(items):
    """The batch as a list of row dicts. With the pyarrow backend dlt hands
    over an Arrow table/RecordBatch: passed to json.dumps(default=str) as is,
    it would serialise as a short summary, not the rows; fail loudly rather
    than send that."""
    rows = items.to_pylist() if hasattr(items, "to_pylist") else items
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"the destination got {type(items).__name__}, not a list of rows")
    return rows


@dlt.destination(
    batch_size=BATCH,
    loader_file_format="parquet",
    name="bench_webhook",
    naming_convention="direct",
    skip_dlt_columns_and_tables=True,
    max_table_nesting=0,
)
def webhook(items, table) -> None:
    rows = _rows(items)
    body = json.dumps(
        {
            "type": "sluice.rows",
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "data": {"object": table["name"], "mode": "upsert", "identifier": "id", "rows": rows},
        },
        default=_default,
    )
    r = _session().post(URL, data=body, headers={"content-type": "application/json"})
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}")
    with _lock:
        _stats["rows"] += len(rows)
        _stats["requests"] += 1


def main():
    start = time.perf_counter()
    source = sql_table(credentials=DSN, schema=SCHEMA, table=TABLE, backend="pyarrow")
    pipeline = dlt.pipeline(
        pipeline_name="sluice_bench_dlt",
        pipelines_dir=PIPELINES_DIR,
        destination=webhook,
        dataset_name="bench",
    )
    info = pipeline.run(source)
    info.raise_on_failed_jobs()
    secs = time.perf_counter() - start
    print(json.dumps({"rows": _stats["rows"], "requests": _stats["requests"], "seconds": secs}))


if __name__ == "__main__":
    main()
