"""Client (blocking) and AsyncClient must offer the same public API, and BlockingCall the
API of Call; the few differences are listed here, explicitly."""

from __future__ import annotations

import inspect
import pydoc

import pytest

import sipx

ASYNC_ONLY = {"aclose"}  # trio-only: lifecycle
SYNC_ONLY = {"close", "async_client"}

_TIMEOUT = inspect.Parameter(
    "timeout", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation="float | None"
)
# name -> (parameters the blocking form adds at the end, (async return, blocking return)).
# Annotations are compared as written (the modules use ``from __future__ import annotations``).
CLIENT_DIFFERENCES: dict[str, tuple[list[inspect.Parameter], tuple[str, str] | None]] = {
    "call": ([], ("Call", "BlockingCall")),
    "calls": ([_TIMEOUT], ("AsyncIterator[Call]", "Iterator[BlockingCall]")),
    "subscribe": ([], ("Subscription", "BlockingSubscription")),
    "publish": ([], ("Publication", "BlockingPublication")),
    "watch": ([], ("Watch", "BlockingWatch")),
}
CALL_DIFFERENCES: dict[str, tuple[list[inspect.Parameter], tuple[str, str] | None]] = {
    "wait_ended": ([_TIMEOUT], None),
    "wait_acked": ([_TIMEOUT], ("None", "bool")),
    "wait_answered": ([_TIMEOUT], ("Response", "Response | None")),
    "audio_frames": ([_TIMEOUT], ("AsyncIterator[bytes]", "Iterator[bytes]")),
    "dtmf": ([_TIMEOUT], ("AsyncIterator[str]", "Iterator[str]")),
    "info_requests": (
        [_TIMEOUT],
        ("AsyncIterator[IncomingRequest]", "Iterator[IncomingRequest]"),
    ),
    "recording": ([], ("AbstractAsyncContextManager[None]", "Iterator[None]")),
}
# Blocking forms that take other kinds of argument (no async iterables on a thread; a
# BlockingCall as the target of a transfer).
CALL_PARAMETER_DIFFERENCES = {"send_audio", "transfer"}


def _public(cls: type) -> dict[str, object]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def _methods(cls: type) -> dict[str, object]:
    return {name: member for name, member in _public(cls).items() if callable(member)}


def _assert_same_signatures(
    original: type,
    blocking: type,
    skip: set[str],
    differences: dict[str, tuple[list[inspect.Parameter], tuple[str, str] | None]],
) -> None:
    blocking_members = _public(blocking)
    for name, member in _methods(original).items():
        if name in skip:
            continue
        expected = inspect.signature(member)  # type: ignore[arg-type]
        actual = inspect.signature(blocking_members[name])  # type: ignore[arg-type]
        extra, returns = differences.get(name, ([], None))
        expected_parameters = [*expected.parameters.values(), *extra]
        assert list(actual.parameters.values()) == expected_parameters, name
        if returns is None:
            assert actual.return_annotation == expected.return_annotation, name
        else:
            assert (expected.return_annotation, actual.return_annotation) == returns, name


def test_same_public_names() -> None:
    asynchronous = set(_public(sipx.AsyncClient)) - ASYNC_ONLY
    blocking = set(_public(sipx.Client)) - SYNC_ONLY
    assert asynchronous == blocking


def test_same_signatures() -> None:
    _assert_same_signatures(sipx.AsyncClient, sipx.Client, ASYNC_ONLY, CLIENT_DIFFERENCES)


def test_the_listed_differences_exist() -> None:
    for name in CLIENT_DIFFERENCES:
        assert name in _methods(sipx.AsyncClient) and name in _methods(sipx.Client), name
    for name in CALL_DIFFERENCES:
        assert name in _methods(sipx.Call) and name in _methods(sipx.BlockingCall), name


def test_constructors_match() -> None:
    assert inspect.signature(sipx.Client.__init__) == inspect.signature(sipx.AsyncClient.__init__)


def test_every_async_method_is_a_coroutine_and_blocking_ones_are_not() -> None:
    for name, member in _public(sipx.AsyncClient).items():
        plain = ("on_request", "on_subscribe", "disable_auto_reregister", "calls", "watch")
        if callable(member) and name not in plain:
            assert inspect.iscoroutinefunction(member), name
    for name, member in _public(sipx.Client).items():
        if callable(member):
            assert not inspect.iscoroutinefunction(member), name


def test_blocking_call_has_the_methods_and_properties_of_call() -> None:
    assert set(_methods(sipx.Call)) == set(_methods(sipx.BlockingCall))
    _assert_same_signatures(
        sipx.Call, sipx.BlockingCall, CALL_PARAMETER_DIFFERENCES, CALL_DIFFERENCES
    )
    send_audio = inspect.signature(sipx.BlockingCall.send_audio).parameters["frames"]
    assert send_audio.annotation == "Iterable[bytes]"
    for name, member in _public(sipx.Call).items():
        if isinstance(member, property):
            assert isinstance(getattr(sipx.BlockingCall, name), property), name
    for name, member in _methods(sipx.BlockingCall).items():
        assert not inspect.iscoroutinefunction(member), name
    assert sipx.BlockingCall.hangup is sipx.BlockingCall.bye


@pytest.mark.parametrize("cls", [sipx.Client, sipx.AsyncClient, sipx.BlockingCall, sipx.Call])
def test_help_documents_every_public_method(cls: type) -> None:
    """``help(sipx.Client)`` is as good as ``help(sipx.AsyncClient)``: every public method
    has a docstring, and no source comment (``# -- section``) stands in for one."""
    for name, member in vars(cls).items():
        if not name.startswith("_") and callable(member):
            assert member.__doc__, f"{cls.__name__}.{name} has no docstring"
    assert "# --" not in pydoc.render_doc(cls)


def test_blocking_publication_mirrors_publication() -> None:
    methods = {"modify", "refresh", "remove"}
    assert methods <= set(_methods(sipx.Publication))
    assert set(_methods(sipx.Publication)) == set(_methods(sipx.BlockingPublication))
    _assert_same_signatures(sipx.Publication, sipx.BlockingPublication, set(), {})
    for name in ("active", "expires", "etag", "response", "content", "removed", "uri", "event"):
        assert isinstance(getattr(sipx.BlockingPublication, name), property), name


@pytest.mark.parametrize(
    ("original", "blocking"),
    [
        (sipx.Subscription, sipx.BlockingSubscription),
        (sipx.ServerSubscription, sipx.BlockingServerSubscription),
        (sipx.IncomingSubscription, sipx.BlockingIncomingSubscription),
        (sipx.Publication, sipx.BlockingPublication),
        (sipx.Watch, sipx.BlockingWatch),
    ],
)
def test_blocking_twins_offer_every_public_name(original: type, blocking: type) -> None:
    """What ``help()`` shows on a subscription or publication is there on its blocking
    twin too (attributes and properties; methods without ``await``)."""
    names = {n for n in dir(original) if not n.startswith("_")}
    assert names - {n for n in dir(blocking) if not n.startswith("_")} == set()
