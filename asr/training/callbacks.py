"""Training callbacks: throughput (audio seconds and utterances per second), preemption
(signal -> checkpoint -> requeue), random states in checkpoints, sample transcripts and the test table."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch

from asr.data.batching import Batch
from asr.files import atomic_write
from asr.report import format_table

log = logging.getLogger(__name__)


class Throughput(L.Callback):
    """Logs ``train/audio_per_sec`` (seconds of audio trained on per wall-clock second, data waits
    included) and ``train/utts_per_sec`` every ``window`` steps, from host-side counts only (no GPU sync).
    On CUDA it also logs the peak GPU memory in GiB."""

    def __init__(self, window: int = 25) -> None:
        self.window = window
        self._fit_start: float | None = None
        self._reset()

    def _reset(self) -> None:
        self._start: float | None = None
        self._audio = 0.0
        self._utts = 0
        self._steps = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not isinstance(batch, Batch):
            return
        self._audio += batch.audio_seconds
        self._utts += batch.size
        self._steps += 1
        if self._steps < self.window:
            return
        elapsed = time.perf_counter() - self._start
        world = trainer.world_size  # every rank trains on its own batches
        metrics = {"train/audio_per_sec": world * self._audio / elapsed, "train/utts_per_sec": world * self._utts / elapsed}
        if pl_module.device.type == "cuda":
            import torch

            metrics["train/gpu_mem_gib"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
        pl_module.log_dict(metrics, prog_bar=False)
        pl_module.log("audio_s/s", metrics["train/audio_per_sec"], prog_bar=True, logger=False)
        self._reset()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``time/elapsed_min``: wall-clock minutes since this process started fitting (training curves vs time)."""
        if not trainer.sanity_checking and self._fit_start is not None:
            pl_module.log("time/elapsed_min", (time.perf_counter() - self._fit_start) / 60)


class Preempted(Exception):
    """Raised out of ``trainer.fit`` once a preemption checkpoint is written: the run stops here and
    continues from ``checkpoint`` when it is started again in the same run folder."""

    def __init__(self, checkpoint: str, step: int, requeued: bool) -> None:
        self.checkpoint, self.step, self.requeued = checkpoint, step, requeued
        then = "the job was requeued" if requeued else "run the same command (same run folder) or resume=auto"
        super().__init__(f"preempted at step {step}: checkpoint {checkpoint} written; {then} to continue")


class Preemption(L.Callback):
    """A signal (SLURM's ``--signal=SIGUSR1@90``, submitit's SIGUSR2) -> a checkpoint at the end of
    the current training step -> ``scontrol requeue`` -> :class:`Preempted`.

    The handler only sets a flag. At the end of the next step, where weights, optimizer, scheduler,
    loop counters and sampler position agree, the ranks agree (one all-reduce every
    ``sync_every_n_steps`` steps under DDP), all of them save ``<run folder>/hpc_ckpt_<n>.ckpt``
    (Lightning's name; older ones are removed), the global-zero rank runs ``requeue_command`` when
    in a SLURM job, and fit stops. ``asr.training.train`` resumes from it when the run folder is used again.

    Lightning's own handler (``SLURMEnvironment(auto_requeue=True)``) saves from inside the signal
    handler, at an arbitrary point of a step and, under DDP, with collectives that may interleave
    with the step's own; Lightning installs it only where no handler exists, so this callback's,
    installed at setup, takes its place. Lightning's SIGTERM handling (ignore it while the job is
    requeued) stays.

    Args:
        signals: signal names to act on.
        requeue_command: run (as a list, ``{job_id}`` replaced) to requeue the SLURM job.
        sync_every_n_steps: under DDP, steps between the all-reduces that agree on stopping.
    """

    def __init__(self, signals: Sequence[str] = ("SIGUSR1", "SIGUSR2"),
                 requeue_command: Sequence[str] = ("scontrol", "requeue", "{job_id}"),
                 sync_every_n_steps: int = 10) -> None:
        self.signals = [signal.Signals[name] for name in signals]
        self.requeue_command = list(requeue_command)
        self.sync_every_n_steps = max(1, sync_every_n_steps)
        self.requested = False
        self._previous: dict[signal.Signals, Any] = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.warning("received %s: checkpointing at the end of this step", signal.Signals(signum).name)
        self.requested = True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            self.requested = False
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._on_signal)

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
        path = run_dir / f"{HPC_PREFIX}{1 + max((_hpc_number(p) for p in old), default=0)}.ckpt"
        for logger in trainer.loggers:
            logger.save()
        trainer.save_checkpoint(path)
        requeued = False
        if trainer.is_global_zero:
            for stale in old:
                stale.unlink(missing_ok=True)
            requeued = self._requeue()
        raise Preempted(str(path), trainer.global_step, requeued)

    def _requeue(self) -> bool:
        array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job_id = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")
        if not job_id:
            log.warning("not in a SLURM job: nothing to requeue")
            return False
        command = [part.format(job_id=job_id) for part in self.requeue_command]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            log.warning("%s failed (%d): %s", " ".join(command), result.returncode, result.stderr.strip())
        return result.returncode == 0


