"""Digest authentication on the server side of ``sipx serve``, sans-I/O."""

from __future__ import annotations

import pytest

from sipx._core.digest import build_credentials, parse_challenge
from sipx._core.headers import Headers
from sipx._serve.auth import DEFAULT_USERS, AuthStatus, DigestAuthenticator

SECRET = b"unit-test-secret"
URI = "sip:127.0.0.1:5070"


def make(algorithm: str = "MD5", **kw: object) -> DigestAuthenticator:
    return DigestAuthenticator(None, algorithm=algorithm, secret=SECRET, **kw)  # type: ignore[arg-type]


def answer(
    auth: DigestAuthenticator,
    now: float,
    *,
    user: str = "1111",
    password: str | None = None,
    method: str = "REGISTER",
    header: str = "Authorization",
    qop: tuple[str, ...] = ("auth",),
    body: bytes = b"",
    challenge_value: str | None = None,
) -> Headers:
    challenge = parse_challenge(challenge_value or auth.challenge(now), "WWW-Authenticate")
    credentials = build_credentials(
        challenge,
        username=user,
        password=DEFAULT_USERS.get(user, "x") if password is None else password,
        method=method,
        uri=URI,
        cnonce="0a4f113b",
        body=body,
        qop_preference=qop,
    )
    return Headers([(header, credentials.to_header_value())])


# -- challenges ------------------------------------------------------------------------------


def test_md5_challenge_looks_like_kamailios() -> None:
    value = make().challenge(10.0)
    challenge = parse_challenge(value)
    assert value.startswith('Digest realm="sipx", nonce="')
    assert value.endswith('qop="auth"')  # no algorithm= for MD5, no opaque, no stale
    assert len(challenge.nonce) == 32
    assert challenge.algorithm == "MD5" and challenge.qop == ("auth",)
    assert challenge.opaque is None and not challenge.stale


def test_sha256_challenge_names_the_algorithm_and_stale_is_flagged() -> None:
    challenge = parse_challenge(make("SHA-256").challenge(10.0, stale=True))
    assert challenge.algorithm == "SHA-256"
    assert challenge.stale


def test_realm_is_configurable() -> None:
    auth = DigestAuthenticator({"u": "p"}, realm="test.realm", secret=SECRET)
    assert parse_challenge(auth.challenge(0.0)).realm == "test.realm"
    assert auth.users == {"u": "p"}


@pytest.mark.parametrize("kwargs", [{"algorithm": "SHA-512"}, {"realm": 'a"b'}, {"secret": b""}])
def test_bad_configuration_is_rejected(kwargs: dict[str, object]) -> None:
    options: dict[str, object] = {"secret": SECRET, **kwargs}
    with pytest.raises(ValueError):
        DigestAuthenticator(None, **options)  # type: ignore[arg-type]


# -- nonces ----------------------------------------------------------------------------------


def test_nonce_is_validated_statelessly() -> None:
    auth = make()
    nonce = auth.make_nonce(100.0)
    assert auth.nonce_age(nonce, 100.0) == 0.0
    assert auth.nonce_age(nonce, 130.5) == pytest.approx(30.5)
    # another server (another secret) did not issue it
    other = DigestAuthenticator(None, secret=b"another secret")
    assert other.nonce_age(nonce, 100.0) is None


@pytest.mark.parametrize("nonce", ["", "garbage", "A" * 32, "é" * 4, "AAAA"])
def test_foreign_or_garbled_nonces_are_not_ours(nonce: str) -> None:
    assert make().nonce_age(nonce, 0.0) is None


def test_tampered_nonce_is_rejected() -> None:
    auth = make()
    nonce = auth.make_nonce(100.0)
    tampered = ("B" if nonce[0] != "B" else "C") + nonce[1:]
    assert auth.nonce_age(tampered, 100.0) is None


def test_nonce_from_the_future_is_rejected() -> None:
    auth = make()
    assert auth.nonce_age(auth.make_nonce(100.0), 50.0) is None


# -- verification --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_right_password_is_accepted(algorithm: str) -> None:
    auth = make(algorithm)
    headers = answer(auth, 0.0)
    result = auth.verify(headers, "REGISTER", 1.0, proxy=False, identity="1111")
    assert result.ok and result.username == "1111"


def test_proxy_authorization_for_other_methods() -> None:
    auth = make()
    headers = answer(auth, 0.0, method="MESSAGE", header="Proxy-Authorization")
    assert auth.verify(headers, "MESSAGE", 0.0, proxy=True, identity="1111").ok
    # the same credentials in the wrong header are not looked at
    assert auth.verify(headers, "MESSAGE", 0.0, proxy=False, identity="1111").status is (
        AuthStatus.CHALLENGE
    )


