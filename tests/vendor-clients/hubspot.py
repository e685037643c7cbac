"""hubspot-api-client (HubSpot's own Python client) against `sluice emulator hubspot`.

Usage: python hubspot.py BASE_URL TOKEN

Runs the calls users make most, each asserting what HubSpot documents, and
prints one JSON line: {"passed": [...], "failed": [{"call": ..., "error": ...}]}.
Run by tests/tests/vendor_hubspot.rs; the exit status is 0 whatever failed
(the Rust test judges the summary).
"""

import json
import os
import sys
import traceback
import uuid

# This file is named like the client's package: take its own directory off
# the import path so that `import hubspot` finds hubspot-api-client.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import hubspot  # noqa: E402
from hubspot.crm.associations.v4 import AssociationSpec  # noqa: E402
from hubspot.crm.contacts import (  # noqa: E402
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.properties import PropertyCreate, PropertyUpdate  # noqa: E402

BASE, TOKEN = sys.argv[1], sys.argv[2]
client = hubspot.Client.create(access_token=TOKEN, host=BASE)
RUN = uuid.uuid4().hex[:8]
passed, failed = [], []
state = {}


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


def expect_api_error(fn, status, category=None):
    # Each API package has its own ApiException class (hubspot.crm.contacts,
    # hubspot.crm.properties, ...): recognise them by what they carry.
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        if not (hasattr(e, "status") and hasattr(e, "body")):
            raise
        expect(e.status == status, f"status {e.status}, expected {status}")
        body = json.loads(e.body)
        expect(body.get("status") == "error", f"body status {body.get('status')!r}")
        expect(body.get("correlationId"), "no correlationId")
        if category:
            expect(body.get("category") == category, f"category {body.get('category')!r}")
        return body
    raise AssertionError(f"no ApiException, expected HTTP {status}")


def email(name):
    return f"{name}.{RUN}@example.com"


contacts = client.crm.contacts
companies = client.crm.companies
deals = client.crm.deals
properties = client.crm.properties.core_api
assoc = client.crm.associations.v4


@check("contacts.basic_api.create")
def _():
    created = contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": email("ann"), "firstname": "Ann"})
    )
    expect(created.id and created.properties["email"] == email("ann"), created)
    expect(created.created_at is not None and created.archived is False, created)
    state["ann"] = created.id


@check("contacts.basic_api.get_by_id")
def _():
    got = contacts.basic_api.get_by_id(state["ann"], properties=["email", "firstname"])
    expect(got.id == state["ann"], got)
    expect(got.properties["firstname"] == "Ann", got.properties)


@check("contacts.basic_api.get_by_id(id_property=email)")
def _():
    got = contacts.basic_api.get_by_id(email("ann"), id_property="email")
    expect(got.id == state["ann"], got)


@check("contacts.basic_api.update")
def _():
    updated = contacts.basic_api.update(
        state["ann"], SimplePublicObjectInput(properties={"lastname": "Lee", "firstname": "Anna"})
    )
    expect(updated.properties["lastname"] == "Lee", updated.properties)
    expect(updated.properties["firstname"] == "Anna", updated.properties)
    expect(updated.updated_at >= updated.created_at, updated)


@check("contacts.basic_api.update(unknown id) raises 404")
def _():
    expect_api_error(
        lambda: contacts.basic_api.update("987654321", SimplePublicObjectInput(properties={"firstname": "X"})),
        404,
        "OBJECT_NOT_FOUND",
    )


@check("contacts.basic_api.get_by_id(unknown id) raises 404")
def _():
    body = expect_api_error(lambda: contacts.basic_api.get_by_id("987654321"), 404, "OBJECT_NOT_FOUND")
    expect(body.get("message"), body)


@check("contacts.basic_api.create(duplicate email) raises 409")
def _():
    body = expect_api_error(
        lambda: contacts.basic_api.create(SimplePublicObjectInputForCreate(properties={"email": email("ann")})),
        409,
        "CONFLICT",
    )
    expect(state["ann"] in body["message"], body["message"])


@check("contacts.basic_api.create(invalid email) raises 400")
def _():
    body = expect_api_error(
        lambda: contacts.basic_api.create(SimplePublicObjectInputForCreate(properties={"email": "not-an-email"})),
        400,
        "VALIDATION_ERROR",
    )
    expect(body["errors"] and body["errors"][0]["code"] == "INVALID_EMAIL", body)


