"""Shards under DDP on 2 CPU processes (tests/ddp_check.py with a shard folder): each epoch covers every
utterance once with the same number of steps on both ranks; and a kill -9 of both ranks mid-epoch,
then resume=auto, trains on exactly the batches (utterance ids) a run that was never killed trains on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from asr.data.manifest import write_manifest
from asr.data.shards.remote import ShardSet
from asr.data.shards.writer import convert
from tests.conftest import ROOT, _chirps

RUN_TIMEOUT_S = 240
EPOCHS = 3
KILL_AT = 5  # both ranks are killed at the start of step 5; the newest checkpoint is step 4's


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddpshards")
    manifest = write_manifest(root / "train.jsonl", _chirps(root / "train", 48, 5))
    convert([manifest], root / "shards", shard_hours=0.002, workers=0)  # 48 utterances, ~8 shards
    return root / "shards"


def _start(run_dir, shards, manifests, probe, *extra):
    cmd = [sys.executable, "tests/ddp_check.py", str(run_dir), str(shards), str(manifests["dev"]),
           str(manifests["test"]), "--max-epochs", str(EPOCHS), "--probe", str(probe), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc):
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, err[-3000:]


def _batches(probe, rank):
    record = json.loads((probe / f"rank{rank}.json").read_text())
    return record, [batch for epoch in sorted(record["train_indices"], key=int) for batch in record["train_indices"][epoch]]


def test_two_ranks_cover_every_shard_utterance_once_per_epoch_in_equal_steps_and_resume_exactly_after_kill_9(
        shards, chirp_manifests, tmp_path):
    n = len(ShardSet(str(shards)).index)
    plain = _start(tmp_path / "a" / "plain", shards, chirp_manifests, tmp_path / "plain-probe", "--val-every", "2")
    killed = _start(tmp_path / "b" / "killed", shards, chirp_manifests, tmp_path / "first", "--val-every", "2",
                    "--wait-at", str(KILL_AT))
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (tmp_path / "first" / "ready").exists():
        assert killed.poll() is None and time.monotonic() < deadline, "never reached the step"
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # both ranks, no checkpoint of their own
    killed.communicate(timeout=RUN_TIMEOUT_S)
    _finish(plain)
    resumed = _start(tmp_path / "b" / "killed", shards, chirp_manifests, tmp_path / "second", "--val-every", "2",
                     "--resume", "auto")
    _finish(resumed)

    plain_ranks = [_batches(tmp_path / "plain-probe", r) for r in (0, 1)]
    for epoch in map(str, range(EPOCHS)):
        per_rank = [record["train_indices"][epoch] for record, _ in plain_ranks]
        assert len(per_rank[0]) == len(per_rank[1])  # the same number of steps
        assert sorted(i for rank in per_rank for batch in rank for i in batch) == list(range(n))  # each once
    for rank in (0, 1):
        record, after = _batches(tmp_path / "second", rank)
        start = record["first_step"]
        assert 0 < start < KILL_AT  # resumed from the newest checkpoint, mid-epoch, before the kill
        assert after == plain_ranks[rank][1][start:]  # exactly the batches of the run never killed
