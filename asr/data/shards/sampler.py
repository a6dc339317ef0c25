"""The epoch's batch plan over shards: the index's durations -> each rank's batches, each batch from one worker's shards.

Every rank computes the same plan from the shared seed, the epoch and the index (no I/O):

1. the shards are shuffled and dealt to ``world_size x num_workers`` streams, longest first to the
   stream with the fewest hours (so the streams hold nearly equal audio);
2. each stream reads its shards in windows of ``window_shards`` shards: the utterances of a window
   are sorted by duration (jittered by up to JITTER, so neighbours change from epoch to epoch),
   cut into batches of at most ``batch_seconds`` of padded audio (the longest duration x the
   count, as :class:`~asr.data.batching.DurationBatchSampler`), and the window's batches are
   shuffled. Sorted whole, a window needs no length buckets (as files do: ``num_buckets``), and
   the cutting runs in numpy, one step per batch: 5 million utterances plan in seconds;
3. streams with fewer batches split their largest ones until every stream has as many, so every
   rank runs the same number of steps and every utterance is trained on once per epoch (only a
   stream too small to split repeats batches, with a warning: fewer utterances than the others' batches);
4. a rank's batches interleave its workers' streams, batch ``k`` from worker ``k % num_workers``:
   the order in which a DataLoader hands batches to its workers, so each worker reads its own
   shards, a window at a time, and each batch carries the shards its stream reads in this window
   and the next (the worker fetches them in the background).

State for an exact resume: the epoch and the batches this rank trained on, the same on every rank
(Lightning writes the checkpoint from rank 0 only). Resumed with another number of ranks or workers,
or another batch budget, the epoch finishes with the utterances not yet trained on.
"""

from __future__ import annotations

import logging
import random
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from asr.data.shards.layout import ShardError, ShardIndex

log = logging.getLogger(__name__)

_SEED_STRIDE = 1_000_003
JITTER = 0.02  # the relative noise on the durations a window is sorted by


class PlannedBatch(list):
    """A batch of global utterance indices, with the shards its stream reads in its window and the
    next (``upcoming``: what a remote reader should have in its cache soon)."""

    upcoming: tuple[int, ...] = ()


