"""Run folders: where a run lives, which run a command continues, and the checkpoints it continues from.

    runs/<name>/<date>_<time>/          a run started by hand (or by Lightning's own DDP launcher)
    runs/<name>/job<id>-step<step>/     a run started by srun in a SLURM job: every task agrees on it
        checkpoints/  config.yaml, last.ckpt, the best by validation WER, best.ckpt (a link)
        hpc_ckpt_<n>.ckpt               the checkpoint of a preemption
        metrics.csv, wandb/, .hydra/, train.log
    runs/<name>/latest                  a link to the newest run folder

:func:`run_folder` picks the folder before Hydra creates it (the ``asr_run_dir`` resolver of
``hydra.run.dir``), so a continued run goes on in its own folder: the same W&B run (its files are
in the folder), ``metrics.csv`` appended, the best checkpoints kept in one place. Which run continues:

- a requeued SLURM job: its own folder (the same job and step ids), when that holds checkpoints;
- ``resume=auto``: the run of this name whose newest checkpoint is newest (none: a new run);
- ``resume=<a checkpoint inside a run folder>``: that run; another path: a new run that starts from it;
- otherwise a new run, also inside an interactive SLURM allocation (``salloc``), where each
  ``srun`` is a new job step and a plain ``python`` is no task at all.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Mapping

from omegaconf import OmegaConf

from asr.files import atomic_write
from asr.model.checkpoint import CheckpointError
from asr.training.checkpoints import check_resumable

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"  # inside the run folder
BEST_CHECKPOINT = "best.ckpt"  # a link to the best checkpoint by validation WER, made after training
HPC_PREFIX = "hpc_ckpt_"  # Lightning's name for checkpoints written before a requeue (asr.training.callbacks)
PREEMPTION_CHECKPOINTS = f"{HPC_PREFIX}*.ckpt"  # in the run folder
LATEST = "latest"
TIME_FORMAT = "%Y-%m-%d_%H-%M-%S"
RESOLVER = "asr_run_dir"  # hydra.run.dir: ${asr_run_dir:${paths.runs_dir},${name},${resume}}


def slurm_task_folder(env: Mapping[str, str] = os.environ) -> str | None:
    """``job<id>-step<step>`` for a task that srun started (the same for every task of the step and
    for the step after a requeue), None outside one."""
    job, step = env.get("SLURM_JOB_ID"), env.get("SLURM_STEP_ID")
    return f"job{job}-step{step}" if job and step is not None else None


def run_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints a run folder can be continued from: preemption checkpoints, last.ckpt and the
    top-k (links such as best.ckpt left out: their targets are in the list)."""
    paths = [*run_dir.glob(PREEMPTION_CHECKPOINTS), *run_dir.glob(f"{CHECKPOINT_DIR}/*.ckpt")]
    return [p for p in paths if p.is_file() and not p.is_symlink()]


def newest_checkpoint(paths: list[Path]) -> Path | None:
    """The newest checkpoint that training can continue from; each newer one that cannot (a kill
    during its write, a damaged disk) is one warning line naming it."""
    for path in sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            check_resumable(path)
        except CheckpointError as err:
            log.warning("%s: skipped, trying the next newest checkpoint", err)
            continue
        return path
    return None


def _newest_run(base: Path) -> Path | None:
    runs = [(newest.stat().st_mtime, run) for run in base.glob("*") if run.is_dir() and not run.is_symlink()
            if (newest := newest_checkpoint(run_checkpoints(run))) is not None]
    return max(runs)[1] if runs else None


def _owning_run(checkpoint: Path, base: Path) -> Path | None:
    """The run folder under ``base`` that holds ``checkpoint`` (in it or in its checkpoints/), if any."""
    path = checkpoint.resolve()
    for candidate in (path.parent, path.parent.parent):
        if candidate.parent == base.resolve() and path in {p.resolve() for p in run_checkpoints(candidate)}:
            return candidate
    return None


def continued_run(base: Path, resume: str | None, env: Mapping[str, str] = os.environ) -> Path | None:
    """The run folder under ``base`` (``runs/<name>``) that a command continues, or None for a new run."""
    task = slurm_task_folder(env)
    if task and run_checkpoints(base / task):
        return base / task  # a requeued job: its own run
    if resume == "auto":
        return _newest_run(base)
    if resume:
        return _owning_run(Path(resume), base)
    return None


def run_folder(runs_dir: str | os.PathLike, name: str, resume: str | None = None,
               env: Mapping[str, str] = os.environ) -> Path:
    """The folder a training command runs in (see the module docstring); not created here."""
    base = Path(runs_dir) / name
    return continued_run(base, resume, env) or base / (slurm_task_folder(env) or time.strftime(TIME_FORMAT))


def register_resolver() -> None:
    """``${asr_run_dir:runs_dir,name,resume}`` for ``hydra.run.dir`` (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda runs_dir, name, resume=None: str(run_folder(runs_dir, name, resume)),
                                        use_cache=True)  # one answer per run, as Hydra's own ${now:}


register_resolver()


def resume_checkpoint(resume: str | None, run_dir: Path) -> str | None:
    """What ``trainer.fit`` continues from: the run folder's newest checkpoint (a run continued in
    place), else ``resume`` when it is a path (checked: a one-line error if it cannot be used),
    else nothing (a new run)."""
    found = newest_checkpoint(run_checkpoints(run_dir))
    if found is not None:
        log.info("%s holds checkpoints: continuing this run from %s", run_dir, found.name)
        return str(found)
    if resume and resume != "auto":
        if not Path(resume).is_file():
            raise FileNotFoundError(f"resume={resume}: no such checkpoint; use resume=auto or a path to a .ckpt file")
        check_resumable(resume)
        return resume
    if resume == "auto":
        log.info("resume=auto: no checkpoint of %s to continue, starting a new run", run_dir.parent.name)
    return None


def save_run_config(cfg, run_dir: Path) -> dict:
    """Write the resolved config beside the checkpoints; return it as plain data."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with atomic_write(run_dir / CHECKPOINT_DIR / "config.yaml") as f:
        f.write(OmegaConf.to_yaml(resolved))
    return resolved


def link(link_path: Path, target: Path) -> None:
    """Point ``link_path`` at ``target`` (a sibling), replacing any older link atomically; best effort:
    some file systems have no symlinks."""
    tmp = link_path.parent / f".{link_path.name}.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.name)
        os.replace(tmp, link_path)
    except OSError as err:
        log.warning("could not link %s -> %s: %s", link_path, target, err)


def link_latest(run_dir: Path) -> None:
    """``<runs>/<name>/latest`` -> this run folder."""
    link(run_dir.parent / LATEST, run_dir)
