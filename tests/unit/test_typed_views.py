"""Typed views of Content-Length, Allow, Supported and the digest headers."""

from __future__ import annotations

import pytest

import sipx

RESPONSE = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
    b"From: <sip:1111@127.0.0.1>;tag=a\r\nTo: <sip:1111@127.0.0.1>;tag=b\r\n"
    b"Call-ID: c\r\nCSeq: 1 REGISTER\r\n"
    b"Allow: invite, ACK,BYE\r\nAllow: OPTIONS\r\nk: replaces, 100rel\r\n"
    b'WWW-Authenticate: Digest realm="a", nonce="n1", algorithm=SHA-256, qop="auth"\r\n'
    b'WWW-Authenticate: Digest realm="a", nonce="n2"\r\n'
    b"Content-Length: 0\r\n\r\n"
)


def test_lists_and_challenges() -> None:
    response = sipx.parse_message(RESPONSE)
    assert response.allow == ["INVITE", "ACK", "BYE", "OPTIONS"]
    assert response.supported == ["replaces", "100rel"]
    assert response.content_length == 0
    first, second = response.www_authenticate
    assert (first.algorithm, first.nonce, first.qop) == ("SHA-256", "n1", ("auth",))
    assert (second.algorithm, second.qop) == ("MD5", ())
    assert response.proxy_authenticate == []


def test_credentials_and_errors() -> None:
    request = sipx.Request("REGISTER", "sip:127.0.0.1")
    request.headers["Authorization"] = (
        'Digest username="1111", realm="a", nonce="n1", uri="sip:127.0.0.1", response="ab"'
    )
    assert request.authorization[0]["username"] == "1111"
    assert request.proxy_authorization == []
    request.headers["WWW-Authenticate"] = "Basic realm=x"
    with pytest.raises(sipx.ParseError):
        _ = request.www_authenticate
    request.headers["Content-Length"] = "many"
    with pytest.raises(sipx.ParseError):
        _ = request.content_length
