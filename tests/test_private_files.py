"""The data directory is its owner's alone: it holds user agents, referers, user ids and `userdata_json`.

Through a real `clickbus run`: what it creates is 0700 (directories) and 0600 (files), and an
existing data directory open to other users is warned about at start. The tests run as root,
so modes are read with `os.stat`, never judged by `os.access`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import aiohttp
import pytest

from tests.support.service import Service
from tests.support.waiting import eventually

API_KEY = "cbk_private-files-publisher"
WARNING = "is readable by other users"


def modes(root: Path) -> dict[str, int]:
    """Every path under `root` (itself included), relative, with its permission bits."""
    found = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = Path(directory, name)
            found[str(path.relative_to(root))] = stat.S_IMODE(os.stat(path).st_mode)
    return found


async def click_once(service: Service) -> None:
    body = {"markup": "${CLICK_URL}", "landing_url": "https://shop.example/", "auction": {"member_id": 13}}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{service.admin_url}/v1/insert", json=body) as response:
            assert response.status == 200
            click_url = (await response.json())["click_url"]
        async with session.get(click_url, allow_redirects=False) as response:
            assert response.status == 302


async def test_clickbus_run_creates_its_data_dir_and_files_for_its_owner_only(tmp_path: Path) -> None:
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    api_keys = f'[api_keys.publisher]\nsha256 = "{digest}"\n'  # makes the rate-buckets file too
    service = Service(tmp_path, notifier=True, extra=api_keys)
    data_dir = tmp_path / "var"
    try:
        service.start()
        await click_once(service)
        await eventually(lambda: (data_dir / "log" / "offsets.sqlite3").exists(), timeout_s=20)
    finally:
        assert service.stop() == 0
    found = modes(data_dir)
    assert {"log/clicks-0", "log/offsets.sqlite3", "signing.key", "rate-buckets"} <= set(found), sorted(found)
    open_to_others = {path: oct(mode) for path, mode in found.items() if mode & 0o077}
    assert open_to_others == {}
    assert all(mode == 0o700 for path, mode in found.items() if (data_dir / path).is_dir())
    assert WARNING not in service.logs()


@pytest.mark.parametrize(("mode", "warned"), [(0o755, True), (0o700, False)])
async def test_an_existing_data_dir_open_to_others_is_warned_about(tmp_path: Path, mode: int, warned: bool) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    data_dir.chmod(mode)
    service = Service(tmp_path)
    try:
        service.start()
    finally:
        assert service.stop() == 0
    assert service.logs().count(WARNING) == (1 if warned else 0)
    assert stat.S_IMODE(data_dir.stat().st_mode) == mode  # the operator's to change, not ours
