"""RFC 3263 server location (sans-I/O part) and the resolver's paths that need no DNS."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import trio

from sipx._core.locate import (
    NaptrRecord,
    SrvRecord,
    is_localhost,
    naptr_service,
    order_srv,
    srv_name,
    srv_name_from_naptr,
    uses_srv,
)
from sipx._trio.resolver import Resolver, _nameserver


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("example.com", None, True),
        ("pbx.example.com.", None, True),
        ("example.com", 5060, False),  # an explicit port: A/AAAA only
        ("192.0.2.1", None, False),
        ("[2001:db8::1]", None, False),
        ("localhost", None, False),
        ("LOCALHOST.", None, False),
        ("pbx.localhost", None, False),
    ],
)
def test_uses_srv(host: str, port: int | None, expected: bool) -> None:
    assert uses_srv(host, port) is expected


def test_is_localhost() -> None:
    assert is_localhost("localhost") and is_localhost("a.localhost.")
    assert not is_localhost("localhost.example.com") and not is_localhost("mylocalhost")


@pytest.mark.parametrize(
    ("scheme", "transport", "expected"),
    [
        ("sip", "UDP", "_sip._udp.example.com"),
        ("sip", "tcp", "_sip._tcp.example.com"),
        ("sip", "TLS", "_sips._tcp.example.com"),
        ("sips", "TCP", "_sips._tcp.example.com"),
        ("sips", "UDP", "_sips._tcp.example.com"),  # sips: is never UDP
    ],
)
def test_srv_name(scheme: str, transport: str, expected: str) -> None:
    assert srv_name("example.com.", scheme, transport) == expected


def draws(*values: float) -> Callable[[], float]:
    iterator: Iterator[float] = iter(values)
    return lambda: next(iterator)


def test_order_srv_lowest_priority_first() -> None:
    records = [
        SrvRecord(20, 0, 5060, "backup.example.com"),
        SrvRecord(10, 0, 5060, "main.example.com"),
        SrvRecord(30, 0, 5060, "last.example.com"),
    ]
    ordered = order_srv(records, draws(0.0, 0.0, 0.0))
    assert [r.target for r in ordered] == [
        "main.example.com",
        "backup.example.com",
        "last.example.com",
    ]


def test_order_srv_weighted_choice_within_a_priority() -> None:
    a, b = SrvRecord(10, 10, 5060, "a"), SrvRecord(10, 30, 5060, "b")
    # Running sums 10 (a) and 40 (b): a draw of 0.2 * 40 = 8 picks a, 0.5 * 40 = 20 picks b.
    assert order_srv([a, b], draws(0.2, 0.0)) == [a, b]
    assert order_srv([a, b], draws(0.5, 0.0)) == [b, a]


def test_order_srv_weights_set_the_odds() -> None:
    heavy, light = SrvRecord(1, 90, 5060, "heavy"), SrvRecord(1, 10, 5060, "light")
    steps = (i / 1000 for i in itertools.count())
    firsts = Counter(
        order_srv([light, heavy], lambda: next(steps) % 1)[0].target for _ in range(1000)
    )
    assert 850 <= firsts["heavy"] <= 950 and firsts["heavy"] + firsts["light"] == 1000


def test_order_srv_zero_weights_still_come_out() -> None:
    records = [SrvRecord(1, 0, 5060, "zero"), SrvRecord(1, 0, 5061, "also-zero")]
    assert {r.target for r in order_srv(records, draws(0.0, 0.0))} == {"zero", "also-zero"}


def test_a_single_dot_target_means_no_service() -> None:
    assert order_srv([SrvRecord(0, 0, 0, "")], draws()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.53", ("10.0.0.53", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("::1", ("::1", 53)),
    ],
)
def test_nameserver_forms(text: str, expected: tuple[str, int]) -> None:
    assert _nameserver(text) == expected


def test_a_nameserver_must_be_an_address() -> None:
    with pytest.raises(ValueError, match=r"dns\.example\.com"):
        Resolver(["dns.example.com"])


async def test_no_dns_query_for_addresses_ports_and_localhost() -> None:
    # The name server is a port nothing answers on: any query would fail or time out.
    resolver = Resolver(["127.0.0.1:9"], lifetime=0.5)
    with trio.fail_after(2):
        for host, port, scheme, transport, expected in (
            ("192.0.2.7", None, "sip", "UDP", ("192.0.2.7", 5060)),
            ("192.0.2.7", None, "sips", "TCP", ("192.0.2.7", 5061)),
            ("192.0.2.7", 5070, "sip", "TLS", ("192.0.2.7", 5070)),
        ):
            found = await resolver.locate_all(host, port, scheme=scheme, transport=transport)
            assert found == [expected]
        [(host, port)] = await resolver.locate_all("localhost", None, scheme="sip", transport="TLS")
    assert host in ("127.0.0.1", "::1") and port == 5061


@pytest.mark.parametrize(
    ("scheme", "transport", "expected"),
    [
        ("sip", "UDP", "SIP+D2U"),
        ("sip", "TCP", "SIP+D2T"),
        ("sip", "TLS", "SIPS+D2T"),
        ("sips", "TCP", "SIPS+D2T"),
    ],
)
def test_naptr_service(scheme: str, transport: str, expected: str) -> None:
    assert naptr_service(scheme, transport) == expected


def test_srv_name_from_naptr_takes_the_best_record_for_our_transport() -> None:
    records = [
        NaptrRecord(20, 10, "s", "SIP+D2U", "_sip._udp.backup.example.com"),
        NaptrRecord(10, 20, "S", "sip+d2u", "_sip._udp.second.example.com"),
        NaptrRecord(10, 10, "s", "SIP+D2U", "_sip._udp.first.example.com"),
        NaptrRecord(1, 1, "s", "SIP+D2T", "_sip._tcp.example.com"),
        NaptrRecord(1, 1, "a", "SIP+D2U", "not-an-srv.example.com"),  # flag "a": not SRV
        NaptrRecord(1, 1, "s", "SIP+D2U", ""),  # replacement "."
    ]
    assert srv_name_from_naptr(records, "sip", "UDP") == "_sip._udp.first.example.com"
    assert srv_name_from_naptr(records, "sip", "TCP") == "_sip._tcp.example.com"
    assert srv_name_from_naptr(records, "sip", "TLS") is None  # then srv_name() applies
    assert srv_name_from_naptr([], "sip", "UDP") is None
