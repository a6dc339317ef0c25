"""A global utterance index -> its :class:`~asr.data.dataset.Example`, read from a shard.

The utterance's two members (``<key>.json``, ``<key>.flac``) are one byte span of its shard, read
with one ``pread`` from the local shard or its cached copy (:class:`~asr.data.shards.remote.ShardSet`);
the FLAC is decoded in memory and resampled (with speed perturbation) as files are. What cannot be
used is a :class:`~asr.data.dataset.Skipped` item naming the shard and the member, which the
collate function drops and the training loop counts: a corrupt member, characters outside the
alphabet, a transcript too long for its audio, a truncated shard (the rest of it is skipped, one
warning), a remote shard that could not be fetched after the retries (its utterances are skipped,
one warning). Batches of :class:`~asr.data.shards.sampler.ShardBatchSampler` name the shards their
stream reads next: a worker fetches them into the cache in a background thread meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from asr.audio import AudioError, decode_audio
from asr.data.dataset import Example, Skipped, ctc_min_frames, perturbed_rate
from asr.data.shards.layout import AUDIO_MEMBER, META_MEMBER, ShardError, split_members
from asr.data.shards.remote import ShardSet
from asr.text import CharTokenizer

log = logging.getLogger(__name__)

OPEN_FILES = 8  # shard files a reader keeps open


class ShardDataset(Dataset):
    """Utterance ``i`` of a :class:`ShardSet`'s index -> Example or Skipped.

    Args:
        shards: the shards and their index.
        tokenizer: normalizes and encodes transcripts.
        sample_rate: waveforms are resampled to this rate (Hz).
        speeds: speed-perturbation factors, one drawn per item (as :class:`~asr.data.dataset.AudioDataset`).
        output_frame_rate: the model's output frames per second: a transcript CTC cannot emit in
            its audio's frames is skipped (None: no check).
    """

    def __init__(self, shards: ShardSet, tokenizer: CharTokenizer, sample_rate: int, speeds: Sequence[float] = (1.0,),
                 output_frame_rate: float | None = None) -> None:
        self.shards, self.tokenizer, self.sample_rate = shards, tokenizer, sample_rate
        self.speeds, self.output_frame_rate = tuple(speeds), output_frame_rate
        self._files: OrderedDict[Path, int] = OrderedDict()
        self._unusable: dict[int, str] = {}  # shard -> why the rest of it is skipped
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetching: dict[int, Future] = {}

    def __len__(self) -> int:
        return len(self.shards.index)

    @property
    def durations(self) -> np.ndarray:
        return self.shards.index.duration

    def __getstate__(self) -> dict:  # to a DataLoader worker: no open files, no threads
        return {**self.__dict__, "_files": OrderedDict(), "_prefetcher": None, "_prefetching": {}}

    def __getitems__(self, indices: Sequence[int]) -> list[Example | Skipped]:
        for shard in getattr(indices, "upcoming", ()):
            self._prefetch(shard)
        return [self[i] for i in indices]

    def __getitem__(self, i: int) -> Example | Skipped:
        index = self.shards.index
        shard = int(index.shard[i])
        where = f"{self.shards.url(shard)}@{int(index.start[i])}"
        if shard in self._unusable:
            return Skipped(i, where, self._unusable[shard])
        try:
            span = self._read(shard, int(index.start[i]), int(index.size[i]))
            members = split_members(span, where)
        except ShardError as err:
            return self._give_up(i, shard, where, str(err))
        except ValueError as err:
            return Skipped(i, where, str(err).removeprefix(f"{where}: "))
        where = f"{self.shards.url(shard)}:{members[AUDIO_MEMBER][0]}"
        try:
            meta = json.loads(members[META_MEMBER][1])
            text = self.tokenizer.normalize(str(meta["text"]))
        except (ValueError, KeyError, TypeError) as err:
            return Skipped(i, where, f"unreadable {META_MEMBER} member ({err})")
        if self.tokenizer.unknown(text):
            return Skipped(i, where, f"characters {''.join(sorted(self.tokenizer.unknown(text)))!r} not in the alphabet")
        tokens = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        if self.output_frame_rate and ctc_min_frames(tokens.tolist()) > int(index.duration[i] * self.output_frame_rate):
            return Skipped(i, where, "transcript too long for the audio's CTC frames")
        try:
            waveform = decode_audio(members[AUDIO_MEMBER][1], perturbed_rate(self.sample_rate, self.speeds), where)
        except AudioError as err:
            return Skipped(i, err.path, err.reason)
        return Example(i, waveform, tokens, text)

    def _read(self, shard: int, start: int, size: int) -> bytes:
        if (fetching := self._prefetching.get(shard)) is not None:
            fetching.result()  # the background fetch of this shard: wait for it rather than fetch twice
        path = self.shards.local_path(shard)
        fd = self._files.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as err:
                raise ShardError(f"{path}: {err.strerror}") from None
            self._files[path] = fd
            if len(self._files) > OPEN_FILES:
                os.close(self._files.popitem(last=False)[1])
        self._files.move_to_end(path)
        span = os.pread(fd, size, start)
        if len(span) < size:
            length = os.fstat(fd).st_size
            raise ShardError(f"truncated at byte {length} (its index has an utterance at {start}-{start + size})")
        return span

    def _give_up(self, i: int, shard: int, where: str, reason: str) -> Skipped:
        """The rest of ``shard`` is skipped (one warning): it is truncated or cannot be fetched."""
        self._unusable[shard] = reason
        log.warning("%s: %s: the rest of this shard is skipped", self.shards.url(shard), reason)
        return Skipped(i, where, reason)

    def _prefetch(self, shard: int) -> None:
        if self.shards.cache is None or shard in self._prefetching:
            return
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="shard-prefetch")
        future = self._prefetcher.submit(self.shards.cache.prefetch, self.shards.url(shard),
                                         self.shards.index.shards[shard].bytes)
        self._prefetching[shard] = future
        future.add_done_callback(lambda _: self._prefetching.pop(shard, None))
