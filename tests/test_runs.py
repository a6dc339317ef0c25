"""Run folders (asr.training.runs): a new run gets a new folder, resume=auto and a requeued SLURM job
continue a run in its own folder, an interactive allocation starts new runs, and the checkpoint a run
continues from is the newest one that loads."""

import os
import time

import torch

from asr.training.runs import resume_checkpoint, run_folder

SRUN = {"SLURM_JOB_ID": "777", "SLURM_STEP_ID": "0"}  # a task srun started in batch job 777


def _checkpoint(path, age_s):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "optimizer_states": [], "loops": {}}, path)  # resuming checks that it loads
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_a_new_run_gets_a_new_folder_and_resume_auto_continues_the_newest_in_its_own(tmp_path):
    base = tmp_path / "runs" / "tiny"
    first = run_folder(tmp_path / "runs", "tiny", None, env={})
    assert first.parent == base and not first.exists()
    _checkpoint(base / "a" / "checkpoints" / "last.ckpt", 300)
    _checkpoint(base / "b" / "hpc_ckpt_2.ckpt", 100)
    _checkpoint(base / "b" / "checkpoints" / "last.ckpt", 50)  # written after it had resumed
    assert run_folder(tmp_path / "runs", "tiny", "auto", env={}) == base / "b"
    assert run_folder(tmp_path / "runs", "tiny", None, env={}) not in (base / "a", base / "b")  # not continued
    assert run_folder(tmp_path / "runs", "other", "auto", env={}).parent == tmp_path / "runs" / "other"  # none: new


def test_resume_of_a_checkpoint_inside_a_run_continues_that_run_and_outside_one_starts_a_new_one(tmp_path):
    base = tmp_path / "runs" / "tiny"
    top = _checkpoint(base / "a" / "checkpoints" / "epoch000-step000005-wer0.9000.ckpt", 10)
    elsewhere = _checkpoint(tmp_path / "downloaded.ckpt", 10)
    assert run_folder(tmp_path / "runs", "tiny", str(top), env={}) == base / "a"
    new = run_folder(tmp_path / "runs", "tiny", str(elsewhere), env={})
    assert new.parent == base and new.name != "a"
    assert resume_checkpoint(str(elsewhere), new) == str(elsewhere)  # ... and starts from it
    assert resume_checkpoint(None, new) is None


def test_a_requeued_slurm_job_continues_its_folder_and_a_second_srun_in_salloc_starts_anew(tmp_path):
    runs = tmp_path / "runs"
    assert run_folder(runs, "tiny", None, env=SRUN) == runs / "tiny" / "job777-step0"  # every task agrees
    _checkpoint(runs / "tiny" / "job777-step0" / "hpc_ckpt_1.ckpt", 10)
    _checkpoint(runs / "tiny" / "newer" / "checkpoints" / "last.ckpt", 1)
    requeued = {**SRUN, "SLURM_RESTART_COUNT": "1"}
    assert run_folder(runs, "tiny", None, env=requeued) == runs / "tiny" / "job777-step0"
    assert run_folder(runs, "tiny", "auto", env=requeued) == runs / "tiny" / "job777-step0"  # its own, not the newest
    # salloc: the same job id, each srun a new step; a plain python is no task at all
    assert run_folder(runs, "tiny", None, env={"SLURM_JOB_ID": "777", "SLURM_STEP_ID": "1"}) == runs / "tiny" / "job777-step1"
    plain = run_folder(runs, "tiny", None, env={"SLURM_JOB_ID": "777"})
    assert plain.name not in ("job777-step0", "newer")


def test_a_run_folder_continues_from_its_newest_checkpoint(tmp_path):
    older = _checkpoint(tmp_path / "checkpoints" / "epoch000-step000005-wer0.9000.ckpt", 300)
    preempted = _checkpoint(tmp_path / "hpc_ckpt_2.ckpt", 100)
    assert resume_checkpoint(None, tmp_path) == str(preempted)
    assert resume_checkpoint("auto", tmp_path) == str(preempted)
    preempted.unlink()
    assert resume_checkpoint(None, tmp_path) == str(older)
    assert resume_checkpoint(None, tmp_path / "elsewhere") is None
