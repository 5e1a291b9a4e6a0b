"""TLS transport (RFC 3261 section 26.2; port 5061): the TCP transport's connections in TLS.

Outgoing connections check the server's certificate as ``verify`` says (httpx's convention:
True = the system's CAs, a path = a CA bundle, an ``ssl.SSLContext`` as it is, False = no
check) against the host name of the URI being reached, which is also sent as SNI. Incoming
connections are served only when the client has a certificate of its own (``cert``);
without one, a peer reaches the client over the connections the client opened.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable

import trio

from .._errors import TransportError
from .._limits import DEFAULT_LIMITS, Limits
from .tcp import TCPTransport
from .transport import Address, MessageHandler

TLSVerify = ssl.SSLContext | str | os.PathLike[str] | bool
"""What ``verify=`` accepts (see the module docstring)."""

TLSCert = str | os.PathLike[str] | tuple[str | os.PathLike[str], str | os.PathLike[str]]
"""``cert=``: one PEM file holding certificate chain and key, or (certificate, key) files."""


def _load_cert(context: ssl.SSLContext, cert: TLSCert) -> None:
    certfile, keyfile = cert if isinstance(cert, tuple) else (cert, None)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS certificate {cert!r}: {exc}") from exc


def client_context(verify: TLSVerify = True, cert: TLSCert | None = None) -> ssl.SSLContext:
    """The context for connections the client opens; ValueError for unusable files."""
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True or verify is False:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    else:
        try:
            context = ssl.create_default_context(cafile=os.fspath(verify))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA bundle {verify!r}: {exc}") from exc
    if cert is not None:
        _load_cert(context, cert)
    return context


def server_context(cert: TLSCert) -> ssl.SSLContext:
    """The context for connections peers open to the client (no client certificate asked)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_cert(context, cert)
    return context


def _reason(exc: BaseException) -> str:
    """Why a handshake failed: trio wraps the ssl error in BrokenResourceError."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message or cause}"
    if isinstance(cause, ssl.SSLError):
        return cause.reason or str(cause)
    if isinstance(exc, trio.TooSlowError):
        return "no answer"
    return str(cause or exc) or type(exc).__name__


async def secure_client_stream(
    tcp: trio.abc.Stream,
    context: ssl.SSLContext,
    address: Address,
    server_name: str,
    timeout: float,
) -> trio.SSLStream:
    """The TLS handshake over a connection we opened to ``address``, checking the server's
    certificate for ``server_name``; TransportError saying why it failed (``tcp`` closed)."""
    stream = trio.SSLStream(tcp, context, server_hostname=server_name)
    try:
        with trio.fail_after(timeout):
            await stream.do_handshake()
    except (trio.BrokenResourceError, trio.TooSlowError) as exc:
        await trio.aclose_forcefully(tcp)
        host, port = address
        raise TransportError(
            f"TLS handshake with {host}:{port} (as {server_name}) failed: {_reason(exc)}"
        ) from exc
    return stream


async def secure_server_stream(
    stream: trio.abc.Stream,
    context: ssl.SSLContext | None,
    remote: Address,
    timeout: float,
) -> trio.SSLStream:
    """The TLS handshake over a connection a peer opened from ``remote``; TransportError
    without a certificate to serve with (``context`` None) or when it fails."""
    host, port = remote
    if context is None:
        raise TransportError(
            f"TLS connection from {host}:{port} closed: this client has no certificate"
            " to serve TLS with (cert=)"
        )
    secured = trio.SSLStream(stream, context, server_side=True)
    try:
        with trio.fail_after(timeout):
            await secured.do_handshake()
    except (trio.BrokenResourceError, trio.TooSlowError) as exc:
        raise TransportError(f"TLS handshake from {host}:{port} failed: {_reason(exc)}") from exc
    return secured


class TLSTransport(TCPTransport):
    name = "TLS"
    reliable = True

    def __init__(
        self,
        on_message: MessageHandler,
        *,
        client_context: ssl.SSLContext,
        server_context: ssl.SSLContext | None = None,
        server_name: Callable[[Address], str | None] | None = None,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        keepalive_interval: float = 100.0,
        on_error: Callable[[Address, Exception], None] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(
            on_message,
            idle_timeout=idle_timeout,
            keepalive_interval=keepalive_interval,
            on_error=on_error,
            limits=limits,
        )
        self._client_context = client_context
        self._server_context = server_context
        self._server_name = server_name
        self._handshake_timeout = handshake_timeout

    async def _open_stream(self, host: str, port: int) -> trio.abc.Stream:
        tcp = await super()._open_stream(host, port)
        name = (self._server_name((host, port)) if self._server_name else None) or host
        return await secure_client_stream(
            tcp, self._client_context, (host, port), name, self._handshake_timeout
        )

    async def _accept_stream(self, stream: trio.SocketStream, remote: Address) -> trio.abc.Stream:
        return await secure_server_stream(
            stream, self._server_context, remote, self._handshake_timeout
        )
