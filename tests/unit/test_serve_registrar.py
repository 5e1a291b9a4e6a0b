"""The registrar of ``sipx serve`` (RFC 3261 10.3), sans-I/O, with explicit ``now``."""

from __future__ import annotations

import pytest

from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._serve.registrar import Registrar

SERVER = "127.0.0.1:5070"


def register(
    *contacts: str,
    user: str = "1111",
    expires: int | None = None,
    call_id: str = "reg-1",
    cseq: int = 1,
) -> Request:
    lines = [
        f"REGISTER sip:{SERVER} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKreg;rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{SERVER}>;tag=ft",
        f"To: <sip:{user}@{SERVER}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


A = "<sip:1111@127.0.0.1:5062>"
B = "<sip:1111@127.0.0.1:5064;transport=tcp>"


def test_register_adds_a_binding_with_the_default_expiry() -> None:
    registrar = Registrar()
    response = registrar.register(
        register(A), 100.0, transport="udp", source=("127.0.0.1", 5062), to_tag="tt"
    )
    assert response.status_code == 200
    assert response.headers.get_list("Contact") == ["<sip:1111@127.0.0.1:5062>;expires=3600"]
    assert response.to.tag == "tt"
    (binding,) = registrar.lookup("1111", 100.0)
    assert binding.transport == "UDP"
    assert binding.source == ("127.0.0.1", 5062)
    assert binding.uri.port == 5062
    assert binding.expires_at == 3700.0


def test_expires_header_and_remaining_time_in_the_200() -> None:
    registrar = Registrar()
    registrar.register(register(A, expires=60), 0.0)
    response = registrar.register(register(B, expires=600, call_id="other"), 30.0)
    assert response.status_code == 200
    assert sorted(response.headers.get_list("Contact")) == sorted(
        [
            "<sip:1111@127.0.0.1:5062>;expires=30",
            "<sip:1111@127.0.0.1:5064;transport=tcp>;expires=600",
        ]
    )


def test_contact_expires_parameter_wins_over_the_header() -> None:
    registrar = Registrar()
    registrar.register(register(f"{A};expires=120", expires=600), 0.0)
    (binding,) = registrar.lookup("1111", 0.0)
    assert binding.remaining(0.0) == 120
    assert "expires" in binding.contact.params  # kept as sent; the 200 rewrites it


def test_refresh_updates_the_binding_instead_of_adding_one() -> None:
    registrar = Registrar()
    registrar.register(register(A, expires=60, cseq=1), 0.0)
    registrar.register(register(A, expires=60, cseq=2), 50.0)
    (binding,) = registrar.lookup("1111", 100.0)
    assert binding.expires_at == 110.0
    assert binding.cseq == 2


def test_out_of_order_register_with_the_same_call_id_is_refused() -> None:
    registrar = Registrar()
    registrar.register(register(A, expires=60, cseq=5), 0.0)
    response = registrar.register(register(A, expires=0, cseq=4), 1.0)
    assert response.status_code == 500
    assert len(registrar.lookup("1111", 1.0)) == 1


def test_bindings_expire() -> None:
    registrar = Registrar()
    registrar.register(register(A, expires=60), 0.0)
    assert registrar.lookup("1111", 59.9)
    assert registrar.lookup("1111", 60.0) == []
    assert registrar.snapshot(60.0) == {}
    assert len(registrar) == 0


def test_expires_zero_removes_one_binding() -> None:
    registrar = Registrar()
    registrar.register(register(A, B), 0.0)
    assert len(registrar.lookup("1111", 0.0)) == 2
    response = registrar.register(register(A, expires=0, call_id="x"), 1.0)
    assert response.status_code == 200
    assert response.headers.get_list("Contact") == [
        "<sip:1111@127.0.0.1:5064;transport=tcp>;expires=3599"
    ]
    registrar.register(register(f"{B};expires=0", expires=3600, call_id="y"), 2.0)
    assert registrar.lookup("1111", 2.0) == []


def test_star_with_expires_zero_removes_every_binding() -> None:
    registrar = Registrar()
    registrar.register(register(A, B), 0.0)
    response = registrar.register(register("*", expires=0, call_id="other"), 1.0)
    assert response.status_code == 200
    assert "Contact" not in response.headers
    assert registrar.lookup("1111", 1.0) == []


@pytest.mark.parametrize(("contacts", "expires"), [(("*",), None), (("*",), 60), (("*", A), 0)])
def test_star_needs_expires_zero_and_no_other_contact(
    contacts: tuple[str, ...], expires: int | None
) -> None:
    registrar = Registrar()
    registrar.register(register(B), 0.0)
    response = registrar.register(register(*contacts, expires=expires, call_id="z"), 1.0)
    assert response.status_code == 400
    assert len(registrar.lookup("1111", 1.0)) == 1


def test_max_expires_caps_the_requested_interval() -> None:
    registrar = Registrar()
    response = registrar.register(register(A, expires=7200), 0.0)
    assert response.headers.get_list("Contact") == ["<sip:1111@127.0.0.1:5062>;expires=3600"]


def test_min_expires_gives_423_with_min_expires() -> None:
    registrar = Registrar(min_expires=60)
    response = registrar.register(register(A, expires=30), 0.0)
    assert response.status_code == 423
    assert response.headers["Min-Expires"] == "60"
    assert registrar.lookup("1111", 0.0) == []
    # Expires: 0 is always allowed
    registrar.register(register(A, expires=120, call_id="a"), 0.0)
    assert registrar.register(register(A, expires=0, call_id="b"), 1.0).status_code == 200
    assert registrar.lookup("1111", 1.0) == []


def test_default_min_expires_is_zero() -> None:
    registrar = Registrar()
    assert registrar.register(register(A, expires=1), 0.0).status_code == 200


def test_query_without_contact_lists_the_bindings() -> None:
    registrar = Registrar()
    registrar.register(register(A, expires=100), 0.0)
    response = registrar.register(register(call_id="q"), 10.0)
    assert response.status_code == 200
    assert response.headers.get_list("Contact") == ["<sip:1111@127.0.0.1:5062>;expires=90"]


def test_lookup_returns_the_most_recent_binding_first() -> None:
    registrar = Registrar()
    registrar.register(register(A, call_id="1"), 0.0)
    registrar.register(register(B, call_id="2"), 5.0)
    assert [b.uri.port for b in registrar.lookup("1111", 6.0)] == [5064, 5062]
    registrar.register(register(A, call_id="1", cseq=2), 7.0)  # refresh moves A to the front
    assert [b.uri.port for b in registrar.lookup("1111", 8.0)] == [5062, 5064]


def test_users_are_kept_apart() -> None:
    registrar = Registrar()
    registrar.register(register(A, user="1111"), 0.0)
    registrar.register(register("<sip:2222@127.0.0.1:6000>", user="2222"), 0.0)
    snapshot = registrar.snapshot(1.0)
    assert list(snapshot) == ["1111", "2222"]
    registrar.remove("1111")
    assert list(registrar.snapshot(1.0)) == ["2222"]


def test_bad_contact_is_a_400() -> None:
    registrar = Registrar()
    response = registrar.register(register("<sip:1111@bad host>"), 0.0)
    assert response.status_code == 400


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        Registrar(min_expires=100, max_expires=10)


def test_max_contacts_drops_the_oldest_binding() -> None:
    registrar = Registrar(max_contacts=2)
    for number in range(3):
        registrar.register(
            register(f"<sip:1111@127.0.0.1:{6000 + number}>", call_id=f"c{number}"), float(number)
        )
    assert [b.uri.port for b in registrar.lookup("1111", 3.0)] == [6002, 6001]
    with pytest.raises(ValueError):
        Registrar(max_contacts=0)
