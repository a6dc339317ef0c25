"""End-to-end test helpers: the scripts/ run as a user runs them, in a subprocess, on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import ROOT, TINY_MODEL

# A few steps of the tiny model on the CPU, validated (and checkpointed) every 10 steps.
CPU_OVERRIDES = ["trainer.accelerator=cpu", "trainer.precision=32-true", *TINY_MODEL, "data.num_workers=0", "+schedule=per_device",
                 "data.pin_memory=false", "data.batch_seconds=8", "trainer.val_check_interval=10",
                 "trainer.check_val_every_n_epoch=null", "logger=csv",
                 "trainer.enable_progress_bar=false"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 cores shared by several processes: no oversubscription


def run(*args: object, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python <args>`` from the repository root; output captured as text."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=ONE_THREAD, timeout=timeout)


def run_all(commands: dict[str, list[str]], timeout: float = 300) -> dict[str, subprocess.CompletedProcess]:
    """Each named command line (a program and its arguments) from the repository root, as many at once as
    there are CPU cores, each on one thread: most of each run is Python importing torch, one core's work,
    so the suite waits for the slowest batch instead of the sum."""
    def one(command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=ONE_THREAD, timeout=timeout)

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return dict(zip(commands, pool.map(one, commands.values())))
