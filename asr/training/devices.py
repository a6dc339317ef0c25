"""Device defaults: the trainer config and the machine -> precision, TF32, DDP and the progress bar.

Values a user set are kept; the ``auto`` ones are decided here, before the Trainer is built:

- ``trainer.precision: auto``: ``bf16-mixed`` on a CUDA GPU that supports it (Ampere and later),
  ``16-mixed`` (float16 with loss scaling) on older ones (V100, T4), ``32-true`` on CPUs.
- ``tf32: true``: float32 matmuls and convolutions in TF32 on CUDA (``torch.set_float32_matmul_precision("high")``).
- ``trainer.strategy: auto`` with more than one process: DDP named explicitly, with the settings of
  ``asr/conf/strategy/ddp.yaml`` (Lightning's ``auto`` would pick DDP with its own defaults).
- ``trainer.enable_progress_bar: auto``: on when stderr is a terminal; off in a SLURM ``.out`` file
  or a pipe, where ``asr.training.callbacks.ProgressLog`` writes a line a minute instead.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from asr.training.config import CONF_DIR

log = logging.getLogger(__name__)

DDP_STRATEGY = CONF_DIR / "strategy" / "ddp.yaml"
GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def uses_cuda(trainer: DictConfig | dict) -> bool:
    return trainer.get("accelerator", "auto") in GPU_ACCELERATORS and torch.cuda.is_available()


def planned_world_size(trainer: DictConfig | dict) -> int:
    """Processes the trainer config asks for: devices per node (an int, a list, "0,1", or "auto" /
    -1: every GPU, or one CPU process) x ``num_nodes``."""
    devices, nodes = trainer.get("devices", "auto"), int(trainer.get("num_nodes", 1) or 1)
    if isinstance(devices, str) and devices not in ("auto", "-1"):
        devices = [d for d in devices.split(",") if d.strip()] if "," in devices else int(devices)
    if devices in ("auto", "-1", -1):
        devices = torch.cuda.device_count() if uses_cuda(trainer) else 1
    count = len(devices) if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices) else int(devices)
    return max(1, count) * nodes


def precision(trainer: DictConfig | dict) -> str:
    """``trainer.precision``, with ``auto`` decided by the device."""
    requested = str(trainer.get("precision", "auto"))
    if requested != "auto":
        return requested
    if not uses_cuda(trainer):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def progress_bar(trainer: DictConfig | dict) -> bool:
    setting = trainer.get("enable_progress_bar", "auto")
    return sys.stderr.isatty() if setting in (None, "auto") else bool(setting)


def strategy(trainer: DictConfig | dict, world_size: int) -> Any:
    """``trainer.strategy``; ``auto`` for several processes is the DDP spec of asr/conf/strategy/ddp.yaml."""
    chosen = trainer.get("strategy", "auto")
    if chosen == "auto" and world_size > 1:
        return OmegaConf.load(DDP_STRATEGY).trainer.strategy
    return chosen


def trainer_overrides(trainer: DictConfig, tf32: bool) -> dict[str, Any]:
    """The Trainer arguments decided here (passed to ``hydra.utils.instantiate`` over the config), and
    TF32 switched on for CUDA float32 work when ``tf32``."""
    world = planned_world_size(trainer)
    chosen = {"precision": precision(trainer), "enable_progress_bar": progress_bar(trainer),
              "strategy": strategy(trainer, world)}
    if tf32 and uses_cuda(trainer):
        torch.set_float32_matmul_precision("high")  # TF32 matmuls
        torch.backends.cudnn.allow_tf32 = True  # and convolutions (PyTorch's default, made explicit)
    log.info("devices: %d process(es), precision %s, %s%s", world, chosen["precision"],
             "DDP" if world > 1 else "one process", ", TF32 on" if tf32 and uses_cuda(trainer) else "")
    return chosen
