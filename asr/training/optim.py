"""Optimizer and learning-rate schedule: AdamW with linear warm-up, then a decay."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

SCHEDULES = ("cosine", "inverse_sqrt", "constant")
CLOCKS = ("steps", "time")


@dataclass
class OptimConfig:
    """AdamW and its schedule. Steps are optimizer steps."""

    lr: float = 1.5e-3  # peak learning rate, reached at the end of warm-up
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    warmup_steps: int = 300
    schedule: str = "cosine"  # cosine: to min_lr_ratio * lr at the last step | inverse_sqrt | constant
    min_lr_ratio: float = 0.05  # floor of the decay, as a fraction of lr
    # What the cosine decay runs against: "steps" ends it at the run's last step (max_epochs or
    # max_steps); "time" also ends it when trainer.max_time runs out, whichever comes first: for
    # recipes with a time budget, whose step count depends on the machine (and so does the curve).
    clock: str = "steps"

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # a config gives a list
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}: must be a positive learning rate, e.g. 1e-3")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas={list(self.betas)}: must be two numbers in [0, 1)")
        if not self.eps > 0:
            raise ValueError(f"eps={self.eps}: must be positive")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay}: must be >= 0")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps}: must be >= 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule}: must be one of {', '.join(SCHEDULES)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio}: must be in [0, 1]")
        if self.clock not in CLOCKS:
            raise ValueError(f"clock={self.clock}: must be one of {', '.join(CLOCKS)}")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: OptimConfig, total_steps: int, time_fraction: float | None = None) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based) of ``total_steps``; with
    ``time_fraction`` (the part of the time budget used, ``clock: time``) the cosine decay runs
    against whichever of the two is further along."""
    warmup = max(cfg.warmup_steps, 1)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "inverse_sqrt":
        return max(cfg.min_lr_ratio, math.sqrt(warmup / (step + 1)))
    if cfg.schedule == "cosine":
        progress = min(1.0, max((step - warmup) / max(1, total_steps - warmup), time_fraction or 0.0))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"optim.schedule must be cosine, inverse_sqrt or constant, got {cfg.schedule!r}")
