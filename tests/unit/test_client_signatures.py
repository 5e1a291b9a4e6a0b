"""Client (blocking) and AsyncClient must offer the same public API."""

from __future__ import annotations

import inspect

import sipx

ASYNC_ONLY = {"open", "aclose", "calls", "call"}  # trio-only: lifecycle and call control
SYNC_ONLY = {"close", "async_client", "auth"}  # auth: an instance attribute of AsyncClient


def _public(cls: type) -> dict[str, object]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def test_same_public_names() -> None:
    asynchronous = set(_public(sipx.AsyncClient)) - ASYNC_ONLY
    blocking = set(_public(sipx.Client)) - SYNC_ONLY
    assert asynchronous == blocking


def test_same_signatures() -> None:
    blocking = _public(sipx.Client)
    for name, member in _public(sipx.AsyncClient).items():
        if name in ASYNC_ONLY or isinstance(member, property):
            continue
        expected = inspect.signature(member)  # type: ignore[arg-type]
        actual = inspect.signature(blocking[name])  # type: ignore[arg-type]
        assert list(actual.parameters.values()) == list(expected.parameters.values()), name
        assert actual.return_annotation == expected.return_annotation, name


def test_constructors_match() -> None:
    assert inspect.signature(sipx.Client.__init__) == inspect.signature(sipx.AsyncClient.__init__)


def test_every_async_method_is_a_coroutine_and_blocking_ones_are_not() -> None:
    for name, member in _public(sipx.AsyncClient).items():
        if callable(member) and name not in ("on_request", "disable_auto_reregister", "calls"):
            assert inspect.iscoroutinefunction(member), name
    for name, member in _public(sipx.Client).items():
        if callable(member):
            assert not inspect.iscoroutinefunction(member), name
