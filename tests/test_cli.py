"""The command line: its version, the configuration file it writes, and errors in one line, never a traceback."""

from __future__ import annotations

import asyncio
import configparser
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import orjson
import pytest

import clickbus
from clickbus.cli import main
from clickbus.config import from_mapping
from clickbus.log.embedded import EmbeddedLog
from clickbus.log.port import Topic
from tests.support.ports import free_port

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


def one_line(err: str) -> str:
    """The only line of `err`, which is not a traceback."""
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_keygen_never_overwrites_and_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "k1.key"
    existing.write_text("kept\n")
    assert main(["keygen", "--out", str(existing)]) == 1
    assert one_line(capsys.readouterr().err) == f"clickbus: {existing}: already exists (keygen never overwrites a key)"
    assert existing.read_text() == "kept\n"


def test_keygen_into_a_missing_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nonexistent" / "k"
    assert main(["keygen", "--out", str(out)]) == 1
    assert one_line(capsys.readouterr().err) == f"clickbus: {out}: cannot create it (No such file or directory)"


# (data_dir, or None for a file in the test's directory; what the error says)
BAD_DATA_DIRS = {
    "a file": (None, "is not a directory"),
    "under /proc": ("/proc/clickbus-test", "cannot use /proc/clickbus-test"),
    "/proc itself": ("/proc", "cannot use /proc"),
}


@pytest.mark.parametrize("where", sorted(BAD_DATA_DIRS))
@pytest.mark.parametrize("command", [["sign", "--member", "1", "--landing", "https://shop.example/"], ["dlq", "list"]])
def test_a_data_dir_that_cannot_be_one_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, command: list[str]
) -> None:
    path, problem = BAD_DATA_DIRS[where]
    data_dir = tmp_path / "afile" if path is None else Path(path)
    (tmp_path / "afile").write_text("")
    config = tmp_path / "clickbus.toml"
    config.write_text(f'data_dir = "{data_dir}"\n')
    assert main([*command, "--config", str(config)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("clickbus: data_dir: ") and problem in line


def _clickbus(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "clickbus", *args]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(argv, cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_on_a_data_dir_that_is_a_file_exits_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    (tmp_path / "clickbus.toml").write_text('data_dir = "afile"\n')
    process = _clickbus("run", "--config", "clickbus.toml", cwd=tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert one_line(err) == "clickbus: data_dir: afile is not a directory"


COMMANDS_THAT_READ_CONFIGURATION = [
    ["sign", "--member", "13", "--landing", "https://shop.example/"],
    ["tail"],
    ["tail", "--topic", "deliveries"],
    ["dlq", "list"],
    ["dlq", "replay"],
    ["status", "--once"],
    ["notifier"],
]


@pytest.mark.parametrize("command", COMMANDS_THAT_READ_CONFIGURATION, ids=" ".join)
def test_without_conf_and_without_config_a_command_says_so_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    expected = (
        f"clickbus: conf/clickbus.toml not found in {tmp_path}: run clickbus where conf/ is, or give --config FILE"
    )
    assert one_line(capsys.readouterr().err) == expected
    assert list(tmp_path.iterdir()) == []  # no key generated, no log made


def test_config_defaults_needs_no_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["config", "defaults"]) == 0
    assert capsys.readouterr().out.startswith("#")


@pytest.mark.parametrize("given", [False, True], ids=["built-in defaults", "--config"])
def test_run_says_which_configuration_it_uses(tmp_path: Path, given: bool) -> None:
    env = {
        "CLICKBUS_LISTEN": f"127.0.0.1:{free_port()}",
        "CLICKBUS_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "CLICKBUS_DATA_DIR": str(tmp_path / "var"),
    }
    config = tmp_path / "mine.toml"
    config.write_text("")
    process = _clickbus("run", "--no-notifier", *(["--config", str(config)] if given else []), cwd=tmp_path, env=env)
    try:
        assert process.stdout is not None and "clickbus listening on" in process.stdout.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    (said,) = [orjson.loads(line) for line in err.splitlines() if '"clickbus.cli"' in line]
    if given:
        assert (said["level"], said["msg"]) == ("info", f"configuration: {config}")
    else:
        assert said["level"] == "warning"
        assert (
            said["msg"]
            == f"configuration: built-in defaults (conf/clickbus.toml not found in {tmp_path}; give --config FILE)"
        )


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--rate-per-s", "-1"], "api_keys.publisher.rate_per_s: expected a positive number, got -1.0"),
        (["--rate-per-s", "0"], "api_keys.publisher.rate_per_s: expected a positive number, got 0.0"),
        (["--rate-per-s", "nan"], "api_keys.publisher.rate_per_s: expected a positive number, got nan"),
        (["--insert", "--member", "-3"], "insert_keys.adserver.members[0]: expected a positive number, got -3"),
    ],
)
def test_apikey_refuses_a_snippet_the_configuration_would_refuse(
    capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    assert main(["apikey", "new", *args]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""  # no key to hand out for a snippet that cannot be used
    assert one_line(printed.err) == f"clickbus: {problem}"


@pytest.mark.parametrize(
    ("args", "holder"),
    [
        (["--name", "pub-a", "--rate-per-s", "2.5"], "publisher"),
        (["--name", 'odd "name"'], "publisher"),
        (["--insert", "--member", "13", "--member", "14"], "ad server"),
    ],
)
def test_apikey_snippets_are_accepted_by_the_configuration(
    capsys: pytest.CaptureFixture[str], args: list[str], holder: str
) -> None:
    assert main(["apikey", "new", *args]) == 0
    printed = capsys.readouterr()
    snippet = printed.out.split("\n\n", 1)[1]
    config = from_mapping(tomllib.loads(snippet), env={})
    digest = printed.out.split("sha256: ", 1)[1].split("\n", 1)[0]
    keys = config.insert_keys if "--insert" in args else config.api_keys
    assert [k.sha256.hex() for k in keys] == [digest]
    assert f"Give the key to the {holder} once" in printed.err
    assert "--insert" not in args or "publisher" not in printed.err  # an insert key is the ad server's


@pytest.mark.parametrize("topic", ["deliveries", "retry"])
def test_tail_without_follow_prints_what_the_topic_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], topic: str
) -> None:
    """As the README's tour runs it: `clickbus tail --topic deliveries` after the fact (it started at the end)."""
    config = tmp_path / "clickbus.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')

    async def write() -> None:
        log = EmbeddedLog(tmp_path / "log")
        await log.start()
        for n in (1, 2):
            await log.append(Topic(topic), b"k", orjson.dumps({"n": n}))
        await log.stop(5.0)

    asyncio.run(write())
    assert main(["tail", "--topic", topic, "--config", str(config)]) == 0
    assert [orjson.loads(line)["n"] for line in capsys.readouterr().out.splitlines()] == [1, 2]
