"""Supervised background tasks: a failure is logged with its traceback, counted, shown on /readyz, and restarted."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from clickbus import tasks
from clickbus.metrics import create_metrics, render
from tests.support.configs import edge_config
from tests.support.edgeapp import admin_client, make_app
from tests.support.waiting import eventually
from tests.test_metrics import sample


async def test_a_task_that_raises_is_logged_counted_shown_and_restarted(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app, metrics = make_app(edge_config(tmp_path))
    client = await aiohttp_client(app)
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise ValueError(f"bug number {len(runs)}")
        await asyncio.Event().wait()  # the third run lives on

    task = tasks.supervise("flaky", flaky, metrics=metrics, first_delay_s=0.01)
    try:
        await eventually(lambda: len(runs) == 3)
        failed = [r for r in caplog.records if r.levelno == logging.ERROR and "background task flaky" in r.getMessage()]
        assert len(failed) == 2 and all(r.exc_info is not None for r in failed)  # each with its traceback
        assert "ValueError: bug number 1" in failed[0].getMessage() and "restarting in" in failed[0].getMessage()
        text = render(metrics)[0].decode()
        assert sample(text, "clickbus_task_failures_total", task="flaky") == 2
        async with admin_client(client.app) as admin:
            body = await (await admin.get("/readyz")).json()
        shown = {"task": "flaky", "failures": 2, "last_error": "ValueError: bug number 2", "state": "running"}
        assert body == {"status": "ok", "tasks": [shown]}
        public = await client.get("/readyz")  # strangers see none of it
        assert await public.json() == {"status": "ok"}
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert tasks.failures() == []  # a task stopped by its owner is no longer shown


async def test_a_task_that_must_not_restart_stops_the_process_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)  # the process's stop path, as `serve` installs it
    try:

        async def broken() -> None:
            raise RuntimeError("cannot go on")

        task = tasks.supervise("vital", broken, metrics=create_metrics(), on_failure=tasks.STOP)
        await asyncio.wait_for(stopped.wait(), 10)
        await task
        lines = [r.getMessage() for r in caplog.records if "vital" in r.getMessage()]
        assert lines == ["background task vital failed (RuntimeError: cannot go on); stopping clickbus"]
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def test_the_restart_delay_doubles_while_a_task_keeps_failing(caplog: pytest.LogCaptureFixture) -> None:
    async def always() -> None:
        raise OSError("no")

    task = tasks.supervise("always", always, metrics=create_metrics(), first_delay_s=0.1, max_delay_s=0.4)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "task always" in r.getMessage()]

    try:
        await eventually(lambda: len(lines()) >= 4)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [line.rsplit("restarting in ", 1)[1] for line in lines()[:4]] == ["0.1 s", "0.2 s", "0.4 s", "0.4 s"]
