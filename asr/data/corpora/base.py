"""Corpora: where a recipe's data comes from, as named splits -> manifest files.

A corpus has two calls. ``prepare()`` does the slow, once-only work (generate, download,
extract, write manifests); training runs it on one process per node before anything else.
``manifests()`` is cheap, runs on every process, and returns ``{split: manifest path}`` or
raises :class:`CorpusError` with one line saying what is missing and how to make it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Protocol


class CorpusError(RuntimeError):
    """A corpus that is not where the config says; the message says how to prepare it."""


class Corpus(Protocol):
    def prepare(self) -> None: ...

    def manifests(self) -> dict[str, Path]: ...


class ManifestCorpus:
    """Any corpus, given as ready manifests: ``{split name: path to a JSON-lines manifest}``.

    Build the manifests with ``python scripts/make_manifest.py`` (see ``asr.data.manifest``).
    """

    def __init__(self, splits: Mapping[str, str | os.PathLike]) -> None:
        self.splits = {name: Path(p) for name, p in splits.items()}

    def prepare(self) -> None:
        pass

    def manifests(self) -> dict[str, Path]:
        missing = [f"{name}={path}" for name, path in self.splits.items() if not path.is_file()]
        if missing:
            raise CorpusError(f"manifest(s) not found: {', '.join(missing)}; build them with "
                              "'python scripts/make_manifest.py librispeech|folder <audio folder> <manifest.jsonl>'")
        return dict(self.splits)
