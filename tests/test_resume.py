"""Preemption and resume (tests/resume_check.py, one process per run): SIGUSR1 -> a checkpoint at the
end of the step and a (stub) requeue; started again in the same run folder, training resumes at that
step and ends with exactly the weights of an uninterrupted run (model, optimizer, lr schedule,
sampler position mid-epoch and random states all restored)."""

import os
import signal
import subprocess
import sys
import time

import torch

from asr.training.preemption import PREEMPTED_EXIT
from tests.conftest import ROOT

# A one-task SLURM job as srun would describe it: Lightning then runs with SLURMEnvironment(auto_requeue=True).
SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "asr-test", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}
MAX_STEPS = 12  # 5 batches per epoch: the run crosses two epoch boundaries
WAIT_AT = 7  # the preempted run receives SIGUSR1 during step 7 (mid-epoch 1) and stops after it
RUN_TIMEOUT_S = 120


def _start(run_dir, manifests, *extra, env=None):
    cmd = [sys.executable, "tests/resume_check.py", str(run_dir), *map(str, manifests), "--max-steps", str(MAX_STEPS),
           *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}  # several processes share 2 cores
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc, status=0):
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == status, err[-3000:]
    return err


def test_sigusr1_checkpoints_requeues_and_resumes_to_identical_weights(chirp_manifests, tmp_path):
    manifests = [chirp_manifests[s] for s in ("train", "dev", "test")]
    plain = _start(tmp_path / "plain", manifests)  # the uninterrupted run, alongside
    run_dir, requeued = tmp_path / "4242", tmp_path / "requeued"
    preempted = _start(run_dir, manifests, "--wait-at", str(WAIT_AT), "--requeue-file", str(requeued), env=SLURM_ENV)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (run_dir / "probe" / "ready").exists():
        assert preempted.poll() is None and time.monotonic() < deadline, "the run never reached the signal step"
        time.sleep(0.05)
    preempted.send_signal(signal.SIGUSR1)
    log = _finish(preempted, status=PREEMPTED_EXIT)  # 75: a checkpoint, start me again
    assert "SLURM auto-requeueing enabled" in log  # Lightning's SLURMEnvironment is active ...
    assert "Handling auto-requeue signal" not in log and f"preempted at step {WAIT_AT + 1}" in log  # ... ours acts
    checkpoints = list(run_dir.glob("hpc_ckpt_*.ckpt"))
    assert [p.name for p in checkpoints] == ["hpc_ckpt_1.ckpt"]
    assert torch.load(checkpoints[0], weights_only=True)["global_step"] == WAIT_AT + 1
    assert requeued.read_text() == "4242"  # the requeue command ran with the job id
    assert not (run_dir / "probe" / "weights.pt").exists()  # training stopped there

    _finish(_start(run_dir, manifests, env=SLURM_ENV))  # the requeued job: same job id, same folder: continues
    assert (run_dir / "probe" / "first_step").read_text() == str(WAIT_AT + 1)
    _finish(plain)
    resumed = torch.load(run_dir / "probe" / "weights.pt")
    expected = torch.load(tmp_path / "plain" / "probe" / "weights.pt")
    assert resumed.keys() == expected.keys()
    assert all(torch.equal(resumed[k], expected[k]) for k in expected), "resumed weights differ"


def test_csv_metrics_of_a_continued_run_are_appended_not_replaced(tmp_path):
    from asr.training.loggers import CSVLogger

    first = CSVLogger(str(tmp_path), name="", version="")
    first.log_metrics({"train/loss": 1.0, "val/wer": 0.5}, step=1)
    first.save()
    again = CSVLogger(str(tmp_path), name="", version="")  # the requeued job, same run folder
    again.log_metrics({"train/loss": 0.9}, step=2)
    again.save()
    again.log_metrics({"lr": 0.1}, step=3)
    again.save()
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows == ["lr,step,train/loss,val/wer", ",1,1.0,0.5", ",2,0.9,", "0.1,3,,"]


def test_wandb_logger_continues_the_run_stored_in_its_folder(tmp_path, monkeypatch):
    from asr.training.loggers import wandb_logger

    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_logger(str(tmp_path))._wandb_init.get("id") is None  # a new run folder: a new W&B run
    (tmp_path / "wandb" / "offline-run-20260101_120000-abc123xy").mkdir(parents=True)
    init = wandb_logger(str(tmp_path))._wandb_init
    assert init["id"] == "abc123xy" and init["resume"] == "allow"
