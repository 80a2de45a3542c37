"""Waiting for a condition that other tasks or processes make true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
POLL_S = 0.02


async def eventually(check: Callable[[], T | None], timeout_s: float = 10.0) -> T:
    """Wait until `check()` is truthy and return it; TimeoutError after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        _check_deadline(deadline, timeout_s)
        await asyncio.sleep(POLL_S)
    return result


async def eventually_async(check: Callable[[], Awaitable[T | None]], timeout_s: float = 10.0) -> T:
    """Like `eventually` for an async `check`."""
    deadline = time.monotonic() + timeout_s
    while not (result := await check()):
        _check_deadline(deadline, timeout_s)
        await asyncio.sleep(POLL_S)
    return result


def _check_deadline(deadline: float, timeout_s: float) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"condition not met within {timeout_s}s")
