"""databricks-sdk (Databricks' own Python SDK) against `sluice emulator databricks`.

Usage: python databricks.py BASE_URL TOKEN WAREHOUSE_ID CLIENT_ID CLIENT_SECRET

Runs `WorkspaceClient(...).statement_execution` calls, each asserting what the
SQL Statement Execution API 2.0 documents, and prints one JSON line:
{"passed": [...], "failed": [{"call": ..., "error": ...}]}. Run by
tests/tests/vendor_databricks.rs (which starts the emulator with 2 rows per
chunk); the exit status is 0 whatever failed (the Rust test judges).
"""

import json
import os
import sys
import time
import traceback
import uuid

# This file is named like the SDK's package: take its own directory off the
# import path so that `import databricks` finds databricks-sdk.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import requests  # noqa: E402
from databricks.sdk import WorkspaceClient  # noqa: E402
from databricks.sdk.errors import NotFound, Unauthenticated  # noqa: E402
from databricks.sdk.service.sql import (  # noqa: E402
    ColumnInfoTypeName,
    Disposition,
    Format,
    ServiceErrorCode,
    StatementParameterListItem,
    StatementState,
)

BASE, TOKEN, WAREHOUSE, CLIENT_ID, CLIENT_SECRET = sys.argv[1:6]
w = WorkspaceClient(host=BASE, token=TOKEN, auth_type="pat")
sx = w.statement_execution
SCHEMA = "vendor_" + uuid.uuid4().hex[:8]
passed, failed = [], []


def check(call):
    """Registers `fn` as the proof of `call`: it passes unless it raises."""

    def register(fn):
        try:
            fn()
            passed.append(call)
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            failed.append({"call": call, "error": detail[:500]})
        return fn

    return register


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def run(statement, **kwargs):
    kwargs.setdefault("wait_timeout", "30s")
    return sx.execute_statement(statement=statement, warehouse_id=WAREHOUSE, **kwargs)


def succeeded(response):
    expect(response.status.state == StatementState.SUCCEEDED, f"state {response.status}")
    return response


@check("execute_statement_select_one")
def _():
    r = succeeded(run("SELECT 1 AS one, 'zoë' AS name"))
    columns = r.manifest.schema.columns
    expect([c.name for c in columns] == ["one", "name"], columns)
    expect(columns[0].type_name == ColumnInfoTypeName.INT, columns[0])
    expect(columns[1].type_name == ColumnInfoTypeName.STRING, columns[1])
    expect(r.result.data_array == [["1", "zoë"]], r.result)


@check("execute_statement_ddl_and_insert")
def _():
    succeeded(run(f"CREATE SCHEMA main.{SCHEMA}"))
    succeeded(run(f"CREATE TABLE main.{SCHEMA}.t (id BIGINT, amount DECIMAL(10,2), at TIMESTAMP, tags ARRAY<STRING>)"))
    r = succeeded(run(
        f"INSERT INTO main.{SCHEMA}.t VALUES (1, 9.99, TIMESTAMP '2024-01-02 03:04:05Z', '[\"a\"]'), "
        "(2, NULL, NULL, NULL), (3, -1.50, TIMESTAMP '1999-12-31 23:59:59.5Z', '[]'), (4, 0, NULL, NULL), (5, 5, NULL, NULL)"
    ))
    expect(r.result.data_array == [["5", "5"]], r.result)
    expect([c.name for c in r.manifest.schema.columns] == ["num_affected_rows", "num_inserted_rows"], r.manifest)


@check("manifest_types_and_chunks")
def _():
    r = succeeded(run("SELECT * FROM t ORDER BY id", catalog="main", schema=SCHEMA))
    m = r.manifest
    expect(m.format == Format.JSON_ARRAY, m.format)
    expect(m.total_row_count == 5 and m.total_chunk_count == 3, m)
    expect([(c.chunk_index, c.row_offset, c.row_count) for c in m.chunks] == [(0, 0, 2), (1, 2, 2), (2, 4, 1)], m.chunks)
    amount = m.schema.columns[1]
    expect(amount.type_name == ColumnInfoTypeName.DECIMAL and amount.type_text == "DECIMAL(10,2)", amount)
    expect(amount.type_precision == 10 and amount.type_scale == 2, amount)
    expect(m.schema.columns[2].type_name == ColumnInfoTypeName.TIMESTAMP, m.schema.columns[2])
    tags = m.schema.columns[3]
    expect(tags.type_name == ColumnInfoTypeName.ARRAY and tags.type_text == "ARRAY<STRING>", tags)
    expect(r.result.data_array == [["1", "9.99", "2024-01-02T03:04:05Z", '["a"]'], ["2", None, None, None]], r.result)
    expect(r.result.next_chunk_index == 1, r.result)
    expect(r.result.next_chunk_internal_link == f"/api/2.0/sql/statements/{r.statement_id}/result/chunks/1", r.result)


