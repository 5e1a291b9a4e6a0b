"""AsyncClient.enable_auto_reregister on the memory network, over hours of virtual time."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

import sipx
from sipx import Auth
from sipx.testing import Captured, MemoryNetwork, ScriptedUAS

UAS = ("127.0.0.1", 5080)
AOR = "sip:alice@127.0.0.1:5080"
CREDENTIALS = Auth.Digest("alice", "secret")


def registrar(network: MemoryNetwork, **kwargs: object) -> ScriptedUAS:
    return ScriptedUAS(network, UAS, users={"alice": "secret"}, **kwargs)  # type: ignore[arg-type]


def client_on(network: MemoryNetwork) -> sipx.AsyncClient:
    return sipx.AsyncClient("127.0.0.1", 0, network=network, auth=CREDENTIALS)


def fresh_registers(network: MemoryNetwork) -> list[Captured[sipx.Request]]:
    """REGISTERs that start a refresh (the challenged ones, without credentials)."""
    return [c for c in network.requests("REGISTER") if "Authorization" not in c.message.headers]


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize(
    ("granted", "period"),
    [(6, 3), (33, 16.5), (40, 20), (60, 30), (100, 68), (160, 128), (600, 480), (3600, 2880)],
)
async def test_refresh_period_follows_the_granted_expiry(
    autojump_clock: trio.testing.MockClock, granted: int, period: float
) -> None:
    """Half the expiry below 64 s; above, min(80 % of it, the expiry less one Timer F of
    32 s). A 33 s grant used to be refreshed every second."""
    network = MemoryNetwork()
    async with registrar(network, max_expires=granted), client_on(network) as client:
        start = trio.current_time()
        await client.register(AOR)
        await client.enable_auto_reregister(AOR)
        await trio.sleep(2 * period + 1)
    starts = [c.time - start for c in fresh_registers(network)]
    assert starts == pytest.approx([0, period, 2 * period])


async def test_short_expiry_refreshes_at_half_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """60 s granted: refreshed at 30 s, half of it."""
    network = MemoryNetwork()
    async with registrar(network, max_expires=60) as uas, client_on(network) as client:
        start = trio.current_time()
        first = await client.register(AOR, expires=3600)
        assert first.status_code == 200
        assert first.contact[0].expires == 60
        await client.enable_auto_reregister(AOR)
        assert client.auto_reregistering == [AOR]
        await trio.sleep(2 * 3600 + 1)
    starts = [c.time - start for c in fresh_registers(network)]
    assert starts[:4] == pytest.approx([0, 30, 60, 90])
    assert gaps(starts) == [30.0] * (len(starts) - 1)
    assert len(starts) == 2 * 3600 // 30 + 1
    # Every refresh was challenged and answered with fresh credentials.
    assert uas.authorized == len(starts)
    assert len(network.responses(401)) == len(starts)
    assert len(network.responses(200, method="REGISTER")) == len(starts)
    # One registration: the same Call-ID throughout, CSeq always going up (RFC 3261 10.2.4).
    registers = [c.message for c in network.requests("REGISTER")]
    assert len({r.call_id for r in registers}) == 1
    seqs = [r.cseq.seq for r in registers]
    assert seqs == sorted(set(seqs))
    # The binding never lapsed.
    assert next(iter(uas.bindings[AOR].values())) > trio.current_time()


async def test_long_expiry_refreshes_at_80_percent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with registrar(network) as uas, client_on(network) as client:
        start = trio.current_time()
        response = await client.register(AOR, expires=3600)
        assert response.contact[0].expires == 3600
        await client.enable_auto_reregister(AOR)
        await trio.sleep(3 * 3600 + 1)
        assert next(iter(uas.bindings[AOR].values())) > trio.current_time()
    starts = [c.time - start for c in fresh_registers(network)]
    assert starts == pytest.approx([0, 2880, 5760, 8640])
    assert uas.authorized == 4


async def test_enable_before_registering_registers_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with registrar(network, max_expires=60) as uas, client_on(network) as client:
        await trio.sleep(10)
        start = trio.current_time()
        await client.enable_auto_reregister(AOR)
        assert network.requests("REGISTER") == []  # started in the background
        await trio.sleep(100)
        assert uas.bindings.get(AOR)
    starts = [c.time - start for c in fresh_registers(network)]
    assert starts == pytest.approx([0, 30, 60, 90])
    [first, *_] = [c.message for c in network.requests("REGISTER")]
    assert first.expires == 3600  # the default expiry, capped to 60 by the registrar
    assert uas.authorized == 4


async def test_first_refresh_counts_from_the_last_registration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Enabled 20 s after registering (60 s granted), the refresh is due 10 s later (30 s
    after the registration), not 30 s later."""
    network = MemoryNetwork()
    async with registrar(network, max_expires=60), client_on(network) as client:
        start = trio.current_time()
        await client.register(AOR)
        await trio.sleep(20)
        await client.enable_auto_reregister(AOR)
        await trio.sleep(60)
    starts = [c.time - start for c in fresh_registers(network)]
    assert starts == pytest.approx([0, 30, 60])


