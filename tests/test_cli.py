"""The command line: the version it reports and the configuration file it writes."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

import clickbus
from clickbus.cli import main

ROOT = Path(__file__).parent.parent


def test_version_is_declared_once_and_shown(capsys: pytest.CaptureFixture[str]) -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["metadata"]["version"] == "attr: clickbus.__version__"
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"clickbus {clickbus.__version__}\n"


def test_config_defaults_prints_the_shipped_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "defaults"]) == 0
    assert capsys.readouterr().out == (ROOT / "conf" / "clickbus.toml").read_text(encoding="utf-8")
