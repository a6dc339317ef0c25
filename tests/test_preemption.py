"""Preemption as a cluster delivers it: SIGTERM to scripts/train.py (and to its DataLoader workers)
-> a checkpoint at the end of the step and exit status 75, then the same command continues the run
in its folder; SIGUSR2 (submitit); a requeue command that fails; a signal outside a SLURM job; array
job ids; hpc_ckpt_<n> numbered on and the older ones removed."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from asr.training.preemption import PREEMPTED_EXIT, Preempted
from asr.training.train import train
from tests.conftest import ROOT, TINY_MODEL, compose_config, manifest_overrides

RUN_TIMEOUT_S = 180
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_STEP_ID", "SLURM_NTASKS",
              "SLURM_PROCID", "SLURM_JOB_NAME")


class SignalAt(L.Callback):
    """Sends ``signum`` to this process at the start of training step ``step``."""

    def __init__(self, step: int, signum: int = signal.SIGUSR2) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _config(manifests, requeue: list[str] | None = None, *extra: str):
    cfg = compose_config(*manifest_overrides(manifests), *TINY_MODEL, "logger=none", "test=false",
                         "trainer.max_steps=12", "trainer.enable_progress_bar=false",
                         "trainer.enable_model_summary=false", "data.batch_seconds=4.5", "data.num_buckets=2", *extra)
    with open_dict(cfg):
        if requeue is not None:
            cfg.callbacks.preemption.requeue_command = requeue
    return cfg


def _preempt(cfg, run_dir: Path, step: int, signum: int = signal.SIGUSR2) -> Preempted:
    with open_dict(cfg):
        cfg.callbacks.signal_at = {"_target_": "tests.test_preemption.SignalAt", "step": step, "signum": int(signum)}
    with pytest.raises(Preempted) as stop:
        train(cfg, run_dir)
    return stop.value


def _writer(path: Path) -> list[str]:
    """A requeue command that writes the job id it was given to ``path``."""
    return [sys.executable, "-c", f"open({str(path)!r}, 'w').write('{{job_id}}')"]


@pytest.fixture
def no_slurm(monkeypatch):
    for name in SLURM_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_sigusr2_in_an_array_job_requeues_its_task_and_checkpoints_are_numbered_on(chirp_manifests, tmp_path,
                                                                                       no_slurm):
    no_slurm.setenv("SLURM_JOB_ID", "9001")
    no_slurm.setenv("SLURM_ARRAY_JOB_ID", "9000")
    no_slurm.setenv("SLURM_ARRAY_TASK_ID", "3")
    requeued = tmp_path / "requeued"
    run_dir = tmp_path / "run"
    stop = _preempt(_config(chirp_manifests, _writer(requeued)), run_dir, step=3)
    assert stop.requeued and stop.step == 4 and requeued.read_text() == "9000_3"  # <array job>_<task>
    assert [p.name for p in run_dir.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_1.ckpt"]
    assert "the job was requeued" in str(stop)

    requeued.unlink()
    stop = _preempt(_config(chirp_manifests, _writer(requeued)), run_dir, step=7)  # continues, preempted again
    assert stop.step == 8 and requeued.read_text() == "9000_3"
    assert [p.name for p in run_dir.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_2.ckpt"]  # the older one removed
    assert torch.load(run_dir / "hpc_ckpt_2.ckpt", weights_only=True)["global_step"] == 8


def test_a_requeue_that_fails_and_a_signal_outside_slurm_still_checkpoint_and_say_how_to_go_on(
        chirp_manifests, tmp_path, no_slurm, caplog):
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('slurm_load_jobs error: Invalid job id'); sys.exit(1)"]
    no_slurm.setenv("SLURM_JOB_ID", "4242")
    with caplog.at_level(logging.WARNING, logger="asr.training.preemption"):
        stop = _preempt(_config(chirp_manifests, failing), tmp_path / "a", step=2)
    assert not stop.requeued and (tmp_path / "a" / "hpc_ckpt_1.ckpt").is_file()
    assert any("failed (exit 1: slurm_load_jobs error: Invalid job id): the job is not requeued" in m
               for m in caplog.messages)
    assert "start the same command again with resume=auto" in str(stop)

    no_slurm.delenv("SLURM_JOB_ID")
    missing = ["no-such-scontrol-here", "requeue", "{job_id}"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="asr.training.preemption"):
        stop = _preempt(_config(chirp_manifests, missing), tmp_path / "b", step=2, signum=signal.SIGTERM)
    assert not stop.requeued and (tmp_path / "b" / "hpc_ckpt_1.ckpt").is_file()
    assert "not in a SLURM job: nothing to requeue" in caplog.messages


def _start_cli(runs: Path, manifests, *extra: str) -> subprocess.Popen:
    overrides = [*manifest_overrides(manifests), *TINY_MODEL, "logger=csv", "test=false", "trainer.max_steps=14",
                 "data.batch_seconds=4.5", "data.num_buckets=2", "data.num_workers=1", f"paths.runs_dir={runs}",
                 "name=sigterm", "trainer.accelerator=cpu", *extra]
    env = {k: v for k, v in os.environ.items() if k not in SLURM_VARS} | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "scripts/train.py", *overrides], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_sigterm_to_the_process_group_checkpoints_exits_75_and_the_run_continues_in_its_folder(chirp_manifests,
                                                                                                 tmp_path):
    """SIGTERM as SLURM and Kubernetes send it, to every process of the group (DataLoader workers
    included): a checkpoint at the end of the step, exit status 75; resume=auto then finishes the run
    in the same folder (Lightning alone: no checkpoint, and exit 0 at the epoch's end)."""
    runs = tmp_path / "runs"
    probe = tmp_path / "probe"
    wait = f'+callbacks.probe={{_target_: tests.ddp_check.Probe, out: "{probe}", wait_at: 5}}'
    proc = _start_cli(runs, chirp_manifests, wait)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (probe / "ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # the training process and its DataLoader worker
    out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == PREEMPTED_EXIT, err[-3000:]
    [run_dir] = [p for p in (runs / "sigterm").iterdir() if not p.is_symlink()]
    [checkpoint] = run_dir.glob("hpc_ckpt_*.ckpt")
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 6  # the end of the step it arrived in
    assert f"train.py: preempted at step 6: checkpoint {checkpoint} written; start the same command again with " \
           "resume=auto" in err

    again = _start_cli(runs, chirp_manifests, "resume=auto", "callbacks.progress_log.every_seconds=0")
    out, err = again.communicate(timeout=RUN_TIMEOUT_S)
    assert again.returncode == 0, err[-3000:]
    # not a terminal: log lines, no progress bar; and no warning a user cannot act on (a mid-epoch
    # resume would print Lightning's "not resumable" one, a CPU run the pin_memory one)
    assert "step 14/14 (epoch" in out and "validation at step 14: WER" in out
    assert "it/s]" not in err and "Epoch 1:" not in err
    assert not [w for w in ("Tip:", "not resumable", "pin_memory", "LeafSpec") if w in out + err]
    assert [p for p in (runs / "sigterm").iterdir() if not p.is_symlink()] == [run_dir]  # the same folder
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 14
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    steps = [int(r.split(",")[rows[0].split(",").index("step")]) for r in rows[1:]]
    assert min(steps) < 6 < max(steps)  # metrics.csv appended: both processes' rows