class ShardBatchSampler(Sampler[list[int]]):
    """Yields this rank's batches of global utterance indices; see the module docstring.

    Args:
        index: the shards' index (durations and shard of every utterance).
        keep: which utterances may be trained on (bool per utterance: the duration screen).
        batch_seconds, shuffle, seed, num_replicas, rank, sortagrad_epochs, max_batch_size: as
            :class:`~asr.data.batching.DurationBatchSampler`.
        num_workers: the DataLoader's worker processes (0 counts as 1: the main process reads).
        window_shards: shards a stream buckets together (and a remote reader holds at once).

    Without ``shuffle`` (evaluation) a rank's batches are one stream (whichever worker reads them),
    streams may hold no shard, and ranks may run different numbers of batches (validation has no
    per-step collective).
    """

    def __init__(self, index: ShardIndex, batch_seconds: float, shuffle: bool = True,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0, num_workers: int = 0,
                 window_shards: int = 4, sortagrad_epochs: int = 0, max_batch_size: int | None = None,
                 keep: np.ndarray | None = None) -> None:
        if batch_seconds <= 0:
            raise ValueError(f"batch_seconds must be positive, got {batch_seconds}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.index = index
        self.keep = np.ones(len(index), dtype=bool) if keep is None else keep
        self.batch_seconds, self.shuffle, self.seed = batch_seconds, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.workers = max(1, num_workers) if shuffle else 1
        self.window_shards, self.sortagrad_epochs = max(1, window_shards), sortagrad_epochs
        self.max_batch_size = max_batch_size or 1 << 30
        streams = num_replicas * self.workers
        if shuffle and len(index.shards) < streams:
            raise ShardError(f"{len(index.shards)} shard(s) for {num_replicas} rank(s) x {self.workers} DataLoader "
                             f"worker(s) = {streams} readers: every reader needs a shard of its own; write smaller "
                             f"shards (scripts/shard.py --shard-hours) or set data.num_workers lower")
        self.epoch, self.skip, self.resumed_at = 0, 0, 0
        self._done: tuple[int, np.ndarray | None] = (-1, None)
        self._cache: tuple[int, list[list[np.ndarray]]] | None = None
        self._upcoming: list[list[tuple[int, ...]]] = []

    @property
    def sampler(self) -> ShardBatchSampler:  # Lightning calls batch_sampler.sampler.set_epoch(epoch)
        return self

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = self.resumed_at = 0
        self.epoch = epoch

    # --- the plan -------------------------------------------------------------------------------

    def streams(self) -> list[list[int]]:
        """The shards of each (rank, worker) stream, in reading order: stream ``rank * workers + worker``."""
        rng = random.Random(self.seed * _SEED_STRIDE + self.epoch)
        order = list(range(len(self.index.shards)))
        if self.shuffle:
            rng.shuffle(order)
        seconds = [self.index.shards[s].seconds for s in order]
        streams: list[list[int]] = [[] for _ in range(self.num_replicas * self.workers)]
        load = [0.0] * len(streams)
        for position in sorted(range(len(order)), key=lambda p: -seconds[p]):  # stable: ties keep the shuffle
            target = min(range(len(streams)), key=load.__getitem__)
            streams[target].append(position)
            load[target] += seconds[position]
        return [[order[p] for p in sorted(stream)] for stream in streams]  # each stream in shuffled order

    def plan(self) -> list[list[np.ndarray]]:
        """Every stream's batches for this epoch (arrays of global indices), all of the same count
        in training; and each batch's upcoming shards (``self._upcoming``, by stream)."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng(self.seed * _SEED_STRIDE + self.epoch + 1)
        keep = self.keep.copy()
        if self._done[0] == self.epoch and self._done[1] is not None:
            keep[self._done[1]] = False
        by_shard = _utterances_by_shard(self.index, keep)
        plans, upcoming = [], []
        for stream in self.streams():
            batches: list[np.ndarray] = []
            next_shards: list[tuple[int, ...]] = []
            windows = [stream[i:i + self.window_shards] for i in range(0, len(stream), self.window_shards)]
            for w, window in enumerate(windows):
                made = self._window_batches(window, by_shard, rng)
                batches += made
                ahead = tuple(window) + (tuple(windows[w + 1]) if w + 1 < len(windows) else ())
                next_shards += [ahead] * len(made)
            plans.append(batches)
            upcoming.append(next_shards)
        if self.shuffle:
            plans, upcoming = _equalize(plans, upcoming)
        self._upcoming = upcoming
        self._cache = (self.epoch, plans)
        return plans

    def _window_batches(self, window: Sequence[int], by_shard: dict[int, np.ndarray],
                        rng: np.random.Generator) -> list[np.ndarray]:
        parts = [by_shard[s] for s in window if s in by_shard]
        if not parts:
            return []
        items = np.concatenate(parts)
        durations = self.index.duration[items].astype(np.float64)
        key = durations * (1 + rng.uniform(-JITTER, JITTER, len(items))) if self.shuffle else durations
        order = np.argsort(key, kind="stable")
        items, durations = items[order], np.maximum.accumulate(durations[order])  # the batch's longest so far
        batches = [items[a:b] for a, b in _cuts(durations, self.batch_seconds, self.max_batch_size)]
        if self.epoch < self.sortagrad_epochs or not self.shuffle:
            return batches
        return [batches[k] for k in rng.permutation(len(batches))]

    # --- what the DataLoader sees -----------------------------------------------------------------

    def batches(self) -> list[PlannedBatch]:
        """This rank's batches: its workers' streams interleaved."""
        plans = self.plan()
        first = self.rank * self.workers
        out = []
        for k in range(min(len(plans[first + w]) for w in range(self.workers)) * self.workers):
            stream, position = first + k % self.workers, k // self.workers
            batch = PlannedBatch(plans[stream][position].tolist())
            batch.upcoming = self._upcoming[stream][position]
            out.append(batch)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.skip:]

    def __len__(self) -> int:
        return len(self.batches()) - self.skip

    def state_dict(self) -> dict[str, float]:
        return {"epoch": self.epoch, "skip": self.resumed_at + self.skip, "num_replicas": self.num_replicas,
                "workers": self.workers, "batch_seconds": self.batch_seconds, "window_shards": self.window_shards}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Continue the epoch of ``state``; saved with other ranks, workers or budget, finish it with
        the utterances the earlier run had not trained on."""
        self.epoch, trained = int(state["epoch"]), int(state["skip"])
        before = (int(state.get("num_replicas", self.num_replicas)), int(state.get("workers", self.workers)),
                  float(state.get("batch_seconds", self.batch_seconds)), int(state.get("window_shards", self.window_shards)))
        self.resumed_at, self.skip, self._cache = 0, trained, None
        if trained and before != (self.num_replicas, self.workers, self.batch_seconds, self.window_shards):
            world, workers, budget, window = before
            old = ShardBatchSampler(self.index, budget, self.shuffle, self.seed, world, 0, workers,
                                    window, self.sortagrad_epochs, self.max_batch_size, self.keep)
            old.epoch = self.epoch
            plans = old.plan()
            done: set[int] = set()
            for rank in range(world):  # every rank had trained on its first `trained` batches
                for k in range(trained):
                    done.update(plans[rank * workers + k % workers][k // workers].tolist())
            self._done = (self.epoch, np.asarray(sorted(done), dtype=np.int64))
            self.resumed_at, self.skip = trained, 0
            log.info("resumed with %d rank(s) x %d worker(s) (the checkpoint had %d x %d): epoch %d goes on with the "
                     "%d utterances not trained on yet", self.num_replicas, self.workers, world, workers, self.epoch,
                     int(self.keep.sum()) - len(self._done[1]))


def _utterances_by_shard(index: ShardIndex, keep: np.ndarray) -> dict[int, np.ndarray]:
    """Shard number -> the global indices of its utterances that ``keep`` admits."""
    wanted = np.flatnonzero(keep).astype(np.int32 if len(keep) < 1 << 31 else np.int64)  # half the memory
    shards = index.shard[wanted]
    order = np.argsort(shards, kind="stable")
    wanted, shards = wanted[order], shards[order]
    bounds = np.flatnonzero(np.diff(shards)) + 1
    return {int(part_shards[0]): part for part, part_shards in zip(np.split(wanted, bounds), np.split(shards, bounds))
            if len(part)}


def _cuts(longest: np.ndarray, budget: float, max_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of consecutive batches over items whose running maximum duration is
    ``longest`` (non-decreasing): each batch as long as its longest item x its size fits ``budget``."""
    cuts, start, n = [], 0, len(longest)
    while start < n:
        # longest[end - 1] * (end - start) <= budget; both factors grow with end: search for it
        low, high = start + 1, min(n, start + max_size)
        while low < high:
            mid = (low + high + 1) // 2
            if longest[mid - 1] * (mid - start) <= budget:
                low = mid
            else:
                high = mid - 1
        cuts.append((start, low))
        start = low
    return cuts


def _equalize(plans: list[list[np.ndarray]], upcoming: list[list[tuple[int, ...]]]
              ) -> tuple[list[list[np.ndarray]], list[list[tuple[int, ...]]]]:
    """Split the largest batches of the shorter streams until every stream has as many batches."""
    target = max(len(p) for p in plans)
    out, out_next = [], []
    for stream, (batches, nexts) in enumerate(zip(plans, upcoming)):
        batches, nexts = list(batches), list(nexts)
        while len(batches) < target:
            largest = max(range(len(batches)), key=lambda k: len(batches[k]), default=None)
            if largest is None or len(batches[largest]) < 2:
                log.warning("shard stream %d has too few utterances for %d batches: %d batch(es) repeated",
                            stream, target, target - len(batches))
                missing = target - len(batches)
                batches += [batches[k % len(batches)] for k in range(missing)] if batches else []
                nexts += [nexts[k % len(nexts)] for k in range(missing)] if nexts else []
                break
            whole = batches[largest]
            batches[largest:largest + 1] = [whole[:len(whole) // 2], whole[len(whole) // 2:]]
            nexts[largest:largest + 1] = [nexts[largest]] * 2
        out.append(batches)
        out_next.append(nexts)
    if any(len(b) != target for b in out):
        raise ShardError("a shard stream has no utterance at all; write more shards or use fewer readers")
    return out, out_next
