"""One module per scenario, each exposing `async def run(directory, params) -> Figures`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.chaos.accounting import Figures
from tests.chaos.params import Params
from tests.chaos.scenarios import (
    bidders,
    broker,
    damage,
    edge_kill,
    notifier_kill,
    readonly,
    scaleout,
    soak,
    spooled_outcomes,
    supervisor_kill,
)

Scenario = Callable[[Path, Params], Awaitable[Figures]]

SCENARIOS: dict[str, Scenario] = {
    "broker": broker.run,
    "edge-kill": edge_kill.run,
    "notifier-kill": notifier_kill.run,
    "supervisor-kill": supervisor_kill.run,
    "bidders": bidders.run,
    "scaleout": scaleout.run,
    "soak": soak.run,
    "torn-tail": damage.torn_tail,
    "flipped-byte-active": damage.flipped_byte_active,
    "flipped-byte-closed": damage.flipped_byte_closed,
    "spooled-outcomes": spooled_outcomes.run,
    "readonly": readonly.run,
}
NEEDS_MOUNTS = frozenset({"readonly"})  # skipped, saying why, where this machine cannot mount (not root)
