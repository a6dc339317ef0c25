"""DDP on 2 CPU processes (tests/ddp_check.py): disjoint shards that cover every epoch, a validation
WER reduced over the ranks that equals a single-process validation of the same checkpoint, and a
preemption signalled to one rank that stops both at the same step and resumes them exactly."""

import json
import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch

from asr.data.manifest import read_manifest
from asr.model.checkpoint import load_checkpoint
from asr.training.module import ASRModule
from asr.training.preemption import PREEMPTED_EXIT
from asr.training.train import build_datamodule
from tests.conftest import ROOT, TINY_MODEL, compose_config, manifest_overrides
from tests.ddp_check import Probe

DDP_TIMEOUT_S = 240
EPOCHS = 3  # 3 steps per rank and epoch
WAIT_AT = 4  # the preempted run gets SIGUSR1 (on rank 0 only) during step 4, mid-epoch 1


def _start(run_dir, manifests, *extra):
    cmd = [sys.executable, "tests/ddp_check.py", str(run_dir), *map(str, manifests), "--max-epochs", str(EPOCHS),
           *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # several processes on two cores
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc, status=0):
    _, err = proc.communicate(timeout=DDP_TIMEOUT_S)
    assert proc.returncode == status, err[-3000:]
    return err


def _ranks(run_dir):
    return [json.loads((run_dir / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def ddp_runs(chirp_manifests, tmp_path_factory):
    """An uninterrupted DDP run, and one preempted through rank 0 at WAIT_AT, run side by side."""
    root = tmp_path_factory.mktemp("ddp")
    manifests = [chirp_manifests[s] for s in ("train", "dev", "test")]
    plain = _start(root / "plain", manifests)
    preempted = _start(root / "preempted", manifests, "--wait-at", str(WAIT_AT))
    ready, deadline = root / "preempted" / "probe" / "ready", time.monotonic() + DDP_TIMEOUT_S
    while not ready.exists():
        assert preempted.poll() is None and time.monotonic() < deadline, "the run never reached the signal step"
        time.sleep(0.05)
    os.kill(int(ready.read_text()), signal.SIGUSR1)  # rank 0 only: the ranks must agree by themselves
    log = _finish(preempted, status=PREEMPTED_EXIT)  # 75: a checkpoint, start me again
    _finish(plain)
    return root, log


def test_ranks_see_disjoint_shards_and_validate_like_one_process(ddp_runs, chirp_manifests, tmp_path):
    run_dir = ddp_runs[0] / "plain"
    ranks = _ranks(run_dir)
    assert all(r["world_size"] == 2 for r in ranks)
    n_train = len(read_manifest(chirp_manifests["train"]))
    for epoch in map(str, range(EPOCHS)):
        seen = [[i for batch in r["train_indices"][epoch] for i in batch] for r in ranks]
        assert not set(seen[0]) & set(seen[1])  # disjoint ...
        assert sorted(seen[0] + seen[1]) == list(range(n_train))  # ... and complete
        assert len(ranks[0]["train_indices"][epoch]) == len(ranks[1]["train_indices"][epoch])  # no DDP hang

    single = _validate_in_one_process(run_dir / "checkpoints" / "last.ckpt", chirp_manifests, tmp_path / "single")
    for name in ("val_wer", "val_cer"):  # edits and reference lengths summed over the ranks
        assert [sum(r["val_counts"][name][k] for r in ranks) for k in (0, 1)] == single["val_counts"][name]
    assert ranks[0]["val_wer"] == ranks[1]["val_wer"] == single["val_wer"]


def test_preemption_through_one_rank_stops_both_and_resumes_exactly(ddp_runs, chirp_manifests):
    root, log = ddp_runs
    run_dir = root / "preempted"
    assert log.count(f"preempted at step {WAIT_AT + 1}") == 2  # both ranks, the same step
    assert [p.name for p in run_dir.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_1.ckpt"]
    _finish(_start(run_dir, [chirp_manifests[s] for s in ("train", "dev", "test")]))  # the same folder: continues
    assert [r["first_step"] for r in _ranks(run_dir)] == [WAIT_AT + 1] * 2
    for rank in (0, 1):
        resumed = torch.load(run_dir / "probe" / f"rank{rank}.pt")
        expected = torch.load(root / "plain" / "probe" / f"rank{rank}.pt")
        assert all(torch.equal(resumed[k], expected[k]) for k in expected), f"rank {rank}: weights differ"


def _validate_in_one_process(checkpoint, manifests, out):
    """The validation of ``checkpoint`` as training runs it (same batching, same greedy decoding), one process."""
    loaded = load_checkpoint(checkpoint)
    cfg = compose_config(*manifest_overrides(manifests), *TINY_MODEL)
    datamodule = build_datamodule(cfg.data, loaded.tokenizer, loaded.model, cfg.seed)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[Probe(str(out))],
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(ASRModule(loaded.model, loaded.tokenizer), datamodule=datamodule)
    return json.loads((out / "rank0.json").read_text())
