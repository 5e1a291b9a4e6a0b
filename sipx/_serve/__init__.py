"""``sipx serve``: a small development SIP server built from sipx's own pieces.

What it is
    A **registrar** with digest authentication, a **record-routing stateless proxy** and a
    built-in **answering user agent at extension 100**, on one UDP and one TCP transport
    sharing a host and port. It behaves much like the Kamailio configuration the
    integration tests use (``tests/integration/peers/kamailio.cfg``), so examples written
    against that Kamailio (and the quick-start guide's users 1111, 2222 and 3333 with
    passwords 1111xxx, ...) run against ``sipx serve`` unchanged. It is meant for
    development and demos on a trusted network, not for production.

How it is built (the same three layers as the client)
    * :mod:`.registrar` (sans-I/O): bindings per user, with expiry; answers REGISTER.
    * :mod:`.auth` (sans-I/O): stateless HMAC nonces, 401/407 challenges, verification
      through :func:`sipx._core.digest.verify_credentials`.
    * :mod:`.proxy` (sans-I/O): every routing decision and message rewrite (Via with a
      derived branch, Record-Route, Max-Forwards, loose routing, response Via popping),
      returning :class:`~.common.Outgoing` messages; its docstring lists the rules.
    * :mod:`.echo` (sans-I/O): extension 100 on the core's
      :class:`~sipx._core.transaction.TransactionLayer`: 100/180/200 with an SDP answer,
      2xx retransmission until the ACK, re-INVITE, late offer, BYE, CANCEL.
    * :mod:`.server` (trio): :class:`DevServer` binds the transports (``nursery.start``,
      port 0 picks a port free for UDP and TCP), runs the timer task, parses every message,
      logs and drops what is malformed, and sends what the proxy returns.
    * :mod:`.cli`: ``main(argv)`` for ``sipx serve --host --port --transport --user ...``.

Why stateless
    A stateless proxy (RFC 3261 16.11) keeps no per-call memory: retransmissions are
    forwarded as they come and the endpoints' transactions do the retrying. Deriving the
    branch from the incoming branch keeps CANCEL and the non-2xx ACK on the INVITE's
    branch downstream. The price: the proxy does not send 100 Trying for forwarded
    INVITEs, does not fork, and a registered but dead UA gives a timeout at the caller
    rather than a 408 from the server.

Public API: :class:`DevServer` (and, for tests, the sans-I/O classes in the submodules).
"""

from .server import DevServer, TraceCallback

__all__ = ["DevServer", "TraceCallback"]
