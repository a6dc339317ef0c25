"""Training callbacks: throughput (audio seconds and utterances per second), the final step validated,
progress as log lines, random states in checkpoints, sample transcripts and the test table.
Preemption (signal -> checkpoint -> requeue) is :mod:`asr.training.preemption`."""

from __future__ import annotations

import datetime
import logging
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from asr.data.batching import Batch
from asr.files import atomic_write
from asr.report import format_table
from asr.training.preemption import Preempted, Preemption  # noqa: F401 - configs of asr 0.1 name them here

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


class FinalStep(L.Callback):
    """The last step of training is validated, and so checkpointed (``last.ckpt`` and the top-k),
    whatever ``trainer.val_check_interval``: at the last batch of ``max_epochs`` or the step that
    reaches ``max_steps`` (``max_time`` stops through Lightning's Timer, which does the same) this
    asks Lightning to stop, and Lightning validates before it stops. Without it, a run validating
    every 1,000 steps loses up to 999 final steps: never checkpointed, validated or tested."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not trainer.should_stop and last_batch(trainer):
            trainer.should_stop = True


def last_batch(trainer: L.Trainer) -> bool:
    """True after the last training batch of the run (by ``max_steps`` or ``max_epochs``)."""
    if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return True
    epochs = trainer.max_epochs
    return (epochs is not None and epochs > 0 and trainer.current_epoch >= epochs - 1
            and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


class ProgressLog(L.Callback):
    """With the progress bar off (stderr not a terminal: a SLURM ``.out`` file), one log line every
    ``every_seconds``: step, epoch, loss, learning rate, audio seconds per second, time left; and one
    per validation with its WER and CER. Rank 0 only."""

    def __init__(self, every_seconds: float = 60.0) -> None:
        self.every_seconds = every_seconds
        self._start: float | None = None
        self._first_step = 0
        self._last = 0.0

    def _active(self, trainer: L.Trainer) -> bool:
        return trainer.is_global_zero and trainer.progress_bar_callback is None and not trainer.sanity_checking

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._first_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.monotonic()
        if not self._active(trainer) or self._start is None or now - self._last < self.every_seconds:
            return
        self._last = now
        step, total = trainer.global_step, int(trainer.estimated_stepping_batches)
        done = max(1, step - self._first_step)
        left = datetime.timedelta(seconds=round((now - self._start) / done * max(0, total - step)))
        metrics = trainer.callback_metrics
        loss = f"loss {float(metrics['train/loss']):.3f}, " if "train/loss" in metrics else ""
        speed = f"{float(metrics['train/audio_per_sec']):.0f} audio s/s, " if "train/audio_per_sec" in metrics else ""
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        log.info("step %d/%d (epoch %d): %slr %.2e, %s%s left", step, total, trainer.current_epoch, loss, lr, speed, left)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if self._active(trainer) and "val/wer" in metrics:
            cer = f", CER {100 * float(metrics['val/cer']):.2f} %" if "val/cer" in metrics else ""
            log.info("validation at step %d: WER %.2f %%%s", trainer.global_step, 100 * float(metrics["val/wer"]), cer)


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
    """After testing: WER and CER (%) of every test set as one table, ``test/results`` for the best
    checkpoint and ``test_final/results`` for the final weights (W&B table, TensorBoard text);
    ``scripts/train.py`` prints the same numbers."""

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics, prefix = trainer.callback_metrics, getattr(pl_module, "test_prefix", "test")
        names = getattr(pl_module, "test_names", [])
        rows = [[n, 100 * float(metrics[f"{prefix}/{n}/wer"]), 100 * float(metrics[f"{prefix}/{n}/cer"])]
                for n in names if f"{prefix}/{n}/wer" in metrics and f"{prefix}/{n}/cer" in metrics]
        if rows and trainer.is_global_zero:
            log_table(trainer, f"{prefix}/results", ["test set", "WER %", "CER %"], rows, trainer.global_step)


def log_table(trainer: L.Trainer, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
    """A table to every logger that shows tables: W&B as a table, TensorBoard as Markdown text."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=columns, data=rows, step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(key, format_table(columns, rows), step)
