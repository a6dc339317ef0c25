"""The cluster path on one machine: scripts/train.py started as SLURM's srun starts it on two "nodes"
(one CPU process each, gloo over 127.0.0.1), SIGTERMed as a preemption sends it, requeued and
continued in place, ending with the weights of an uninterrupted run; and a run continued on another
number of processes, which finishes its epoch with every utterance exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from asr.data.manifest import read_manifest
from asr.training.preemption import PREEMPTED_EXIT
from tests.conftest import ROOT, TINY_MODEL, manifest_overrides

RUN_TIMEOUT_S = 300
MAX_STEPS = 16
WAIT_AT = 4  # rank 0 waits for the signal at the start of step 4; the ranks agree at step 10 (every 10 steps)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _srun_task(rank: int, job: str, port: int, runs: Path, manifests, probe: Path, requeued: Path,
               restart: int = 0, wait_at: int | None = None) -> subprocess.Popen:
    """``srun python scripts/train.py ...`` task ``rank`` of a 2-node job, one task per node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_JOB_ID=job, SLURM_STEP_ID="0", SLURM_JOB_NAME="asr-multinode", SLURM_NTASKS="2",
               SLURM_NTASKS_PER_NODE="1", SLURM_NNODES="2", SLURM_PROCID=str(rank), SLURM_LOCALID="0",
               SLURM_NODEID=str(rank), SLURM_NODELIST="127.0.0.1", SLURM_RESTART_COUNT=str(restart),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    requeue = f'[{sys.executable}, -c, "open(\'{requeued}\', \'w\').write(\'{{job_id}}\')"]'
    overrides = [*manifest_overrides(manifests), *TINY_MODEL, "logger=csv", "test=false", "name=multinode",
                 f"paths.runs_dir={runs}", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2",
                 f"trainer.max_steps={MAX_STEPS}", "trainer.max_epochs=-1", "trainer.deterministic=true",
                 "data.batch_seconds=2.5", "data.num_buckets=2", f"callbacks.preemption.requeue_command={requeue}",
                 f'+callbacks.probe={{_target_: tests.ddp_check.Probe, out: "{probe}", wait_at: {wait_at or "null"}}}']
    return subprocess.Popen([sys.executable, "scripts/train.py", *overrides], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _job(job: str, runs: Path, manifests, probe: Path, requeued: Path, **kwargs) -> list[subprocess.Popen]:
    port = _free_port()
    return [_srun_task(rank, job, port, runs, manifests, probe, requeued, **kwargs) for rank in (0, 1)]


def _wait(tasks: list[subprocess.Popen], status: int) -> list[str]:
    errs = []
    for task in tasks:
        _, err = task.communicate(timeout=RUN_TIMEOUT_S)
        assert task.returncode == status, err[-3000:]
        errs.append(err)
    return errs


def test_two_nodes_under_slurm_sigterm_requeue_and_resume_in_place_to_the_same_weights(chirp_manifests, tmp_path):
    runs, requeued = tmp_path / "runs", tmp_path / "requeued"
    plain = _job("100", runs, chirp_manifests, tmp_path / "plain", requeued)
    preempted = _job("200", runs, chirp_manifests, tmp_path / "first", requeued, wait_at=WAIT_AT)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (tmp_path / "first" / "ready").exists():
        assert all(t.poll() is None for t in preempted) and time.monotonic() < deadline, "never reached the step"
        time.sleep(0.05)
    for task in preempted:  # SLURM signals every task of the step
        task.send_signal(signal.SIGTERM)
    errs = _wait(preempted, PREEMPTED_EXIT)
    run_dir = runs / "multinode" / "job200-step0"  # every task agreed on the folder
    assert all("preempted at step 10" in err for err in errs)  # the same step: the default sync, every 10 steps
    assert [p.name for p in run_dir.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_1.ckpt"]
    assert requeued.read_text() == "200"  # rank 0 requeued the job

    _wait(_job("200", runs, chirp_manifests, tmp_path / "second", requeued, restart=1), 0)  # the requeued job
    assert sorted(p.name for p in (runs / "multinode").iterdir()) == ["job100-step0", "job200-step0", "latest"]
    _wait(plain, 0)
    for rank in (0, 1):
        assert json.loads((tmp_path / "second" / f"rank{rank}.json").read_text())["first_step"] == 10
        resumed, expected = torch.load(tmp_path / "second" / f"rank{rank}.pt"), torch.load(tmp_path / "plain" / f"rank{rank}.pt")
        assert all(torch.equal(resumed[k], expected[k]) for k in expected), f"rank {rank}: weights differ"


def _ddp_check(run_dir: Path, manifests, probe: Path, devices: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "tests/ddp_check.py", str(run_dir), *(str(manifests[s]) for s in ("train", "dev", "test")),
           "--max-epochs", "2", "--devices", str(devices), "--probe", str(probe), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_a_run_continued_on_another_number_of_processes_sees_every_utterance_once(chirp_manifests, tmp_path):
    """Preempted mid-epoch on 1 process, continued on 2: the rest of the epoch is what the first part
    had not trained on, split over both ranks; the next epoch is whole."""
    run_dir = tmp_path / "run"
    first = _ddp_check(run_dir, chirp_manifests, tmp_path / "one", 1, "--wait-at", "3")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (tmp_path / "one" / "ready").exists():
        assert first.poll() is None and time.monotonic() < deadline, "never reached the step"
        time.sleep(0.05)
    first.send_signal(signal.SIGUSR1)
    _wait([first], PREEMPTED_EXIT)
    _wait([_ddp_check(run_dir, chirp_manifests, tmp_path / "two", 2)], 0)

    n = len(read_manifest(chirp_manifests["train"]))
    before = json.loads((tmp_path / "one" / "rank0.json").read_text())["train_indices"]["0"]
    after = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text())["train_indices"] for r in (0, 1)]
    assert len(before) == 4  # steps 0-3 done on one process
    epoch0 = [i for batch in before for i in batch] + [i for rank in after for batch in rank["0"] for i in batch]
    assert sorted(epoch0) == list(range(n))  # every utterance once in the epoch that changed hands
    epoch1 = [i for rank in after for batch in rank["1"] for i in batch]
    assert sorted(epoch1) == list(range(n))
    assert len(after[0]["0"]) == len(after[1]["0"]) and len(after[0]["1"]) == len(after[1]["1"])  # equal steps
