"""Baseline (a): the hand-written reverse-ETL script.

Selects every row of the table with a server-side cursor (psycopg 3) and
POSTs one JSON request per row with a keep-alive requests.Session.
Usage: naive.py DSN TABLE URL LIMIT  (LIMIT 0 = every row)
Prints one JSON line: {"rows": N, "seconds": S}.
"""
import datetime
import decimal
import json
import sys
import time

import psycopg
import requests


def default(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    raise TypeError(type(v))


def main():
    dsn, table, url, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sql = f"SELECT * FROM {table} ORDER BY id" + (f" LIMIT {limit}" if limit else "")
    session = requests.Session()
    headers = {"content-type": "application/json"}
    sent = 0
    start = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        with conn.cursor(name="naive") as cur:
            cur.itersize = 2000
            cur.execute(sql)
            names = None
            for row in cur:
                if names is None:
                    names = [d.name for d in cur.description]
                body = json.dumps(dict(zip(names, row)), default=default)
                r = session.post(url, data=body, headers=headers)
                if r.status_code != 200:
                    raise SystemExit(f"HTTP {r.status_code}")
                sent += 1
    secs = time.perf_counter() - start
    print(json.dumps({"rows": sent, "seconds": secs}))


if __name__ == "__main__":
    main()
