"""Checkpoints: a Lightning ``.ckpt`` written by training -> a ready acoustic model and tokenizer.

A checkpoint describes itself (``checkpoint_metadata``, stored by ``ASRModule.on_save_checkpoint``): the architecture, the
tokenizer and the resolved run config travel with the weights, so no config file is needed to
rebuild the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr.model import AcousticModel
from asr.text import CharTokenizer

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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model of a training checkpoint. Raises CheckpointError with the path on bad input."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for non-checkpoint files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({str(err).splitlines()[0][:200]})") from None
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if meta is None:
        raise CheckpointError(f"{path}: not an asr checkpoint (no {CHECKPOINT_KEY!r} entry); use one written by scripts/train.py")
    if meta.get("format", 0) > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: written by a newer asr (format {meta['format']}); upgrade asr to load it")
    model = AcousticModel.from_config_dict(meta["model"])
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state)
    model.eval()
    return LoadedCheckpoint(model, CharTokenizer.from_dict(meta["tokenizer"]), meta.get("config", {}), path)