async def test_interval_caps_the_refresh_period(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with registrar(network) as uas, client_on(network) as client:
        start = trio.current_time()
        response = await client.register(AOR, expires=3600)
        assert response.contact[0].expires == 3600
        await client.enable_auto_reregister(AOR, interval=300)
        await trio.sleep(3600 + 1)
    starts = [c.time - start for c in fresh_registers(network)]
    assert starts == pytest.approx([300.0 * i for i in range(13)])
    assert uas.authorized == 13


async def test_failures_back_off_and_recover(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    start = 0.0

    def register(request: sipx.Request) -> list[tuple[int, dict[str, str]]] | None:
        if 100 <= trio.current_time() - start < 200:
            return [(503, {"Retry-After": "5"})]
        return None  # the default: 200 with the bindings

    async with (
        registrar(network, max_expires=60, script={"REGISTER": register}) as uas,
        client_on(network) as client,
    ):
        start = trio.current_time()
        await client.register(AOR)
        await client.enable_auto_reregister(AOR)
        await trio.sleep(400)
        statuses = [
            (round(r.time - start, 6), r.message.status_code)
            for r in network.responses(method="REGISTER")
            if r.message.status_code != 401
        ]
        assert uas.bindings[AOR]
    times = [t for t, _ in statuses]
    codes = [code for _, code in statuses]
    # 0, 30, 60 and 90 succeed; from 120 the registrar fails until t=200.
    assert statuses[:4] == [(0, 200), (30, 200), (60, 200), (90, 200)]
    failures = [t for t, code in statuses if code == 503]
    assert failures[0] == 120
    assert gaps(failures) == [4, 8, 16, 32]  # back-off doubles, from 4 s
    recovered = times[codes.index(503) + len(failures)]
    # The next retry waits 60 s (the back-off's cap, not 64 s) and succeeds.
    assert recovered == 120 + 4 + 8 + 16 + 32 + 60
    assert codes[codes.index(503) + len(failures)] == 200
    # Back to the normal period once recovered, with the back-off reset.
    after = [t for t, code in statuses if t > recovered]
    assert after[:3] == [recovered + 30, recovered + 60, recovered + 90]


async def test_disable_stops_refreshing(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with registrar(network, max_expires=60), client_on(network) as client:
        start = trio.current_time()
        await client.register(AOR)
        await client.enable_auto_reregister(AOR)
        await trio.sleep(100)
        assert len(fresh_registers(network)) == 4  # 0, 30, 60, 90
        client.disable_auto_reregister(AOR)
        assert client.auto_reregistering == []
        await trio.sleep(1000)
        assert len(fresh_registers(network)) == 4
        # It can be turned on again: the binding lapsed long ago, so it registers at once.
        await client.enable_auto_reregister(AOR)
        await trio.sleep(50)
    starts = [c.time - start for c in fresh_registers(network)]
    assert starts == pytest.approx([0, 30, 60, 90, 1100, 1130])


async def test_enabling_twice_keeps_one_refresher(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with registrar(network, max_expires=60), client_on(network) as client:
        await client.register(AOR)
        await client.enable_auto_reregister(AOR)
        await client.enable_auto_reregister(AOR)
        assert client.auto_reregistering == [AOR]
        await trio.sleep(100)
        assert len(fresh_registers(network)) == 4  # 0, 30, 60, 90


async def test_closing_the_client_stops_refreshing(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with registrar(network, max_expires=60):
        async with client_on(network) as client:
            address = (client.local_address.host, client.local_address.port)
            await client.register(AOR)
            await client.enable_auto_reregister(AOR)
            await trio.sleep(50)
        count = len(network.requests("REGISTER"))
        await trio.sleep(3600)
        assert len(network.requests("REGISTER")) == count
        assert not network.is_bound(address)


async def test_refresh_survives_a_lossy_network(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(seed=11, loss=0.3)
    async with registrar(network, max_expires=60) as uas, client_on(network) as client:
        await client.register(AOR)
        await client.enable_auto_reregister(AOR)
        await trio.sleep(3600)
        # Some datagrams were lost, yet every refresh got through: each within two
        # transactions' worst case (2 x 64*T1) of the 30 s period.
        assert "lost" in {entry.fate for entry in network.log}
        granted_at: dict[int, float] = {}
        for c in network.responses(200, method="REGISTER"):
            granted_at.setdefault(c.message.cseq.seq, c.time)
        times = sorted(granted_at.values())
        assert len(times) > 3600 // 60
        assert max(gaps(times)) < 30 + 64
        assert next(iter(uas.bindings[AOR].values())) > trio.current_time()


async def test_refreshes_go_where_register_was_told_to_send(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """register(aor, host=, port=) to a registrar that is not the AOR's domain: the
    refreshes go to that registrar too, not to the domain's address."""
    network = MemoryNetwork()
    aor = "sip:alice@127.0.0.1:5999"  # nothing answers there
    async with registrar(network, max_expires=60), client_on(network) as client:
        response = await client.register(aor, host=UAS[0], port=UAS[1])
        assert response.status_code == 200
        await client.enable_auto_reregister(aor)
        await trio.sleep(65)
    registers = fresh_registers(network)
    assert len(registers) == 3  # at 0, 30 and 60 s
    assert {c.destination for c in registers} == {UAS}