def test_wrong_password_is_challenged_again() -> None:
    auth = make()
    headers = answer(auth, 0.0, password="nope")
    result = auth.verify(headers, "REGISTER", 0.0, proxy=False, identity="1111")
    assert result.status is AuthStatus.CHALLENGE
    assert result.reason == "wrong password"


def test_method_is_part_of_the_digest() -> None:
    auth = make()
    headers = answer(auth, 0.0, method="REGISTER")
    assert auth.verify(headers, "INVITE", 0.0, proxy=False, identity="1111").status is (
        AuthStatus.CHALLENGE
    )


def test_unknown_auth_user_is_challenged_again() -> None:
    auth = make()
    headers = answer(auth, 0.0, user="9999", password="x")
    assert auth.verify(headers, "REGISTER", 0.0, proxy=False, identity="9999").status is (
        AuthStatus.CHALLENGE
    )


def test_stale_nonce_with_the_right_password_is_stale() -> None:
    auth = make(nonce_lifetime=2.0)
    headers = answer(auth, 0.0)
    assert auth.verify(headers, "REGISTER", 1.9, proxy=False, identity="1111").ok
    assert auth.verify(headers, "REGISTER", 3.2, proxy=False, identity="1111").status is (
        AuthStatus.STALE
    )
    wrong = answer(auth, 0.0, password="nope")
    assert auth.verify(wrong, "REGISTER", 3.2, proxy=False, identity="1111").status is (
        AuthStatus.CHALLENGE
    )


def test_auth_user_must_be_the_caller() -> None:
    auth = make()
    headers = answer(auth, 0.0, user="2222")
    result = auth.verify(headers, "REGISTER", 0.0, proxy=False, identity="1111")
    assert result.status is AuthStatus.FORBIDDEN
    assert result.username == "2222"
    assert auth.verify(headers, "REGISTER", 0.0, proxy=False, identity=None).status is (
        AuthStatus.FORBIDDEN
    )


def test_algorithm_must_be_the_challenged_one() -> None:
    sha = make("SHA-256")
    md5_answer = answer(make(), 0.0)  # same secret, so the nonce itself is fine
    assert sha.verify(md5_answer, "REGISTER", 0.0, proxy=False, identity="1111").status is (
        AuthStatus.CHALLENGE
    )


def test_nonce_we_did_not_issue_is_challenged() -> None:
    auth = make()
    forged = 'Digest realm="sipx", nonce="' + "A" * 32 + '", qop="auth"'
    headers = answer(auth, 0.0, challenge_value=forged)
    result = auth.verify(headers, "REGISTER", 0.0, proxy=False, identity="1111")
    assert result.status is AuthStatus.CHALLENGE
    assert result.reason == "nonce not issued by us"


def test_credentials_for_another_realm_are_ignored() -> None:
    auth = make()
    other = 'Digest realm="elsewhere", nonce="' + auth.make_nonce(0.0) + '", qop="auth"'
    headers = answer(auth, 0.0, challenge_value=other)
    result = auth.verify(headers, "REGISTER", 0.0, proxy=False, identity="1111")
    assert result.status is AuthStatus.CHALLENGE
    assert result.reason == "no credentials for our realm"


def test_rfc2069_answer_without_qop_and_auth_int_are_accepted() -> None:
    auth = make()
    no_qop = 'Digest realm="sipx", nonce="' + auth.make_nonce(0.0) + '"'
    headers = answer(auth, 0.0, challenge_value=no_qop)
    assert "qop" not in headers["Authorization"]
    assert auth.verify(headers, "REGISTER", 0.0, proxy=False, identity="1111").ok
    auth_int = 'Digest realm="sipx", nonce="' + auth.make_nonce(0.0) + '", qop="auth-int"'
    headers = answer(auth, 0.0, challenge_value=auth_int, qop=("auth-int",), body=b"hi")
    assert auth.verify(headers, "REGISTER", 0.0, proxy=False, identity="1111", body=b"hi").ok
    assert not auth.verify(headers, "REGISTER", 0.0, proxy=False, identity="1111", body=b"x").ok


def test_malformed_credentials_are_challenged() -> None:
    auth = make()
    headers = Headers([("Authorization", 'Digest username="1111", realm="sipx", nonce=')])
    assert auth.verify(headers, "REGISTER", 0.0, proxy=False, identity="1111").status is (
        AuthStatus.CHALLENGE
    )


def test_consume_removes_only_our_credentials() -> None:
    auth = make()
    ours = answer(auth, 0.0, header="Proxy-Authorization")["Proxy-Authorization"]
    theirs = 'Digest username="a", realm="upstream", nonce="n", uri="sip:x", response="r"'
    headers = Headers(
        [("Proxy-Authorization", ours), ("Proxy-Authorization", theirs), ("Subject", "s")]
    )
    auth.consume(headers)
    assert headers.get_list("Proxy-Authorization") == [theirs]
    assert headers["Subject"] == "s"
    auth.consume(headers, "Authorization")  # nothing there: no error
