"""What a served service leaves on disk is its owner's alone: no other local user reads a click.

The data directory holds user agents, referers, user ids and `userdata_json` (the log), the signing
key, the offsets, the rate buckets and the report store. A local account other than the service's
must read none of it: every directory 0700, every file 0600, whatever the umask the service was
started with (`tests/test_private_files.py` checks each kind of file; this walks the whole tree of a
service that has taken clicks, beacons and server clicks).
"""

from __future__ import annotations

import os
import stat

from clickbus.log.port import Topic
from tests.hostile.harness import Tally, click_path, fetch, session
from tests.support.records import recorded
from tests.support.service import Service
from tests.support.waiting import eventually_async

OTHERS = stat.S_IRWXG | stat.S_IRWXO


async def test_nothing_in_the_data_directory_is_open_to_other_users(service: Service) -> None:
    tally = Tally("private data directory")
    async with session() as client:
        tally.count(await fetch(client, "GET", service.url + click_path(service)), "a click", expected=(302,))

    async def logged() -> bool:
        return bool(await recorded(service.config, Topic.CLICKS))

    await eventually_async(logged)
    data_dir = service.config.data_dir
    walked = [data_dir / root / name for root, dirs, files in os.walk(data_dir) for name in (*dirs, *files)]
    open_to_others = [p for p in (data_dir, *walked) if p.lstat().st_mode & OTHERS]
    tally.notes = {"paths": len(walked) + 1, "open_to_others": len(open_to_others)}
    tally.report()
    assert len(walked) > 5  # the log, its segments and index, the key, the offsets: something to check
    assert open_to_others == [], [f"{p} {stat.filemode(p.lstat().st_mode)}" for p in open_to_others]
