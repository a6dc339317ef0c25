"""Training logic: the LightningModule that puts features -> model -> CTC loss together.

``ASRModule`` owns no layers: it receives an :class:`~asr.model.AcousticModel` and a tokenizer,
computes the CTC loss in training, and in validation and test decodes greedily and accumulates
corpus WER/CER (summed edit counts, reduced across DDP ranks). Each checkpoint it writes carries
what :func:`asr.model.checkpoint.load_checkpoint` needs to rebuild the model from the file alone: the
architecture, the tokenizer and the resolved run config.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from torch import nn

from asr.data.batching import Batch
from asr.decoding.greedy import GreedyDecoder
from asr.metrics import ErrorRate
from asr.model.acoustic import AcousticModel
from asr.model.checkpoint import CHECKPOINT_KEY, checkpoint_metadata
from asr.text import CharTokenizer
from asr.training.optim import OptimConfig, build_optimizer, lr_factor
from asr.training.schedule import Plan, describe

log = logging.getLogger(__name__)

SCHEDULE_KEY = "asr_schedule"  # checkpoint entry: {"max_epochs", "max_steps", "total"} of the lr schedule


class ASRModule(L.LightningModule):
    """CTC training and greedy evaluation of an acoustic model.

    Args:
        model: the acoustic model (features included).
        tokenizer: the alphabet the targets are encoded with.
        optim: optimizer and schedule settings.
        run_config: the resolved run configuration, stored in every checkpoint.
        test_names: names of the test sets, in the order of the test dataloaders.
        plan: the schedule for this world size (asr.training.schedule), logged when training starts.
    """

    def __init__(
        self,
        model: AcousticModel,
        tokenizer: CharTokenizer,
        optim: OptimConfig | None = None,
        run_config: dict[str, Any] | None = None,
        test_names: Sequence[str] = ("test",),
        plan: Plan | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.optim = optim or OptimConfig()
        self.run_config = run_config or {}
        self.decoder = GreedyDecoder(tokenizer.blank)
        self.ctc = nn.CTCLoss(blank=tokenizer.blank, reduction="none", zero_infinity=True)
        self.val_wer, self.val_cer = ErrorRate("word"), ErrorRate("char")
        self.test_names = list(test_names)
        self.test_wer = nn.ModuleList(ErrorRate("word") for _ in self.test_names)
        self.test_cer = nn.ModuleList(ErrorRate("char") for _ in self.test_names)
        self.skipped_files: list[tuple[str, str]] = []
        self.schedule: dict[str, int] | None = None  # the lr schedule's length, fixed once per run (see below)
        self.plan = plan
        self.test_prefix = "test"  # metric names test/<set>/wer; asr.training.train also tests as test_final

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(waveforms, lengths)

    def ctc_loss(self, log_probs: torch.Tensor, out_lengths: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean over utterances of the CTC loss per utterance (nats)."""
        losses = self.ctc(log_probs.transpose(0, 1), batch.targets, out_lengths, batch.target_lengths)
        return losses.mean()

    def training_step(self, batch: Batch | None, batch_idx: int) -> torch.Tensor:
        if batch is None:  # every file of the batch was unreadable: a zero step keeps DDP ranks in step
            return sum(p.sum() * 0.0 for p in self.parameters())
        self._note_skipped(batch)
        log_probs, out_lengths = self(batch.waveforms, batch.lengths)
        loss = self.ctc_loss(log_probs, out_lengths, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.size)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Log the global L2 norm of the gradients before clipping (what trainer.gradient_clip_val is
        compared with); a device tensor, read by the host only on the steps the logger writes."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads:
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads))

    def validation_step(self, batch: Batch | None, batch_idx: int) -> None:
        if batch is None:
            return
        self._note_skipped(batch)
        log_probs, out_lengths = self(batch.waveforms, batch.lengths)
        self.log("val/loss", self.ctc_loss(log_probs, out_lengths, batch), batch_size=batch.size, sync_dist=True)
        hyps = self.transcribe_batch(log_probs, out_lengths)
        self.val_wer.update(batch.texts, hyps)
        self.val_cer.update(batch.texts, hyps)
        self.log("val/wer", self.val_wer, prog_bar=True, batch_size=batch.size)
        self.log("val/cer", self.val_cer, batch_size=batch.size)

    def test_step(self, batch: Batch | None, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch is None:
            return
        self._note_skipped(batch)
        name = self.test_names[dataloader_idx]
        hyps = self.transcribe_batch(*self(batch.waveforms, batch.lengths))
        wer, cer = self.test_wer[dataloader_idx], self.test_cer[dataloader_idx]
        wer.update(batch.texts, hyps)
        cer.update(batch.texts, hyps)
        self.log(f"{self.test_prefix}/{name}/wer", wer, batch_size=batch.size, add_dataloader_idx=False)
        self.log(f"{self.test_prefix}/{name}/cer", cer, batch_size=batch.size, add_dataloader_idx=False)

    def transcribe_batch(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [self.tokenizer.decode(h.tokens) for h in self.decoder(log_probs, lengths)]

    def _note_skipped(self, batch: Batch) -> None:
        for item in batch.skipped:
            log.warning("skipped unreadable audio %s: %s", item.path, item.reason)
            self.skipped_files.append((item.path, item.reason))

    def on_fit_end(self) -> None:
        if self.skipped_files:
            log.warning("%d unreadable audio file(s) were skipped during training (first: %s)",
                        len(self.skipped_files), self.skipped_files[0][0])

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.parameters(), self.optim)
        total = self._schedule_steps() if self.optim.schedule == "cosine" else 0
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, self.optim, total, self._time_fraction()))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _time_fraction(self) -> float | None:
        """The part of trainer.max_time used so far (Lightning's Timer, restored on resume), for
        ``optim.clock: time``; None otherwise."""
        if self.optim.clock != "time" or self._trainer is None:
            return None
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        if remaining is None:
            return None
        elapsed = timer.time_elapsed()
        return min(1.0, elapsed / max(elapsed + remaining, 1e-9))

    def _schedule_steps(self) -> int:
        """Optimizer steps of the whole run. Estimated from the epoch length when training starts and
        kept in checkpoints, so a resumed run follows the same curve (epochs may differ by a few
        batches); estimated again if the run's max_epochs or max_steps, its world size or its
        accumulation changed (a run resumed on another number of GPUs)."""
        limits = {"max_epochs": self.trainer.max_epochs or -1, "max_steps": self.trainer.max_steps,
                  "world_size": self.trainer.world_size, "accumulate": self.trainer.accumulate_grad_batches}
        if self.schedule is None or {k: self.schedule.get(k) for k in limits} != limits:
            self.schedule = {**limits, "total": int(self.trainer.estimated_stepping_batches)}
        return self.schedule["total"]

    def on_fit_start(self) -> None:
        """Measure the global feature statistics (``features.normalize=global``) before the first
        step; a resumed or fine-tuned model keeps the ones in its weights."""
        features = self.model.features
        if features.global_normalize and int(features.global_frames) == 0:
            count = self.model.feature_config.global_stats_utterances
            total = squares = 0.0
            frames = 0
            for batch in self.trainer.datamodule.sample_batches(count):
                t, s, n = features.frame_sums(batch.waveforms.to(self.device), batch.lengths.to(self.device))
                total, squares, frames = total + t, squares + s, frames + n
            if frames == 0:
                raise RuntimeError("features.normalize=global: no training utterance could be read to measure "
                                   "the feature statistics")
            features.set_global_stats(total, squares, frames)
            log.info("features: global statistics from %d training utterances (%d frames)", count, frames)

    def on_train_start(self) -> None:
        if self.plan is not None and self.trainer.is_global_zero:
            steps = math.ceil(self.trainer.num_training_batches / max(1, self.trainer.accumulate_grad_batches))
            log.info("%s", describe(self.plan, steps, int(self.trainer.estimated_stepping_batches)))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = checkpoint_metadata(self.model, self.tokenizer, self.run_config)
        if self.schedule is not None:
            checkpoint[SCHEDULE_KEY] = dict(self.schedule)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.schedule = checkpoint.get(SCHEDULE_KEY, self.schedule)
