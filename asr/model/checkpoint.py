"""Checkpoints: a Lightning ``.ckpt`` written by training -> a ready acoustic model and tokenizer.

A checkpoint describes itself (``checkpoint_metadata``, stored by ``ASRModule.on_save_checkpoint``):
the architecture, the tokenizer and the resolved run config travel with the weights, so no config
file is needed to rebuild the model (:func:`load_checkpoint`). A file that is not a usable checkpoint
is one :class:`CheckpointError` line naming it. Writing checkpoints, resuming and fine-tuning are
training's (:mod:`asr.training.checkpoints`). This module does not import Lightning.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr.model.acoustic import AcousticModel
from asr.text import CharTokenizer

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "asr"  # the entry of a Lightning checkpoint that makes it self-describing
CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A file that is not a usable asr checkpoint; the message names it."""


@dataclass
class LoadedCheckpoint:
    model: AcousticModel  # in eval mode
    tokenizer: CharTokenizer
    config: dict[str, Any]  # the resolved run config of the training run
    path: Path


def checkpoint_metadata(model: AcousticModel, tokenizer: CharTokenizer, config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint stores under CHECKPOINT_KEY, beside Lightning's own entries."""
    return {"format": CHECKPOINT_FORMAT, "model": model.config_dict(), "tokenizer": tokenizer.to_dict(), "config": config}


def read_checkpoint_file(path: Path, map_location: str | torch.device, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)``; a file it cannot load is a CheckpointError saying why in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "looks like a TorchScript archive": the error below says it
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except Exception as err:  # torch raises many types for truncated or foreign files
            reason = _load_failure(path, err)
    raise CheckpointError(f"{path}: {reason}")


def _load_failure(path: Path, err: Exception) -> str:
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive whose directory is at the end
        return "not a readable PyTorch checkpoint (truncated, or not written by torch.save)"
    if "TorchScript" in str(err):
        return "a TorchScript model (scripts/export.py writes these), not a checkpoint; use the .ckpt it came from"
    if "Weights only load failed" in str(err):
        return ("not an asr checkpoint: it holds pickled Python objects (a saved model or class?), where checkpoints "
                "of scripts/train.py hold only tensors and plain data")
    return f"not a readable PyTorch checkpoint ({_first_line(err)})"


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model of a training checkpoint. Raises CheckpointError with the path on bad input."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    ckpt = read_checkpoint_file(path, map_location)
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not an asr checkpoint (no {CHECKPOINT_KEY!r} entry); use one written by scripts/train.py")
    if meta.get("format", 0) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: written by a newer asr (format {meta['format']}); upgrade asr to load it")
    try:
        model = AcousticModel.from_config_dict(meta["model"])
        prefix = "model."
        state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        model.load_state_dict(state)
        tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
    except Exception as err:  # a damaged or hand-made file: missing entries, wrong types or shapes
        raise CheckpointError(f"{path}: a damaged asr checkpoint ({type(err).__name__}: {_first_line(err)}); "
                              "use one written by scripts/train.py") from None
    model.eval()
    return LoadedCheckpoint(model, tokenizer, meta.get("config", {}), path)
