"""Turning trio's exception groups back into the one error a user should see."""

from __future__ import annotations


def single_exception(error: BaseException) -> BaseException:
    """The one exception inside nested single-member groups; a group of several stays whole."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


__all__ = ["single_exception"]