HPC_PREFIX = "hpc_ckpt_"  # Lightning's name for checkpoints written before a requeue


def _hpc_number(path: Path) -> int:
    suffix = path.stem[len(HPC_PREFIX):]
    return int(suffix) if suffix.isdigit() else 0


class RandomState(L.Callback):
    """Random number generator states (torch, CUDA, NumPy, Python) of every rank, saved in each
    checkpoint and restored just before the first step of a resumed run, so dropout, SpecAugment
    and speed-perturbation draws go on as in an uninterrupted run (exactly so with
    ``data.num_workers=0``: DataLoader worker processes keep their own generators).

    States are stored as tensors, lists and numbers, so checkpoints still load with
    ``torch.load(weights_only=True)``.
    """

    def __init__(self) -> None:
        self._restore: list[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = _rng_state()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, state)  # every rank saves, rank 0 writes
            return {"ranks": gathered}
        return {"ranks": [state]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restore = state_dict.get("ranks")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._restore is None:
            return
        states, self._restore = self._restore, None
        if len(states) != trainer.world_size:
            log.warning("the checkpoint holds random states of %d rank(s), this run has %d: not restored",
                        len(states), trainer.world_size)
            return
        _set_rng_state(states[trainer.global_rank])


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": [version, list(python_state), python_gauss]}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, python_state, python_gauss = state["python"]
    random.setstate((version, tuple(python_state), python_gauss))


class TranscriptSamples(L.Callback):
    """At each validation, the first ``rows`` utterances of the first validation batch with their
    reference and greedy hypothesis: a W&B table (``val/transcripts``), TensorBoard text, and with
    any logger a tab-separated file ``<run folder>/transcripts/step<step>.tsv``. One extra forward
    pass of ``rows`` utterances on rank 0 per validation."""

    def __init__(self, rows: int = 8) -> None:
        self.rows = rows
        self._table: list[list[Any]] = []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx or trainer.sanity_checking or not trainer.is_global_zero or not isinstance(batch, Batch):
            return
        k = min(self.rows, batch.size)
        with torch.no_grad():
            hyps = pl_module.transcribe_batch(*pl_module(batch.waveforms[:k], batch.lengths[:k]))
        self._table = [[trainer.global_step, ref, hyp] for ref, hyp in zip(batch.texts[:k], hyps)]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._table or not trainer.is_global_zero:
            return
        step, columns = trainer.global_step, ["step", "reference", "hypothesis"]
        log_table(trainer, "val/transcripts", columns, self._table, step)
        with atomic_write(Path(trainer.default_root_dir) / "transcripts" / f"step{step:07d}.tsv") as f:
            f.writelines("\t".join(map(str, row)) + "\n" for row in [columns, *self._table])
        self._table = []


class TestResultsTable(L.Callback):
    """After testing: WER and CER (%) of every test set as one table, ``test/results`` (W&B table,
    TensorBoard text); ``scripts/train.py`` prints the same table."""

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        names = getattr(pl_module, "test_names", [])
        rows = [[n, 100 * float(metrics[f"test/{n}/wer"]), 100 * float(metrics[f"test/{n}/cer"])]
                for n in names if f"test/{n}/wer" in metrics and f"test/{n}/cer" in metrics]
        if rows and trainer.is_global_zero:
            log_table(trainer, "test/results", ["test set", "WER %", "CER %"], rows, trainer.global_step)


def log_table(trainer: L.Trainer, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
    """A table to every logger that shows tables: W&B as a table, TensorBoard as Markdown text."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=columns, data=rows, step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(key, format_table(columns, rows), step)
