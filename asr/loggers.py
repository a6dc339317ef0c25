"""Experiment loggers: W&B when installed (offline unless an API key is configured), CSV, TensorBoard."""

from __future__ import annotations

import logging
import netrc
import os
from typing import Any

log = logging.getLogger(__name__)


def wandb_configured() -> bool:
    """True when W&B can upload: WANDB_API_KEY is set or ``wandb login`` stored a key in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_logger(save_dir: str, project: str = "asr", name: str | None = None, mode: str = "auto",
                 log_model: bool = False, **kwargs: Any):
    """A ``WandbLogger``, or ``None`` (with a log line) when wandb is not installed.

    Args:
        mode: ``online``, ``offline``, or ``auto``: online when a key is configured, else offline;
            the WANDB_MODE environment variable wins over both.
        log_model: upload checkpoints as W&B artifacts (``True``: at the end; ``"all"``: each one).
    """
    try:
        from lightning.pytorch.loggers import WandbLogger
        import wandb  # noqa: F401
    except ImportError:
        log.info("wandb is not installed (pip install 'asr[wandb]'); logging to the other loggers only")
        return None
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_configured() else "offline")
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"logger.wandb.mode must be auto, online, offline or disabled, got {mode!r}")
    if mode == "offline":
        log.warning("W&B is offline (no API key configured): after `wandb login`, upload this run with "
                    "`wandb sync %s/wandb/offline-run-*`", save_dir)
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=mode == "offline",
                       mode=mode, log_model=log_model, **kwargs)
