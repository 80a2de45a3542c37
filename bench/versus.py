"""Old code against new in the same minutes: `python -m bench.versus REV NAME[:PART] ... [--rounds N] [--quick]`.

On a shared machine a figure measured an hour ago says little about the code: the baseline of one
row moved by a fifth between two `make bench` runs of the same commit. This runs the named benchmark
modules for git revision REV (checked out in a temporary worktree) and for the working tree, taking
turns, each in a process of its own with the same virtualenv, and prints each row's figures side by
side with the median over the rounds. Where a row has a ratio against its own same-run baseline, that
ratio is what is compared; otherwise the figure. Rows are matched by name with its numbers left out
(a name may carry a measured rate, "999 clicks/s") and by their order among rows of that shape.
`NAME:PART` runs one part of a module that has parts (`main(only=PART)`, as `bench.reports`).

Examples: `python -m bench.versus 741b4e7 metrics_cost delivery --rounds 3`,
`python -m bench.versus 741b4e7 reports:freshness`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_NUMBER = re.compile(r"\d[\d,.]*")
_RUN = """
import importlib, json, sys
name, _, part = sys.argv[1].partition(":")
parts = {"only": part} if part else {}
rows = importlib.import_module("bench." + name).main(quick=sys.argv[2] == "quick", **parts)
with open(sys.argv[3], "w") as out:
    json.dump(rows, out, default=str)
"""


def run_rows(tree: Path, name: str, *, quick: bool, scratch: Path) -> list[dict[str, Any]]:
    """The rows of `bench.<name>` as the code in `tree` measures them (its own process, its own imports)."""
    out = scratch / f"{name.replace(':', '-')}-{os.getpid()}.json"
    env = {**os.environ, "PYTHONPATH": str(tree)}  # ahead of the virtualenv's editable install of this tree
    subprocess.run(
        [sys.executable, "-c", _RUN, name, "quick" if quick else "full", str(out)],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return list(json.loads(out.read_text()))


def figure(row: dict[str, Any]) -> float | None:
    value = row.get("ratio") if row.get("ratio") is not None else row.get("value")
    return float(value) if isinstance(value, int | float) else None


def label(row: dict[str, Any]) -> str:
    """A row's name, and its baseline's where it has one by name (one figure may be set against two)."""
    against = row.get("baseline_name")
    return f"{row['name']}, against {against}" if against else str(row["name"])


def keyed(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows by their label with its numbers left out, and their place among the rows of that shape.

    Without the numbers, a name that carries a measured figure ("999 clicks/s") matches across runs; the
    place tells apart rows that differ only in numbers ("'<a ' x 8000 (24 KB)", "x 21800 (64 KB)").
    """
    out: dict[tuple[str, int], dict[str, Any]] = {}
    seen: collections.Counter[str] = collections.Counter()
    for row in rows:
        shape = _NUMBER.sub("#", label(row))
        out[(shape, seen[shape])] = row
        seen[shape] += 1
    return out


def compare(old: list[list[dict[str, Any]]], new: list[list[dict[str, Any]]]) -> list[str]:
    """One line per row found in both: the compared figure of each round, the medians, new over old."""
    olds_by, news_by = [keyed(rows) for rows in old], [keyed(rows) for rows in new]
    lines = []
    for key, first in news_by[0].items():
        olds = [f for rows in olds_by if key in rows and (f := figure(rows[key])) is not None]
        news = [f for rows in news_by if key in rows and (f := figure(rows[key])) is not None]
        if not olds or not news:
            continue
        what = "ratio" if first.get("ratio") is not None else first["unit"]
        o, n = statistics.median(olds), statistics.median(news)
        change = f"{n / o:.2f}x" if o else "-"
        lines.append(
            f"{label(first)} [{what}, {first.get('target', '-')}]: "
            f"old {' '.join(f'{v:.3g}' for v in olds)} (median {o:.3g}); "
            f"new {' '.join(f'{v:.3g}' for v in news)} (median {n:.3g}); new/old {change}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__)
    parser.add_argument("rev", help="the old code: any git revision")
    parser.add_argument(
        "names", nargs="+", metavar="NAME", help="benchmark modules under bench/ (NAME:PART for one part)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns of old then new (default 3)")
    parser.add_argument("--quick", action="store_true", help="each module's quick form")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="clickbus-versus-") as tmp:
        scratch = Path(tmp)
        old_tree = scratch / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old_tree), args.rev], cwd=ROOT, check=True)
        try:
            for name in args.names:
                old: list[list[dict[str, Any]]] = []
                new: list[list[dict[str, Any]]] = []
                for turn in range(args.rounds):
                    # alternate which goes first, so that a drift in the machine's load favours neither
                    order = [(old, old_tree), (new, ROOT)] if turn % 2 == 0 else [(new, ROOT), (old, old_tree)]
                    for into, tree in order:
                        into.append(run_rows(tree, name, quick=args.quick, scratch=scratch))
                print(f"== {name}: {args.rev} (old) against the working tree (new), {args.rounds} rounds")
                for line in compare(old, new):
                    print(f"- {line}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
