"""`ScopeIndex`: what applies to a call, by service and method."""

from __future__ import annotations

from sofamesh.governance.filters.keyed import ScopeIndex


def index() -> ScopeIndex[str, str]:
    entries = [
        ("Orders", "", "orders-wide"),
        ("pay", "", "pay-wide"),
        ("pay", "charge", "pay-charge"),
        ("stock", "*", "stock-each"),
        ("stock", "", "stock-wide"),
    ]
    return ScopeIndex(entries, lambda leaf, method: f"{leaf}@{method or '-'}")


def test_services_with_only_service_wide_rules_are_found_by_name() -> None:
    idx = index()
    # Both spellings of a service (HTTP lowercases Host); the method does not matter.
    assert idx.whole == {"Orders": ("orders-wide@-",), "orders": ("orders-wide@-",)}
    assert idx.lookup("orders", "get") == ("orders-wide@get",)


def test_services_with_method_rules_are_not_found_by_name_alone() -> None:
    idx = index()
    assert "pay" not in idx.whole and "stock" not in idx.whole
    assert idx.lookup("pay", "charge") == ("pay-wide@charge", "pay-charge@charge")
    assert idx.lookup("pay", "refund") == ("pay-wide@refund",)
    assert idx.lookup("stock", "get") == ("stock-wide@get", "stock-each@get")
