"""The README says what the code does: its command table, the click reasons, the tour's variables, the bidder's view."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from clickbus.cli import build_parser
from clickbus.log.port import Topic
from clickbus.notifier.delivery import USER_AGENT
from clickbus.records import Reason

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_the_command_table_lists_every_command_and_every_choice() -> None:
    rows = [line for line in _section("Command line").splitlines() if line.startswith("| `clickbus ")]
    documented = " ".join(rows)
    for name, parser in _subcommands().items():
        assert f"`clickbus {name}" in documented or f", `clickbus {name}" in documented, name
        for action in parser._actions:
            if action.choices and not action.option_strings:  # positional words: dlq list|replay, config defaults
                for choice in action.choices:
                    assert re.search(rf"clickbus {name}[^|]*\b{choice}\b", documented), (name, choice)
    tail = next(row for row in rows if row.startswith("| `clickbus tail"))
    assert all(topic.value in tail for topic in Topic)  # retry included


def test_the_click_reasons_are_the_ones_the_code_records() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `valid`, `reason` |"))
    listed = set(re.findall(r"`(\w+)`", row.split("invalid:", 1)[1]))
    produced = {value for name, value in vars(Reason).items() if name.isupper()}
    assert listed == produced
    assert "`head`" not in README  # a HEAD is never recorded: not a click, so not an invalid one either


def test_the_tour_changes_ports_with_the_public_url_and_names_make_run_config() -> None:
    shell = "\n".join(re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)).replace("\\\n", " ")
    for line in shell.splitlines():
        if "CLICKBUS_LISTEN=" in line:
            assert "CLICKBUS_ADMIN_LISTEN=" in line and "CLICKBUS_PUBLIC_URL=" in line, line
    assert "CLICKBUS_LISTEN=" in shell
    assert "make run CONFIG=" in shell


def test_bidders_are_told_the_user_agent_they_see() -> None:
    assert f"user-agent: {USER_AGENT}" in README
