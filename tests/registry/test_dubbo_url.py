"""Dubbo provider URLs: Java's URLEncoder, golden Dubbo node names, endpoint round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.endpoint import Endpoint
from sofamesh.registry.dubbo_url import (
    RESERVED,
    consumer_url,
    endpoint_to_url,
    interface_of,
    java_url_decode,
    java_url_encode,
    parse_url,
    url_to_endpoint,
)

# A node name as Dubbo 2.7's ZookeeperRegistry writes it under
# /dubbo/org.apache.dubbo.demo.DemoService/providers/ (URL.encode(url.toFullString())).
DUBBO_NODE = (
    "dubbo%3A%2F%2F192.168.1.5%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue"
    "%26application%3Ddemo-provider%26deprecated%3Dfalse%26dubbo%3D2.0.2%26dubbo.tag%3Dgray"
    "%26dynamic%3Dtrue%26generic%3Dfalse%26group%3Dg1%26interface%3Dorg.apache.dubbo.demo.DemoService"
    "%26methods%3DsayHello%2CsayHelloAsync%26pid%3D4242%26release%3D2.7.23%26side%3Dprovider"
    "%26timestamp%3D1700000000000%26version%3D1.0.0%26weight%3D50"
)


def test_a_dubbo_provider_node_maps_to_an_endpoint() -> None:
    ep = url_to_endpoint(java_url_decode(DUBBO_NODE))
    assert ep == Endpoint(
        "org.apache.dubbo.demo.DemoService",
        "192.168.1.5",
        20880,
        protocol="dubbo",
        app="demo-provider",
        version="1.0.0",
        weight=50,
        tags={"gray"},
        meta={"group": "g1", "methods": "sayHello,sayHelloAsync"},
    )


def test_java_url_encoder_vectors() -> None:
    # What java.net.URLEncoder.encode(s, "UTF-8") returns for each.
    encoded = "dubbo%3A%2F%2Fa%3A1%2Fx%3Fk%3Dv%26m%3Da%2Cb"
    assert java_url_encode("dubbo://a:1/x?k=v&m=a,b") == encoded
    assert java_url_encode("a b~*._-") == "a+b%7E*._-"
    assert java_url_encode("é") == "%C3%A9"
    assert java_url_decode("a+b%7E") == "a b~"


@given(st.text(max_size=60))
def test_java_url_encoding_round_trips_and_is_a_single_znode_name(text: str) -> None:
    encoded = java_url_encode(text)
    assert java_url_decode(encoded) == text
    assert "/" not in encoded


def test_our_provider_url_is_what_dubbo_expects() -> None:
    ep = Endpoint(
        "com.foo.Bar",
        "10.0.0.5",
        12200,
        protocol="bolt",
        app="bar",
        version="2",
        zone="z1",
        tags={"canary"},
        meta={"group": "g"},
    )
    scheme, host, port, path, params = parse_url(endpoint_to_url(ep, timestamp_ms=1, pid=7))
    assert (scheme, host, port, path) == ("bolt", "10.0.0.5", 12200, "com.foo.Bar")
    assert params == {
        "anyhost": "false",
        "application": "bar",
        "dubbo": "2.0.2",
        "dubbo.tag": "canary",
        "dynamic": "true",
        "group": "g",
        "interface": "com.foo.Bar",
        "pid": "7",
        "side": "provider",
        "timestamp": "1",
        "version": "2",
        "weight": "100",
        "zone": "z1",
    }
    # Dubbo sorts parameters (URL.toFullString): so do we, and node names are stable.
    query = endpoint_to_url(ep, timestamp_ms=1, pid=7).split("?", 1)[1]
    keys = [item.split("=")[0] for item in query.split("&")]
    assert keys == sorted(keys)


def test_ipv6_hosts_are_bracketed() -> None:
    url = endpoint_to_url(Endpoint("s", "::1", 80), timestamp_ms=0, pid=0)
    assert url.startswith("http://[::1]:80/s?")
    assert url_to_endpoint(url).host == "::1"


def test_consumer_url_registers_like_a_dubbo_consumer() -> None:
    scheme, host, port, path, params = parse_url(
        consumer_url("s", "10.1.1.1", app="a", timestamp_ms=5, pid=6)
    )
    assert (scheme, host, port, path) == ("consumer", "10.1.1.1", None, "s")
    assert params["category"] == "consumers" and params["side"] == "consumer"


@pytest.mark.parametrize(
    "url", ["", "nope", "dubbo://h/x", "dubbo://:80/x", "dubbo://h:99999/x", "dubbo://h:80/"]
)
def test_urls_that_describe_no_provider(url: str) -> None:
    with pytest.raises(ValueError):
        url_to_endpoint(url)


def test_unusable_weight_falls_back_to_dubbo_default() -> None:
    assert url_to_endpoint("dubbo://h:1/s?weight=heavy").weight == 100
    assert url_to_endpoint("dubbo://h:1/s?weight=99999").weight == 10_000


names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
words = st.text(st.characters(codec="utf-8", exclude_characters="\x00,"), min_size=1, max_size=12)
endpoints = st.builds(
    Endpoint,
    service=names.filter(lambda s: "/" not in s and "?" not in s and s.strip() == s),
    host=st.sampled_from(["10.0.0.1", "127.0.0.1", "::1", "host.example"]),
    port=st.integers(1, 65535),
    protocol=st.sampled_from(["http", "bolt", "dubbo", "tri", "grpc"]),
    app=st.text(max_size=8).map(str.strip),
    version=st.text(max_size=8).map(str.strip),
    zone=st.text(max_size=8).map(str.strip),
    weight=st.integers(0, 10_000),
    tags=st.frozensets(words, max_size=3),
    meta=st.dictionaries(
        names.filter(lambda k: k not in RESERVED and "&" not in k and "=" not in k),
        st.text(max_size=10),
        max_size=4,
    ),
)


@settings(max_examples=150)
@given(
    endpoints.filter(lambda ep: ep.protocol != "dubbo" or interface_of(ep.service) == ep.service)
)
def test_endpoint_survives_the_round_trip_through_a_znode_name(ep: Endpoint) -> None:
    node = java_url_encode(endpoint_to_url(ep, timestamp_ms=1, pid=1))
    assert url_to_endpoint(java_url_decode(node)) == ep
