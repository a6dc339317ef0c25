"""Lightning's checkpoint writer, made kill-safe: ``AtomicCheckpointIO`` goes in ``Trainer(plugins=[...])``.

Every checkpoint the trainer writes (ModelCheckpoint's top-k and ``last.ckpt``, the preemption
checkpoints of ``asr.callbacks.Preemption``, ``trainer.save_checkpoint``) goes through the
strategy's CheckpointIO, on the global-zero rank only (under DDP too). This one writes a local path
with ``asr.checkpoint.save_checkpoint_file``: a temporary file in the same folder, flushed, fsync'ed
and renamed into place. Lightning's own writer goes through a temporary file in the system's temp
folder and moves it, a copy when that is another file system, so a kill mid-copy left a truncated
file under the final name. Remote paths (``s3://`` ...) keep Lightning's writer.

Kept apart from ``asr.checkpoint`` so that loading a model for inference does not import Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from asr.checkpoint import PARTIAL_WRITES, remove_partial_writes, save_checkpoint_file


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
