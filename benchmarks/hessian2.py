"""Hessian 2 encode/decode throughput: sofamesh vs python-hessian's parser vs stdlib json.

Run from the repository root:

    .venv/bin/python benchmarks/hessian2.py            # full run, markdown table
    .venv/bin/python benchmarks/hessian2.py --quick    # each operation a few times: rough, ~1 s

Cases (each the same data in every codec; json gets dicts, base64 for bytes):
  a. a SOFARPC request body: SofaRequest object + three arguments, one stream
  b. a ~10 KB object graph with repeated classes (orders, customers, items)
  c. a 1 MB binary, and a ~100 KB (UTF-8) Chinese string

python-hessian (pip install python-hessian, the `bench` extra) only writes
Hessian 1, so it appears in the decode column only, and only where it reads our
bytes back to the same data.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sofamesh.codecs import hessian2
from sofamesh.codecs.hessian2 import ClassRegistry, Long, TypedList

try:
    from pyhessian.parser import Parser
except ImportError:  # the bench extra is not installed
    Parser = None

REGISTRY = ClassRegistry()


@REGISTRY.java_class("com.alipay.sofa.rpc.core.request.SofaRequest")
@dataclasses.dataclass
class SofaRequest:
    targetAppName: str | None
    methodName: str
    targetServiceUniqueName: str
    requestProps: dict[str, Any]
    methodArgSigs: list[str]


@REGISTRY.java_class("com.example.Customer")
@dataclasses.dataclass
class Customer:
    id: int
    name: str
    email: str
    vip: bool


@REGISTRY.java_class("com.example.Item")
@dataclasses.dataclass
class Item:
    sku: str
    quantity: int
    price: float


@REGISTRY.java_class("com.example.Order")
@dataclasses.dataclass
class Order:
    id: int
    customer: Customer
    items: list[Item]
    total: float
    created: datetime
    tags: list[str]


def sofa_request() -> list[Any]:
    props = {
        "service": "com.example.OrderService:1.0",
        "protocol": "bolt",
        "sofa_head_method_name": "placeOrder",
        "rpc_trace_context": {"sofaTraceId": "0a0fe8a41700000000001001", "sofaRpcId": "0.1"},
    }
    request = SofaRequest(
        None, "placeOrder", "com.example.OrderService:1.0", props,
        TypedList("[java.lang.String", ["java.lang.String", "int", "com.example.Item"]),
    )  # fmt: skip
    return [request, "order-20231114-0001", 3, Item("SKU-1234", 3, 19.99)]


def order_graph() -> list[Order]:
    customers = [Customer(i, f"customer {i}", f"c{i}@example.com", i % 3 == 0) for i in range(30)]
    when = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    return [
        Order(
            Long(100_000 + n), customers[n % 30],
            [Item(f"SKU-{n}-{k}", k + 1, 9.99 + k) for k in range(3)],
            42.5 + n, when, ["web", "promo"] if n % 2 else ["app"],
        )
        for n in range(100)
    ]  # fmt: skip


def as_json(value: Any) -> Any:
    """The same data as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def loose(value: Any) -> Any:
    """Both libraries' results reduced to plain data, to check python-hessian's reading."""
    if isinstance(value, list | tuple):
        return [loose(v) for v in value]
    if isinstance(value, dict):
        return {loose(k): loose(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: loose(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "_hessian_field_names"):  # a python-hessian object
        return {f: loose(getattr(value, f)) for f in value._hessian_field_names}
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo else value
    if type(value).__name__ == "Binary":  # python-hessian wraps bytes
        return bytes(value.value)
    for plain in (bool, int, float, str):  # drop wrappers such as Long
        if isinstance(value, plain):
            return plain(value)
    return value


def pyhessian_loads_all(data: bytes, count: int) -> list[Any]:
    assert Parser is not None
    parser = Parser()
    parser._stream = io.BytesIO(data)
    parser.version = 2
    return [parser.read_object() for _ in range(count)]


@dataclasses.dataclass(frozen=True)
class Timing:
    """How each operation is timed: `repeat` rounds of `number` calls (None: autorange)."""

    repeat: int
    number: int | None = None


def best_us(func: Callable[[], Any], timing: Timing) -> float:
    timer = timeit.Timer(func)
    number = timing.number or timer.autorange()[0]
    return min(timer.repeat(repeat=timing.repeat, number=number)) / number * 1e6


def measure(name: str, values: list[Any], timing: Timing) -> dict[str, Any]:
    data = hessian2.dumps_all(values, registry=REGISTRY)
    back = hessian2.loads_all(data, registry=REGISTRY)
    assert loose(back) == loose(values), name
    jdata = json.dumps(as_json(values), ensure_ascii=False).encode()
    row: dict[str, Any] = {"case": name, "bytes": len(data), "json_bytes": len(jdata)}
    row["enc"] = best_us(lambda: hessian2.dumps_all(values, registry=REGISTRY), timing)
    row["dec"] = best_us(lambda: hessian2.loads_all(data, registry=REGISTRY), timing)
    plain = as_json(values)  # json gets dicts and lists, built outside the timing
    row["json_enc"] = best_us(lambda: json.dumps(plain, ensure_ascii=False).encode(), timing)
    row["json_dec"] = best_us(lambda: json.loads(jdata), timing)
    row["pyh_dec"] = pyhessian_column(data, values, timing)
    return row


def pyhessian_column(data: bytes, values: list[Any], timing: Timing) -> float | str:
    if Parser is None:
        return "not installed"
    try:
        read = pyhessian_loads_all(data, len(values))
    except Exception as exc:
        return f"cannot read ({type(exc).__name__})"
    if loose(read) != loose(values):
        return "misreads"
    return best_us(lambda: pyhessian_loads_all(data, len(values)), timing)


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| case | Hessian bytes | sofamesh encode µs | sofamesh decode µs "
        "| python-hessian decode µs | json encode µs | json decode µs (JSON bytes) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        pyh = r["pyh_dec"]
        pyh_text = f"{pyh:,.0f} ({pyh / r['dec']:.1f}x)" if isinstance(pyh, float) else pyh
        out.append(
            f"| {r['case']} | {r['bytes']:,} | {r['enc']:,.1f} | {r['dec']:,.1f} | {pyh_text} "
            f"| {r['json_enc']:,.1f} | {r['json_dec']:,.1f} ({r['json_bytes']:,}) |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="each operation 3 x once, no autorange (rough, ~1 s)"
    )
    args = parser.parse_args()
    timing = Timing(3, 1) if args.quick else Timing(7)
    cases = [
        ("a. SOFARPC request (SofaRequest + 3 args)", sofa_request()),
        ("b. object graph, 100 orders (~10 KB)", order_graph()),
        ("c. 1 MB binary", [bytes(range(256)) * 4096]),
        ("c. Chinese string, 34,000 chars (~100 KB UTF-8)", ["中文测试服务网格" * 4250]),
    ]
    rows = [measure(name, values, timing) for name, values in cases]
    print(f"Python {sys.version.split()[0]}, best of {timing.repeat}; µs per operation.\n")
    print(table(rows))
    print("\n(in brackets: python-hessian's decode time over sofamesh's)")


if __name__ == "__main__":
    main()
