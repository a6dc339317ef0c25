"""Batching: examples -> padded batches, and the sampler that chooses which examples go together.

``DurationBatchSampler`` fills each batch up to a budget of padded audio seconds (the longest
utterance times the batch size: what the GPU really holds) from length buckets, so batches carry
little padding and a constant amount of audio. Under DDP every rank draws the same global batch
list from the shared seed and takes every ``num_replicas``-th batch; the list is first split until
its length is a multiple of ``num_replicas``, so every utterance is seen exactly once per epoch
and all ranks run the same number of steps (no DDP hang on the last batch). A checkpoint holds the
sampler's position; resumed with another world size, the epoch finishes with the utterances not yet
trained on (``load_state_dict``).

``collate`` pads a list of examples into a :class:`Batch`, dropping (and listing) unreadable ones.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from asr.data.dataset import Example, Skipped


@dataclass
class Batch:
    """A padded batch. Lengths always travel beside the tensor they describe."""

    waveforms: torch.Tensor  # (batch, samples) float32, zero-padded
    lengths: torch.Tensor  # (batch,) int64: valid samples per waveform
    targets: torch.Tensor  # (batch, max_target_length) int64 token ids, padded with 0
    target_lengths: torch.Tensor  # (batch,) int64
    texts: list[str]  # normalized transcripts
    indices: list[int]  # dataset positions
    sample_rate: int  # Hz
    audio_seconds: float  # real (unpadded) audio, counted on the host so reading it never syncs a GPU
    skipped: list[Skipped] = field(default_factory=list)  # items whose audio could not be read

    @property
    def size(self) -> int:
        return self.waveforms.shape[0]

    @property
    def padded_seconds(self) -> float:
        return self.waveforms.numel() / self.sample_rate

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) so host-to-GPU copies can be asynchronous."""
        for name in ("waveforms", "lengths", "targets", "target_lengths"):
            setattr(self, name, getattr(self, name).pin_memory())
        return self


