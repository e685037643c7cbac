"""simple-salesforce, Salesforce's most used Python client, against `sluice emulator salesforce`.

Run by tests/tests/vendor_salesforce.rs with the venv of scripts/vendor-clients.sh:

    python salesforce.py --url http://127.0.0.1:PORT --limited-url http://127.0.0.1:PORT2

`--url` is an emulator with the defaults plus the `Customer__c` custom object
(schema in vendor_salesforce.rs); `--limited-url` one started with
`expire_tokens_after=6`, a daily limit of 15 calls and every Bulk job failing.

Each check is one call (or flow) users make, with its result asserted. The
script prints one JSON line: {"passed": [names], "failed": [names],
"errors": {name: why}} and exits 0 whatever failed: the Rust test judges.

simple-salesforce always talks https to `<domain>.salesforce.com` and to the
instance host it is given; EmulatorSession (a requests.Session, which
simple-salesforce accepts as `session=`) sends every request to the emulator
over plain http instead. Nothing else of the client is changed.
"""

import argparse
import csv
import io
import json
import os
import time
import traceback
import urllib.parse

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceOperationError,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

USERNAME = os.environ.get("SF_USERNAME", "user@sluice.emulator")
PASSWORD = os.environ.get("SF_PASSWORD", "sluice-emulator-password")
SECURITY_TOKEN = os.environ.get("SF_SECURITY_TOKEN", "sluiceToken")
CLIENT_ID = os.environ.get("SF_CLIENT_ID", "sluice-emulator-client")
CLIENT_SECRET = os.environ.get("SF_CLIENT_SECRET", "sluice-emulator-secret")
VERSION = "59.0"
RUN = str(int(time.time() * 1000))[-8:]


class EmulatorSession(requests.Session):
    """Sends every request to the emulator, keeping path and query."""

    def __init__(self, base):
        super().__init__()
        self.base = base.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        parts = urllib.parse.urlsplit(url)
        target = self.base + parts.path + ("?" + parts.query if parts.query else "")
        return super().request(method, target, *args, **kwargs)


class Checks:
    def __init__(self):
        self.passed = []
        self.failed = []
        self.errors = {}

    def run(self, name, check):
        try:
            check()
            self.passed.append(name)
        except Exception as err:  # every failure is reported, none stops the run
            self.failed.append(name)
            detail = "".join(traceback.format_exception_only(type(err), err)).strip()
            self.errors[name] = detail[:600]


def expect(condition, why):
    if not condition:
        raise AssertionError(why)


def expect_error(call, error_type, code=None):
    """Runs `call`, which must raise `error_type` (with Salesforce's errorCode `code`)."""
    try:
        call()
    except error_type as err:
        if code is not None:
            content = err.content if isinstance(err.content, list) else []
            codes = [e.get("errorCode") for e in content if isinstance(e, dict)]
            expect(code in codes, f"expected errorCode {code}, got {err.content!r}")
        return err
    raise AssertionError(f"expected {error_type.__name__}")


