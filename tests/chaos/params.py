"""How long and how hard each scenario runs: the full version (`make chaos`) or the short one (`make test`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Params:
    broker_outage_s: float = 60.0
    edge_kills: int = 10
    edge_kill_every_s: float = 3.0
    notifier_kills: int = 3
    retry_horizon_s: float = 30.0
    bidder_clicks_s: float = 20.0
    soak_s: float = 600.0
    peak_probe_s: float = 5.0
    rate_per_s: float = 150.0  # the steady click load of the outage scenarios
    settle_s: float = 120.0
    scaleout_rounds: int = 3  # each: one edge SIGKILLed and restarted, then the standalone notifier
    scaleout_phase_s: float = 10.0  # load between two kills
    damage_phase_s: float = 20.0  # load before and after a segment is damaged
    supervisor_kills: int = 5
    supervisor_kill_every_s: float = 3.0  # load between a restart and the next kill
    readonly_s: float = 30.0  # the edge restarted on a read-only data_dir, this long


FULL = Params()
SHORT = Params(
    broker_outage_s=5.0,
    edge_kills=3,
    edge_kill_every_s=1.0,
    notifier_kills=1,
    retry_horizon_s=10.0,
    bidder_clicks_s=4.0,
    soak_s=10.0,
    peak_probe_s=1.0,
    rate_per_s=100.0,
    settle_s=30.0,
    scaleout_rounds=1,
    scaleout_phase_s=4.0,
    damage_phase_s=2.0,
    supervisor_kills=1,
    supervisor_kill_every_s=1.0,
    readonly_s=3.0,
)