class Collate:
    """``list[Example | Skipped]`` -> :class:`Batch` (``None`` if every item was unreadable)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate

    def __call__(self, items: Sequence[Example | Skipped]) -> Batch | None:
        examples = [x for x in items if isinstance(x, Example)]
        skipped = [x for x in items if isinstance(x, Skipped)]
        if not examples:
            return None
        lengths = torch.tensor([x.waveform.numel() for x in examples])
        target_lengths = torch.tensor([x.tokens.numel() for x in examples])
        waveforms = torch.zeros(len(examples), int(lengths.max()))
        targets = torch.zeros(len(examples), max(int(target_lengths.max()), 1), dtype=torch.long)
        for i, x in enumerate(examples):
            waveforms[i, : x.waveform.numel()] = x.waveform
            targets[i, : x.tokens.numel()] = x.tokens
        return Batch(waveforms, lengths, targets, target_lengths, [x.text for x in examples],
                     [x.index for x in examples], self.sample_rate, int(lengths.sum()) / self.sample_rate, skipped)


class DurationBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices whose padded duration fits ``batch_seconds``.

    Args:
        durations: seconds per dataset item.
        batch_seconds: budget per batch: max duration in the batch x batch size.
        num_buckets: items are split into this many equal-count duration buckets; batches are
            formed inside a bucket, so their items have similar lengths.
        shuffle: shuffle within buckets and the order of batches, differently each epoch.
        seed: the shared seed; every rank must pass the same one.
        num_replicas, rank: DDP world size and this process's rank.
        sortagrad_epochs: during the first this-many epochs, batches go from short to long.
        max_batch_size: optional cap on items per batch.
    """

    def __init__(
        self,
        durations: Sequence[float],
        batch_seconds: float,
        num_buckets: int = 20,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        sortagrad_epochs: int = 0,
        max_batch_size: int | None = None,
    ) -> None:
        if batch_seconds <= 0:
            raise ValueError(f"batch_seconds must be positive, got {batch_seconds}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.durations = list(durations)
        self.batch_seconds = batch_seconds
        self.num_buckets = max(1, num_buckets)
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.sortagrad_epochs = sortagrad_epochs
        self.max_batch_size = max_batch_size or len(self.durations) or 1
        self.epoch = 0
        self.skip = 0  # batches of this epoch to skip on this rank (mid-epoch resume)
        self.resumed_at = 0  # batches of this epoch this rank trained on before a resume (what Lightning counts)
        self._done: tuple[int, frozenset[int]] = (-1, frozenset())  # (epoch, items trained on by another world size)
        self._cache: tuple[int, list[list[int]]] | None = None

    # Lightning calls `dataloader.batch_sampler.sampler.set_epoch(epoch)` at the start of every epoch.
    @property
    def sampler(self) -> DurationBatchSampler:
        return self

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = self.resumed_at = 0
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches for all ranks together, a multiple of ``num_replicas`` long."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._make_batches())
        return self._cache[1]

    def _make_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        done = self._done[1] if self._done[0] == self.epoch else frozenset()
        order = sorted((i for i in range(len(self.durations)) if i not in done), key=lambda i: self.durations[i])
        size = math.ceil(len(order) / self.num_buckets)
        batches = []
        for start in range(0, len(order), size):
            bucket = order[start : start + size]
            if self.shuffle:
                rng.shuffle(bucket)
            batches.extend(self._fill(bucket))
        if self.epoch < self.sortagrad_epochs:
            batches.sort(key=lambda b: max(self.durations[i] for i in b))
        elif self.shuffle:
            rng.shuffle(batches)
        return _balance(batches, self.num_replicas)

    def _fill(self, indices: list[int]) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for i in indices:
            longest_if_added = max(longest, self.durations[i])
            if current and (longest_if_added * (len(current) + 1) > self.batch_seconds
                            or len(current) >= self.max_batch_size):
                batches.append(current)
                current, longest_if_added = [], self.durations[i]
            current.append(i)
            longest = longest_if_added
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.global_batches()[self.rank :: self.num_replicas]
        yield from mine[self.skip :]

    def __len__(self) -> int:
        return len(self.global_batches()) // self.num_replicas - self.skip

    def state_dict(self) -> dict[str, float]:
        return {"epoch": self.epoch, "skip": self.resumed_at + self.skip, "num_replicas": self.num_replicas,
                "batch_seconds": self.batch_seconds}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Continue the epoch of ``state`` where it stopped. Saved with another world size or batch
        budget (a run resumed on another number of GPUs), the epoch goes on with the utterances the
        earlier run had not trained on, batched for this one: every utterance once per epoch."""
        self.epoch, trained = int(state["epoch"]), int(state["skip"])
        world, budget = int(state.get("num_replicas", self.num_replicas)), float(state.get("batch_seconds", self.batch_seconds))
        self.resumed_at, self.skip, self._cache = 0, trained, None
        if trained and (world, budget) != (self.num_replicas, self.batch_seconds):
            before = DurationBatchSampler(self.durations, budget, self.num_buckets, self.shuffle, self.seed, world, 0,
                                          self.sortagrad_epochs, self.max_batch_size)
            before.epoch = self.epoch
            self._done = (self.epoch, frozenset(i for b in before.global_batches()[: trained * world] for i in b))
            self.resumed_at, self.skip = trained, 0


def _balance(batches: list[list[int]], num_replicas: int) -> list[list[int]]:
    """Split the largest batches until the count is a multiple of ``num_replicas``; if too few items
    remain to split, repeat batches from the start (the only case where an item is seen twice)."""
    batches = list(batches)
    while len(batches) % num_replicas:
        largest = max(range(len(batches)), key=lambda k: len(batches[k]), default=None)
        if largest is None or len(batches[largest]) < 2:
            missing = num_replicas - len(batches) % num_replicas
            return batches + [batches[k % len(batches)] for k in range(missing)] if batches else batches
        b = batches[largest]
        batches[largest : largest + 1] = [b[: len(b) // 2], b[len(b) // 2 :]]
    return batches
