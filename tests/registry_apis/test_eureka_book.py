"""The registration book's leases on a fake clock, and Eureka's documents in both forms."""

from __future__ import annotations

import json

import pytest

from sofamesh.clock import FakeClock
from sofamesh.config import Address
from sofamesh.sidecar.registry_apis import eureka_docs as docs
from sofamesh.sidecar.registry_apis.book import Book, BookFull, Instance


def _inst(iid: str, lease: float = 90.0) -> Instance:
    return Instance("eureka", "orders", iid, Address("127.0.0.1", 8080), lease)


def test_an_instance_lapses_a_lease_after_its_last_renewal() -> None:
    clock, book = FakeClock(), Book(max_instances=4)
    book.put(_inst("a", lease=90), clock.now())
    clock.advance(60)
    assert book.renew("eureka", "a", clock.now()) is not None
    clock.advance(89)
    assert book.lapsed(clock.now()) == []
    clock.advance(2)
    assert [i.instance_id for i in book.lapsed(clock.now())] == ["a"]
    assert book.renew("eureka", "a", clock.now()) is None  # the client must register again


def test_the_book_refuses_past_max_instances_but_takes_re_registrations() -> None:
    book = Book(max_instances=1)
    book.put(_inst("a"), 0.0)
    assert book.put(_inst("a"), 1.0) is not None
    with pytest.raises(BookFull):
        book.put(_inst("b"), 1.0)


def _doc() -> dict[str, object]:
    inst = docs.instance_doc(
        app="ORDERS", instance_id="i-1", host="127.0.0.1", port=9000, status="UP",
        metadata={"version": "2.0"}, lease=(30, 90), times_ms=(1, 2),
    )  # fmt: skip
    return docs.applications_doc({"ORDERS": [inst]}, 3, docs.hashcode([inst]))


def test_json_is_eurekas_jackson_form() -> None:
    ctype, body = docs.render(_doc(), "application/json")
    apps = json.loads(body)["applications"]
    assert ctype == b"application/json"
    assert (apps["versions__delta"], apps["apps__hashcode"]) == ("3", "UP_1_")
    inst = apps["application"][0]["instance"][0]
    assert inst["port"] == {"$": 9000, "@enabled": "true"}
    assert inst["leaseInfo"]["durationInSecs"] == 90


def test_xml_is_the_default_with_attributes_and_text() -> None:
    ctype, body = docs.render(_doc(), "")
    assert ctype == b"application/xml"
    text = body.decode()
    assert text.startswith("<applications><versions__delta>3</versions__delta>")
    assert '<port enabled="true">9000</port>' in text
    assert "<metadata><version>2.0</version></metadata>" in text


def test_hashcode_counts_each_status_in_order() -> None:
    statuses = [{"status": s} for s in ("UP", "DOWN", "UP", "OUT_OF_SERVICE")]
    assert docs.hashcode(statuses) == "DOWN_1_OUT_OF_SERVICE_1_UP_2_"


def test_registrations_parse_from_json_and_xml() -> None:
    body = b'{"instance": {"instanceId": "i", "port": {"$": 80, "@enabled": "true"}}}'
    assert docs.registration(body, "application/json")["port"]["$"] == 80
    xml = b'<instance><instanceId>i</instanceId><port enabled="true">80</port></instance>'
    parsed = docs.registration(xml, "application/xml")
    assert parsed["port"] == {"@enabled": "true", "$": "80"}
    with pytest.raises(ValueError):
        docs.registration(b"[]", "application/json")
