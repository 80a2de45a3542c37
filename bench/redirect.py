"""Redirect throughput: the full click path (verify, record durably, 302) vs a bare aiohttp 302.

Both run as one uvloop process on the same machine under the same load
generator, alternating, several rounds; the figure is the median.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from typing import Any

from bench.load import free_port, generator, print_rows, python, requests_per_s, serving
from clickbus.config import from_mapping
from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.tokens import AdContext

AD = AdContext(
    member_id=13,
    auction_id_64=677373076784237441,
    user_id_64=2987961585469200312,
    creative_id=5,
    landing_url="https://shop.example/landing",
)


def _edge_rps(connections: int, duration_s: float, data_dir: str) -> float:
    port = free_port()
    config = from_mapping({"data_dir": data_dir}, env={})
    url = Inserter(load_keyring(config), f"http://127.0.0.1:{port}", ttl_s=3600).click_url(AD)
    env = {
        **os.environ,
        "CLICKBUS_LISTEN": f"127.0.0.1:{port}",
        "CLICKBUS_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "CLICKBUS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CLICKBUS_DATA_DIR": data_dir,
    }
    with serving([python(), "-m", "clickbus", "run", "--no-notifier"], f"http://127.0.0.1:{port}/readyz", env=env):
        return requests_per_s(url, connections=connections, duration_s=duration_s)


def _bare_rps(connections: int, duration_s: float) -> float:
    port = free_port()
    with serving([python(), "-m", "bench.servers", "bare", str(port)], f"http://127.0.0.1:{port}/readyz"):
        return requests_per_s(f"http://127.0.0.1:{port}/ck/x", connections=connections, duration_s=duration_s)


NGINX_CONF = """daemon off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{port}; location / {{ return 302 https://shop.example/landing; }} }} }}
"""


def _nginx_rps(connections: int, duration_s: float) -> float | None:
    """nginx's `return 302` on one worker process, when nginx is installed: the floor of any redirector."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        conf = os.path.join(directory, "nginx.conf")
        with open(conf, "w") as out:
            out.write(NGINX_CONF.format(dir=directory, port=port))
        process = subprocess.Popen([nginx, "-c", conf, "-p", directory], stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(port)
            return requests_per_s(f"http://127.0.0.1:{port}/ck/x", connections=connections, duration_s=duration_s)
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
    rounds, duration, connections = (1, 2.0, 32) if quick else (3, 5.0, 64)
    edge, bare, nginx = [], [], []
    with tempfile.TemporaryDirectory() as data_dir:
        for _ in range(rounds):
            bare.append(_bare_rps(connections, duration))
            edge.append(_edge_rps(connections, duration, data_dir))
            nginx.append(_nginx_rps(connections, duration))
    value, baseline = statistics.median(edge), statistics.median(bare)
    row = {
        "name": "redirect, full click path (embedded log, 1 worker)",
        "value": value,
        "unit": "req/s",
        "baseline": baseline,
        "baseline_name": "bare aiohttp 302 handler",
        "ratio": value / baseline,
        "target": ">= 0.75",
        "detail": f"{generator()}, {connections} connections, {duration:.0f}s x {rounds} rounds, median",
    }
    rows = [row]
    if None not in nginx:
        floor = statistics.median(n for n in nginx if n is not None)
        rows.append(
            {
                **row,
                "baseline": floor,
                "baseline_name": "nginx return 302, 1 worker",
                "ratio": value / floor,
                "target": "report",
            }
        )
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main()
