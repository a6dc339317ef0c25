"""Checkpoint files of training: written whole or not at all, resumed from, fine-tuned from.

- ``AtomicCheckpointIO`` (Lightning's checkpoint writer made kill-safe) goes in ``Trainer(plugins=[...])``.
  Every checkpoint the trainer writes (ModelCheckpoint's top-k and ``last.ckpt``, the preemption
  checkpoints of ``asr.training.callbacks.Preemption``, ``trainer.save_checkpoint``) goes through the
  strategy's CheckpointIO, on the global-zero rank only (under DDP too). This one writes a local path
  with :func:`save_checkpoint_file`: a temporary file in the same folder, flushed, fsync'ed and renamed
  into place. Lightning's own writer goes through a temporary file in the system's temp folder and
  moves it, a copy when that is another file system, so a kill mid-copy left a truncated file under
  the final name. Remote paths (``s3://`` ...) keep Lightning's writer.
- :func:`check_resumable`: a path -> nothing, or a one-line CheckpointError when it is truncated,
  unreadable or not a training checkpoint.
- :func:`init_weights`: a checkpoint's weights copied into a freshly built model of the same
  architecture (``init_from=``: fine-tuning), where resuming continues a run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from asr.files import atomic_write
from asr.model.acoustic import AcousticModel
from asr.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_file
from asr.model.lstm import SplitBiLSTM, convert_rnn_state_dict
from asr.text import CharTokenizer

log = logging.getLogger(__name__)

RESUME_KEYS = ("state_dict", "optimizer_states", "loops")  # what Lightning's fit needs to continue from a file
PARTIAL_WRITES = ".*.ckpt.*.tmp"  # asr.files.atomic_write's temporary files of checkpoints that a kill interrupted


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
    ckpt = read_checkpoint_file(path, "cpu", mmap=True)
    missing = [k for k in RESUME_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint to resume from (no {', '.join(missing)}); "
                              "use last.ckpt or a checkpoint of scripts/train.py's checkpoints/ folder")


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


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local writes are atomic.

    Args:
        run_dir: the run folder. The first write (by the one process that writes) removes the
            temporary files that killed writes left in it and its subfolders, as the first write
            into any other folder does there.
    """

    def __init__(self, run_dir: str | Path | None = None) -> None:
        super().__init__()
        self._pending = [Path(run_dir)] if run_dir is not None else []
        self._cleaned: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # remote, or options only it handles
            return
        for run_dir in self._pending:
            for folder in {tmp.parent for tmp in run_dir.rglob(PARTIAL_WRITES)}:
                remove_partial_writes(folder)
        self._pending = []
        folder = Path(path).resolve().parent
        if folder not in self._cleaned:
            remove_partial_writes(folder)
            self._cleaned.add(folder)
        save_checkpoint_file(checkpoint, path)
