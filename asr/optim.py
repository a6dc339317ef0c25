"""Optimizer and learning-rate schedule: AdamW with linear warm-up, then a decay."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch


@dataclass
class OptimConfig:
    """AdamW and its schedule. Steps are optimizer steps."""

    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    warmup_steps: int = 500
    schedule: str = "cosine"  # cosine: to min_lr_ratio * lr at the last step | inverse_sqrt | constant
    min_lr_ratio: float = 0.05  # floor of the decay, as a fraction of lr


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based) of ``total_steps``."""
    warmup = max(cfg.warmup_steps, 1)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "inverse_sqrt":
        return max(cfg.min_lr_ratio, math.sqrt(warmup / (step + 1)))
    if cfg.schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"optim.schedule must be cosine, inverse_sqrt or constant, got {cfg.schedule!r}")
