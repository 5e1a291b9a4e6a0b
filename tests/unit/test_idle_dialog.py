"""What an idle call's dialog keeps of its From, To and remote target (issue 14).

Once a call is idle its dialog keeps the local and remote name-addrs and the remote target
as text only (``NameAddr.pack`` / ``URI.pack``): the first read parses the text again into
the same object, so every read returns the same object and an edit stays. A value whose
text would not parse back to the same fields is not packed.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable

import trio
import trio.testing
from test_idle_call import answered_call
from test_uas import PEER, address_of, client_on, raw_request, receive, receive_response

import sipx
from sipx import URI, NameAddr
from sipx._core.transaction import make_response
from sipx.testing import MemoryNetwork


def reachable(*roots: object) -> dict[int, object]:
    """Every object ``roots`` reach (types and modules left out), by id."""
    seen: dict[int, object] = {}
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type) or type(obj).__name__ == "module":
            continue
        seen[id(obj)] = obj
        todo.extend(gc.get_referents(obj))
    return seen


def deep_size(*roots: object) -> int:
    """Bytes of ``roots`` and what they reach, less what every packed name-addr shares."""
    marker = NameAddr.parse("<sip:marker@example.com>")
    getattr(marker, "pack", lambda: None)()  # (the parent has no pack: nothing shared)
    shared = reachable(marker)
    return sum(sys.getsizeof(obj) for key, obj in reachable(*roots).items() if key not in shared)


def test_a_packed_uri_reads_back_into_the_same_object() -> None:
    uri = URI.parse("sip:alice@127.0.0.1:5090;transport=udp;lr")
    before = deep_size(uri)
    assert uri.pack() and uri.packed
    assert deep_size(uri) < before - 150  # the text alone
    assert str(uri) == "sip:alice@127.0.0.1:5090;transport=udp;lr"  # no unpacking needed
    assert uri.packed
    assert uri.host == "127.0.0.1" and not uri.packed
    assert (uri.scheme, uri.user, uri.port) == ("sip", "alice", 5090)
    assert uri.params == {"transport": "udp", "lr": None} and uri.headers == {}
    assert uri == URI.parse("sip:alice@127.0.0.1:5090;transport=UDP;lr")
    params = uri.params
    assert uri.params is params  # unpacked once: later reads are the same objects


def test_packed_uris_compare_and_hash_as_parsed_ones() -> None:
    uri = URI.parse("sips:bob@Example.COM")
    assert uri.pack()
    assert hash(uri) == hash(URI.parse("sips:bob@example.com"))
    assert uri.is_secure and uri.host_plain == "Example.COM"


def test_a_uri_whose_text_parses_differently_is_not_packed() -> None:
    uri = URI("sip", "alice", "example.com", params={"Mixed": "x"})
    assert not uri.pack() and not uri.packed  # its text would lower the parameter name
    assert uri.params == {"Mixed": "x"}
    assert not URI.parse("tel:+1-212-555-0101").pack()


def test_a_packed_name_addr_reads_back_into_the_same_object() -> None:
    text = '"Alice Smith" <sip:alice@127.0.0.1:5090>;tag=t1;x=y'
    name_addr = NameAddr.parse(text)
    rendered = str(name_addr)
    before = deep_size(name_addr)
    assert name_addr.pack() and name_addr.packed
    assert deep_size(name_addr) < before - 100
    assert name_addr.tag == "t1" and not name_addr.packed
    assert name_addr.display_name == "Alice Smith" and name_addr.params == {"tag": "t1", "x": "y"}
    assert str(name_addr.uri) == "sip:alice@127.0.0.1:5090" and not name_addr.is_wildcard
    assert str(name_addr) == rendered and name_addr == NameAddr.parse(text)
    assert NameAddr.parse("<sip:a@b>;tag=1") == NameAddr.parse("<sip:a@b>;tag=1")
    assert not NameAddr.parse("*").pack()


async def test_an_idle_dialog_keeps_its_uris_as_text_read_back_as_the_same_objects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        call = await answered_call(callee, peer)
        dialog = call.dialog
        assert dialog is not None
        local, remote, target = dialog.local_uri, dialog.remote_uri, dialog.remote_target
        local_text, remote_text, target_text = str(local), str(remote), str(target)
        await trio.sleep(40)
        # What the three keep: their text (the parent kept them parsed: about 1 000 bytes).
        kept = deep_size(dialog.local_uri, dialog.remote_uri, dialog.remote_target)
        assert kept < 600, kept
        assert dialog.local_uri.packed and dialog.remote_uri.packed and dialog.remote_target.packed
        # The same objects as before, reading as before.
        assert dialog.local_uri is local and dialog.remote_uri is remote
        assert dialog.remote_target is target
        assert (str(local), str(remote), str(target)) == (local_text, remote_text, target_text)
        assert local.tag == call.local_tag and remote.tag == dialog.remote_tag
        assert str(target) == "sip:alice@127.0.0.1:5090" and target.port == 5090
        # An edit stays: the object read is the one kept.
        dialog.local_uri.params["x-mark"] = "1"
        assert dialog.local_uri.params["x-mark"] == "1"

        # Our BYE from the idle call still carries its From, To and Request-URI.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.hangup)
            while not isinstance(bye := await receive(peer), sipx.Request):
                pass
            nursery.cancel_scope.cancel()
        assert bye.method == "BYE" and str(bye.uri) == target_text
        assert bye.from_.tag == call.local_tag and bye.from_.params["x-mark"] == "1"
        assert str(bye.to) == remote_text


async def test_an_idle_dialog_stays_packed_through_refreshes_both_ways(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        call = await answered_call(callee, peer)
        dialog = call.dialog
        assert dialog is not None
        await trio.sleep(40)
        target = dialog.remote_target
        assert target.packed and dialog.local_uri.packed and dialog.remote_uri.packed
        where = address_of(callee)

        # The peer refreshes the session with UPDATE, Contact unchanged: same packed target.
        update = raw_request("UPDATE", where, branch="z9hG4bKup", cseq=2, to_tag=call.local_tag)
        peer.send(update.to_bytes(), where)
        assert (await receive_response(peer)).status_code == 200
        assert dialog.remote_target is target and target.packed

        # We send INFO: its Request-URI, From and To read from the packed values; once its
        # 200 is in, the dialog packs them again.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.info, "Signal=5\r\nDuration=100\r\n")
            while not isinstance(info := await receive(peer), sipx.Request):
                pass
            assert info.method == "INFO" and str(info.uri) == "sip:alice@127.0.0.1:5090"
            assert info.from_.tag == call.local_tag and info.to.tag == dialog.remote_tag
            assert str(info.from_) == str(dialog.local_uri)
            peer.send(make_response(info, 200).to_bytes(), where)
        assert dialog.remote_target is target
        assert target.packed and dialog.local_uri.packed and dialog.remote_uri.packed

        # A re-INVITE from a new Contact: the new target, packed too.
        moved = raw_request(
            "INVITE",
            where,
            branch="z9hG4bKre",
            cseq=3,
            to_tag=call.local_tag,
            source=("127.0.0.1", 5094),
        )
        peer.send(moved.to_bytes(), where)
        while (ok := await receive_response(peer)).status_code < 200:
            pass
        assert ok.status_code == 200
        assert str(dialog.remote_target) == "sip:alice@127.0.0.1:5094"
        assert dialog.remote_target is not target and dialog.remote_target.packed
        assert dialog.remote_target.port == 5094 and not dialog.remote_target.packed


def race(read: Callable[[], object], expected: object, pack_and_read: Callable[[], None]) -> None:
    """Run ``pack_and_read`` 20 000 times while another thread checks that ``read()`` gives
    ``expected``, thread switches forced as often as the interpreter allows."""
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                seen = read()
                assert seen == expected, seen
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(20000):
            pack_and_read()
            if errors:
                break
    finally:
        done.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert errors == []


def test_a_name_addr_packed_while_another_thread_reads_it() -> None:
    """The blocking client's user reads a call's From in its own thread while the client's
    thread packs it (an idle call): every read sees the whole name-addr, none fails."""
    name = NameAddr.parse('"Alice" <sip:alice@example.com>;tag=abc;x=1')

    def pack_and_read() -> None:
        name.pack()
        assert name.uri.user == "alice"  # unpacks: the next pack() packs again

    race(
        lambda: (name.display_name, dict(name.params), name.is_wildcard, str(name.uri)),
        ("Alice", {"tag": "abc", "x": "1"}, False, "sip:alice@example.com"),
        pack_and_read,
    )
    again = NameAddr.parse(str(name))
    assert (again.display_name, again.params, str(again.uri)) == (
        "Alice",
        {"tag": "abc", "x": "1"},
        "sip:alice@example.com",
    )


def test_a_uri_packed_while_another_thread_reads_it() -> None:
    uri = URI.parse("sip:bob@192.0.2.1:5062;transport=tcp")

    def pack_and_read() -> None:
        uri.pack()
        assert uri.scheme == "sip"  # unpacks

    race(
        lambda: (uri.user, uri.host, uri.port, dict(uri.params)),
        ("bob", "192.0.2.1", 5062, {"transport": "tcp"}),
        pack_and_read,
    )
    assert str(uri) == "sip:bob@192.0.2.1:5062;transport=tcp"
