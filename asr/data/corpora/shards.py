"""A corpus of shards (``data=shards``): named splits -> shard sets (``scripts/shard.py``) or manifests.

Each split is a shard spec (a folder ``scripts/shard.py`` wrote, a glob, a brace range or a URL:
:mod:`asr.data.shards.remote`) or, for small evaluation sets, a manifest (``.jsonl``, ``.json``,
``.gz``). Nothing is prepared: the shards exist already, locally or remotely. Relative local paths
are taken from ``root`` when it is set (``data=librispeech_shards``: the folder holding the
prepared dev and test manifests).
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from asr.data.corpora.base import CorpusError
from asr.data.shards.layout import ShardError
from asr.data.shards.remote import ShardSet

MANIFEST_SUFFIXES = (".jsonl", ".json", ".gz")


class ShardCorpus:
    """Splits of shards (or manifests).

    Args:
        splits: ``{split name: shard spec or manifest path}``.
        root: the folder relative local paths in ``splits`` are in (default: the working directory).
        storage_options: passed to fsspec for remote shards (e.g. ``endpoint_url``, ``anon``).
        cache_dir: where remote shards are copied (default ``<tmp>/asr-shard-cache-<uid>``).
        cache_gb: the cache's bound in gigabytes (least recently read shards go first).
    """

    def __init__(self, splits: Mapping[str, str], root: str | None = None,
                 storage_options: Mapping[str, Any] = MappingProxyType({}), cache_dir: str | None = None,
                 cache_gb: float = 20.0) -> None:
        self.splits = {split: self._resolve(str(spec), root) for split, spec in splits.items()}
        self.storage_options = dict(storage_options)
        self.cache_dir, self.cache_gb = cache_dir, cache_gb
        self._sets: dict[str, ShardSet] = {}

    @staticmethod
    def _resolve(spec: str, root: str | None) -> str:
        if root is None or "://" in spec or Path(spec).is_absolute():
            return spec
        return str(Path(root) / spec)

    def prepare(self) -> None:
        pass

    def _is_manifest(self, spec: str) -> bool:
        return "://" not in spec and spec.endswith(MANIFEST_SUFFIXES) and not spec.endswith(".tar")

    def manifests(self) -> dict[str, Path]:
        return {split: Path(spec) for split, spec in self.splits.items() if self._is_manifest(str(spec))}

    def sources(self) -> dict[str, Path | ShardSet]:
        """Every split's manifest path or shard set (shard indexes are read once, here)."""
        out: dict[str, Path | ShardSet] = {}
        for split, spec in self.splits.items():
            if self._is_manifest(str(spec)):
                if not Path(spec).is_file():
                    raise CorpusError(f"data.corpus.splits.{split}={spec}: no such manifest")
                out[split] = Path(spec)
                continue
            if split not in self._sets:
                try:
                    self._sets[split] = ShardSet(spec, self.storage_options, self.cache_dir, self.cache_gb)
                except ShardError as err:
                    raise CorpusError(f"data.corpus.splits.{split}: {err}") from None
            out[split] = self._sets[split]
        return out