@check("get_statement_result_chunk_n")
def _():
    r = succeeded(run("SELECT id FROM t ORDER BY id", catalog="main", schema=SCHEMA))
    chunk = sx.get_statement_result_chunk_n(r.statement_id, 2)
    expect(chunk.chunk_index == 2 and chunk.row_offset == 4 and chunk.row_count == 1, chunk)
    expect(chunk.data_array == [["5"]] and chunk.next_chunk_index is None, chunk)
    middle = sx.get_statement_result_chunk_n(r.statement_id, 1)
    expect(middle.data_array == [["3"], ["4"]] and middle.next_chunk_index == 2, middle)


@check("get_statement_polls_an_async_statement")
def _():
    r = run("SELECT count(*) AS n FROM t", catalog="main", schema=SCHEMA, wait_timeout="0s")
    expect(r.status.state in (StatementState.PENDING, StatementState.RUNNING), r.status)
    deadline = time.monotonic() + 10
    while r.status.state in (StatementState.PENDING, StatementState.RUNNING):
        expect(time.monotonic() < deadline, "still running after 10 s")
        time.sleep(0.1)
        r = sx.get_statement(r.statement_id)
    succeeded(r)
    expect(r.manifest.schema.columns[0].type_name == ColumnInfoTypeName.LONG, r.manifest)
    expect(r.result.data_array == [["5"]], r.result)


@check("named_parameters")
def _():
    r = succeeded(run(
        "SELECT id FROM t WHERE at > :since AND id <> :skip ORDER BY id",
        catalog="main", schema=SCHEMA,
        parameters=[
            StatementParameterListItem(name="since", value="2000-01-01T00:00:00Z", type="TIMESTAMP"),
            StatementParameterListItem(name="skip", value="7", type="INT"),
        ],
    ))
    expect(r.result.data_array == [["1"]], r.result)


@check("row_limit_truncates")
def _():
    r = succeeded(run("SELECT id FROM t", catalog="main", schema=SCHEMA, row_limit=3))
    expect(r.manifest.truncated is True and r.manifest.total_row_count == 3, r.manifest)


@check("failed_statement_passes_error_code")
def _():
    r = run(f"SELECT * FROM main.{SCHEMA}.missing")
    expect(r.status.state == StatementState.FAILED, r.status)
    expect(r.status.error.error_code == ServiceErrorCode.BAD_REQUEST, r.status.error)
    expect("[TABLE_OR_VIEW_NOT_FOUND]" in r.status.error.message, r.status.error.message)


@check("external_links_need_no_auth_and_refuse_it")
def _():
    r = succeeded(run("SELECT id FROM t ORDER BY id", catalog="main", schema=SCHEMA,
                      disposition=Disposition.EXTERNAL_LINKS, format=Format.JSON_ARRAY))
    link = r.result.external_links[0]
    expect(link.chunk_index == 0 and link.row_count == 2 and link.next_chunk_index == 1, link)
    expect(not link.external_link.startswith(BASE), "links are on the storage host")
    expect(link.expiration, link)
    got = requests.get(link.external_link, timeout=10)
    expect(got.status_code == 200 and got.json() == [["1"], ["2"]], got.text)
    leaked = requests.get(link.external_link, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    expect(leaked.status_code == 400 and "InvalidArgument" in leaked.text, leaked.text)
    second = sx.get_statement_result_chunk_n(r.statement_id, 1).external_links[0]
    expect(requests.get(second.external_link, timeout=10).json() == [["3"], ["4"]], second)


@check("cancel_execution")
def _():
    r = run("SELECT id FROM t", catalog="main", schema=SCHEMA, wait_timeout="0s")
    sx.cancel_execution(r.statement_id)
    state = sx.get_statement(r.statement_id).status.state
    expect(state == StatementState.CANCELED, state)


@check("unknown_warehouse_is_not_found")
def _():
    try:
        sx.execute_statement(statement="SELECT 1", warehouse_id="no-such-warehouse")
    except NotFound as e:
        expect("no-such-warehouse" in str(e), str(e))
        return
    raise AssertionError("no NotFound")


@check("bad_wait_timeout_is_invalid_parameter")
def _():
    try:
        run("SELECT 1", wait_timeout="3s")
    except Exception as e:  # noqa: BLE001
        expect(getattr(e, "error_code", None) == "INVALID_PARAMETER_VALUE", repr(e))
        return
    raise AssertionError("no error")


@check("wrong_token_is_unauthenticated")
def _():
    bad = WorkspaceClient(host=BASE, token="dapi-wrong", auth_type="pat")
    try:
        bad.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=WAREHOUSE)
    except Unauthenticated:
        return
    raise AssertionError("no Unauthenticated")


@check("oauth_m2m_client_credentials")
def _():
    m2m = WorkspaceClient(host=BASE, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auth_type="oauth-m2m")
    r = m2m.statement_execution.execute_statement(statement="SELECT 2 AS two", warehouse_id=WAREHOUSE, wait_timeout="30s")
    expect(r.status.state == StatementState.SUCCEEDED and r.result.data_array == [["2"]], r)


print(json.dumps({"passed": passed, "failed": failed}))
