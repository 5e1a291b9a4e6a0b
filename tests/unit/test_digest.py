"""Tests for sipx._core.digest and sipx._auth."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipx._auth import Auth
from sipx._core import digest
from sipx._core.digest import (
    SUPPORTED_ALGORITHMS,
    Challenge,
    Credentials,
    NonceCounter,
    build_credentials,
    compute_response,
    credentials_header_name,
    parse_challenge,
    parse_challenges,
    parse_credentials,
    select_challenge,
    verify_credentials,
)
from sipx._errors import AuthError, ParseError

KAMAILIO = 'Digest realm="127.0.0.1", nonce="awghLWsIIAG6GhNzMABoejkt5ioJIV5P", qop="auth"'

ALL_ALGORITHMS = ("MD5", "MD5-SESS", "SHA-256", "SHA-256-SESS", "SHA-512-256", "SHA-512-256-SESS")


def ref_response(
    alg: str,
    *,
    user: str,
    realm: str,
    password: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str,
    cnonce: str,
    body: bytes = b"",
) -> str:
    """Independent reference implementation of the RFC 2617/7616 formulas."""
    name = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}[
        alg.replace("-SESS", "")
    ]

    def H(s: str | bytes) -> str:
        data = s.encode() if isinstance(s, str) else s
        return hashlib.new(name, data).hexdigest()

    a1 = f"{user}:{realm}:{password}"
    ha1 = H(f"{H(a1)}:{nonce}:{cnonce}") if alg.endswith("-SESS") else H(a1)
    ha2 = H(f"{method}:{uri}:{H(body)}") if qop == "auth-int" else H(f"{method}:{uri}")
    if qop is None:
        return H(f"{ha1}:{nonce}:{ha2}")
    return H(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def chal(
    algorithm: str = "MD5", qop: tuple[str, ...] = ("auth",), opaque: str | None = None
) -> Challenge:
    return Challenge(
        scheme="Digest",
        realm="sip.example.com",
        nonce="n0nce",
        algorithm=algorithm,
        qop=qop,
        opaque=opaque,
    )


def build(
    c: Challenge,
    *,
    body: bytes = b"",
    qop_preference: tuple[str, ...] = ("auth", "auth-int"),
    nonce_count: int = 1,
) -> Credentials:
    return build_credentials(
        c,
        username="u",
        password="p",
        method="INVITE",
        uri="sip:b@x",
        cnonce="c",
        body=body,
        qop_preference=qop_preference,
        nonce_count=nonce_count,
    )


# --------------------------------------------------------------------------- RFC vectors


def test_sha512_256_is_real() -> None:
    # FIPS 180-4 SHA-512/256 of the empty string, so a silent fallback to plain SHA-512 fails.
    assert hashlib.new("sha512_256", b"").hexdigest() == (
        "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a"
    )
    assert "SHA-512-256" in SUPPORTED_ALGORITHMS


def test_rfc2617_worked_example() -> None:
    assert (
        compute_response(
            algorithm="MD5",
            username="Mufasa",
            password="Circle Of Life",
            realm="testrealm@host.com",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            method="GET",
            uri="/dir/index.html",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


RFC7616 = {
    "realm": "http-auth@example.org",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    header = (
        f'Digest realm="{RFC7616["realm"]}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616["nonce"]}", opaque="{RFC7616["opaque"]}"'
    )
    c = parse_challenge(header)
    creds = build_credentials(
        c,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616["cnonce"],
    )
    assert creds.response == expected
    assert creds.qop == "auth"
    assert creds.nc == "00000001"
    assert creds.opaque == RFC7616["opaque"]
    value = creds.to_header_value()
    assert f'opaque="{RFC7616["opaque"]}"' in value
    assert f"algorithm={algorithm}," in value


# --------------------------------------------------------------------------- parsing


def test_parse_kamailio_challenge() -> None:
    c = parse_challenge(KAMAILIO)
    assert c.scheme == "Digest"
    assert c.realm == "127.0.0.1"
    assert c.nonce == "awghLWsIIAG6GhNzMABoejkt5ioJIV5P"
    assert c.qop == ("auth",)
    assert c.algorithm == "MD5"
    assert c.opaque is None
    assert c.stale is False
    assert c.domain is None
    assert c.header_name == "WWW-Authenticate"
    assert c.params == {
        "realm": "127.0.0.1",
        "nonce": "awghLWsIIAG6GhNzMABoejkt5ioJIV5P",
        "qop": "auth",
    }


def test_parse_algorithm_stale_and_proxy() -> None:
    c = parse_challenge(KAMAILIO + ", algorithm=SHA-256", "proxy-authenticate")
    assert c.algorithm == "SHA-256"
    assert c.header_name == "Proxy-Authenticate"
    assert credentials_header_name(c) == "Proxy-Authorization"
    assert credentials_header_name(parse_challenge(KAMAILIO)) == "Authorization"
    assert parse_challenge(KAMAILIO + ", stale=true").stale is True
    assert parse_challenge(KAMAILIO + ', stale="TRUE"').stale is True
    assert parse_challenge(KAMAILIO + ", stale=FALSE").stale is False
    assert parse_challenge(KAMAILIO + ", algorithm=md5-sess").algorithm == "MD5-SESS"


def test_parse_tolerant_whitespace_case_and_escapes() -> None:
    value = (
        '  dIgEsT   REALM = "a \\"quoted\\" realm\\\\x" ,NONCE=abc123 ,, '
        'QoP = "auth ,AUTH-INT", Opaque="o", domain="sip:a sip:b", Algorithm=sha-512-256-Sess\t'
    )
    c = parse_challenge(value)
    assert c.realm == 'a "quoted" realm\\x'
    assert c.nonce == "abc123"
    assert c.qop == ("auth", "auth-int")
    assert c.opaque == "o"
    assert c.domain == "sip:a sip:b"
    assert c.algorithm == "SHA-512-256-SESS"
    assert set(c.params) == {"realm", "nonce", "qop", "opaque", "domain", "algorithm"}


def test_parse_keeps_unknown_params() -> None:
    c = parse_challenge(KAMAILIO + ', charset=UTF-8, x-foo="b,a=r"')
    assert c.params["charset"] == "UTF-8"
    assert c.params["x-foo"] == "b,a=r"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ('Basic realm="x"', "Basic"),
        ("Basic realm=x", "Basic"),
        ('Digest nonce="abc"', "realm"),
        ('Digest realm="abc"', "nonce"),
        ("Digest", "realm"),
        ('Digest realm="abc, nonce="x"', "expected ','"),
        ('Digest realm="abc", nonce="x', "unterminated"),
        ('Digest realm="abc", nonce="x\\', "unterminated"),
        ('Digest realm="a" nonce="x"', "expected ','"),
        ('Digest realm="a", nonce', "no '='"),
        ('Digest realm="a", nonce=', "empty value"),
        ('Digest realm="a", nonce="1", realm="b"', "duplicate"),
        ('Digest realm="a", nonce="1", algorithm=""', "algorithm"),
        ('Digest realm="a", =x, nonce="1"', "parameter name"),
        ('Digest realm=a"b", nonce="1"', "expected ','"),
        ('Di"gest realm="a", nonce="1"', "scheme"),
    ],
)
def test_parse_malformed(value: str, needle: str) -> None:
    with pytest.raises(ParseError, match=needle):
        parse_challenge(value)


@given(st.text(max_size=80))
def test_parse_challenge_only_raises_parse_error(value: str) -> None:
    for text in (value, "Digest " + value, KAMAILIO + value):
        try:
            parse_challenge(text)
        except ParseError:
            pass


def test_parse_challenge_rejects_bad_header_name() -> None:
    with pytest.raises(ValueError, match="header_name"):
        parse_challenge(KAMAILIO, "Authorization")


def test_parse_challenges_skips_junk() -> None:
    values = [
        'Basic realm="x"',
        KAMAILIO + ", algorithm=SHA-256",
        'Digest realm="unterminated',
        KAMAILIO,
        "",
    ]
    got = parse_challenges(values, "Proxy-Authenticate")
    assert [c.algorithm for c in got] == ["SHA-256", "MD5"]
    assert all(c.header_name == "Proxy-Authenticate" for c in got)
    assert parse_challenges([]) == []


# --------------------------------------------------------------------------- selection


def test_select_strongest() -> None:
    md5 = parse_challenge(KAMAILIO)
    sha256 = parse_challenge(KAMAILIO + ", algorithm=SHA-256")
    sha512 = parse_challenge(KAMAILIO + ", algorithm=SHA-512-256")
    aka = parse_challenge(KAMAILIO + ", algorithm=AKAv1-MD5")
    assert select_challenge([md5, sha256, sha512]) is sha512
    assert select_challenge([md5, aka, sha512, sha256]) is sha512
    assert select_challenge([aka, md5, sha256]) is sha256
    assert select_challenge([aka, md5]) is md5


def test_select_sess_ranks_with_base_and_keeps_topmost() -> None:
    sha256_sess = chal("SHA-256-SESS")
    sha256 = chal("SHA-256")
    md5 = chal("MD5")
    assert select_challenge([md5, sha256_sess, sha256]) is sha256_sess
    assert select_challenge([md5, sha256, sha256_sess]) is sha256
    assert select_challenge([chal("MD5-SESS"), chal("SHA-512-256-SESS")]).algorithm == (
        "SHA-512-256-SESS"
    )


def test_select_unsupported_only() -> None:
    with pytest.raises(AuthError):
        select_challenge([chal("AKAV1-MD5"), chal("SHA-1")])
    with pytest.raises(AuthError):
        select_challenge([])
    # an unanswerable qop disqualifies an otherwise strong challenge
    md5 = chal("MD5")
    assert select_challenge([chal("SHA-256", qop=("auth-conf",)), md5]) is md5
    with pytest.raises(AuthError):
        select_challenge([chal("SHA-256", qop=("auth-conf",))])


# --------------------------------------------------------------------------- responses


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
@pytest.mark.parametrize("qop", [None, "auth", "auth-int"])
def test_known_answers(algorithm: str, qop: str | None) -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    expected = ref_response(
        algorithm,
        user="alice",
        realm="atlanta.example.com",
        password="s3cr\u00eat",
        nonce="84a4cc6f3082121f32b42a2187831a9e",
        method="INVITE",
        uri="sip:bob@biloxi.example.com",
        qop=qop,
        nc="0000000a",
        cnonce="0a4f113b",
        body=body,
    )
    got = compute_response(
        algorithm=algorithm.lower(),
        username="alice",
        password="s3cr\u00eat",
        realm="atlanta.example.com",
        nonce="84a4cc6f3082121f32b42a2187831a9e",
        method="INVITE",
        uri="sip:bob@biloxi.example.com",
        qop=qop,
        nc="0000000a" if qop else None,
        cnonce="0a4f113b",
        body=body,
    )
    assert got == expected
    assert len(got) == (32 if algorithm.startswith("MD5") else 64)


def _compute(
    algorithm: str, qop: str | None, nc: str | None = "00000001", cnonce: str | None = "c"
) -> str:
    return compute_response(
        algorithm=algorithm,
        username="u",
        password="p",
        realm="r",
        nonce="n",
        method="GET",
        uri="/",
        qop=qop,
        nc=nc,
        cnonce=cnonce,
    )


def test_compute_response_errors() -> None:
    with pytest.raises(AuthError, match="algorithm"):
        _compute("SHA-1", "auth")
    with pytest.raises(AuthError, match="qop"):
        _compute("MD5", "auth-conf")
    with pytest.raises(AuthError, match="cnonce"):
        _compute("MD5", "auth", cnonce=None)
    with pytest.raises(AuthError, match="nc"):
        _compute("MD5", "auth", nc=None)
    with pytest.raises(AuthError, match="cnonce"):
        _compute("MD5-SESS", None, cnonce=None)
    # without qop, nc and cnonce are ignored (RFC 2069)
    assert _compute("MD5", None) == _compute("MD5", None, nc=None, cnonce=None)


def test_auth_int_hashes_body() -> None:
    c = chal("MD5", qop=("auth-int",))
    a = build(c, body=b"v=0\r\n")
    b = build(c, body=b"v=1\r\n")
    assert a.qop == b.qop == "auth-int"
    assert a.response != b.response
    assert a.response == ref_response(
        "MD5",
        user="u",
        realm="sip.example.com",
        password="p",
        nonce="n0nce",
        method="INVITE",
        uri="sip:b@x",
        qop="auth-int",
        nc="00000001",
        cnonce="c",
        body=b"v=0\r\n",
    )
    # plain auth ignores the body
    assert build(chal("MD5"), body=b"x").response == build(chal("MD5"), body=b"y").response


def test_qop_choice() -> None:
    assert build(chal(qop=("auth", "auth-int"))).qop == "auth"
    assert build(chal(qop=("auth-int", "auth"))).qop == "auth"
    assert build(chal(qop=("auth-int",))).qop == "auth-int"
    assert build(chal(qop=("auth-conf", "auth"))).qop == "auth"
    both = chal(qop=("auth", "auth-int"))
    assert build(both, qop_preference=("auth-int", "auth")).qop == "auth-int"
    # unknown qops in the preference list are skipped, not sent
    odd = chal(qop=("auth-conf", "auth"))
    assert build(odd, qop_preference=("auth-conf", "auth")).qop == "auth"
    with pytest.raises(AuthError, match="qop"):
        build(chal(qop=("auth-conf",)))
    with pytest.raises(AuthError, match="qop"):
        build(chal(qop=("auth-int",)), qop_preference=("auth",))
    with pytest.raises(AuthError, match="algorithm"):
        build(chal("AKAV1-MD5"))
    with pytest.raises(ValueError, match="nonce_count"):
        build(chal(), nonce_count=0)
    with pytest.raises(ValueError, match="nonce_count"):
        build(chal(), nonce_count=2**32)
    assert build(chal(), nonce_count=2**32 - 1).nc == "ffffffff"


def test_rfc2069_no_qop() -> None:
    c = parse_challenge('Digest realm="r", nonce="n", opaque="op"')
    creds = build_credentials(c, username="u", password="p", method="BYE", uri="sip:x", cnonce="c")
    assert (creds.cnonce, creds.nc, creds.qop) == (None, None, None)
    value = creds.to_header_value()
    for name in ("cnonce", "nc=", "qop"):
        assert name not in value
    assert value == (
        f'Digest username="u", realm="r", nonce="n", uri="sip:x", response="{creds.response}", '
        'algorithm=MD5, opaque="op"'
    )
    h = hashlib.md5
    ha1 = h(b"u:r:p").hexdigest()
    ha2 = h(b"BYE:sip:x").hexdigest()
    assert creds.response == h(f"{ha1}:n:{ha2}".encode()).hexdigest()


def test_sess_without_qop_still_sends_cnonce() -> None:
    c = parse_challenge('Digest realm="r", nonce="n", algorithm=MD5-sess')
    creds = build_credentials(c, username="u", password="p", method="BYE", uri="sip:x", cnonce="c")
    assert creds.cnonce == "c"
    assert creds.qop is None and creds.nc is None
    assert creds.algorithm == "MD5-sess"  # the server's spelling is echoed
    assert verify_credentials(
        parse_credentials(creds.to_header_value()), password="p", method="BYE"
    )


def test_header_value_format_and_opaque_echo() -> None:
    c = parse_challenge(KAMAILIO + ', opaque="xyz\\"1"')
    creds = build_credentials(
        c,
        username="alice",
        password="pw",
        method="REGISTER",
        uri="sip:127.0.0.1",
        cnonce="cn",
        nonce_count=26,
    )
    assert creds.opaque == 'xyz"1'
    assert creds.to_header_value() == (
        'Digest username="alice", realm="127.0.0.1", nonce="awghLWsIIAG6GhNzMABoejkt5ioJIV5P", '
        f'uri="sip:127.0.0.1", response="{creds.response}", algorithm=MD5, cnonce="cn", '
        'qop=auth, nc=0000001a, opaque="xyz\\"1"'
    )


def test_header_value_rejects_injection() -> None:
    creds = Credentials("a\r\nVia: x", "r", "n", "/", "0" * 32, "MD5", None, None, None, None)
    with pytest.raises(ValueError, match="CR"):
        creds.to_header_value()
    bad_alg = Credentials("a", "r", "n", "/", "0" * 32, "MD5, x=y", None, None, None, None)
    with pytest.raises(ValueError, match="token"):
        bad_alg.to_header_value()


def test_nonce_counter() -> None:
    nc = NonceCounter()
    assert [nc.next("a"), nc.next("a"), nc.next("a")] == [1, 2, 3]
    assert nc.next("b") == 1
    assert nc.next("a") == 4
    assert nc.next("b") == 2


def test_nonce_counter_is_bounded() -> None:
    nc = NonceCounter(max_nonces=2)
    nc.next("a")
    nc.next("b")
    nc.next("a")  # "a" is now the most recently used
    nc.next("c")  # evicts "b"
    assert nc.next("a") == 3
    assert nc.next("b") == 1
    with pytest.raises(ValueError):
        NonceCounter(max_nonces=0)


# --------------------------------------------------------------------------- server side


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
@pytest.mark.parametrize("qop", [(), ("auth",), ("auth-int",)])
def test_verify_round_trip(algorithm: str, qop: tuple[str, ...]) -> None:
    c = chal(algorithm, qop=qop, opaque="op")
    creds = build_credentials(
        c,
        username="bob",
        password="hunter2",
        method="INVITE",
        uri="sip:bob@x",
        body=b"sdp",
        cnonce="c0ffee",
        nonce_count=3,
    )
    params = parse_credentials(creds.to_header_value())
    assert params["algorithm"] == algorithm
    assert params.get("opaque") == "op"
    assert verify_credentials(params, password="hunter2", method="INVITE", body=b"sdp")
    assert not verify_credentials(params, password="hunter3", method="INVITE", body=b"sdp")
    assert not verify_credentials(params, password="hunter2", method="BYE", body=b"sdp")
    assert not verify_credentials(
        {**params, "nonce": "other"}, password="hunter2", method="INVITE", body=b"sdp"
    )
    if qop == ("auth-int",):
        assert not verify_credentials(params, password="hunter2", method="INVITE", body=b"xx")


def test_verify_rejects_incomplete_or_odd_params() -> None:
    c = chal("MD5")
    creds = build_credentials(c, username="u", password="p", method="GET", uri="/", cnonce="c")
    params = parse_credentials(creds.to_header_value())
    assert verify_credentials(params, password="p", method="GET")
    assert verify_credentials(
        {**params, "response": params["response"].upper()}, password="p", method="GET"
    )
    for missing in ("username", "realm", "nonce", "uri", "response", "cnonce", "nc"):
        reduced = {k: v for k, v in params.items() if k != missing}
        assert not verify_credentials(reduced, password="p", method="GET"), missing
    assert not verify_credentials({**params, "algorithm": "SHA-1"}, password="p", method="GET")
    assert not verify_credentials({**params, "qop": "auth-conf"}, password="p", method="GET")
    assert not verify_credentials({**params, "response": "\u00e9" * 32}, password="p", method="GET")


def test_parse_credentials() -> None:
    assert parse_credentials('digest Username="a\\\\b", NC=00000001') == {
        "username": "a\\b",
        "nc": "00000001",
    }
    with pytest.raises(ParseError):
        parse_credentials("Basic dXNlcjpwYXNz")
    with pytest.raises(ParseError):
        parse_credentials('Digest username="x')


_header_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)


@given(username=_header_text, uri=_header_text, realm=_header_text, password=st.text(max_size=20))
def test_header_round_trip(username: str, uri: str, realm: str, password: str) -> None:
    c = Challenge(scheme="Digest", realm=realm, nonce='n"\\', qop=("auth",), opaque="\\")
    creds = build_credentials(
        c, username=username, password=password, method="MESSAGE", uri=uri, cnonce="c\\"
    )
    params = parse_credentials(creds.to_header_value())
    assert params["username"] == username
    assert params["uri"] == uri
    assert params["realm"] == realm
    assert params["nonce"] == 'n"\\'
    assert params["opaque"] == "\\"
    assert params["cnonce"] == "c\\"
    assert verify_credentials(params, password=password, method="MESSAGE")


# --------------------------------------------------------------------------- misc


def test_challenge_is_hashable_and_frozen() -> None:
    c = parse_challenge(KAMAILIO)
    assert hash(c) == hash(parse_challenge(KAMAILIO))
    with pytest.raises(AttributeError):
        c.realm = "x"  # type: ignore[misc]


def test_module_is_sans_io() -> None:
    tree = ast.parse(Path(digest.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported
    assert not imported & {"trio", "socket", "time", "random", "secrets", "os"}


def test_auth_digest() -> None:
    any_realm = Auth.Digest("alice", "topsecret")
    assert "topsecret" not in repr(any_realm)
    assert "alice" in repr(any_realm)
    assert (any_realm.username, any_realm.password, any_realm.realm) == ("alice", "topsecret", None)
    c = parse_challenge(KAMAILIO)
    assert any_realm.matches(c)
    assert Auth.Digest("alice", "pw", realm="127.0.0.1").matches(c)
    assert not Auth.Digest("alice", "pw", realm="127.0.0.2").matches(c)