@check("contacts.batch_api.create")
def _():
    inputs = [{"properties": {"email": email(f"p{i}"), "firstname": f"P{i}"}} for i in range(12)]
    response = contacts.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
    expect(response.status == "COMPLETE" and len(response.results) == 12, response.status)
    state["people"] = sorted((r.id for r in response.results), key=int)


@check("contacts.batch_api.read")
def _():
    ids = state["people"][:3]
    response = contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(inputs=[{"id": i} for i in ids], properties=["email", "firstname"])
    )
    expect(sorted(r.id for r in response.results) == sorted(ids), response.results)
    expect(all(r.properties["firstname"].startswith("P") for r in response.results), response.results)


@check("contacts.batch_api.read(id_property=email)")
def _():
    response = contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(inputs=[{"id": email("p0")}], id_property="email", properties=["email"])
    )
    expect([r.id for r in response.results] == [state["people"][0]], response.results)


@check("contacts.batch_api.update")
def _():
    inputs = [{"id": i, "properties": {"jobtitle": "Engineer"}} for i in state["people"][:2]]
    response = contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=inputs))
    expect(len(response.results) == 2, response.results)
    expect(all(r.properties["jobtitle"] == "Engineer" for r in response.results), response.results)


@check("contacts.batch_api.upsert")
def _():
    inputs = [
        {"id": email("p1"), "idProperty": "email", "properties": {"lastname": "Known"}},
        {"id": email("new"), "idProperty": "email", "properties": {"lastname": "Fresh"}},
    ]
    response = contacts.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs))
    by_email = {r.properties["email"]: r for r in response.results}
    expect(by_email[email("p1")].new is False, by_email)
    expect(by_email[email("new")].new is True, by_email)
    state["fresh"] = by_email[email("new")].id


@check("contacts.batch_api.archive")
def _():
    contacts.batch_api.archive(BatchInputSimplePublicObjectId(inputs=[{"id": state["fresh"]}]))
    expect_api_error(lambda: contacts.basic_api.get_by_id(state["fresh"]), 404)


@check("contacts.basic_api.get_page(after) pages by record id")
def _():
    first = contacts.basic_api.get_page(limit=5, properties=["email"])
    expect(len(first.results) == 5 and first.paging.next.after, first.paging)
    # Archiving a record already seen must not shift the next page.
    seen = first.results[1]
    contacts.basic_api.archive(seen.id)
    second = contacts.basic_api.get_page(limit=5, after=first.paging.next.after, properties=["email"])
    first_ids = [int(r.id) for r in first.results]
    second_ids = [int(r.id) for r in second.results]
    expect(min(second_ids) > max(first_ids), (first_ids, second_ids))
    everything = [int(r.id) for r in contacts.get_all()]
    expect(everything == sorted(everything), "ids ascend")
    expect(second_ids == [i for i in everything if i > max(first_ids)][:5], (second_ids, everything))
    state["archived_seen"] = seen.id
    state["archived_email"] = seen.properties["email"]


@check("contacts.get_all")
def _():
    everything = contacts.get_all(properties=["email"])
    emails = {r.properties.get("email") for r in everything}
    expected = ({email(f"p{i}") for i in range(12)} | {email("ann")}) - {state["archived_email"]}
    expect(expected <= emails, f"missing {expected - emails}")
    expect(state["archived_email"] not in emails, "an archived record is listed")
    expect(len(everything) == len({r.id for r in everything}), "no duplicates")


@check("contacts.basic_api.get_page(archived=True)")
def _():
    page = contacts.basic_api.get_page(archived=True, limit=100)
    ids = {r.id for r in page.results}
    expect(state["archived_seen"] in ids and state["fresh"] in ids, ids)
    expect(all(r.archived for r in page.results), "archived flag")


@check("contacts.basic_api.archive")
def _():
    contacts.basic_api.archive(state["ann"])
    expect_api_error(lambda: contacts.basic_api.get_by_id(state["ann"]), 404, "OBJECT_NOT_FOUND")
    archived = contacts.basic_api.get_by_id(state["ann"], archived=True)
    expect(archived.archived is True and archived.archived_at is not None, archived)


