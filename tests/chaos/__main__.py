"""`python -m tests.chaos [--short] [--soak-seconds S] [scenario ...]`: run the scenarios, print one table.

Exits 1 when any scenario loses a click (or fails its own check).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.accounting import Figures, details, table
from tests.chaos.params import FULL, SHORT, Params
from tests.chaos.scenarios import NEEDS_MOUNTS, SCENARIOS
from tests.support.mounts import mount_skip_reason


async def run_all(names: list[str], params: Params, root: Path) -> list[Figures]:
    results = []
    for name in names:
        if name in NEEDS_MOUNTS and (why := mount_skip_reason()) is not None:
            print(f"== {name} skipped: {why}", flush=True)
            continue
        started = time.monotonic()
        print(f"== {name} ...", flush=True)
        figures = await SCENARIOS[name](root / name, params)
        print(details(figures), f"\n  took {time.monotonic() - started:.0f} s", flush=True)
        results.append(figures)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], metavar="scenario", help=", ".join(SCENARIOS))
    parser.add_argument("--short", action="store_true", help="the short versions (as in make test)")
    parser.add_argument("--soak-seconds", type=float, help="soak duration (default 600, 10 with --short)")
    parser.add_argument("--outage-seconds", type=float, help="broker outage (default 60, 5 with --short)")
    args = parser.parse_args(argv)
    params = SHORT if args.short else FULL
    if args.soak_seconds:
        params = dataclasses.replace(params, soak_s=args.soak_seconds)
    if args.outage_seconds:
        params = dataclasses.replace(params, broker_outage_s=args.outage_seconds)
    names = args.scenarios or list(SCENARIOS)
    with tempfile.TemporaryDirectory(prefix="clickbus-chaos-") as root:
        for name in names:
            (Path(root) / name).mkdir()
        results = asyncio.run(run_all(names, params, Path(root)))
    print("\n" + table(results))
    return 0 if all(figures.passed for figures in results) else 1


if __name__ == "__main__":
    sys.exit(main())
