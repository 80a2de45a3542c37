"""The append budget: how long one append may wait for Kafka, for thousands of appends at once.

`asyncio.timeout` costs one timer and a context manager per use, which is a
noticeable share of an append's CPU. All appends share one budget, so their
deadlines arrive in the order the appends started: one queue and one timer,
always set for the oldest deadline, serve them all.

A wait has two phases. While the producer's `send()` is still queueing the
record (it suspends only to fetch metadata or for room in a full batch), an
expired deadline cancels the task, and `Wait.sent` turns that cancellation
into `BudgetExpired`, as `asyncio.timeout` would. Once the record is queued, an
expired deadline simply answers `Wait.acknowledged` with False (or calls
`Wait.watch`'s callback with False); the delivery itself goes on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_SENDING, _WAITING, _DONE = 0, 1, 2


class BudgetExpired(Exception):
    """The budget ran out before the record was even queued."""


class Wait:
    """One append's wait against the shared budget."""

    __slots__ = ("_cancelling", "_task", "deadline", "expired", "on_done", "state", "waiter")

    def __init__(self, deadline: float, task: asyncio.Task[Any]) -> None:
        self.deadline = deadline
        self._task = task
        self._cancelling = task.cancelling()
        self.state = _SENDING
        self.expired = False
        self.waiter: asyncio.Future[bool] | None = None
        self.on_done: Callable[[bool], None] | None = None

    async def sent(self, sending: Awaitable[T]) -> T:
        """Await the send; raise `BudgetExpired` if the budget ran out meanwhile."""
        try:
            result = await sending
        except asyncio.CancelledError:
            self.state = _DONE
            if self.expired and self._task.uncancel() <= self._cancelling:
                raise BudgetExpired() from None
            raise
        except BaseException:
            self.state = _DONE
            raise
        self.state = _WAITING
        return result

    async def acknowledged(self, delivery: asyncio.Future[Any]) -> bool:
        """True once `delivery` succeeded, False if the budget ran out first; its error if it failed."""
        try:
            if not delivery.done():
                if self.expired:
                    return False
                self.waiter = delivery.get_loop().create_future()
                delivery.add_done_callback(self._delivered)
                if not await self.waiter:
                    return False
            delivery.result()
            return True
        finally:
            self.state = _DONE

    def watch(self, delivery: asyncio.Future[Any], on_done: Callable[[bool], None]) -> None:
        """Call `on_done(True)` once `delivery` is done, or `on_done(False)` if the budget runs out first.

        Without a task waking up in between: the callback runs as the delivery completes.
        """
        if delivery.done() or self.expired:
            self.state = _DONE
            on_done(delivery.done())
            return
        self.on_done = on_done
        delivery.add_done_callback(self._delivered)

    def _delivered(self, _: asyncio.Future[Any]) -> None:
        if self.on_done is not None:
            self._finish(True)
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(True)

    def _finish(self, in_time: bool) -> None:
        on_done, self.on_done = self.on_done, None
        if on_done is not None and self.state != _DONE:
            self.state = _DONE
            on_done(in_time)

    def expire(self) -> None:
        self.expired = True
        if self.state == _SENDING:
            self._task.cancel()
        elif self.state == _WAITING and self.on_done is not None:
            self._finish(False)
        elif self.state == _WAITING and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(False)


class Budget:
    """Deadlines `seconds` after each start, expired in order by a single timer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._waits: deque[Wait] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> Wait:
        """A wait for the current task, expiring `seconds` from now."""
        task = asyncio.current_task()
        assert task is not None, "a budget is used from a task"
        loop = task.get_loop()
        wait = Wait(loop.time() + self.seconds, task)
        self._waits.append(wait)
        if self._timer is None:
            self._timer = loop.call_at(wait.deadline, self._expire, loop)
        return wait

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        waits = self._waits
        while waits and waits[0].deadline <= now:
            wait = waits.popleft()
            if wait.state != _DONE:
                wait.expire()
        self._timer = loop.call_at(waits[0].deadline, self._expire, loop) if waits else None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