@check("contacts.search_api.do_search(EQ)")
def _():
    request = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "email", "operator": "EQ", "value": email("p3")}]}],
        properties=["email", "firstname"],
    )
    response = contacts.search_api.do_search(request)
    expect(response.total == 1 and response.results[0].properties["firstname"] == "P3", response)


@check("contacts.search_api.do_search(IN, sorts, paging)")
def _():
    wanted = [email(f"p{i}") for i in (4, 5, 6)]
    request = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "email", "operator": "IN", "values": wanted}]}],
        sorts=[{"propertyName": "firstname", "direction": "DESCENDING"}],
        properties=["firstname"],
        limit=2,
    )
    first = contacts.search_api.do_search(request)
    expect(first.total == 3, first.total)
    expect([r.properties["firstname"] for r in first.results] == ["P6", "P5"], first.results)
    request.after = first.paging.next.after
    second = contacts.search_api.do_search(request)
    expect([r.properties["firstname"] for r in second.results] == ["P4"], second.results)
    expect(second.paging is None, second.paging)


@check("contacts.search_api.do_search(OR of groups, CONTAINS_TOKEN, HAS_PROPERTY)")
def _():
    request = PublicObjectSearchRequest(
        filter_groups=[
            {
                "filters": [
                    {"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": f"*{RUN}@example.com"},
                    {"propertyName": "jobtitle", "operator": "HAS_PROPERTY"},
                ]
            },
            {"filters": [{"propertyName": "lastname", "operator": "EQ", "value": "Known"}]},
        ],
        properties=["email"],
        limit=100,
    )
    response = contacts.search_api.do_search(request)
    found = {r.properties["email"] for r in response.results}
    expect(email("p1") in found, found)
    expect(response.total == len(found), (response.total, found))


@check("contacts.search_api.do_search(limit over 200) raises 400")
def _():
    expect_api_error(lambda: contacts.search_api.do_search(PublicObjectSearchRequest(limit=201)), 400)


@check("properties.core_api.get_all")
def _():
    response = properties.get_all("contacts")
    names = {p.name for p in response.results}
    expect({"email", "firstname", "lastname"} <= names, names)
    email_property = next(p for p in response.results if p.name == "email")
    expect(email_property.has_unique_value is True, email_property)


@check("properties.core_api.create")
def _():
    created = properties.create(
        "companies",
        PropertyCreate(
            name=f"warehouse_id_{RUN}",
            label="Warehouse ID",
            type="string",
            field_type="text",
            group_name="companyinformation",
            has_unique_value=True,
        ),
    )
    expect(created.name == f"warehouse_id_{RUN}" and created.has_unique_value, created)


@check("properties.core_api.get_by_name")
def _():
    got = properties.get_by_name("companies", f"warehouse_id_{RUN}")
    expect(got.label == "Warehouse ID", got)


@check("properties.core_api.update")
def _():
    updated = properties.update(
        "companies", f"warehouse_id_{RUN}", PropertyUpdate(label="Warehouse key", description="from the warehouse")
    )
    expect(updated.label == "Warehouse key" and updated.description == "from the warehouse", updated)


@check("properties.core_api.archive")
def _():
    name = f"scratch_{RUN}"
    properties.create("companies", PropertyCreate(name=name, label="Scratch", type="string", field_type="text", group_name="companyinformation"))
    properties.archive("companies", name)
    expect_api_error(lambda: properties.get_by_name("companies", name), 404)
    archived = properties.get_all("companies", archived=True)
    expect(name in {p.name for p in archived.results}, archived)


@check("companies.basic_api.create")
def _():
    from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyInput

    created = companies.basic_api.create(CompanyInput(properties={"name": "Acme", "domain": f"acme-{RUN}.example"}))
    expect(created.properties["name"] == "Acme", created)
    state["acme"] = created.id
    state["contact"] = state["people"][2]


@check("associations.v4.basic_api.create_default")
def _():
    response = assoc.basic_api.create_default("contacts", state["contact"], "companies", state["acme"])
    expect(response.status == "COMPLETE" and response.results, response)
    spec = response.results[0].association_spec
    expect(spec.association_category == "HUBSPOT_DEFINED" and spec.association_type_id == 279, spec)


