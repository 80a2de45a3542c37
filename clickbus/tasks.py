"""Supervised background tasks: none dies in silence.

Every long-lived task of a clickbus process (the log's retention and its writability probe,
the Kafka spool shipper, the notifier's loops and offset commits, the metrics flush) runs
under `supervise`. When its coroutine raises, the failure is logged at error level with its
traceback, counted (`clickbus_task_failures_total{task}`) and shown on the internal
listener's `/readyz` (`failures()`); then the coroutine is started again after a delay that
doubles while it keeps failing. A task for which restarting is wrong says so with
`on_failure=STOP`: the process is then stopped cleanly (SIGTERM to itself) with one line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from clickbus.metrics import Metrics, default_metrics

logger = logging.getLogger(__name__)

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 60.0
STABLE_S = 60.0  # a run that lasted this long had its delay reset: it was working


class OnFailure(Enum):
    RESTART = "restart"
    STOP = "stop"


RESTART = OnFailure.RESTART
STOP = OnFailure.STOP


@dataclass(slots=True)
class TaskState:
    """What `/readyz` shows of a supervised task that has failed."""

    name: str
    failures: int = 0
    last_error: str = ""
    state: str = "running"  # running, restarting, stopping the process

    def view(self) -> dict[str, object]:
        return {"task": self.name, "failures": self.failures, "last_error": self.last_error, "state": self.state}


# Per event loop, the states of its supervised tasks: tests run many loops in one process.
_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, TaskState]] = weakref.WeakKeyDictionary()


def failures() -> list[TaskState]:
    """The running loop's supervised tasks that have failed at least once (and are still supervised)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return []
    return [state for state in _states.get(loop, {}).values() if state.failures]


def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    metrics: Metrics | None = None,
    on_failure: OnFailure = RESTART,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> asyncio.Task[None]:
    """Run `run()` as a task named `name`, again after each failure; the task ends when a run returns.

    Cancelling the returned task cancels the run in progress (or the wait before the next one).
    """
    loop = asyncio.get_running_loop()
    state = TaskState(name)
    task = loop.create_task(
        _supervised(state, run, metrics, on_failure, first_delay_s, max_delay_s), name=f"clickbus-{name}"
    )
    states = _states.setdefault(loop, {})
    states[id(task)] = state
    task.add_done_callback(lambda done: states.pop(id(done), None))
    return task


async def _supervised(
    state: TaskState,
    run: Callable[[], Awaitable[None]],
    metrics: Metrics | None,
    on_failure: OnFailure,
    first_delay_s: float,
    max_delay_s: float,
) -> None:
    delay = 0.0
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except Exception as exc:  # everything but cancellation: that is how the owner stops it
            lived = time.monotonic() - started
            delay = first_delay_s if delay == 0 or lived >= STABLE_S else min(max_delay_s, delay * 2)
            stop = on_failure is STOP
            _failed(state, exc, metrics, "stopping clickbus" if stop else f"restarting in {delay:.1f} s")
            if stop:
                state.state = "stopping the process"
                os.kill(os.getpid(), signal.SIGTERM)  # the process's own stop path: drain, flush, exit
                return
        state.state = "restarting"
        await asyncio.sleep(delay)
        state.state = "running"


def _failed(state: TaskState, exc: Exception, metrics: Metrics | None, then: str) -> None:
    state.failures += 1
    state.last_error = report(state.name, exc, then, metrics)


def report(name: str, exc: Exception, then: str, metrics: Metrics | None = None) -> str:
    """Log a failure of task `name` at error level with its traceback and count it; the one-line error.

    For loops that are not asyncio tasks (the supervisor's watch) and do their own retrying.
    """
    error = f"{type(exc).__name__}: {exc}"
    logger.error("background task %s failed (%s); %s", name, error, then, exc_info=exc, extra={"task": name})
    (metrics if metrics is not None else default_metrics()).task_failure(name)
    return error
