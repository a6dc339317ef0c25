"""Preemption: a signal -> a checkpoint at the end of the current step (the same step on every rank) -> requeue -> exit 75.

Which signals (``callbacks.preemption.signals``, all three by default):

- SIGUSR1: SLURM's ``--signal=SIGUSR1@90`` (``recipes/librispeech/train.sbatch``), some time before
  the job's end;
- SIGUSR2: submitit's default;
- SIGTERM: a SLURM preemption or ``scancel`` without ``--signal``, Kubernetes and cloud spot
  reclaims, ``kill``; SIGKILL follows after a grace period (SLURM's KillWait and Kubernetes'
  terminationGracePeriodSeconds: 30 s by default).

The handler only sets a flag. At the end of the step in which it arrives (one process), or within
``sync_every_n_steps`` steps under DDP (the ranks agree with one tiny all-reduce every that many
steps, so every rank stops at the same step), all ranks save ``<run folder>/hpc_ckpt_<n>.ckpt``
(Lightning's name; older ones are removed once it is whole). The checkpoint is there within
``sync_every_n_steps`` x the step time + the write: plan the grace period with it (10 steps of the
LibriSpeech recipe on a GPU are seconds). Then the global-zero rank runs ``requeue_command`` in a
SLURM job (array jobs as ``<array id>_<task id>``); outside one, or if the command fails, the log
says how to continue. :class:`Preempted` leaves ``trainer.fit``, and ``scripts/train.py`` exits with
:data:`PREEMPTED_EXIT` (75, EX_TEMPFAIL): a requeue loop tells "continue me" from success (0) and
failure (1, 2). Started again, the run continues in its own folder (``asr.training.runs``).

Lightning's own handlers (SLURM's requeue signal, and SIGTERM: it would broadcast among ranks from
inside the handler, kill local ranks and exit 0 at the epoch's end without a checkpoint) are
replaced by this one during fit: the callback installs it in ``on_train_start``, after Lightning
installs its own (on 2 CPU ranks, Lightning's broadcast from the handler desynchronised gloo's
collectives and aborted a rank). From the start of ``trainer.fit`` until then, the signals are
blocked (:meth:`Preemption.main_thread_only`): one that arrives while the run is set up (data,
model, checkpoint restore) waits, pending, and stops the run after its first step, instead of
killing it or reaching Lightning's handler; the threads fit starts inherit the block, so the
handler runs in the main thread. DataLoader workers leave these signals to the training process
(``asr.data.datamodule``), so a signal sent to the whole process group does not kill the data
pipeline first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L

from asr.training.runs import HPC_PREFIX

log = logging.getLogger(__name__)

PREEMPTED_EXIT = 75  # EX_TEMPFAIL (sysexits.h): stopped with a checkpoint; start the same command again
SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM")


class Preempted(Exception):
    """Raised out of ``trainer.fit`` once a preemption checkpoint is written: the run stops here and
    continues from ``checkpoint`` when it is started again in the same run folder."""

    def __init__(self, checkpoint: str, step: int, requeued: bool | None) -> None:
        self.checkpoint, self.step, self.requeued = checkpoint, step, requeued  # None: another rank's to say
        then = ("the job was requeued and continues there" if requeued else "rank 0 says whether the job was requeued"
                if requeued is None else
                "start the same command again with resume=auto (a requeued SLURM job continues by itself)")
        super().__init__(f"preempted at step {step}: checkpoint {checkpoint} written; {then}")


class Preemption(L.Callback):
    """Signals -> a checkpoint at the end of the current training step -> requeue -> :class:`Preempted`.

    Args:
        signals: signal names to act on.
        requeue_command: run (as a list, ``{job_id}`` replaced) to requeue the SLURM job.
        sync_every_n_steps: under DDP, steps between the all-reduces that agree on stopping.
    """

    def __init__(self, signals: Sequence[str] = SIGNALS, requeue_command: Sequence[str] = ("scontrol", "requeue", "{job_id}"),
                 sync_every_n_steps: int = 10) -> None:
        unknown = [name for name in signals if name not in signal.Signals.__members__]
        if unknown:
            raise ValueError(f"callbacks.preemption.signals: {', '.join(unknown)} is not a signal name (e.g. SIGTERM)")
        self.signals = [signal.Signals[name] for name in signals]
        self.requeue_command = list(requeue_command)
        self.sync_every_n_steps = max(1, sync_every_n_steps)
        self.requested = False
        self._previous: dict[signal.Signals, Any] = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.warning("received %s: checkpointing at the end of this step", signal.Signals(signum).name)
        self.requested = True

    @contextlib.contextmanager
    def main_thread_only(self) -> Iterator[None]:
        """Block the signals in this (main) thread around ``trainer.fit`` until :meth:`on_train_start`
        installs the handler and unblocks them here; the threads fit starts inherit the block. A
        signal that arrives in between waits, pending, and is handled then."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self.requested = False
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self.signals)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        stop = self.requested
        if trainer.world_size > 1:  # every rank must stop at the same step
            if trainer.global_step % self.sync_every_n_steps:
                return
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        run_dir = Path(trainer.default_root_dir)
        old = sorted(run_dir.glob(f"{HPC_PREFIX}*.ckpt"))
        path = run_dir / f"{HPC_PREFIX}{1 + max((hpc_number(p) for p in old), default=0)}.ckpt"
        for logger in trainer.loggers:
            logger.save()
        trainer.save_checkpoint(path)
        requeued = None
        if trainer.is_global_zero:
            for stale in old:
                stale.unlink(missing_ok=True)
            requeued = self.requeue()
        raise Preempted(str(path), trainer.global_step, requeued)

    def requeue(self) -> bool:
        """Requeue this SLURM job (True if the command succeeded); outside a job, False."""
        array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job_id = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")
        if not job_id:
            log.warning("not in a SLURM job: nothing to requeue")
            return False
        command = [part.format(job_id=job_id) for part in self.requeue_command]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.warning("%s failed (%s): the job is not requeued", " ".join(command), err)
            return False
        if result.returncode:
            log.warning("%s failed (exit %d: %s): the job is not requeued", " ".join(command), result.returncode,
                        result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no message")
        return result.returncode == 0


def hpc_number(path: Path) -> int:
    """``n`` of ``hpc_ckpt_<n>.ckpt`` (0 for another name)."""
    suffix = path.stem[len(HPC_PREFIX):]
    return int(suffix) if suffix.isdigit() else 0