@check("associations.v4.basic_api.get_page")
def _():
    page = assoc.basic_api.get_page("contacts", state["contact"], "companies")
    expect([str(r.to_object_id) for r in page.results] == [state["acme"]], page.results)
    back = assoc.basic_api.get_page("companies", state["acme"], "contacts")
    expect([str(r.to_object_id) for r in back.results] == [state["contact"]], back.results)


@check("contacts.basic_api.get_by_id(associations=companies)")
def _():
    got = contacts.basic_api.get_by_id(state["contact"], associations=["companies"])
    ids = {a.id for a in got.associations["companies"].results}
    expect(ids == {state["acme"]}, got.associations)


@check("associations.v4.basic_api.create (labelled)")
def _():
    result = assoc.basic_api.create(
        "contacts",
        state["people"][3],
        "companies",
        state["acme"],
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)],
    )
    expect(result.labels == ["Primary"], result)
    expect(str(result.to_object_id) == state["acme"], result)


@check("associations.v4.batch_api.create_default")
def _():
    inputs = [{"from": {"id": i}, "to": {"id": state["acme"]}} for i in state["people"][4:6]]
    response = assoc.batch_api.create_default("contacts", "companies", {"inputs": inputs})
    expect(response.status == "COMPLETE" and len(response.results) >= 2, response)


@check("associations.v4.batch_api.create")
def _():
    inputs = [
        {
            "from": {"id": state["people"][6]},
            "to": {"id": state["acme"]},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}],
        }
    ]
    response = assoc.batch_api.create("contacts", "companies", {"inputs": inputs})
    expect(len(response.results) == 1 and str(response.results[0].from_object_id) == state["people"][6], response)


@check("associations.v4.batch_api.get_page (batch read)")
def _():
    response = assoc.batch_api.get_page("companies", "contacts", {"inputs": [{"id": state["acme"]}]})
    targets = {str(t.to_object_id) for t in response.results[0].to}
    expected = {state["contact"], *state["people"][3:7]}
    expect(targets == expected, (targets, expected))


@check("associations.v4.basic_api.archive")
def _():
    assoc.basic_api.archive("contacts", state["contact"], "companies", state["acme"])
    page = assoc.basic_api.get_page("contacts", state["contact"], "companies")
    expect(page.results == [], page.results)


@check("deals.basic_api.create(associations)")
def _():
    from hubspot.crm.deals import SimplePublicObjectInputForCreate as DealInput

    created = deals.basic_api.create(
        DealInput(
            properties={"dealname": "Renewal", "amount": "1200", "dealstage": "qualifiedtobuy", "pipeline": "default"},
            associations=[
                {
                    "to": {"id": state["acme"]},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 341}],
                }
            ],
        )
    )
    expect(created.properties["amount"] == "1200", created)
    got = deals.basic_api.get_by_id(created.id, associations=["companies"])
    expect({a.id for a in got.associations["companies"].results} == {state["acme"]}, got.associations)


@check("contacts.batch_api.create(associations)")
def _():
    inputs = [
        {
            "properties": {"email": email("linked")},
            "associations": [
                {
                    "to": {"id": state["acme"]},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}],
                }
            ],
        }
    ]
    response = contacts.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
    linked = response.results[0].id
    page = assoc.basic_api.get_page("companies", state["acme"], "contacts")
    expect(linked in {str(r.to_object_id) for r in page.results}, page.results)


@check("rate-limit headers on every response")
def _():
    _, status, headers = contacts.basic_api.get_page_with_http_info(limit=1)
    expect(status == 200, status)
    for name in [
        "X-HubSpot-RateLimit-Interval-Milliseconds",
        "X-HubSpot-RateLimit-Max",
        "X-HubSpot-RateLimit-Remaining",
        "X-HubSpot-RateLimit-Daily",
        "X-HubSpot-RateLimit-Daily-Remaining",
    ]:
        expect(headers.get(name) is not None, f"missing {name}")
    expect(headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000", headers)
    expect(int(headers["X-HubSpot-RateLimit-Remaining"]) < int(headers["X-HubSpot-RateLimit-Max"]), headers)


@check("a wrong token raises 401")
def _():
    wrong = hubspot.Client.create(access_token="pat-wrong", host=BASE)
    expect_api_error(lambda: wrong.crm.contacts.basic_api.get_page(limit=1), 401, "INVALID_AUTHENTICATION")


print(json.dumps({"passed": passed, "failed": failed}))
