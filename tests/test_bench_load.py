"""The benchmarks' pinning: servers and the load each on their own core, every thread of them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.load import can_pin, on_cores, pin_process, pinned

pytestmark = pytest.mark.skipif(not can_pin(), reason="needs taskset and cores 0 and 1")

# Prints the affinity of a thread it starts: threads inherit their process's pinning.
THREAD_AFFINITY = (
    "import os, threading; seen = []; "
    "t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0)))); t.start(); t.join(); "
    "print(seen[0])"
)


@pytest.mark.parametrize(("cores", "expected"), [("0", "[0]"), ("1", "[1]"), ("0,1", "[0, 1]")])
def test_a_server_started_on_cores_runs_all_its_threads_there(cores: str, expected: str) -> None:
    out = subprocess.run(on_cores([sys.executable, "-c", THREAD_AFFINITY], cores), capture_output=True, text=True)
    assert out.stdout.strip() == expected


def test_a_running_process_is_moved_thread_by_thread() -> None:
    script = (
        "import threading, time; threading.Thread(target=time.sleep, args=(30,), daemon=True).start(); time.sleep(30)"
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        time.sleep(0.5)  # its second thread has started
        pin_process(process.pid, {1})
        tasks = os.listdir(f"/proc/{process.pid}/task")
        assert len(tasks) == 2
        assert all(os.sched_getaffinity(int(task)) == {1} for task in tasks)
    finally:
        process.kill()
        process.wait()


def test_in_process_load_is_pinned_for_the_block_only() -> None:
    before = os.sched_getaffinity(0)
    with pinned({1}):
        assert os.sched_getaffinity(0) == {1}
    assert os.sched_getaffinity(0) == before
