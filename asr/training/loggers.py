"""Experiment loggers: W&B when installed (offline unless an API key is configured), CSV, TensorBoard.

A run continued in its own folder (a requeued SLURM job, see asr.training.callbacks.Preemption) goes on
logging where it stopped: the CSV logger appends to the folder's metrics.csv, and the W&B logger
resumes the W&B run whose files are in the folder.
"""

from __future__ import annotations

import csv
import logging
import netrc
import os
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger

from asr.files import atomic_write

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
        import wandb  # noqa: F401
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:
        log.info("wandb is not installed (pip install 'asr[wandb]'); logging to the other loggers only")
        return None
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_configured() else "offline")
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"logger.wandb.mode must be auto, online, offline or disabled, got {mode!r}")
    if "id" not in kwargs and (previous := previous_wandb_run(save_dir)) is not None:
        log.info("continuing W&B run %s found in %s", previous, save_dir)
        kwargs.update(id=previous, resume="allow")
    if mode == "offline":
        log.warning("W&B is offline (no API key configured): after `wandb login`, upload this run with "
                    "`wandb sync %s/wandb/offline-run-*`", save_dir)
    logger = WandbLogger(project=project, name=name, save_dir=save_dir, offline=mode == "offline",
                         mode=mode, log_model=log_model, **kwargs)
    # Lightning passes anonymous=None, which W&B answers with a warning that it has no effect.
    if getattr(logger, "_wandb_init", {}).get("anonymous", False) is None:
        del logger._wandb_init["anonymous"]
    return logger


def previous_wandb_run(save_dir: str | os.PathLike) -> str | None:
    """The id of the newest W&B run stored under ``save_dir`` (``wandb/[offline-]run-<time>-<id>``)."""
    runs = sorted((Path(save_dir) / "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    return runs[-1].name.rsplit("-", 1)[1] if runs else None


class CSVLogger(_LightningCSVLogger):
    """Lightning's CSVLogger, except that in a folder that already has a metrics.csv it appends
    (keeping the earlier rows and columns); Lightning's deletes the file."""

    @property
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        metrics = Path(self.log_dir) / "metrics.csv"
        previous = metrics.read_bytes() if metrics.is_file() else None
        with warnings.catch_warnings():  # "... Previous log files in this directory will be deleted": not so here
            warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
            writer = super().experiment
        if previous is not None and hasattr(writer, "metrics_keys"):  # rank 0 (other ranks get a dummy)
            with atomic_write(metrics, "wb") as f:
                f.write(previous)
            writer.metrics_keys = next(csv.reader(previous.decode("utf-8").splitlines()), [])
        return writer
