"""Test helpers: an in-memory network and a scripted SIP peer, driven by trio's clock.

Test a SIP application without sockets and in no real time::

    import trio
    import sipx
    from sipx.testing import MemoryNetwork, ScriptedUAS

    async def test_register(autojump_clock):  # pytest-trio: MockClock(autojump_threshold=0)
        network = MemoryNetwork(seed=1, loss=0.2)
        async with ScriptedUAS(network, ("127.0.0.1", 5080), users={"alice": "secret"}):
            async with sipx.AsyncClient("127.0.0.1", 0, network=network,
                                        auth=sipx.Auth.Digest("alice", "secret")) as client:
                response = await client.register("sip:alice@127.0.0.1:5080")
        assert response.status_code == 200
        assert [c.time for c in network.requests("REGISTER")]  # what went on the wire, when

* :class:`MemoryNetwork` - datagrams between ``(host, port)`` addresses with seeded loss,
  duplication, reordering, delay and jitter, scripted drops (:meth:`~MemoryNetwork.drop_next`,
  ``filter``) and a log of every datagram and its fate. Pass it as ``network=`` to
  :class:`sipx.AsyncClient`; :meth:`MemoryNetwork.socket` gives a raw endpoint.
* :class:`DevServer` - the ``sipx serve`` development server (registrar with digest auth,
  proxy between registered users, extension 100 answering calls) to run in-process on real
  loopback sockets: ``async with DevServer("127.0.0.1", 0) as server: server.address``.
* :class:`ScriptedUAS` - a server peer answering by script (INVITE, REGISTER with digest
  challenges, OPTIONS, CANCEL, ...), recording what it received.

Time is ``trio.current_time()``: under ``trio.testing.MockClock(autojump_threshold=0)``
every delay and SIP timer (A to K) elapses instantly.
"""

from .._serve import DevServer
from ._network import (
    Address,
    Captured,
    Datagram,
    Delivery,
    Fate,
    MemoryNetwork,
    MemorySocket,
    MemoryTransport,
)
from ._uas import ALLOW, Arrival, Reply, ReplyLike, Script, ScriptedUAS, as_reply

__all__ = [
    "ALLOW",
    "Address",
    "Arrival",
    "Captured",
    "Datagram",
    "Delivery",
    "DevServer",
    "Fate",
    "MemoryNetwork",
    "MemorySocket",
    "MemoryTransport",
    "Reply",
    "ReplyLike",
    "Script",
    "ScriptedUAS",
    "as_reply",
]
