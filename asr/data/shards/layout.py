"""The shard format: what ``scripts/shard.py`` writes and the training reads.

    OUT/000000.tar ...               tar shards; each utterance is two members, WebDataset style:
                                     <key>.json  {"id", "text", "duration", "speaker", "sample_rate"}
                                     <key>.flac  16-bit FLAC (mono)
    OUT/000000.tar.json ...          each shard's own index, written once the shard is whole
    OUT/index.json                   the shards (name, utterances, seconds, bytes) and the format version
    OUT/index.npz                    per utterance, in shard order: shard number, byte span of its two
                                     members (start of the first header, length), duration (ShardIndex)
    OUT/tarred_audio_manifest.json   NeMo's tarred-dataset manifest (audio_filepath = member, shard_id)
    OUT/shards.skipped.tsv           inputs that could not be read, and why

WebDataset (``webdataset.WebDataset``), NeMo's tarred datasets and plain ``tar`` read the shards as
they are. ``index.npz`` is the compact index the sampler plans from: 24 bytes an utterance, no
Python object per utterance (5 million utterances: 120 MB).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from asr.files import atomic_write

FORMAT = 1
INDEX_JSON, INDEX_ARRAYS = "index.json", "index.npz"
NEMO_MANIFEST = "tarred_audio_manifest.json"
SKIPPED = "shards.skipped.tsv"
SIDECAR = ".json"  # a shard's own index: <shard>.tar.json
AUDIO_MEMBER, META_MEMBER = "flac", "json"
BLOCK = tarfile.BLOCKSIZE  # 512: tar headers and data are padded to it
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # WebDataset splits keys at the first dot; no slashes either


class ShardError(ValueError):
    """Shards, an index or a URL that cannot be used; the message names it and says what to do."""


def shard_name(number: int) -> str:
    return f"{number:06d}.tar"


def member_key(utterance_id: str) -> str:
    """A tar member stem for an utterance id: letters, digits, ``_`` and ``-`` only."""
    return _UNSAFE.sub("_", utterance_id) or "utt"


@dataclass(frozen=True)
class ShardInfo:
    name: str  # file name, relative to the index's folder
    utterances: int
    seconds: float
    bytes: int


@dataclass
class ShardIndex:
    """Per utterance (one row each, in shard order): ``shard`` (uint32, into ``shards``), ``start``
    (uint64, byte offset of its first member's header), ``size`` (uint32, bytes of both members
    with their headers) and ``duration`` (float32 seconds)."""

    shards: list[ShardInfo]
    shard: np.ndarray
    start: np.ndarray
    size: np.ndarray
    duration: np.ndarray
    sample_rate: int | None = None

    def __len__(self) -> int:
        return int(self.duration.shape[0])

    @property
    def hours(self) -> float:
        return float(self.duration.sum(dtype=np.float64)) / 3600

    def to_json(self) -> dict:
        return {"format": FORMAT, "sample_rate": self.sample_rate, "utterances": len(self),
                "seconds": float(self.duration.sum(dtype=np.float64)), "shards": [asdict(s) for s in self.shards]}

    def save(self, folder: str | Path) -> None:
        """``index.npz`` then ``index.json`` in ``folder``, each written whole or not at all."""
        folder = Path(folder)
        buffer = io.BytesIO()
        np.savez(buffer, shard=self.shard, start=self.start, size=self.size, duration=self.duration)
        with atomic_write(folder / INDEX_ARRAYS, "wb") as f:
            f.write(buffer.getvalue())
        with atomic_write(folder / INDEX_JSON) as f:
            json.dump(self.to_json(), f, indent=1)
            f.write("\n")

    @classmethod
    def from_bytes(cls, meta: bytes, arrays: bytes | Path, where: str) -> ShardIndex:
        """The index from the contents of ``index.json`` and ``index.npz`` (its bytes, or its local path:
        read member by member, never whole in memory); ``where`` names them in errors."""
        try:
            info = json.loads(meta)
            version = int(info["format"])
            shards = [ShardInfo(**s) for s in info["shards"]]
        except (ValueError, KeyError, TypeError) as err:
            raise ShardError(f"{where}/{INDEX_JSON}: not an asr shard index ({type(err).__name__}: {err}); "
                             "write the shards with scripts/shard.py") from None
        if version != FORMAT:
            raise ShardError(f"{where}/{INDEX_JSON}: shard format {version}, this asr reads {FORMAT}; "
                             "write the shards again with this asr's scripts/shard.py")
        try:
            with np.load(arrays if isinstance(arrays, Path) else io.BytesIO(arrays)) as z:
                index = cls(shards, z["shard"].astype(np.uint32, copy=False), z["start"].astype(np.uint64, copy=False),
                            z["size"].astype(np.uint32, copy=False), z["duration"].astype(np.float32, copy=False),
                            info.get("sample_rate"))
        except (ValueError, KeyError, OSError) as err:
            raise ShardError(f"{where}/{INDEX_ARRAYS}: damaged ({err}); run scripts/shard.py again on the same "
                             "inputs (it rebuilds the index from the shards' own)") from None
        if not len(index.duration) == len(index.shard) == len(index.start) == len(index.size) or (
                len(index) and int(index.shard.max()) >= len(shards)):
            raise ShardError(f"{where}/{INDEX_ARRAYS}: its arrays do not match {INDEX_JSON}; run scripts/shard.py "
                             "again on the same inputs")
        return index

    def select(self, names: Sequence[str]) -> ShardIndex:
        """The index of the shards named (in that order), renumbered; ShardError for a name it lacks."""
        position = {s.name: i for i, s in enumerate(self.shards)}
        missing = [n for n in names if n not in position]
        if missing:
            raise ShardError(f"shard {missing[0]} is not in the index ({len(self.shards)} shards, "
                             f"{self.shards[0].name if self.shards else 'none'} ...); check the shard pattern")
        wanted = [position[n] for n in names]
        renumber = np.full(len(self.shards), -1, dtype=np.int64)
        renumber[wanted] = np.arange(len(wanted))
        keep = renumber[self.shard.astype(np.int64)] >= 0
        order = np.argsort(renumber[self.shard[keep].astype(np.int64)], kind="stable")
        pick = np.flatnonzero(keep)[order]
        return ShardIndex([self.shards[i] for i in wanted], renumber[self.shard[pick].astype(np.int64)].astype(np.uint32),
                          self.start[pick], self.size[pick], self.duration[pick], self.sample_rate)


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def split_members(span: bytes, where: str) -> dict[str, tuple[str, bytes]]:
    """An utterance's byte span (its two members, headers included) -> ``{extension: (member name,
    data)}``. ValueError naming ``where`` if the bytes are not two whole tar members."""
    members, offset = {}, 0
    while offset + BLOCK <= len(span) and len(members) < 2:
        try:
            info = tarfile.TarInfo.frombuf(span[offset:offset + BLOCK], "utf-8", "surrogateescape")
        except tarfile.TarError as err:
            raise ValueError(f"{where}: not a tar member header ({err})") from None
        data_start = offset + BLOCK
        if data_start + info.size > len(span):
            raise ValueError(f"{where}: member {info.name} is cut short")
        members[info.name.rpartition(".")[2]] = (info.name, span[data_start:data_start + info.size])
        offset = data_start + -(-info.size // BLOCK) * BLOCK
    if AUDIO_MEMBER not in members or META_MEMBER not in members:
        raise ValueError(f"{where}: expected a .{META_MEMBER} and a .{AUDIO_MEMBER} member")
    return members