def password_login(url):
    return Salesforce(
        username=USERNAME,
        password=PASSWORD,
        consumer_key=CLIENT_ID,
        consumer_secret=CLIENT_SECRET,
        version=VERSION,
        session=EmulatorSession(url),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--limited-url", required=True)
    args = parser.parse_args()
    checks = Checks()
    state = {}
    url = args.url

    # -- Logins -------------------------------------------------------------
    def soap_login():
        sf = Salesforce(
            username=USERNAME,
            password=PASSWORD,
            security_token=SECURITY_TOKEN,
            version=VERSION,
            session=EmulatorSession(url),
        )
        expect(sf.auth_type == "password" and sf.session_id, "no session id")
        expect(sf.query("SELECT COUNT() FROM Account")["done"] is True, "query after SOAP login")
        state["sf"] = sf

    def password_grant():
        sf = password_login(url)
        expect(sf.describe()["sobjects"], "describe after password grant")

    def client_credentials():
        sf = Salesforce(
            consumer_key=CLIENT_ID,
            consumer_secret=CLIENT_SECRET,
            domain="emulator",
            version=VERSION,
            session=EmulatorSession(url),
        )
        expect(sf.auth_type == "client-credentials", sf.auth_type)
        expect(sf.limits()["DailyApiRequests"]["Max"] > 0, "limits after client credentials")

    def jwt_bearer():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        sf = Salesforce(
            username=USERNAME,
            consumer_key=CLIENT_ID,
            privatekey=pem,
            version=VERSION,
            session=EmulatorSession(url),
        )
        expect(sf.auth_type == "jwt-bearer", sf.auth_type)
        sf.query("SELECT Id FROM Contact LIMIT 1")

    def direct_session():
        sf = Salesforce(
            instance_url=url,
            session_id=state["sf"].session_id,
            version=VERSION,
            session=EmulatorSession(url),
        )
        expect(sf.query("SELECT COUNT() FROM Contact")["done"], "query with a session id")

    def wrong_password():
        err = expect_error(
            lambda: Salesforce(
                username=USERNAME,
                password="wrong",
                security_token=SECURITY_TOKEN,
                session=EmulatorSession(url),
            ),
            SalesforceAuthenticationFailed,
        )
        expect(err.code == "INVALID_LOGIN", f"code {err.code}")

    def wrong_client_secret():
        err = expect_error(
            lambda: Salesforce(
                consumer_key=CLIENT_ID,
                consumer_secret="wrong",
                domain="emulator",
                session=EmulatorSession(url),
            ),
            SalesforceAuthenticationFailed,
        )
        expect(err.code == "invalid_client", f"code {err.code}")

    for name, check in [
        ("login_soap_username_password_token", soap_login),
        ("login_oauth_password_grant", password_grant),
        ("login_client_credentials_basic_auth", client_credentials),
        ("login_jwt_bearer", jwt_bearer),
        ("login_session_id_and_instance_url", direct_session),
        ("login_wrong_password_invalid_login", wrong_password),
        ("login_wrong_client_secret", wrong_client_secret),
    ]:
        checks.run(name, check)
    if "sf" not in state:
        state["sf"] = password_login(url)
    sf = state["sf"]

    # -- Single records -------------------------------------------------------
    ext = f"ext-{RUN}"

    def create():
        result = sf.Contact.create(
            {"LastName": "Lovelace", "FirstName": "Ada", "Email": "ada@example.com"}
        )
        expect(result["success"] is True and result["errors"] == [], result)
        state["id"] = result["id"]

    def get():
        record = sf.Contact.get(state["id"])
        expect(record["LastName"] == "Lovelace", record)
        expect(record["attributes"]["type"] == "Contact", record["attributes"])
        expect(record["Id"] == state["id"], record["Id"])
        expect("Title" in record and record["Title"] is None, "unset fields are null")

    def get_fields():
        record = sf.Contact.get(state["id"], params={"fields": "LastName,Email"})
        expect(set(record) == {"attributes", "LastName", "Email"}, list(record))

    def update():
        status = sf.Contact.update(state["id"], {"Title": "Countess"})
        expect(status == 204, status)
        expect(sf.Contact.get(state["id"])["Title"] == "Countess", "update stored")

    def upsert_create():
        status = sf.Contact.upsert(f"External_Id__c/{ext}", {"LastName": "Hopper"})
        expect(status == 201, status)

    def upsert_update():
        status = sf.Contact.upsert(f"External_Id__c/{ext}", {"LastName": "Hopper", "Title": "RADM"})
        expect(status in (200, 204), status)

    def get_by_external_id():
        record = sf.Contact.get_by_custom_id("External_Id__c", ext)
        expect(record["Title"] == "RADM" and record["External_Id__c"] == ext, record)

    def delete():
        doomed = sf.Contact.create({"LastName": "Doomed", "External_Id__c": f"doomed-{RUN}"})
        state["deleted"] = doomed["id"]
        expect(sf.Contact.delete(doomed["id"]) == 204, "delete status")
        expect_error(lambda: sf.Contact.get(doomed["id"]), SalesforceResourceNotFound)

    def custom_object():
        result = sf.Customer__c.create({"External_Id__c": f"c-{RUN}", "LTV__c": 1234.5})
        record = sf.Customer__c.get(result["id"])
        expect(record["LTV__c"] == 1234.5, record)
        found = sf.query(f"SELECT Id, LTV__c FROM Customer__c WHERE External_Id__c = 'c-{RUN}'")
        expect(found["totalSize"] == 1, found)

    for name, check in [
        ("create", create),
        ("get", get),
        ("get_with_fields", get_fields),
        ("update", update),
        ("upsert_external_id_creates", upsert_create),
        ("upsert_external_id_updates", upsert_update),
        ("get_by_custom_id", get_by_external_id),
        ("delete", delete),
        ("custom_object_from_schema", custom_object),
    ]:
        checks.run(name, check)

    # -- Errors -------------------------------------------------------------
    checks.run(
        "create_missing_required_field",
        lambda: expect_error(
            lambda: sf.Contact.create({"FirstName": "NoLast"}),
            SalesforceMalformedRequest,
            "REQUIRED_FIELD_MISSING",
        ),
    )
    checks.run(
        "create_invalid_email",
        lambda: expect_error(
            lambda: sf.Contact.create({"LastName": "X", "Email": "not-an-email"}),
            SalesforceMalformedRequest,
            "INVALID_EMAIL_ADDRESS",
        ),
    )
    checks.run(
        "get_unknown_id_not_found",
        lambda: expect_error(
            lambda: sf.Contact.get("003000000000000AAA"),
            SalesforceResourceNotFound,
            "NOT_FOUND",
        ),
    )
    checks.run(
        "unknown_object_not_found",
        lambda: expect_error(lambda: sf.Nope__c.describe(), SalesforceResourceNotFound),
    )

    # -- Metadata ------------------------------------------------------------
    def describe_global():
        names = {o["name"] for o in sf.describe()["sobjects"]}
        expect({"Account", "Contact", "Customer__c"} <= names, names)

    def describe_object():
        fields = {f["name"]: f for f in sf.Contact.describe()["fields"]}
        account = fields["AccountId"]
        expect(account["referenceTo"] == ["Account"], account)
        expect(account["relationshipName"] == "Account", account)
        expect(account["soapType"] == "tns:ID", account)
        expect(fields["Email"]["filterable"] is True, fields["Email"])
        ltv = {f["name"]: f for f in sf.Customer__c.describe()["fields"]}["LTV__c"]
        expect((ltv["type"], ltv["precision"], ltv["scale"]) == ("currency", 16, 2), ltv)

    def metadata():
        info = sf.Contact.metadata()
        expect(info["objectDescribe"]["name"] == "Contact", info)

    def limits():
        result = sf.limits()
        usage = sf.api_usage["api-usage"]
        daily = result["DailyApiRequests"]
        expect(daily["Max"] == usage.total, (daily, usage))
        expect(daily["Remaining"] == usage.total - usage.used, (daily, usage))

    for name, check in [
        ("describe_global", describe_global),
        ("describe_object", describe_object),
        ("sobject_metadata", metadata),
        ("limits_match_api_usage_header", limits),
    ]:
        checks.run(name, check)

    # -- Bulk 2.0 ---------------------------------------------------------------
    bulk_rows = [
        {"LastName": f"Bulk{i}", "Email": f"bulk{i}-{RUN}@example.com", "External_Id__c": f"b{i}-{RUN}"}
        for i in range(2500)
    ]

    def bulk2_insert():
        results = sf.bulk2.Contact.insert(records=bulk_rows, wait=1)
        expect(sum(r["numberRecordsProcessed"] for r in results) == 2500, results)
        expect(sum(r["numberRecordsFailed"] for r in results) == 0, results)
        state["bulk_job"] = results[0]["job_id"]

    def bulk2_upsert():
        rows = [
            {"LastName": "Upserted", "External_Id__c": f"b0-{RUN}"},
            {"LastName": "", "External_Id__c": f"new-{RUN}"},
        ]
        results = sf.bulk2.Contact.upsert(records=rows, external_id_field="External_Id__c", wait=1)
        expect(results[0]["numberRecordsProcessed"] == 2, results)
        expect(results[0]["numberRecordsFailed"] == 1, results)
        state["upsert_job"] = results[0]["job_id"]

    def bulk2_results():
        job = state["upsert_job"]
        ok = list(csv.DictReader(io.StringIO(sf.bulk2.Contact.get_successful_records(job))))
        expect(len(ok) == 1 and ok[0]["sf__Created"] == "false", ok)
        failed = list(csv.DictReader(io.StringIO(sf.bulk2.Contact.get_failed_records(job))))
        expect(len(failed) == 1 and failed[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING"), failed)

    def bulk2_unprocessed():
        text = sf.bulk2.Contact.get_unprocessed_records(state["upsert_job"])
        expect(text.strip() == "" or len(text.strip().splitlines()) == 1, text)

    def bulk2_query():
        soql = f"SELECT Id, LastName FROM Contact WHERE External_Id__c IN ('b1-{RUN}', 'b2-{RUN}')"
        pages = list(sf.bulk2.Contact.query(soql, wait=1))
        rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
        expect(sorted(r["LastName"] for r in rows) == ["Bulk1", "Bulk2"], rows)

    def bulk2_query_pages():
        total = sf.query("SELECT COUNT() FROM Contact")["totalSize"]
        pages = list(sf.bulk2.Contact.query("SELECT Id FROM Contact", max_records=1000, wait=1))
        rows = sum(len(list(csv.DictReader(io.StringIO(page)))) for page in pages)
        expect(len(pages) == -(-total // 1000) and rows == total, (len(pages), rows, total))

    for name, check in [
        ("bulk2_insert", bulk2_insert),
        ("bulk2_upsert", bulk2_upsert),
        ("bulk2_successful_and_failed_results", bulk2_results),
        ("bulk2_unprocessed_records", bulk2_unprocessed),
        ("bulk2_query", bulk2_query),
        ("bulk2_query_max_records_pages", bulk2_query_pages),
    ]:
        checks.run(name, check)

    # -- SOQL -----------------------------------------------------------------
    def query_where():
        result = sf.query(f"SELECT Id, LastName, Email FROM Contact WHERE External_Id__c = '{ext}'")
        expect(result["totalSize"] == 1 and result["done"] is True, result)
        record = result["records"][0]
        expect(record["LastName"] == "Hopper", record)
        expect(record["attributes"]["url"].endswith(record["Id"]), record["attributes"])

    def query_in_order_limit():
        ids = ",".join(f"'b{i}-{RUN}'" for i in (3, 1, 2))
        result = sf.query(
            f"SELECT LastName FROM Contact WHERE External_Id__c IN ({ids}) ORDER BY LastName DESC LIMIT 2"
        )
        names = [r["LastName"] for r in result["records"]]
        expect(names == ["Bulk3", "Bulk2"], names)

    def query_not_equal_and():
        result = sf.query(
            f"SELECT Id FROM Contact WHERE LastName != 'Bulk1' AND External_Id__c IN ('b1-{RUN}', 'b2-{RUN}')"
        )
        expect(result["totalSize"] == 1, result)

    def query_count():
        result = sf.query(f"SELECT COUNT() FROM Contact WHERE LastName = 'Lovelace'")
        expect(result["totalSize"] >= 1 and result["records"] == [], result)

    def query_paging():
        first = sf.query("SELECT Id FROM Contact")
        expect(first["done"] is False and len(first["records"]) == 2000, first["totalSize"])
        expect(first["nextRecordsUrl"].startswith(f"/services/data/v{VERSION}/query/"), first)
        rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
        expect(rest["done"] is True and len(rest["records"]) == first["totalSize"] - 2000, rest["totalSize"])

    def query_all():
        result = sf.query_all("SELECT Id FROM Contact")
        expect(result["totalSize"] >= 2500 and len(result["records"]) == result["totalSize"], result["totalSize"])

    def query_all_includes_deleted():
        soql = f"SELECT Id FROM Contact WHERE External_Id__c = 'doomed-{RUN}'"
        expect(sf.query(soql)["totalSize"] == 0, "deleted record hidden from query")
        deleted = sf.query(soql, include_deleted=True)
        expect(deleted["totalSize"] == 1 and deleted["records"][0]["Id"] == state["deleted"], deleted)

    def query_batch_size():
        result = sf.query(
            "SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=500"}
        )
        expect(len(result["records"]) == 500 and result["done"] is False, len(result["records"]))

    for name, check in [
        ("query_where_equals", query_where),
        ("query_in_order_by_limit", query_in_order_limit),
        ("query_not_equal_and", query_not_equal_and),
        ("query_count", query_count),
        ("query_more_next_records_url", query_paging),
        ("query_all", query_all),
        ("query_all_include_deleted", query_all_includes_deleted),
        ("query_batch_size_header", query_batch_size),
    ]:
        checks.run(name, check)
    for name, soql, code in [
        ("query_malformed", "SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
        ("query_invalid_field", "SELECT Nope__c FROM Contact", "INVALID_FIELD"),
        ("query_invalid_type", "SELECT Id FROM Nope__c", "INVALID_TYPE"),
    ]:
        checks.run(
            name,
            lambda soql=soql, code=code: expect_error(
                lambda: sf.query(soql), SalesforceMalformedRequest, code
            ),
        )

    # -- The limited emulator: failed Bulk jobs, token expiry, daily limit -----
    limited = args.limited_url

    def bulk_job_failed():
        lsf = password_login(limited)
        err = expect_error(
            lambda: lsf.bulk2.Contact.insert(records=[{"LastName": "X"}], wait=1),
            SalesforceOperationError,
        )
        expect("--fail-bulk-jobs" in str(err) or "InvalidBatch" in str(err), str(err))

    def relogin_then_daily_limit():
        lsf = password_login(limited)
        first_token = lsf.session_id
        served = 0
        try:
            for _ in range(40):
                lsf.query("SELECT COUNT() FROM Contact")
                served += 1
        except SalesforceRefusedRequest as err:
            expect(err.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED", err.content)
        expect(lsf.session_id != first_token, "the client logged in again after its token expired")
        expect(0 < served < 40, f"{served} calls before the daily limit")
        usage = lsf.api_usage["api-usage"]
        expect(usage.used == usage.total, (usage.used, usage.total))

    checks.run("bulk2_job_failed", bulk_job_failed)
    checks.run("session_refresh_then_request_limit_exceeded", relogin_then_daily_limit)

    print(json.dumps({"passed": checks.passed, "failed": checks.failed, "errors": checks.errors}))


if __name__ == "__main__":
    main()
