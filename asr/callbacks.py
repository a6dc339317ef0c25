"""Training callbacks: throughput (audio seconds and utterances per second) and sample transcripts."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from asr.data.batching import Batch


class Throughput(L.Callback):
    """Logs ``train/audio_per_sec`` (seconds of audio trained on per wall-clock second, data waits
    included) and ``train/utts_per_sec`` every ``window`` steps, from host-side counts only (no GPU sync).
    On CUDA it also logs the peak GPU memory in GiB."""

    def __init__(self, window: int = 25) -> None:
        self.window = window
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
