"""Redirect throughput: the full click path (verify, record durably, 302) vs a bare aiohttp 302, same run.

Three servers take turns under the same pinned load (`bench.load`): the bare handler,
`clickbus run --no-notifier` (the edge alone) and `clickbus run` (the default: the
notifier in the same process, consuming what the edge appends); the figure is the median
of the rounds. nginx's `return 302` is loaded too, when installed, as the floor of any
redirector.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.load import (
    LANDING,
    SERVER_CORES,
    Rate,
    Server,
    Target,
    bare_server,
    clickbus_run,
    compared,
    medians,
    on_cores,
    pinning,
    print_rows,
    process_cpu_s,
    requests_per_s,
)
from clickbus import config as configuration
from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.landing import check_landing
from clickbus.tokens import AdContext

AD = AdContext(
    member_id=13,
    auction_id_64=677373076784237441,
    user_id_64=2987961585469200312,
    creative_id=5,
    landing_url="https://shop.example/landing",
)
BARE = "bare aiohttp 302 handler"


DISTINCT_CLICKS = 20_000


def distinct_paths(server: Server) -> list[str]:
    """Click paths of `DISTINCT_CLICKS` ads (an auction each), signed with the server's key.

    One URL loaded over and over is one click and then duplicates (and, from one address on one ad, too much
    activity): the notifier judges each invalid and writes one record. Real traffic is mostly distinct valid
    clicks, each a verdict and a delivery step (here `no_bidder`: the bench configures no member).
    """
    config = configuration.load(server.config_path, env={})
    inserter = Inserter(load_keyring(config), config.edge.public_url, ttl_s=3600)
    landing = check_landing(LANDING)
    prefix = len(server.url)
    return [
        inserter.click_url(AdContext(member_id=1, auction_id_64=auction, landing_url=landing))[prefix:]
        for auction in range(1, DISTINCT_CLICKS + 1)
    ]


def targets() -> dict[str, Target]:
    return {
        "bare": Target(bare_server(), lambda server: server.url + "/ck/x"),
        "edge": Target(clickbus_run("--no-notifier"), Server.click_url),
        "notifier": Target(clickbus_run(), Server.click_url),
        "notifier-distinct": Target(clickbus_run(), Server.click_url, paths=distinct_paths),
    }


NGINX_CONF = """daemon off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{port}; location / {{ return 302 https://shop.example/landing; }} }} }}
"""


def _nginx_rate(connections: int, duration_s: float) -> Rate | None:
    """nginx's `return 302` on one worker process, when nginx is installed: the floor of any redirector."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None
    with tempfile.TemporaryDirectory() as directory, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        conf = os.path.join(directory, "nginx.conf")
        with open(conf, "w") as out:
            out.write(NGINX_CONF.format(dir=directory, port=port))
        argv = on_cores([nginx, "-c", conf, "-p", directory], SERVER_CORES)
        process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(port)
            url = f"http://127.0.0.1:{port}/ck/x"
            requests_per_s(url, connections=connections, duration_s=1)  # warm up, as for the others
            cpu, started = process_cpu_s(process.pid), time.monotonic()
            rps = requests_per_s(url, connections=connections, duration_s=duration_s)
            served = rps * (time.monotonic() - started)
            return Rate(rps, (process_cpu_s(process.pid) - cpu) / served * 1e6)
        finally:
            process.terminate()
            process.wait(10)


def _wait_for_port(port: int) -> None:
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def main(quick: bool = False) -> list[dict[str, Any]]:
    rounds, duration, connections = (1, 3.0, 64) if quick else (3, 5.0, 64)
    rates = medians(targets(), rounds=rounds, duration_s=duration, connections=connections)
    detail = f"{pinning()}, {connections} connections, {duration:.0f}s x {rounds} rounds, median"
    bare = rates["bare"]
    rows = [
        compared("redirect, `clickbus run --no-notifier` (embedded log)", rates["edge"], bare, BARE, ">= 0.6", detail),
        compared("redirect, `clickbus run` (in-process notifier)", rates["notifier"], bare, BARE, ">= 0.45", detail),
        compared(
            f"redirect, `clickbus run`, {DISTINCT_CLICKS:,} distinct clicks in turn (each valid)",
            rates["notifier-distinct"],
            bare,
            BARE,
            ">= 0.45",
            detail,
        ),
    ]
    nginx = _nginx_rate(connections, duration)
    if nginx is not None:  # how much of the gap to the floor of any redirector is aiohttp's own
        rows.append(compared("bare aiohttp 302 handler", bare, nginx, "nginx return 302, 1 worker", "report", detail))
        rows.append(compared(rows[0]["name"], rates["edge"], nginx, "nginx return 302, 1 worker", "report", detail))
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
