"""The shared append budget: acknowledged in time, too late, stuck while queueing, and cancelled."""

from __future__ import annotations

import asyncio

import pytest

from clickbus.log.budget import Budget, BudgetExpired

BUDGET_S = 0.05


async def resolve_later(delay: float, outcome: object = "ok") -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    if isinstance(outcome, BaseException):
        asyncio.get_running_loop().call_later(delay, future.set_exception, outcome)
    else:
        asyncio.get_running_loop().call_later(delay, future.set_result, outcome)
    return future


@pytest.mark.parametrize(("ack_after_s", "expected"), [(0.0, True), (0.01, True), (0.15, False)])
async def test_acknowledged_says_whether_the_delivery_beat_the_budget(ack_after_s: float, expected: bool) -> None:
    budget = Budget(BUDGET_S)
    wait = budget.start()
    delivery = await wait.sent(resolve_later(ack_after_s))
    assert await wait.acknowledged(delivery) is expected
    await asyncio.sleep(0.2)
    assert delivery.done() and delivery.result() == "ok", "a late delivery still completes"


async def test_a_failed_delivery_raises_its_error() -> None:
    wait = Budget(BUDGET_S).start()
    delivery = await wait.sent(resolve_later(0.01, ValueError("refused")))
    with pytest.raises(ValueError, match="refused"):
        await wait.acknowledged(delivery)


async def test_a_send_stuck_past_the_budget_raises_budget_expired_and_leaves_the_task_usable() -> None:
    wait = Budget(BUDGET_S).start()
    with pytest.raises(BudgetExpired):
        await wait.sent(asyncio.sleep(10))
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    await asyncio.sleep(0.01)  # not cancelled again


async def test_a_finished_wait_never_cancels_its_task_later() -> None:
    budget = Budget(BUDGET_S)
    wait = budget.start()
    assert await wait.acknowledged(await wait.sent(resolve_later(0.0)))
    await asyncio.sleep(BUDGET_S * 3)  # would raise CancelledError if the expired deadline touched the task


async def test_an_outside_cancel_is_not_mistaken_for_the_budget() -> None:
    async def append() -> None:
        await Budget(10.0).start().sent(asyncio.sleep(10))

    task = asyncio.create_task(append())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_many_waits_expire_in_order_with_one_budget() -> None:
    budget = Budget(BUDGET_S)

    async def one(i: int) -> bool:
        await asyncio.sleep(i * 0.001)
        wait = budget.start()
        return await wait.acknowledged(await wait.sent(resolve_later(0.02 if i % 2 else 0.2)))

    results = await asyncio.gather(*(one(i) for i in range(40)))
    assert results == [bool(i % 2) for i in range(40)]


@pytest.mark.parametrize(("ack_after_s", "expected"), [(0.0, [True]), (0.01, [True]), (0.15, [False])])
async def test_watch_calls_back_once_in_time_or_past_the_budget(ack_after_s: float, expected: list[bool]) -> None:
    wait = Budget(BUDGET_S).start()
    delivery = await wait.sent(resolve_later(ack_after_s))
    called: list[bool] = []
    wait.watch(delivery, called.append)
    await asyncio.sleep(0.2)
    assert called == expected, "one call, whichever comes first"
    assert delivery.done(), "a late delivery still completes"


async def test_watch_of_a_delivery_already_done_calls_back_at_once() -> None:
    wait = Budget(BUDGET_S).start()
    delivery = await wait.sent(resolve_later(0.0))
    await asyncio.sleep(0.01)
    called: list[bool] = []
    wait.watch(delivery, called.append)
    assert called == [True]
    await asyncio.sleep(BUDGET_S * 2)
    assert called == [True], "the budget's timer does not call again"
