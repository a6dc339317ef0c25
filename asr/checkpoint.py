"""Checkpoints: a Lightning ``.ckpt`` written by training -> a ready acoustic model and tokenizer.

A checkpoint describes itself (``checkpoint_metadata``, stored by ``ASRModule.on_save_checkpoint``): the architecture, the
tokenizer and the resolved run config travel with the weights, so no config file is needed to
rebuild the model.

Fine-tuning: ``init_weights`` copies a checkpoint's weights into a freshly built model of the same
architecture (``init_from=`` in training), where resuming (``check_resumable``) continues a run.

Writing and checking files: ``save_checkpoint_file`` (a checkpoint dict -> a file that is either
whole or absent under its name, used by ``asr.checkpoint_io.AtomicCheckpointIO`` for every file
training writes) and ``check_resumable`` (a path -> nothing, or a one-line CheckpointError when it
is truncated, unreadable or not a training checkpoint). This module does not import Lightning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from asr.files import atomic_write
from asr.lstm import SplitBiLSTM, convert_rnn_state_dict
from asr.model import AcousticModel
from asr.text import CharTokenizer

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "asr"  # the entry of a Lightning checkpoint that makes it self-describing
CHECKPOINT_FORMAT = 1
RESUME_KEYS = ("state_dict", "optimizer_states", "loops")  # what Lightning's fit needs to continue from a file
PARTIAL_WRITES = ".*.ckpt.*.tmp"  # asr.files.atomic_write's temporary files of checkpoints that a kill interrupted


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


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the folder of ``path``, flushed, fsync'ed and renamed over
    ``path``: a process killed at any point leaves the previous file (or none) under ``path``, never
    part of the new one."""
    with atomic_write(path, "wb") as f:
        torch.save(checkpoint, f)


def remove_partial_writes(folder: str | os.PathLike) -> None:
    """Delete the temporary files of checkpoint writes that a kill interrupted in ``folder``: call it
    only from the one process that writes checkpoints there."""
    for tmp in Path(folder).glob(PARTIAL_WRITES):
        with contextlib.suppress(OSError):
            tmp.unlink()
            log.info("removed %s, left by an interrupted checkpoint write", tmp)


def check_resumable(path: str | os.PathLike) -> None:
    """Raise CheckpointError (one line naming ``path``) unless training can continue from it: it
    loads as Lightning loads it on resume (``weights_only``; memory-mapped, so tensors are not read)
    and holds the weights, optimizer states and loop counters. A truncated file fails here: its zip
    directory, at the end, is missing."""
    path = Path(path)
    ckpt = _load(path, "cpu", mmap=True)
    missing = [k for k in RESUME_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint to resume from (no {', '.join(missing)}); "
                              "use last.ckpt or a checkpoint of scripts/train.py's checkpoints/ folder")


def _load(path: Path, map_location: str | torch.device, mmap: bool = False) -> Any:
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
    ckpt = _load(path, map_location)
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


def init_weights(model: AcousticModel, tokenizer: CharTokenizer, path: str | os.PathLike) -> None:
    """Copy the weights of the model in the training checkpoint ``path`` into ``model``, in place: the
    start of a fine-tuning run. The two must have the same symbols, the same features and the same
    layer shapes (dropout and ``rnn_impl`` may differ); otherwise a CheckpointError names the first
    difference. Optimizer state and counters are not taken: the run starts its schedule afresh."""
    source = load_checkpoint(path)
    if source.tokenizer.symbols != tokenizer.symbols:
        raise CheckpointError(f"{path}: its symbols {''.join(source.tokenizer.symbols[2:])!r} differ from this "
                              f"run's {''.join(tokenizer.symbols[2:])!r} (text.alphabet); fine-tuning needs the same ones")
    theirs, ours = asdict(source.model.feature_config), asdict(model.feature_config)
    for key, value in ours.items():
        if theirs.get(key) != value:
            raise CheckpointError(f"{path}: trained with features.{key}={theirs.get(key)}, this run has {value}; "
                                  f"set features.{key}={theirs.get(key)} to fine-tune it")
    layout = "split" if isinstance(model.rnn, SplitBiLSTM) else "packed"
    state = convert_rnn_state_dict(source.model.state_dict(), layout, prefix="rnn.")
    target = model.state_dict()
    for key, value in target.items():
        if key not in state or state[key].shape != value.shape:
            there = tuple(state[key].shape) if key in state else "absent"
            raise CheckpointError(f"{path}: a different architecture ({key}: {there} there, {tuple(value.shape)} here); "
                                  "set model.* as in its config.yaml to fine-tune it")
    model.load_state_dict({key: state[key] for key in target})
